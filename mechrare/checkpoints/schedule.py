"""The dense checkpoint schedule (Pythia-style): which steps a run keeps."""

from __future__ import annotations


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
