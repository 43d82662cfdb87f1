"""Where a causal LM keeps its parts, by transformer_lens's component names.

Analyses that differentiate through a Hugging Face model (interference, the
task neurons) need the parameters of the embedding, of each block, of each
block's MLP neurons and of the head. Their names differ by architecture
(``model.layers.0.mlp.up_proj`` in Llama and OLMo-2,
``gpt_neox.layers.0.mlp.dense_h_to_4h`` in GPT-NeoX), so they are read from the
architecture adapter that a ``TransformerBridge`` over the same model would use:
its ``embed``, ``blocks`` (with ``mlp.in``, ``mlp.gate``, ``mlp.out``),
``ln_final`` and ``unembed`` components. Any architecture the bridge supports
works; one it does not support is refused with one line.

Each parameter also has a *kind* (:func:`param_kinds`): ``embed``, ``attn``,
``mlp``, ``norm`` or ``head``, by the same component names (the block's ``attn``
and ``mlp``, its ``ln1``/``ln2``, ``ln_final``, ``embed``, ``unembed``). A
normalization module the adapter does not name (OLMo-2's ``q_norm``, ``k_norm``
and ``post_feedforward_layernorm``) is a ``norm`` by its module type (a
``LayerNorm`` or a class whose name ends in ``Norm``), even inside attention;
anything else left over is ``other``.

An MLP *neuron* n of block l owns row n of ``mlp.in`` (and of ``mlp.gate`` where
the MLP is gated) and column n of ``mlp.out``: the paper's "gate and up rows and
down column".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache

from mechrare.errors import ConfigError


@dataclass(frozen=True)
class Internals:
    """Parameter names of one architecture (``{l}`` stands for the block index)."""

    architecture: str
    embed: str  # module name of the token embedding
    blocks: str  # module name of the block list
    mlp_in: str  # weight name inside a block: [d_mlp, d_model]
    mlp_gate: str | None  # the same for the gate of a gated MLP, else None
    mlp_out: str  # weight name inside a block: [d_model, d_mlp]
    unembed: str
    n_layers: int
    d_mlp: int
    attn: str = ""  # module name inside a block of its attention
    mlp: str = ""  # module name inside a block of its MLP
    norms: tuple[str, ...] = ()  # module names (inside a block: ln1, ln2; and ln_final's full name)

    def block_prefix(self, layer: int) -> str:
        return f"{self.blocks}.{layer}."

    def neuron_weights(self, layer: int) -> tuple[list[str], str]:
        """(input-side weight names (gate first, where gated), output weight name) of block ``layer``."""
        pre = self.block_prefix(layer)
        ins = ([pre + self.mlp_gate] if self.mlp_gate else []) + [pre + self.mlp_in]
        return ins, pre + self.mlp_out

    def group_of(self, name: str) -> int:
        """0 for the embedding, 1 + l for block l, n_layers + 1 for the rest (final norm, head)."""
        if name.startswith(self.blocks + "."):
            rest = name[len(self.blocks) + 1 :]
            index = rest.split(".", 1)[0]
            if index.isdigit():
                return 1 + int(index)
        if name.startswith(self.embed + "."):
            return 0
        return self.n_layers + 1


KINDS = ("embed", "attn", "mlp", "norm", "head")


def param_kinds(model, parts: Internals, names: list[str]) -> list[str]:
    """The kind of each of ``names`` (parameters of ``model``): see the module docstring."""
    modules = dict(model.named_modules())
    out = []
    for name in names:
        owner = name.rsplit(".", 1)[0]
        kind = type(modules.get(owner)).__name__
        in_block = ""
        if name.startswith(parts.blocks + "."):
            rest = name[len(parts.blocks) + 1 :].split(".", 1)
            in_block = rest[1] if len(rest) == 2 and rest[0].isdigit() else ""
        if kind == "LayerNorm" or kind.endswith("Norm") or owner in parts.norms or in_block.split(".", 1)[0] in parts.norms:
            out.append("norm")
        elif name.startswith(parts.embed + "."):
            out.append("embed")
        elif parts.attn and in_block.startswith(parts.attn + "."):
            out.append("attn")
        elif parts.mlp and in_block.startswith(parts.mlp + "."):
            out.append("mlp")
        elif name.startswith(parts.unembed + "."):
            out.append("head")
        else:
            out.append("other")
    return out


def _architecture(config) -> str:
    archs = getattr(config, "architectures", None) or []
    return archs[0] if archs else ""


@lru_cache(maxsize=32)
def _names(architecture: str, config_json: str) -> tuple:
    from transformers import AutoConfig

    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.factories.architecture_adapter_factory import ArchitectureAdapterFactory
    from transformer_lens.model_bridge.sources.transformers import (
        determine_architecture_from_hf_config,
        map_default_transformer_lens_config,
    )
    import json

    data = json.loads(config_json)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    try:
        tl = map_default_transformer_lens_config(config)
        bridge_cfg = TransformerBridgeConfig.from_dict(dict(tl.__dict__))
        bridge_cfg.architecture = determine_architecture_from_hf_config(config)
        mapping = ArchitectureAdapterFactory.select_architecture_adapter(bridge_cfg).component_mapping
    except (ValueError, KeyError, AttributeError) as e:
        raise ConfigError(f"architecture {architecture or config.model_type!r}: transformer_lens's TransformerBridge does not "
                          f"support it ({str(e).splitlines()[0][:120]}); use an architecture it lists") from None
    blocks = mapping["blocks"]
    mlp = blocks.submodules.get("mlp")
    subs = getattr(mlp, "submodules", {}) or {}
    if mlp is None or "in" not in subs or "out" not in subs:
        raise ConfigError(f"architecture {architecture!r}: its blocks have no dense MLP with input and output weights "
                          "(mixture-of-experts and state-space blocks are not supported)")
    gate = subs.get("gate")
    attn = blocks.submodules.get("attn")
    norms = tuple(c.name for k, c in blocks.submodules.items() if k.startswith("ln") and c is not None)
    if "ln_final" in mapping and mapping["ln_final"] is not None:
        norms += (mapping["ln_final"].name,)
    return (mapping["embed"].name, blocks.name, f"{mlp.name}.{subs['in'].name}.weight",
            f"{mlp.name}.{gate.name}.weight" if gate is not None else None, f"{mlp.name}.{subs['out'].name}.weight",
            mapping["unembed"].name, attn.name if attn is not None else "", mlp.name, norms)


def internals(model) -> Internals:
    """The :class:`Internals` of a ``transformers`` causal LM (its config names the architecture)."""
    config = copy.deepcopy(model.config)
    if not _architecture(config):
        config.architectures = [type(model).__name__]
    arch = _architecture(config)
    embed, blocks, mlp_in, mlp_gate, mlp_out, unembed, attn, mlp, norms = _names(arch, config.to_json_string(use_diff=False))
    named = dict(model.named_parameters())
    first = f"{blocks}.0.{mlp_in}"
    if first not in named:
        raise ConfigError(f"architecture {arch!r}: not supported for neuron and gradient analyses: transformer_lens's "
                          f"adapter puts the MLP input at {first!r}, which the model does not have")
    n_layers = sum(1 for n in named if n.startswith(f"{blocks}.") and n.endswith("." + mlp_in))
    return Internals(arch, embed, blocks, mlp_in, mlp_gate, mlp_out, unembed, n_layers, int(named[first].shape[0]), attn, mlp, norms)
