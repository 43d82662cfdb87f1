"""A run's plan: everything resolved and validated from its config before anything is written."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from pathlib import Path

from mechrare.checkpoints.manifest import InterventionRecord, Manifest, ModelRecord, ShapeRecord, TaskRecord, new_manifest
from mechrare.checkpoints.schedule import burst_checkpoints, checkpoint_steps
from mechrare.config import RunConfig
from mechrare.data.mixture import Mixture
from mechrare.errors import ConfigError
from mechrare.models.ladder import ModelShape, check_model_name, olmo2_param_count, resolve_ladder, resolve_model


class Plan:
    """Everything resolved and validated from a config before anything is written."""

    def __init__(self, config: RunConfig, out: str | Path | None = None):
        self.config = config
        # a text background prepared before is found in the run folder first (resuming needs no corpus)
        self.mixture = Mixture(config.mixture, config.seed, data_dirs=[Path(out) / "data"] if out is not None else None)
        self.mixture.check_batch_size(config.train.batch_size)
        self.shapes: list[ModelShape] = resolve_ladder(config.ladder.models)
        # interventions: extra models on a changed mixture (same vocabulary and eval sets)
        self.mixtures: dict[str, Mixture] = {s.name: self.mixture for s in self.shapes}
        self.interventions: dict[str, dict] = {}
        for path, iv in config.ladder.all_interventions():
            base = resolve_model(iv.model, f"{path}.model")
            name = iv.name or f"{base.name}-up" + "-".join(f"{f:g}" for f in iv.upsample.values())
            if name in self.mixtures:
                raise ConfigError(f"{path}.name: model {name!r} appears twice; give the intervention a name")
            check_model_name(name, f"{path}.name")
            self.shapes.append(dataclasses.replace(base, name=name))
            self.mixtures[name] = self.mixture.with_upsample(iv.upsample, f"{path}.upsample")
            self.mixtures[name].check_batch_size(config.train.batch_size, f"{path}.upsample")
            self.interventions[name] = {"base": base.name, "upsample": dict(iv.upsample), "sweep": path == "ladder.sweep"}
        ck = config.checkpoints
        bursts = [b for m in self.mixtures.values() for b in m.burst_schedule(config.train.batch_size).values()]
        # a bursty task's learn-then-forget cycles need the weights just before and after each burst
        self.schedule = sorted(set(checkpoint_steps(config.train.steps, ck.every, ck.log_spaced))
                               | burst_checkpoints(bursts, config.train.steps))
        self.resume_every = ck.resume_every or ck.every
        self.tokens_per_step = config.train.batch_size * config.mixture.sequence_length
        self.seeds = config.ladder.seed_list()

    def manifest(self, name: str) -> Manifest:
        vocab = len(self.mixture.vocab)
        tasks = [
            TaskRecord(
                name=task.name,
                share=row["share"],
                family=spec.family,
                complexity=spec.complexity,
                frequency=spec.frequency,
                placement=spec.placement,
                schedule=asdict(spec.schedule) if spec.schedule else None,
                split=task.split,
                eval_examples=row["eval"],
                targets=task.targets(),
            )
            for spec, task, row in zip(self.mixture.specs, self.mixture.tasks, self.mixture.describe())
        ]
        models = {
            s.name: ModelRecord(
                n_params=olmo2_param_count(s, vocab),
                status="pending",
                shape=ShapeRecord(s.d_model, s.n_layers, s.n_heads, s.d_mlp),
                reference_params=s.reference_params,
                shares=dict(zip(self.mixture.task_names, map(float, self.mixtures[s.name].shares[:-1]))),
                intervention=InterventionRecord(**self.interventions[s.name]) if s.name in self.interventions else None,
            )
            for s in self.shapes
        }
        return new_manifest(
            name,
            self.config.to_dict(),
            vocab_size=vocab,
            sequence_length=self.config.mixture.sequence_length,
            batch_size=self.config.train.batch_size,
            tokens_per_step=self.tokens_per_step,
            checkpoint_steps=self.schedule,
            background_entropy=self.mixture.background.entropy(),
            tasks=tasks,
            models=models,
            seeds=list(self.seeds),
        )
