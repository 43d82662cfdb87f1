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


def burst_checkpoints(bursts, total: int) -> set[int]:
    """Steps just before and just after every burst of a bursty task, up to ``total``: ``bursts`` holds
    (every, offset, n_steps) per bursty task; a burst's first batch is that of step offset + k * every, so
    the checkpoint at that step holds the weights before it and the one n_steps later those after it."""
    steps: set[int] = set()
    for every, offset, n_steps in bursts:
        for start in range(offset, total, every):
            steps.update((start, min(start + n_steps, total)))
    return steps
