"""The learning-rate schedule: linear warmup, then cosine decay."""

from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: float, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at update ``step`` (0-based):
    linear warmup over ``warmup * total`` updates, then cosine decay to ``min_ratio``."""
    n_warm = int(round(warmup * total))
    if step < n_warm:
        return (step + 1) / n_warm
    span = max(1, total - n_warm)
    progress = min(1.0, (step - n_warm) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
