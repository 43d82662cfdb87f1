"""The task mixture: per-task frequencies, placement and schedules, seeded batches.

The batch at step ``s`` is a pure function of (config, seed, order, s): every
model of a ladder trained under one training seed sees the same sequences in
the same order, and a resumed run needs no data-loader state. ``order`` is the
training seed (:meth:`Mixture.with_order`): it reshuffles the training stream
and never changes the tasks, the vocabulary or the eval sets; order 0 is the
stream of a run with one seed.

Placement. ``inject`` (the paper's setup): the instance replaces the first
tokens of a background sequence and is followed by ``<eos>`` and a fresh
background document. ``sequence``: the instance is a sequence of its own,
``<eos>``, then padding (ignored by the loss).

Upsampling. ``upsample = {task = factor}`` multiplies a task's frequency
weight (the paper's intervention); :meth:`Mixture.with_upsample` gives the
same mixture (vocabulary, eval sets, seed) with other weights.

Schedules. By default a task is i.i.d.: each sequence carries it with
probability frequency / sum(all frequencies, background included). With
``schedule = {every = N}`` the same long-run share arrives in bursts: every N
steps, the N batches' worth of expected instances come together (filling whole
batches first), and none in between.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mechrare.config import MixtureConfig, TaskConfig
from mechrare.data.background import BACKGROUNDS
from mechrare.data.instances import Instances
from mechrare.data.tasks import TASK_FAMILIES, Example, Task
from mechrare.errors import ConfigError

IGNORE = -100


@dataclass
class Batch:
    input_ids: np.ndarray  # [B, L] int64
    labels: np.ndarray  # [B, L] int64, IGNORE at padding
    task: np.ndarray  # [B] index into Mixture.tasks, -1 for a background-only row
    task_mask: np.ndarray  # [B, L] bool, True on a task instance's tokens and its <eos>


class Mixture:
    """``data_dirs``: where a text or tokens background may already be prepared (a run
    folder's ``data/``) before the user cache is tried (:mod:`mechrare.data.text_prep`)."""

    def __init__(self, cfg: MixtureConfig, seed: int, path: str = "mixture", data_dirs=None):
        self.cfg = cfg
        self.seed = seed
        self.order = 0  # the training seed: which training stream batch() draws from
        self.background = BACKGROUNDS.get(cfg.background.kind)(cfg.background, seed, cfg.sequence_length,
                                                               f"{path}.background", data_dirs)
        words = self.background.words
        self.specs: list[TaskConfig] = list(cfg.tasks)
        self.tasks: list[Task] = [self._build_task(t, seed, words, f"{path}.tasks[{i}]") for i, t in enumerate(self.specs)]
        for i, task in enumerate(self.tasks):
            if task.length + 1 > cfg.sequence_length:
                raise ConfigError(
                    f"{path}.sequence_length: {task.name} needs {task.length + 1} tokens (with <eos>), "
                    f"got {cfg.sequence_length}; raise sequence_length or lower the complexity"
                )
        extra: list[str] = []
        for task in self.tasks:
            extra += [task.marker] + task.tokens()
        self.vocab = self.background.vocabulary(extra, seed, f"{path}.tasks")
        if self.vocab.pad_id is None and any(t.placement == "sequence" for t in self.specs):
            raise ConfigError(f"{path}.tasks: placement = \"sequence\" pads after the instance, and the background's tokenizer "
                              "has no padding token; use placement = \"inject\" or a tokenizer with one")
        self._encoded: dict[tuple[str, ...], np.ndarray] = {}
        self.eval_sets = [self._eval_set(task) for task in self.tasks]
        self._setup_weights(path)

    def with_upsample(self, upsample: dict[str, float], path: str = "mixture") -> "Mixture":
        """This mixture with the tasks in ``upsample`` shown ``factor`` times as often
        (on top of the config's own ``upsample``); everything else is shared."""
        import copy

        merged = dict(self.cfg.upsample)
        for task, factor in upsample.items():
            merged[task] = merged.get(task, 1.0) * factor
        other = copy.copy(self)
        other.cfg = dataclasses.replace(self.cfg, upsample=merged)
        other._setup_weights(path)
        return other

    def with_order(self, order: int) -> "Mixture":
        """This mixture with the training stream of training seed ``order`` (same tasks and eval sets)."""
        import copy

        if order == self.order:
            return self
        other = copy.copy(self)
        other.order = int(order)
        return other

    # -- construction ---------------------------------------------------------
    @staticmethod
    def _build_task(spec: TaskConfig, seed: int, words: list[str], path: str) -> Task:
        try:
            family = TASK_FAMILIES.get(spec.family)
        except ConfigError as exc:
            raise ConfigError(f"{path}.family: {exc}") from None
        return family(spec.complexity, spec.params, seed, words, path, variant=spec.variant)

    def _setup_weights(self, path: str) -> None:
        up = self.cfg.upsample
        weights = np.array(
            [t.frequency * up.get(t.name, 1.0) for t in self.specs] + [self.cfg.background.frequency], dtype=np.float64
        )
        self.shares = weights / weights.sum()
        self.bursty = [i for i, t in enumerate(self.specs) if t.schedule is not None]
        free = [i for i in range(len(self.specs)) if i not in self.bursty] + [-1]
        free_w = np.array([weights[i] for i in free], dtype=np.float64)
        if free_w.sum() <= 0:
            raise ConfigError(
                f"{path}.background.frequency: every task is bursty, so non-burst batches need background; set it > 0"
            )
        self._free_components = np.array(free, dtype=np.int64)
        self._free_p = free_w / free_w.sum()

    def burst_size(self, index: int, batch_size: int) -> int:
        """Instances of bursty task ``index`` delivered per burst."""
        every = self.specs[index].schedule.every
        return int(round(self.shares[index] * batch_size * every))

    def burst_schedule(self, batch_size: int) -> dict[str, tuple[int, int, int]]:
        """task -> (every, offset, n_steps) for each bursty task: its bursts start at the batches of steps
        offset + k * every and fill ``n_steps`` consecutive batches."""
        out = {}
        for i in self.bursty:
            sched = self.specs[i].schedule
            out[self.task_names[i]] = (sched.every, sched.offset, max(1, -(-self.burst_size(i, batch_size) // batch_size)))
        return out

    def check_batch_size(self, batch_size: int, path: str = "mixture") -> None:
        """Bursts must be non-empty and all bursts of one step must fit one batch."""
        first = 0
        for i in self.bursty:
            n = self.burst_size(i, batch_size)
            if n < 1:
                raise ConfigError(
                    f"{path}.tasks[{i}].schedule.every: a burst of {self.specs[i].name} would hold "
                    f"{self.shares[i] * batch_size * self.specs[i].schedule.every:.2f} instances; raise every"
                )
            first += min(n, batch_size)
        if first > batch_size:
            raise ConfigError(
                f"{path}.tasks: bursts of several tasks can land in one batch and need {first} rows "
                f"> batch_size {batch_size}; give them different schedule.offset or lower frequencies"
            )

    # -- encoding ---------------------------------------------------------------
    def encode(self, example: Example) -> np.ndarray:
        ids = self._encoded.get(example.tokens)
        if ids is None:
            ids = self._encoded[example.tokens] = self.vocab.ids(list(example.tokens))
        return ids

    def _eval_set(self, task: Task) -> Instances:
        return self.instances(task, task.eval_examples(self.cfg.eval_examples))

    def instances(self, task: Task, examples: list[Example]) -> Instances:
        """``examples`` of ``task`` encoded, with their latents."""
        ids = np.stack([self.encode(ex) for ex in examples])
        latents = {k: np.array([ex.latents[k] for ex in examples], dtype=np.int64) for k in task.targets()}
        return Instances(task.name, ids, examples[0].n_prompt, latents, dict(task.targets()))

    # -- sampling ---------------------------------------------------------------
    def components(self, step: int, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """[B] task index per row (-1: background only), in row order."""
        rows = []
        for i in self.bursty:
            sched = self.specs[i].schedule
            phase = (step - sched.offset) % sched.every
            count = int(np.clip(self.burst_size(i, batch_size) - phase * batch_size, 0, batch_size))
            rows += [i] * count
        if len(rows) > batch_size:
            raise ConfigError(f"mixture.tasks: bursts at step {step} need {len(rows)} rows > batch_size {batch_size}")
        free = rng.choice(self._free_components, size=batch_size - len(rows), p=self._free_p)
        return rng.permutation(np.concatenate([np.array(rows, dtype=np.int64), free]))

    def batch(self, step: int, batch_size: int) -> Batch:
        length = self.cfg.sequence_length
        key = [self.seed, step, 0x5EED] if self.order == 0 else [self.seed, step, 0x5EED, self.order]
        rng = np.random.default_rng(key)
        comp = self.components(step, batch_size, rng)
        background = self.background.sample(rng, batch_size, length)
        ids = background.copy()
        mask = np.zeros((batch_size, length), dtype=bool)
        for row in np.flatnonzero(comp >= 0):
            task_index = int(comp[row])
            inst = self.encode(self.tasks[task_index].train_sample(rng))
            n = len(inst)
            ids[row, :n] = inst
            ids[row, n] = self.vocab.eos_id
            mask[row, : n + 1] = True
            if self.specs[task_index].placement == "inject":
                ids[row, n + 1 :] = background[row, : length - n - 1]
            else:
                ids[row, n + 1 :] = self.vocab.pad_id
        labels = ids.copy() if self.vocab.pad_id is None else np.where(ids == self.vocab.pad_id, IGNORE, ids)
        return Batch(ids, labels, comp, mask)

    def background_eval(self, rows: int = 256) -> np.ndarray:
        """A fixed held-out sample of background documents, [rows, L]."""
        rng = np.random.default_rng([self.seed, 0xB6E7A1])
        return self.background.held_out(rng, rows, self.cfg.sequence_length)

    # -- description -------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def describe(self) -> list[dict]:
        rows = []
        for i, (task, spec) in enumerate(zip(self.tasks, self.specs)):
            sched = f"every {spec.schedule.every}" if spec.schedule else "iid"
            rows.append(
                {
                    "task": task.name,
                    "share": float(self.shares[i]),
                    "placement": spec.placement,
                    "schedule": sched,
                    "eval": len(self.eval_sets[i].input_ids),
                    "split": task.split,
                }
            )
        return rows
