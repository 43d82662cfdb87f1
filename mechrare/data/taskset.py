"""The task-set interface that every analysis reads, and its provider for a mechrare mixture.

A *task set* names the tasks and, for each, gives its instances as token ids
with the answer positions and probe targets: the held-out evaluation set, draws
from the training distribution, and distinct instances for probing. Where the
checkpoints were trained here it also gives the training batches with their
task masks (``batches``), and the share of training sequences each task had.
Analyses never read a mixture or a manifest: only a task set and a checkpoint
series.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import numpy as np

from mechrare.data.instances import Instances
from mechrare.data.mixture import Batch, Mixture
from mechrare.errors import ConfigError


class BatchSource(Protocol):
    """Training batches as trained: ``batch(step, batch_size)`` is a pure function of its arguments."""

    def batch(self, step: int, batch_size: int) -> Batch: ...

    def check_batch_size(self, batch_size: int, path: str = "mixture") -> None: ...


class TaskSet(ABC):
    """Tasks with their instances as token ids (see the module docstring)."""

    @property
    @abstractmethod
    def names(self) -> list[str]:
        """Task names, in the set's order (the order of every ``task`` dimension)."""

    @property
    @abstractmethod
    def pad_id(self) -> int:
        """The token id used to right-pad prompts of different lengths."""

    @abstractmethod
    def eval_instances(self, task: str) -> Instances:
        """The task's held-out evaluation instances."""

    @abstractmethod
    def train_instances(self, task: str, n: int, seed: int = 0) -> Instances:
        """``n`` seeded draws from the task's training distribution (repeats allowed)."""

    @abstractmethod
    def probe_instances(self, task: str, n: int, seed: int = 0) -> Instances:
        """Up to ``n`` *distinct* instances for probing: the held-out ones first, then seeded training draws."""

    # -- optional: what only some providers know ------------------------------------------------
    def shares(self, model: str | None = None) -> dict[str, float] | None:
        """Task -> share of training sequences (the one ``model`` was trained on); None if unknown."""
        return None

    def bursts(self, tokens_per_step: int, model: str | None = None) -> dict[str, tuple[int, int, int]]:
        """task -> (every, offset, n_steps) for the tasks trained in bursts (see
        :meth:`mechrare.data.mixture.Mixture.burst_schedule`); empty where unknown."""
        return {}

    def complexity(self, task: str) -> int | None:
        return None

    def background(self, rows: int = 256) -> np.ndarray | None:
        """Held-out non-task text ([rows, T] token ids), or None."""
        return None

    def batches(self, model: str | None = None, seed: int = 0) -> BatchSource | None:
        """The training batches (with task masks) ``model`` was trained on under training seed
        ``seed``, or None where unknown."""
        return None

    # -- shared helpers ----------------------------------------------------------------------
    def index(self, task: str) -> int:
        try:
            return self.names.index(task)
        except ValueError:
            raise ConfigError(f"no task {task!r}; tasks: {', '.join(self.names)}") from None

    def require_batches(self, model: str | None, analysis: str, seed: int = 0) -> BatchSource:
        source = self.batches(model, seed)
        if source is None:
            raise ConfigError(f"{analysis}: needs the training batches of {model or 'the series'}, which this task set does not have")
        return source


class MixtureTaskSet(TaskSet):
    """A mechrare mixture's tasks; ``model_mixtures`` gives the mixture each model was trained
    on where it differs from the run's (an intervention's upsampled one)."""

    def __init__(self, mixture: Mixture, model_mixtures: dict[str, Mixture] | None = None):
        self.mixture = mixture
        self.model_mixtures = dict(model_mixtures or {})

    @property
    def names(self) -> list[str]:
        return self.mixture.task_names

    @property
    def pad_id(self) -> int:
        return self.mixture.vocab.pad_id

    def eval_instances(self, task: str) -> Instances:
        return self.mixture.eval_sets[self.index(task)]

    def train_instances(self, task: str, n: int, seed: int = 0) -> Instances:
        i = self.index(task)
        rng = np.random.default_rng([self.mixture.seed, i, seed, 0xA77])
        t = self.mixture.tasks[i]
        return self.mixture.instances(t, [t.train_sample(rng) for _ in range(n)])

    def probe_instances(self, task: str, n: int, seed: int = 0) -> Instances:
        i = self.index(task)
        t = self.mixture.tasks[i]
        seen: dict[tuple, object] = {}
        for ex in t.eval_examples(n):
            seen.setdefault(ex.tokens, ex)
        rng = np.random.default_rng([seed, i, 0x9B0E])
        for _ in range(4 * n):
            if len(seen) >= n:
                break
            ex = t.train_sample(rng)
            seen.setdefault(ex.tokens, ex)
        return self.mixture.instances(t, list(seen.values())[:n])

    def shares(self, model: str | None = None) -> dict[str, float]:
        mixture = self.model_mixtures.get(model, self.mixture) if model is not None else self.mixture
        return dict(zip(self.names, map(float, mixture.shares[:-1])))

    def bursts(self, tokens_per_step: int, model: str | None = None) -> dict[str, tuple[int, int, int]]:
        mixture = self.model_mixtures.get(model, self.mixture) if model is not None else self.mixture
        return mixture.burst_schedule(tokens_per_step // self.mixture.cfg.sequence_length)

    def complexity(self, task: str) -> int:
        return self.mixture.specs[self.index(task)].complexity

    def background(self, rows: int = 256) -> np.ndarray:
        return self.mixture.background_eval(rows)

    def batches(self, model: str | None = None, seed: int = 0) -> Mixture:
        mixture = self.model_mixtures.get(model, self.mixture) if model is not None else self.mixture
        return mixture.with_order(seed)
