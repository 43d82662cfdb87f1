"""The training loop, one for a single :class:`~mechrare.training.trainer.Trainer` and for a group of
them trained as one program (:class:`~mechrare.training.grouped.GroupTrainer`).

The *driver* makes the updates (``train_step``), writes checkpoints (``checkpoint``) and keeps the step;
the *members* are the trainers whose callbacks run and whose training loss is summed: for one trainer
both are that trainer. Batches are built ahead (``train.prefetch``) from ``source`` (anything with
``batch(step, batch_size)``).
"""

from __future__ import annotations

from typing import Protocol


class Driver(Protocol):
    step: int
    schedule: set[int]
    cfg: object
    device: object

    def train_step(self, step: int, prefetched=None): ...

    def checkpoint(self) -> None: ...

    def between_checkpoints(self) -> None: ...


def fit(driver: Driver, members: list, source, until: int | None = None) -> None:
    """Train to ``cfg.steps`` (or stop after update ``until``: the schedule stays that of the whole run).
    ``train_step`` returns the update's loss (one model: a scalar) or one loss per member; after an
    update the driver checkpoints at a scheduled step, or else does ``between_checkpoints``, before the
    members' ``on_step_end`` callbacks."""
    cfg = driver.cfg
    last = cfg.steps if until is None else min(int(until), cfg.steps)
    for m in members:
        m.model.train()
        for cb in m.callbacks:
            cb.on_train_start(m)
    if driver.step == 0 and 0 in driver.schedule:
        driver.checkpoint()
    ahead = None
    if cfg.prefetch and driver.step < last:
        from mechrare.training.prefetch import Prefetcher

        ahead = Prefetcher(source, cfg.batch_size, driver.step, last, pin=driver.device.type == "cuda")
    try:
        while driver.step < last:
            losses = driver.train_step(driver.step, ahead.get(driver.step) if ahead is not None else None)
            losses = [losses] if losses.dim() == 0 else losses
            driver.step += 1
            for m, loss in zip(members, losses, strict=True):
                m.step = driver.step
                m._loss_sum = loss if m._loss_sum is None else m._loss_sum + loss
                m._loss_count += 1
            if driver.step in driver.schedule:
                driver.checkpoint()
            else:
                driver.between_checkpoints()
            for m, loss in zip(members, losses):
                for cb in m.callbacks:
                    cb.on_step_end(m, loss)
    finally:
        if ahead is not None:
            ahead.close()
    for m in members:
        for cb in m.callbacks:
            cb.on_train_end(m)
