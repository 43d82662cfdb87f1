"""One way to get activations at named hook sites, through transformer_lens.

Hook names are transformer_lens's (``blocks.{l}.hook_resid_post``,
``blocks.{l}.mlp.hook_post``, ``hook_embed`` ...), resolved by a
``TransformerBridge`` over any checkpoint. Only the hooks asked for are
captured (no full cache), the forward stops after the last layer needed, and
activations can be read at one position per row (e.g. the last prompt token)
so that nothing larger than ``[rows, d]`` per hook is kept.

Inputs are token ids (``[rows, T]``, with an optional ``attention_mask``) or
text (a string or a list of strings, tokenized with the checkpoint's tokenizer
and right-padded, the mask made for you).

>>> import mechrare                                                     # doctest: +SKIP
>>> bridge = mechrare.open_run("runs/quickstart").bridge("d16-l2", 1500)
>>> acts = mechrare.get_activations(bridge, ["<facts:64> w3 w7", "<compare:8> w1"],
...                                 ["blocks.1.hook_resid_post"], positions="last")
>>> acts["blocks.1.hook_resid_post"].shape                             # [rows, d_model]
"""

from __future__ import annotations

import re

import numpy as np

from mechrare.errors import ConfigError

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


def tokenize(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded token ids and attention mask ([rows, T]) of ``texts``."""
    if tokenizer is None:
        raise ConfigError("inputs: text needs a tokenizer; the bridge has none: pass tokenizer=... or token ids")
    if tokenizer.pad_token_id is None:
        raise ConfigError("inputs: the tokenizer has no pad token to pad texts of different lengths; pass token ids")
    enc = tokenizer(list(texts), padding=True, add_special_tokens=False, return_tensors="np")
    return enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)


def _as_inputs(bridge, inputs, attention_mask, tokenizer):
    """(ids [rows, T], mask [rows, T] or None) from token ids or text."""
    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
        if attention_mask is not None:
            raise ConfigError("attention_mask: given with text inputs; the mask is made from the tokenized text")
        return tokenize(tokenizer or getattr(bridge, "tokenizer", None), [inputs] if isinstance(inputs, str) else inputs)
    ids = np.asarray(inputs)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ConfigError(f"inputs: expected token ids of shape [rows, T] or text, got an array of shape {ids.shape} and dtype {ids.dtype}")
    if attention_mask is not None:
        attention_mask = np.asarray(attention_mask)
        if attention_mask.ndim == 1:
            attention_mask = attention_mask[None]
        if attention_mask.shape != ids.shape:
            raise ConfigError(f"attention_mask: shape {attention_mask.shape} does not match the inputs' {ids.shape}")
    return ids.astype(np.int64), attention_mask


def get_activations(
    bridge,
    inputs,
    hooks: list[str],
    positions=None,
    attention_mask=None,
    batch_size: int = 256,
    progress: bool = False,
    dtype=None,
    tokenizer=None,
) -> dict[str, np.ndarray]:
    """Activations of ``bridge`` at ``hooks`` on ``inputs``: token ids ([rows, T] ints) or text.

    ``attention_mask`` ([rows, T], 1 = real token) marks padding in token-id
    inputs; text is tokenized (``tokenizer``, else the bridge's) and padded with
    its mask. ``positions``: None for every position (``[rows, T, d]``), one
    index per row (``[rows]``; ``-1`` is the last column), or ``"last"`` for each
    row's last real token, to keep ``[rows, d]``. Returns float32 numpy arrays
    keyed by the requested hook names."""
    import torch
    from tqdm.auto import tqdm

    unknown = [h for h in hooks if h not in bridge.hook_dict]
    if unknown:
        raise ConfigError(f"hooks: unknown hook {unknown[0]!r}; e.g. {resid_hooks(1)[-1]}, {mlp_hooks(1)[0]}")
    ids_np, mask_np = _as_inputs(bridge, inputs, attention_mask, tokenizer)
    if isinstance(positions, str):
        if positions != "last":
            raise ConfigError(f"positions: must be None, one index per row or 'last', got {positions!r}")
        positions = (mask_np.sum(1) - 1) if mask_np is not None else np.full(len(ids_np), ids_np.shape[1] - 1)
    device = next(bridge.parameters()).device
    ids_all = torch.as_tensor(ids_np, dtype=torch.long)
    mask_all = None if mask_np is None else torch.as_tensor(mask_np, dtype=torch.long)
    pos_all = None if positions is None else torch.as_tensor(np.asarray(positions), dtype=torch.long)
    if pos_all is not None and pos_all.shape != (len(ids_all),):
        raise ConfigError(f"positions: expected one index per row ({len(ids_all)}), got shape {tuple(pos_all.shape)}")
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
            extra = {} if mask_all is None else {"attention_mask": mask_all[start : start + batch_size].to(device)}
            bridge.run_with_hooks(ids, fwd_hooks=fwd_hooks, return_type=None, stop_at_layer=stop, **extra)
            for h in hooks:
                act = batch[h]
                if pos_all is not None:
                    pos = pos_all[start : start + batch_size].to(device) % act.shape[1]
                    act = act[torch.arange(len(ids), device=device), pos]
                chunks[h].append(act.to(dtype or torch.float32).cpu())
    return {h: torch.cat(chunks[h]).numpy() for h in hooks}
