"""Task instances as token ids: the unit every task-reading analysis consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Instances:
    """Instances of one task, all of one length: ``input_ids[:, :n_prompt]`` is the prompt,
    the rest the answer. ``latents`` holds each probe target's class per instance and
    ``targets`` each target's number of classes."""

    task: str
    input_ids: np.ndarray  # [N, T] int64
    n_prompt: int
    latents: dict[str, np.ndarray] = field(default_factory=dict)  # target -> [N] class indices
    targets: dict[str, int] = field(default_factory=dict)  # target -> number of classes

    def __post_init__(self) -> None:
        self.input_ids = np.asarray(self.input_ids, dtype=np.int64)
        if self.input_ids.ndim != 2 or len(self.input_ids) == 0:
            raise ValueError(f"{self.task}: instances must be a non-empty [N, T] array of token ids, got shape {self.input_ids.shape}")
        if not 1 <= self.n_prompt < self.input_ids.shape[1]:
            raise ValueError(f"{self.task}: n_prompt must be in [1, {self.input_ids.shape[1]}) (an answer must follow), got {self.n_prompt}")

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def answer_slice(self) -> slice:
        """Logit positions that predict the answer tokens."""
        return slice(self.n_prompt - 1, self.input_ids.shape[1] - 1)

    @property
    def answers(self) -> np.ndarray:
        """[N, answer length] the answer tokens."""
        return self.input_ids[:, self.n_prompt :]
