"""Probe datasets: inputs, readout positions and targets from a run's mixture.

Every task contributes up to ``examples_per_task`` distinct instances (its
held-out eval set first, then seeded training draws), given as prompts only
(the answer is what the probe must find); activations are read at the last
prompt position. Targets are each task's declared latents
(``<task>/<latent>``) plus ``task`` (task identity over all tasks). The
train/test split is by distinct instance, seeded, so no instance is on both
sides. Control labels (Hewitt & Liang) use the token at the readout position
as the input type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mechrare.data.mixture import Mixture
from mechrare.probes.control import control_labels

TASK_TARGET = "task"


@dataclass
class ProbeTarget:
    name: str
    task: str  # the task whose instances it uses, or "all"
    rows: np.ndarray  # indices into ProbeData rows
    labels: np.ndarray
    control: np.ndarray
    n_classes: int
    train: np.ndarray  # bool over ``rows``

    @property
    def n_train(self) -> int:
        return int(self.train.sum())

    @property
    def n_test(self) -> int:
        return int((~self.train).sum())


@dataclass
class ProbeData:
    ids: np.ndarray  # [R, T] prompts, right-padded with <pad>
    positions: np.ndarray  # [R] readout position (last prompt token)
    row_task: np.ndarray  # [R] task index
    targets: list[ProbeTarget]
    skipped: dict[str, str] = field(default_factory=dict)  # target -> reason


def _instances(mixture: Mixture, index: int, n: int, seed: int):
    task = mixture.tasks[index]
    seen: dict[tuple, object] = {}
    for ex in mixture.tasks[index].eval_examples(n):
        seen.setdefault(ex.tokens, ex)
    rng = np.random.default_rng([seed, index, 0x9B0E])
    for _ in range(4 * n):
        if len(seen) >= n:
            break
        ex = task.train_sample(rng)
        seen.setdefault(ex.tokens, ex)
    return list(seen.values())[:n]


def build_probe_data(
    mixture: Mixture,
    examples_per_task: int = 512,
    train_fraction: float = 0.6,
    seed: int = 0,
    min_per_class: float = 2.0,
) -> ProbeData:
    """Inputs and targets for probing every checkpoint of a run with ``mixture``.

    A target is skipped (with its reason in ``skipped``) when its training
    split has fewer than two classes or fewer than ``min_per_class`` examples
    per declared class."""
    prompts, positions, row_task, train_rows, latents = [], [], [], [], []
    for index, task in enumerate(mixture.tasks):
        examples = _instances(mixture, index, examples_per_task, seed)
        order = np.random.default_rng([seed, index, 0x5917]).permutation(len(examples))
        is_train = np.zeros(len(examples), dtype=bool)
        is_train[order[: int(round(train_fraction * len(examples)))]] = True
        for ex, tr in zip(examples, is_train):
            prompts.append(mixture.vocab.ids(list(ex.tokens[: ex.n_prompt])))
            positions.append(ex.n_prompt - 1)
            row_task.append(index)
            train_rows.append(tr)
            latents.append(ex.latents)
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), mixture.vocab.pad_id, dtype=np.int64)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = p
    positions = np.array(positions)
    row_task = np.array(row_task)
    train_rows = np.array(train_rows)
    types = ids[np.arange(len(ids)), positions]

    data = ProbeData(ids, positions, row_task, [])
    candidates = [(TASK_TARGET, "all", np.arange(len(ids)), row_task, len(mixture.tasks))]
    for index, task in enumerate(mixture.tasks):
        rows = np.flatnonzero(row_task == index)
        for latent, n_classes in task.targets().items():
            labels = np.array([latents[r][latent] for r in rows])
            candidates.append((f"{task.name}/{latent}", task.name, rows, labels, n_classes))
    for t, (name, task_name, rows, labels, n_classes) in enumerate(candidates):
        train = train_rows[rows]
        if len(np.unique(labels[train])) < 2:
            data.skipped[name] = "fewer than 2 classes in the training split"
            continue
        if train.sum() < min_per_class * n_classes:
            data.skipped[name] = f"{int(train.sum())} training examples for {n_classes} classes"
            continue
        control = control_labels(types[rows], labels, seed=seed + 7919 * t)
        data.targets.append(ProbeTarget(name, task_name, rows, labels, control, n_classes, train))
    return data
