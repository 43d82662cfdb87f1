"""Train every model of a ladder into one run folder; rerunning resumes."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from mechrare.checkpoints.atomic import remove_stale_temps
from mechrare.checkpoints.manifest import InterventionRecord, Manifest, ModelRecord, ShapeRecord, TaskRecord, new_manifest
from mechrare.checkpoints.metrics import write_metrics
from mechrare.checkpoints.run import RunFolder, first_difference
from mechrare.checkpoints.schedule import checkpoint_steps
from mechrare.config import RunConfig
from mechrare.data.mixture import Mixture
from mechrare.devices import autocast_dtype, resolve_device, torch_threads
from mechrare.errors import ConfigError, RunFolderError
from mechrare.models.ladder import ModelShape, build_model, check_model_name, olmo2_config, olmo2_param_count, resolve_ladder, resolve_model
from mechrare.training.callbacks import (
    RESUME_FILE,
    CheckpointCallback,
    EvalCallback,
    ProgressCallback,
    ResumeCallback,
)
from mechrare.training.trainer import Trainer

log = logging.getLogger("mechrare")


class Plan:
    """Everything resolved and validated from a config before anything is written."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.mixture = Mixture(config.mixture, config.seed)
        self.mixture.check_batch_size(config.train.batch_size)
        self.shapes: list[ModelShape] = resolve_ladder(config.ladder.models)
        # interventions: extra models on a changed mixture (same vocabulary and eval sets)
        self.mixtures: dict[str, Mixture] = {s.name: self.mixture for s in self.shapes}
        self.interventions: dict[str, dict] = {}
        for i, iv in enumerate(config.ladder.interventions):
            path = f"ladder.interventions[{i}]"
            base = resolve_model(iv.model, f"{path}.model")
            name = iv.name or f"{base.name}-up" + "-".join(f"{f:g}" for f in iv.upsample.values())
            if name in self.mixtures:
                raise ConfigError(f"{path}.name: model {name!r} appears twice; give the intervention a name")
            check_model_name(name, f"{path}.name")
            self.shapes.append(dataclasses.replace(base, name=name))
            self.mixtures[name] = self.mixture.with_upsample(iv.upsample, f"{path}.upsample")
            self.mixtures[name].check_batch_size(config.train.batch_size, f"{path}.upsample")
            self.interventions[name] = {"base": base.name, "upsample": dict(iv.upsample)}
        ck = config.checkpoints
        self.schedule = checkpoint_steps(config.train.steps, ck.every, ck.log_spaced)
        self.resume_every = ck.resume_every or ck.every
        self.tokens_per_step = config.train.batch_size * config.mixture.sequence_length

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
        )


def open_or_create(out: str | Path, plan: Plan, name: str) -> RunFolder:
    """Create the run folder, or check that an existing one holds this same config."""
    run = RunFolder(out)
    if run.exists():
        manifest = run.read_manifest()
        # normalised through RunConfig, so a folder written before a new setting existed still resumes;
        # analysis settings do not change the weights, so they never block a resume
        stored = RunConfig.from_dict(manifest.config).training_dict()
        diff = first_difference(stored, plan.config.training_dict())
        if diff:
            raise RunFolderError(
                f"{run.path}: holds a run with a different config (config.{diff}); "
                "rerun with the same config to resume, or choose another --out"
            )
        return run
    if run.path.exists() and any(run.path.iterdir()):
        raise RunFolderError(f"{run.path}: exists, is not empty and is not a mechrare run; choose another --out")
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_manifest(plan.manifest(name))
    return run


def train_model(run: RunFolder, plan: Plan, shape: ModelShape, device, progress: bool = True) -> None:
    import torch

    cfg = plan.config
    mixture = plan.mixtures[shape.name]
    vocab = mixture.vocab
    model_cfg = olmo2_config(
        shape, len(vocab), cfg.mixture.sequence_length, vocab.pad_id, vocab.eos_id, cfg.train.init_std
    )
    attn = "sdpa" if device.type == "cuda" else "eager"
    model = build_model(model_cfg, cfg.seed, attn_implementation=attn).to(device)
    trainer = Trainer(
        model,
        mixture,
        cfg.train,
        device,
        plan.schedule,
        callbacks=[
            EvalCallback(),
            CheckpointCallback(run, shape.name, vocab.to_hf_tokenizer()),
            ResumeCallback(run, shape.name, plan.resume_every),
            ProgressCallback(shape.name, enabled=progress),
        ],
        autocast_dtype=autocast_dtype(cfg.train.precision, device),
    )
    remove_stale_temps(run.model_dir(shape.name))
    remove_stale_temps(run.resume_dir(shape.name))
    state_path = run.resume_dir(shape.name) / RESUME_FILE
    if state_path.is_file():
        trainer.load_state_dict(torch.load(state_path, map_location=device, weights_only=False))
        log.info("%s: resuming at step %d", shape.name, trainer.step)
    run.update_model(shape.name, status="training", device=str(device))
    trainer.fit()
    run.update_model(shape.name, status="done", final_step=trainer.step)


def train_run(
    config: RunConfig,
    out: str | Path,
    name: str = "run",
    progress: bool = True,
    echo: Callable[[str], None] = lambda s: None,
) -> RunFolder:
    """Train every ladder model of ``config`` into ``out``; resumes where it stopped."""
    from mechrare.checkpoints.series import quiet_transformers

    plan = Plan(config)
    device = resolve_device(config.train.device, "train.device")
    run = open_or_create(out, plan, name)
    with torch_threads(config.train.threads), quiet_transformers():
        for shape in plan.shapes:
            status = run.read_manifest().model(shape.name).status
            if status == "done":
                echo(f"{shape.name}: done already, skipping")
                continue
            train_model(run, plan, shape, device, progress=progress)
            write_metrics(run)
    write_metrics(run)
    return run
