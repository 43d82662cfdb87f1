"""Training-like batches for a series trained elsewhere, whose real batches are not at hand.

A row is a window of the series' background text; a share of the rows (the task's
``shares`` in SERIES.toml) start with one training-split instance of a task
(without its left padding) and an end-of-text token, as the task was injected in
training: what :class:`~mechrare.data.mixture.Mixture` batches are for a run
trained here. ``batch(step, batch_size)`` is a pure function of its arguments.

They stand for the training data only as far as the background text and the
shares do: analyses that read them (interference's g_t / g_nt split and update
attribution, SAE activations) say so in their dataset's ``batches`` attribute.
"""

from __future__ import annotations

import numpy as np

from mechrare.data.mixture import Batch
from mechrare.errors import ConfigError

PROXY = ("proxy: windows of the series' background text, a share of the rows starting with a training-split "
         "task instance (SERIES.toml [tasks] shares); not the batches the checkpoints were trained on")


class ProxyBatches:
    def __init__(self, instances: list[list[np.ndarray]], shares: list[float], stream: np.ndarray, length: int,
                 eos: int, seed: int = 0):
        self.instances = instances  # per task: the token ids of each training-split instance
        self.p = np.array(list(shares) + [1.0 - sum(shares)])
        self.stream = stream
        self.length = length
        self.eos = eos
        self.seed = seed

    def check_batch_size(self, batch_size: int, path: str = "batch_size") -> None:
        if batch_size < 1:
            raise ConfigError(f"{path}: must be >= 1, got {batch_size}")

    def batch(self, step: int, batch_size: int) -> Batch:
        rng = np.random.default_rng([self.seed, step, 0xBA7C])
        L = self.length
        comp = rng.choice(len(self.p), size=batch_size, p=self.p)
        starts = rng.integers(0, len(self.stream) - L + 1, size=batch_size)
        ids = np.stack([self.stream[s : s + L] for s in starts]).astype(np.int64)
        mask = np.zeros((batch_size, L), dtype=bool)
        task = np.full(batch_size, -1, dtype=np.int64)
        for r, c in enumerate(comp):
            if c == len(self.p) - 1:
                continue
            pool = self.instances[c]
            inst = np.append(pool[rng.integers(len(pool))], self.eos)[:L]
            ids[r, : len(inst)] = inst
            mask[r, : len(inst)] = True
            task[r] = c
        return Batch(ids, ids.copy(), task, mask)
