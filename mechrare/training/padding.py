"""Sizes of one shape family trained as one program: each model padded with zeros to the family's largest.

A *family* is the ladder sizes whose attention heads have one width (``d_model / n_heads``; the same
vocabulary, positions and norms, as in one run). A member of width d, h heads, MLP width f and n layers
sits in the leading corner of every stacked tensor of the largest shape (D, H, F, N): its embedding's
first d columns, its first h heads, its first f MLP units, its first n layers; the rest is zero. Then

* the padding stays zero and adds nothing: a zero head attends to zero values, a zero MLP unit gives
  silu(0) * 0, a zero layer adds zero to the residual stream (its post-norms see zero input), and every
  weight that reads or writes a padded coordinate gets a zero gradient, so AdamW (and its decoupled weight
  decay) leave it at zero; a member's gradient norm (its clipping) is the one it has alone;
* the one change is the RMSNorms: they average over the padded width, so each is replaced in the padded
  program by :class:`PaddedRMSNorm`, which divides the sum of squares by the member's own width (a per-member
  buffer under ``vmap``).

So every member's weights, losses and optimizer state are those it has alone within float tolerance. The
price: every member does the largest's arithmetic, which pays only where kernels are launch-bound (small
models on a GPU); on a CPU it is slower than one after another (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import copy
from typing import Any

WIDTH = "width"  # the PaddedRMSNorm buffer: the member's own width of that norm


def dims(model) -> tuple[int, int, int, int]:
    """(width, layers, heads, MLP width) of a ladder ``ModelShape`` or an ``Olmo2Config``."""
    if hasattr(model, "d_model"):
        return model.d_model, model.n_layers, model.n_heads, model.d_mlp
    return model.hidden_size, model.num_hidden_layers, model.num_attention_heads, model.intermediate_size


def head_width(model) -> int:
    """The family key of a ladder shape or a model config: the width of one attention head."""
    width, _, heads, _ = dims(model)
    return width // heads


def largest(models: list) -> tuple[int, int, int, int]:
    """(width, layers, heads, MLP width) of the family's largest shape: each the largest of ``models``
    (ladder shapes or model configs) that have one head width; a ValueError names the widths otherwise."""
    widths = {head_width(m) for m in models}
    if len(widths) != 1:
        raise ValueError(f"models of one family must have one head width (d_model / n_heads); got {sorted(widths)}")
    return tuple(max(d) for d in zip(*(dims(m) for m in models)))  # type: ignore[return-value]


def corner(shape) -> tuple[slice, ...]:
    """The leading corner of a padded tensor that holds a tensor of ``shape``."""
    return tuple(slice(0, n) for n in shape)


def padded_config(configs: list):
    """The ``Olmo2Config`` of the family's largest shape (each of width, heads, MLP width and depth the largest)."""
    width, layers, heads, mlp = largest(configs)
    big = copy.deepcopy(configs[0])
    big.hidden_size, big.num_hidden_layers, big.intermediate_size = width, layers, mlp
    big.num_attention_heads = big.num_key_value_heads = heads
    if getattr(big, "layer_types", None) is not None:
        big.layer_types = [big.layer_types[0]] * big.num_hidden_layers
    return big


def _rms_norm_class():
    import torch
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm

    class PaddedRMSNorm(Olmo2RMSNorm):
        """Olmo2RMSNorm over a zero-padded width: the mean of squares over the member's own ``width``."""

        def __init__(self, hidden_size, eps):
            super().__init__(hidden_size, eps)
            self.register_buffer(WIDTH, torch.tensor(float(hidden_size)), persistent=False)

        def forward(self, hidden_states):
            input_dtype = hidden_states.dtype
            hidden_states = hidden_states.to(torch.float32)
            variance = hidden_states.pow(2).sum(-1, keepdim=True) / getattr(self, WIDTH)
            hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
            return (self.weight * hidden_states).to(input_dtype)

    return PaddedRMSNorm


def padded_template(configs: list):
    """A meta-device ``Olmo2ForCausalLM`` of the family's largest shape, its RMSNorms :class:`PaddedRMSNorm`
    (the names of its parameters and buffers are the stacked tensors' names)."""
    import torch
    from transformers import Olmo2ForCausalLM
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm

    big = padded_config(configs)
    with torch.device("meta"):
        model = Olmo2ForCausalLM(big)
        padded = _rms_norm_class()
        for name, module in list(model.named_modules()):
            if type(module) is Olmo2RMSNorm:
                parent, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent), child, padded(module.weight.numel(), module.variance_epsilon))
    return model


def stack_padded(members: list[dict[str, Any]], template: dict[str, Any]) -> dict[str, Any]:
    """``template``'s tensors (name -> tensor of the padded shape) stacked over ``members`` (name -> own
    tensor): member k's tensor in the leading corner of slice k, zero elsewhere and where it has none."""
    import torch

    out = {}
    for name, like in template.items():
        own = [m.get(name) for m in members]
        first = next((t for t in own if t is not None), None)
        if first is None:
            raise ValueError(f"no member has {name!r}")
        stacked = torch.zeros((len(members), *like.shape), dtype=first.dtype, device=first.device)
        with torch.no_grad():
            for k, t in enumerate(own):
                if t is not None:
                    stacked[k][corner(t.shape)] = t
        out[name] = stacked
    return out


def norm_widths(template, members: list, device) -> dict[str, Any]:
    """The :class:`PaddedRMSNorm` buffers stacked over ``members`` (models): each norm's own width in each
    member (1 in a layer the member does not have, where the norm sees only zeros)."""
    import torch

    out = {}
    for name, buffer in template.named_buffers():
        if not name.endswith("." + WIDTH):
            continue
        weight = name[: -len(WIDTH)] + "weight"
        widths = []
        for m in members:
            own = dict(m.named_parameters()).get(weight)
            widths.append(float(own.numel()) if own is not None else 1.0)
        out[name] = torch.tensor(widths, device=device)
    return out
