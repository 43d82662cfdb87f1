"""One (model, seed) trained, or a shape's pairs trained together: the trainers `mechrare train` builds.

:func:`make_trainer` builds a (model, seed)'s trainer at step 0 exactly as every path of
:func:`mechrare.training.runner.train_run` does (one process, worker processes, torchrun, repair,
together), so that they all train the same weights.
"""

from __future__ import annotations

import logging

from mechrare.atomic import remove_stale_temps
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.train_state import has_state, load_state
from mechrare.devices import autocast_dtype
from mechrare.errors import TrainingDiverged
from mechrare.models.ladder import ModelShape, build_model, olmo2_config
from mechrare.training.callbacks import CheckpointCallback, EvalCallback, ProgressCallback, QueueProgress, ResumeCallback
from mechrare.ranks import SINGLE, Dist
from mechrare.training.plan import Plan
from mechrare.training.repair import OnlySteps, repair_seed
from mechrare.training.trainer import Trainer
from mechrare.workers import worker_state

log = logging.getLogger("mechrare")


def init_seed(run_seed: int, seed: int) -> int:
    """The torch seed of training seed ``seed``'s initialisation (seed 0: the run's own seed)."""
    if seed == 0:
        return run_seed
    import numpy as np

    return int(np.random.SeedSequence([run_seed, seed, 0x1417]).generate_state(1)[0])


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


def resumed_trainer(run: RunFolder, plan: Plan, shape: ModelShape, device, seed: int, extra: list,
                    dist: Dist = SINGLE) -> Trainer:
    """(model, seed)'s trainer with the run's callbacks (evaluation, checkpoint folders, resume state) and
    ``extra``, its stale temporary files removed and its resume state loaded where there is one."""
    tokenizer = plan.mixtures[shape.name].vocab.to_hf_tokenizer()
    trainer = make_trainer(run, plan, shape, device, seed, [
        EvalCallback(),
        CheckpointCallback(run, shape.name, tokenizer, seed),
        ResumeCallback(run, shape.name, plan.resume_every, seed),
        *extra,
    ], dist)
    if dist.main:
        remove_stale_temps(run.seed_dir(shape.name, seed))
        remove_stale_temps(run.resume_dir(shape.name, seed))
    if dist.agree(has_state(run.resume_dir(shape.name, seed))):
        like = trainer.state_dict if dist.active else None  # under torchrun each process reads its own shards
        trainer.load_state_dict(load_state(run.resume_dir(shape.name, seed), device, like, dist))
        log.info("%s: resuming at step %d", _desc(plan, shape.name, seed), trainer.step)
    return trainer


def train_model(run: RunFolder, plan: Plan, shape: ModelShape, device, progress: bool = True, seed: int = 0,
                progress_queue=None, dist: Dist = SINGLE) -> int:
    """Train one model under one training seed (resuming from its state where there is one);
    returns the final step. The manifest is left to the caller (one writer). Under torchrun every
    process calls this; rank 0 alone writes."""
    desc = _desc(plan, shape.name, seed)
    bar = QueueProgress(progress_queue) if progress_queue is not None else ProgressCallback(desc, enabled=progress and dist.main)
    trainer = resumed_trainer(run, plan, shape, device, seed, [bar], dist)
    try:
        trainer.fit()
    except TrainingDiverged as exc:
        raise TrainingDiverged(f"{desc}: {exc}") from None
    return trainer.step


def together_groups(todo: list[tuple[ModelShape, int]], sizes: bool = False) -> list[list[tuple[ModelShape, int]]]:
    """The (model, seed) pairs grouped by model shape (a size's seeds and its interventions), or with ``sizes``
    by shape family (one head width: :mod:`mechrare.training.padding`), in order."""
    from mechrare.training.padding import head_width

    groups: dict[tuple, list] = {}
    for shape, seed in todo:
        key = (head_width(shape),) if sizes else (shape.d_model, shape.n_layers, shape.n_heads, shape.d_mlp)
        groups.setdefault(key, []).append((shape, seed))
    return list(groups.values())


def train_group(run: RunFolder, plan: Plan, pairs: list[tuple[ModelShape, int]], device, progress: bool = True) -> list[int]:
    """Train ``pairs`` (one shape, or one family) as one program (:mod:`mechrare.training.grouped`), each resuming from its
    state; pairs at different steps are trained one after another instead. Returns each final step."""
    from mechrare.training.grouped import GroupTrainer

    members = []
    for i, (shape, seed) in enumerate(pairs):
        extra = []
        if i == 0:
            desc = f"{len(pairs)} together ({', '.join(_desc(plan, s.name, k) for s, k in pairs)})"
            extra.append(ProgressCallback(desc if len(desc) < 60 else f"{shape.name} and {len(pairs) - 1} more together",
                                          enabled=progress))
        trainer = resumed_trainer(run, plan, shape, device, seed, extra)
        trainer.pin_rng()
        members.append(trainer)
    if len({m.step for m in members}) > 1:  # interrupted apart: each on its own
        log.info("%s: at different steps; training them one after another", ", ".join(_desc(plan, s.name, k) for s, k in pairs))
        del members
        return [train_model(run, plan, shape, device, progress=progress, seed=seed) for shape, seed in pairs]
    group = GroupTrainer(members, plan.resume_every)
    try:
        group.fit()
    except TrainingDiverged as exc:
        raise TrainingDiverged(f"{len(pairs)} models trained together: {exc}") from None
    return [m.step for m in members]


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
