"""Train every model of a ladder, under each training seed, into one run folder; rerunning resumes.

A training seed ``s`` sets the initialisation (:func:`init_seed`) and the
order of the training stream (:meth:`Mixture.with_order`); the tasks, the
vocabulary and the eval sets are the run's own. Seed 0 is exactly a run with
one seed.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from mechrare.atomic import remove_stale_temps
from mechrare.checkpoints.lock import LOCK_FILE, run_lock
from mechrare.checkpoints.manifest import InterventionRecord, Manifest, ModelRecord, ShapeRecord, TaskRecord, new_manifest
from mechrare.checkpoints.metrics import write_metrics
from mechrare.checkpoints.run import RunFolder, first_difference
from mechrare.checkpoints.schedule import burst_checkpoints, checkpoint_steps
from mechrare.config import RunConfig
from mechrare.data.mixture import Mixture
from mechrare.devices import autocast_dtype, resolve_device, torch_threads
from mechrare.errors import ConfigError, RunFolderError, TrainingDiverged
from mechrare.models.ladder import ModelShape, build_model, check_model_name, olmo2_config, olmo2_param_count, resolve_ladder, resolve_model
from mechrare.training.callbacks import (
    CheckpointCallback,
    EvalCallback,
    ProgressCallback,
    QueueProgress,
    ResumeCallback,
    shared_progress,
)
from mechrare.checkpoints.train_state import check_state, has_state, load_state
from mechrare.checkpoints.verify import checkpoint_problems, expected_steps, resume_problem
from mechrare.training.distributed import SINGLE, Dist, from_env, process_device, process_group
from mechrare.training.memory import check_memory
from mechrare.training.repair import OnlySteps, repair_seed
from mechrare.training.trainer import Trainer
from mechrare.workers import resolve_jobs, run_jobs, set_worker_state, usable_cores, worker_state

log = logging.getLogger("mechrare")


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


def init_seed(run_seed: int, seed: int) -> int:
    """The torch seed of training seed ``seed``'s initialisation (seed 0: the run's own seed)."""
    if seed == 0:
        return run_seed
    import numpy as np

    return int(np.random.SeedSequence([run_seed, seed, 0x1417]).generate_state(1)[0])


def refuse_foreign_folder(run: RunFolder) -> None:
    """Refuse, before anything is written, a folder that holds something other than a mechrare run."""
    if not run.exists() and run.path.exists() and (not run.path.is_dir() or any(p.name != LOCK_FILE for p in run.path.iterdir())):
        raise RunFolderError(f"{run.path}: exists, is not empty and is not a mechrare run; choose another --out")


def open_or_create(out: str | Path, plan: Plan, name: str) -> RunFolder:
    """Create the run folder, or check that an existing one holds this same config (a foreign folder
    was refused by :func:`refuse_foreign_folder` before the lock was taken)."""
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
        new = [s for s in plan.seeds if s not in manifest.seeds]
        if new:  # more seeds extend the run; the ones it has are kept
            if manifest.layout == 1:
                raise RunFolderError(f"{run.path}: this run folder predates seeds and holds seed 0 only; train more seeds into a new --out")
            manifest.seeds = manifest.seeds + new
            manifest.config = {**manifest.config, "ladder": {**manifest.config.get("ladder", {}), "seeds": list(manifest.seeds)}}
            for name, record in manifest.models.items():
                manifest.models[name] = dataclasses.replace(record, status="pending" if record.status == "done" else record.status)
            run.write_manifest(manifest)
        return run
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_manifest(plan.manifest(name))
    return run


def make_trainer(run: RunFolder, plan: Plan, shape: ModelShape, device, seed: int, callbacks: list,
                 dist: Dist = SINGLE) -> Trainer:
    """A trainer of one (model, seed) at step 0, with the given callbacks. The process's torch generator
    is seeded from the training seed, so the saved training state (which holds it) is the same in every
    process and a repaired or resumed run's state equals an uninterrupted one's."""
    import torch

    cfg = plan.config
    mixture = plan.mixtures[shape.name].with_order(seed)
    vocab = mixture.vocab
    model_cfg = olmo2_config(
        shape, len(vocab), cfg.mixture.sequence_length, vocab.pad_id, vocab.eos_id, cfg.train.init_std
    )
    attn = "sdpa" if device.type == "cuda" else "eager"
    model = build_model(model_cfg, init_seed(cfg.seed, seed), attn_implementation=attn).to(device)
    if dist.active:  # every process built the same initial weights; each keeps its shard
        from mechrare.training.distributed import shard

        model = shard(model, dist, device)
    torch.manual_seed(init_seed(cfg.seed, seed) ^ 0x5EED)
    return Trainer(model, mixture, cfg.train, device, plan.schedule, callbacks=callbacks,
                   autocast_dtype=autocast_dtype(cfg.train.precision, device), dist=dist)


def _desc(plan: Plan, model: str, seed: int) -> str:
    return model if len(plan.seeds) == 1 else f"{model} seed {seed}"


def train_model(run: RunFolder, plan: Plan, shape: ModelShape, device, progress: bool = True, seed: int = 0,
                progress_queue=None, dist: Dist = SINGLE) -> int:
    """Train one model under one training seed (resuming from its state where there is one);
    returns the final step. The manifest is left to the caller (one writer). Under torchrun every
    process calls this; rank 0 alone writes."""
    desc = _desc(plan, shape.name, seed)
    bar = QueueProgress(progress_queue) if progress_queue is not None else ProgressCallback(desc, enabled=progress and dist.main)
    tokenizer = plan.mixtures[shape.name].vocab.to_hf_tokenizer()
    trainer = make_trainer(run, plan, shape, device, seed, [
        EvalCallback(),
        CheckpointCallback(run, shape.name, tokenizer, seed),
        ResumeCallback(run, shape.name, plan.resume_every, seed),
        bar,
    ], dist)
    if dist.main:
        remove_stale_temps(run.seed_dir(shape.name, seed))
        remove_stale_temps(run.resume_dir(shape.name, seed))
    if dist.agree(has_state(run.resume_dir(shape.name, seed))):
        trainer.load_state_dict(load_state(run.resume_dir(shape.name, seed), device))
        log.info("%s: resuming at step %d", desc, trainer.step)
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        raise TrainingDiverged(f"{desc}: {exc}") from None
    return trainer.step


def replay_model(run: RunFolder, plan: Plan, shape: ModelShape, device, seed: int, steps: set[int],
                 state: bool = False, progress: bool = True) -> None:
    """Train (model, seed) again from step 0 and write its checkpoints at ``steps`` only (see
    :mod:`mechrare.training.repair`); the resume state is written only with ``state`` (then to the end)."""
    desc = f"{_desc(plan, shape.name, seed)} (repair)"
    tokenizer = plan.mixtures[shape.name].vocab.to_hf_tokenizer()
    callbacks = [
        OnlySteps(EvalCallback(), steps),
        OnlySteps(CheckpointCallback(run, shape.name, tokenizer, seed), steps),
        ProgressCallback(desc, enabled=progress),
    ]
    if state:
        callbacks.append(ResumeCallback(run, shape.name, plan.resume_every, seed))
    trainer = make_trainer(run, plan, shape, device, seed, callbacks)
    remove_stale_temps(run.seed_dir(shape.name, seed))
    try:
        trainer.fit(until=None if state else max(steps))
    except TrainingDiverged as exc:
        raise TrainingDiverged(f"{desc}: {exc}") from None


def repair_run(run: RunFolder, plan: Plan, device, progress: bool) -> list[str]:
    """Regenerate the missing or damaged checkpoints of every finished (model, seed); one line each."""
    lines = []
    for shape in plan.shapes:
        for seed in plan.seeds:
            replay = lambda steps, state, shape=shape, seed=seed: replay_model(  # noqa: E731
                run, plan, shape, device, seed, steps, state, progress)
            lines += repair_seed(run, shape.name, seed, replay)
    return lines


def mark_done(run: RunFolder, model: str, seed: int, final_step: int) -> None:
    record = run.read_manifest().model(model)
    done = sorted(set(record.seeds_done) | {seed})
    status = "done" if set(run.read_manifest().seeds) <= set(done) else "training"
    run.update_model(model, status=status, final_step=final_step, seeds_done=done)


def _train_job(job: tuple[str, int]) -> int:
    """One (model, seed), in a worker process (see train_run)."""
    from mechrare.checkpoints.series import quiet_transformers

    name, seed = job
    w = worker_state()
    plan: Plan = w["plan"]
    shape = next(s for s in plan.shapes if s.name == name)
    with quiet_transformers():
        return train_model(RunFolder(w["out"]), plan, shape, w["device"], progress=False, seed=seed, progress_queue=w["queue"])


def train_run(
    config: RunConfig,
    out: str | Path,
    name: str = "run",
    progress: bool = True,
    echo: Callable[[str], None] = lambda s: None,
) -> RunFolder:
    """Train every ladder model of ``config`` under each seed into ``out``; resumes where it stopped.

    On CPU, ``train.jobs`` worker processes train (model, seed) pairs side by side, each with
    ``train.threads`` threads; every pair is trained exactly as it would be alone. Under ``torchrun``
    every process runs this, and each (model, seed) is trained by all of them together, sharded
    (:mod:`mechrare.training.distributed`); rank 0 alone writes the run folder."""
    dist = from_env()
    if not dist.active:
        plan = Plan(config, out)
        return _train(config, out, name, plan, resolve_device(config.train.device, "train.device"), progress, echo, SINGLE)
    device = process_device(dist, resolve_device(config.train.device, "train.device"))
    with process_group(dist, device):
        plan = Plan(config, out) if dist.main else None  # a text background is prepared once, by rank 0
        dist.barrier()
        quiet = lambda s: None  # noqa: E731
        return _train(config, out, name, plan or Plan(config, out), device, progress and dist.main,
                      echo if dist.main else quiet, dist)


def _train(config: RunConfig, out, name: str, plan: Plan, device, progress: bool, echo, dist: Dist) -> RunFolder:
    dist.check_batch(config.train.batch_size)
    check_memory(plan.shapes, len(plan.mixture.vocab), config.train.batch_size, config.mixture.sequence_length, device)
    refuse_foreign_folder(RunFolder(out))
    dist.barrier()  # every process looked before rank 0 creates anything
    with run_lock(out, "mechrare train") if dist.main else nullcontext():
        return _train_locked(config, out, name, plan, device, progress, echo, dist)


def _train_locked(config: RunConfig, out, name: str, plan: Plan, device, progress: bool, echo, dist: Dist = SINGLE) -> RunFolder:
    from mechrare.checkpoints.series import quiet_transformers

    if dist.main:
        run = open_or_create(out, plan, name)
        plan.mixture.background.install(run.path / "data")  # a text background's tokenizer and tokens, kept with the run
    dist.barrier()
    run = RunFolder(out) if not dist.main else run
    todo = []
    for shape in plan.shapes:
        finished = run.read_manifest().model(shape.name).finished_seeds()
        for seed in plan.seeds:
            if seed in finished:
                echo(f"{shape.name}{'' if len(plan.seeds) == 1 else f' seed {seed}'}: done already, skipping")
            else:
                todo.append((shape, seed))
    for shape, seed in todo:  # a resume state that cannot be used is refused before any status changes
        check_state(run.resume_dir(shape.name, seed))
    threads = config.train.threads
    workers = 1 if dist.active else resolve_jobs(config.train.jobs, device.type, len(todo), threads_per_job=threads or usable_cores())
    if workers == 1:
        with torch_threads(threads), quiet_transformers():
            for shape, seed in todo:
                if dist.main:
                    run.update_model(shape.name, status="training", device=str(device) if not dist.active else f"{device.type} x {dist.world}")
                step = train_model(run, plan, shape, device, progress=progress, seed=seed, dist=dist)
                if dist.main:
                    mark_done(run, shape.name, seed, step)
                    write_metrics(run)
                dist.barrier()  # the manifest says it before any process reads it again
    else:
        for shape in dict.fromkeys(shape for shape, _ in todo):
            run.update_model(shape.name, status="training", device=str(device))
        # the largest first, so that the last jobs to finish are short ones
        todo.sort(key=lambda pair: -olmo2_param_count(pair[0], len(plan.mixture.vocab)))
        with shared_progress(len(todo) * config.train.steps, f"train ({workers} jobs)", progress) as queue:
            shared = {"plan": plan, "out": str(run.path), "device": device, "queue": queue}
            jobs = [(shape.name, seed) for shape, seed in todo]
            for (model, seed), step in run_jobs(_train_job, jobs, workers, threads=max(threads, 1),
                                                initializer=set_worker_state, initargs=(shared,)):
                mark_done(run, model, seed, step)
                write_metrics(run)
    if dist.active:
        refuse_repair(run, plan, dist)
        return run
    with torch_threads(threads), quiet_transformers():
        repair_run(run, plan, device, progress)
    write_metrics(run)
    return run


def refuse_repair(run: RunFolder, plan: Plan, dist: Dist) -> None:
    """Under torchrun, a finished (model, seed) with a missing or damaged checkpoint or resume state is
    refused (repair retrains from step 0, which one process does; see :mod:`mechrare.training.repair`)."""
    broken = []
    if dist.main:
        for shape in plan.shapes:
            for seed in plan.seeds:
                state = bool(expected_steps(run, shape.name, seed)) and resume_problem(run, shape.name, seed) is not None
                if checkpoint_problems(run, shape.name, seed) or state:
                    broken.append(f"{shape.name} seed {seed}")
    broken = dist.agree(broken)
    if broken:
        raise RunFolderError(f"{run.path}: {broken[0]}{f' (and {len(broken) - 1} more)' if len(broken) > 1 else ''} has "
                             "missing or damaged checkpoints; repair them in one process: rerun the same "
                             "`mechrare train` without torchrun")
