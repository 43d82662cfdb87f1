"""Probe datasets: inputs, readout positions and targets from a task set.

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

from mechrare.data.taskset import TaskSet
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


def build_probe_data(
    tasks: TaskSet,
    examples_per_task: int = 512,
    train_fraction: float = 0.6,
    seed: int = 0,
    min_per_class: float = 2.0,
) -> ProbeData:
    """Inputs and targets for probing every checkpoint with the tasks of ``tasks``.

    A target is skipped (with its reason in ``skipped``) when its training
    split has fewer than two classes or fewer than ``min_per_class`` examples
    per declared class."""
    prompts, positions, row_task, train_rows, latents = [], [], [], [], []
    instances = [tasks.probe_instances(name, examples_per_task, seed) for name in tasks.names]
    for index, inst in enumerate(instances):
        order = np.random.default_rng([seed, index, 0x5917]).permutation(len(inst))
        is_train = np.zeros(len(inst), dtype=bool)
        is_train[order[: int(round(train_fraction * len(inst)))]] = True
        for r, tr in enumerate(is_train):
            prompts.append(inst.input_ids[r, : inst.n_prompt])
            positions.append(inst.n_prompt - 1)
            row_task.append(index)
            train_rows.append(tr)
            latents.append({k: int(v[r]) for k, v in inst.latents.items()})
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), tasks.pad_id, dtype=np.int64)
    for r, p in enumerate(prompts):
        ids[r, : len(p)] = p
    positions = np.array(positions)
    row_task = np.array(row_task)
    train_rows = np.array(train_rows)
    types = ids[np.arange(len(ids)), positions]

    data = ProbeData(ids, positions, row_task, [])
    candidates = [(TASK_TARGET, "all", np.arange(len(ids)), row_task, len(instances))]
    for index, inst in enumerate(instances):
        rows = np.flatnonzero(row_task == index)
        for latent, n_classes in inst.targets.items():
            labels = np.array([latents[r][latent] for r in rows])
            candidates.append((f"{inst.task}/{latent}", inst.task, rows, labels, n_classes))
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
