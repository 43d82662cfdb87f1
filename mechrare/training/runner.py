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
from pathlib import Path
from typing import Callable

from mechrare.checkpoints.lock import LOCK_FILE, run_lock
from mechrare.checkpoints.metrics import write_metrics
from mechrare.checkpoints.run import RunFolder, first_difference
from mechrare.checkpoints.train_state import check_state
from mechrare.config import RunConfig
from mechrare.devices import resolve_device, torch_threads
from mechrare.errors import RunFolderError
from mechrare.models.ladder import olmo2_param_count
from mechrare.training.callbacks import shared_progress
from mechrare.ranks import SINGLE, Dist, from_env, process_device, process_group
from mechrare.training.plan import Plan  # noqa: F401  (the runner's API too)
from mechrare.training.members import (  # noqa: F401  (init_seed and make_trainer: the runner's API too)
    _train_job,
    init_seed,
    make_trainer,
    mark_done,
    repair_run,
    together_groups,
    train_group,
    train_model,
)
from mechrare.training.memory import check_group_memory, check_memory
from mechrare.training.repair import needs_repair
from mechrare.workers import resolve_jobs, run_jobs, set_worker_state, usable_cores

log = logging.getLogger("mechrare")


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
    if config.train.together and not dist.active:
        pairs = [(shape, seed) for shape in plan.shapes for seed in plan.seeds]
        check_group_memory([[shape for shape, _ in g] for g in together_groups(pairs, config.train.together_sizes)],
                           len(plan.mixture.vocab), config.train.batch_size, config.mixture.sequence_length, device)
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
        check_state(run.resume_dir(shape.name, seed), dist)
    threads = config.train.threads
    workers = 1 if dist.active else resolve_jobs(config.train.jobs, device.type, len(todo), threads_per_job=threads or usable_cores())
    if config.train.together and not dist.active and len(todo) > 1:
        with torch_threads(threads), quiet_transformers():
            for group in together_groups(todo, config.train.together_sizes):
                for shape in dict.fromkeys(shape for shape, _ in group):
                    run.update_model(shape.name, status="training", device=str(device))
                for (shape, seed), step in zip(group, train_group(run, plan, group, device, progress)):
                    mark_done(run, shape.name, seed, step)
                write_metrics(run)
    elif workers == 1:
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
                problems, state = needs_repair(run, shape.name, seed)
                if problems or state:
                    broken.append(f"{shape.name} seed {seed}")
    broken = dist.agree(broken)
    if broken:
        raise RunFolderError(f"{run.path}: {broken[0]}{f' (and {len(broken) - 1} more)' if len(broken) > 1 else ''} has "
                             "missing or damaged checkpoints; repair them in one process: rerun the same "
                             "`mechrare train` without torchrun")
