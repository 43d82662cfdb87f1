"""One way to get activations at named hook sites, through transformer_lens.

Hook names are transformer_lens's (``blocks.{l}.hook_resid_post``,
``blocks.{l}.mlp.hook_post``, ``hook_embed`` ...), resolved by a
``TransformerBridge`` over any checkpoint. Only the hooks asked for are
captured (no full cache), the forward stops after the last layer needed, and
activations can be read at one position per row (e.g. the last prompt token)
so that nothing larger than ``[rows, d]`` per hook is kept.

>>> from mechrare.checkpoints import CheckpointStore                 # doctest: +SKIP
>>> bridge = CheckpointStore("runs/quickstart").load_bridge("d16-l2", 1500)
>>> acts = get_activations(bridge, ids, ["blocks.1.hook_resid_post"], positions=last)
>>> acts["blocks.1.hook_resid_post"].shape                             # [rows, d_model]
"""

from __future__ import annotations

import re

import numpy as np

_LAYER = re.compile(r"^blocks\.(\d+)\.")


def resid_hooks(n_layers: int) -> list[str]:
    """The residual stream at every depth: layer 0 is the embedding output
    (``blocks.0.hook_resid_pre``), layer l + 1 is ``blocks.{l}.hook_resid_post``."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{l}.hook_resid_post" for l in range(n_layers)]


def mlp_hooks(n_layers: int) -> list[str]:
    """MLP neuron activations (after the SwiGLU gate) of every layer."""
    return [f"blocks.{l}.mlp.hook_post" for l in range(n_layers)]


def _stop_layer(hooks: list[str], n_layers: int) -> int | None:
    deepest = -1
    for name in hooks:
        m = _LAYER.match(name)
        if m is None:
            return None  # a hook outside the blocks (e.g. unembed): run everything
        deepest = max(deepest, int(m.group(1)))
    return deepest + 1 if deepest + 1 < n_layers else None


def get_activations(
    bridge,
    input_ids,
    hooks: list[str],
    positions=None,
    batch_size: int = 256,
    progress: bool = False,
    dtype=None,
) -> dict[str, np.ndarray]:
    """Activations of ``bridge`` on ``input_ids`` ([rows, T] ints) at ``hooks``.

    ``positions``: None for every position (``[rows, T, d]``), or one index per
    row (``[rows]``; ``-1`` is the last) to keep ``[rows, d]``. Returns float32
    numpy arrays keyed by the requested hook names."""
    import torch
    from tqdm.auto import tqdm

    unknown = [h for h in hooks if h not in bridge.hook_dict]
    if unknown:
        raise KeyError(f"unknown hook {unknown[0]!r}; e.g. {resid_hooks(1)[-1]}, {mlp_hooks(1)[0]}")
    device = next(bridge.parameters()).device
    ids_all = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
    pos_all = None if positions is None else torch.as_tensor(np.asarray(positions), dtype=torch.long)
    stop = _stop_layer(hooks, bridge.cfg.n_layers)
    chunks: dict[str, list] = {h: [] for h in hooks}
    batch: dict[str, torch.Tensor] = {}

    def capture(name):
        def fn(tensor, hook):
            batch[name] = tensor.detach()
            return tensor

        return fn

    fwd_hooks = [(h, capture(h)) for h in hooks]
    starts = range(0, len(ids_all), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="activations", disable=not progress, leave=False):
            ids = ids_all[start : start + batch_size].to(device)
            batch.clear()
            bridge.run_with_hooks(ids, fwd_hooks=fwd_hooks, return_type=None, stop_at_layer=stop)
            for h in hooks:
                act = batch[h]
                if pos_all is not None:
                    pos = pos_all[start : start + batch_size].to(device) % act.shape[1]
                    act = act[torch.arange(len(ids), device=device), pos]
                chunks[h].append(act.to(dtype or torch.float32).cpu())
    return {h: torch.cat(chunks[h]).numpy() for h in hooks}
