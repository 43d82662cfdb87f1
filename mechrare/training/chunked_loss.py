"""The causal-LM loss without the whole logits tensor: the head and the cross-entropy, chunk by chunk.

HF's loss (``ForCausalLMLoss``) makes the [B, L, V] logits, upcasts them to fp32, and autograd keeps the
log-softmax of every one of them for backward. For K models trained together
(:mod:`mechrare.training.grouped`) that is K x B x L x V x 4 bytes at once (the paper preset's 8 x 20M
together: 8 x 256 x 256 x 8,192 x 4 bytes = 17 GB, twice over with its gradient), which ran an H200 out
of memory. Here the flattened positions are cut into chunks of ``chunk`` rows; each chunk's logits are
made, reduced to their summed loss and dropped, and backward makes them again
(``torch.utils.checkpoint``), so at most one chunk's logits exist at a time. The loss is HF's (the mean
over the labelled next tokens), summed in another order: equal within float tolerance.
"""

from __future__ import annotations

from mechrare.data.mixture import IGNORE


def _chunk_sum(hidden, weight, labels):
    import torch.nn.functional as F

    logits = F.linear(hidden, weight).float()  # under autocast the head runs in its dtype, as HF's lm_head does
    return F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")


def causal_lm_loss(hidden, head_weight, labels, chunk: int):
    """HF's causal-LM loss of one model: ``hidden`` [B, L, d] (the final normed states, before the head),
    ``head_weight`` [V, d], ``labels`` [B, L] (HF's unshifted labels, ``IGNORE`` where none), its logits
    made ``chunk`` positions at a time."""
    from torch.utils.checkpoint import checkpoint

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1).to(h.device)
    total = None
    for start in range(0, h.shape[0], chunk):
        part = checkpoint(_chunk_sum, h[start:start + chunk], head_weight, y[start:start + chunk], use_reentrant=False)
        total = part if total is None else total + part
    return total / (y != IGNORE).sum().clamp(min=1)
