"""The dense checkpoint schedule (Pythia-style) and the learning-rate schedule."""

from __future__ import annotations

import math


def checkpoint_steps(total: int, every: int, log_spaced: bool = True, log_max: int = 512) -> list[int]:
    """Steps to checkpoint: 0, then 1, 2, 4, ..., ``log_max`` (if ``log_spaced``),
    then every ``every`` steps, and always the last step ``total``.

    A checkpoint at step N holds the weights after N optimizer updates."""
    if total < 1 or every < 1:
        raise ValueError("total and every must be >= 1")
    steps = {0, total}
    if log_spaced:
        p = 1
        while p <= min(log_max, total):
            steps.add(p)
            p *= 2
    steps.update(range(every, total + 1, every))
    return sorted(steps)


def lr_factor(step: int, total: int, warmup: float, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at update ``step`` (0-based):
    linear warmup over ``warmup * total`` updates, then cosine decay to ``min_ratio``."""
    n_warm = int(round(warmup * total))
    if step < n_warm:
        return (step + 1) / n_warm
    span = max(1, total - n_warm)
    progress = min(1.0, (step - n_warm) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
