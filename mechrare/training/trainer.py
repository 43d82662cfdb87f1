"""The training loop: a small loop; checkpointing, evaluation and logging are callbacks."""

from __future__ import annotations

from typing import Any

from mechrare.config import TrainConfig
from mechrare.data.mixture import Mixture
from mechrare.ranks import SINGLE, Dist
from mechrare.training.optim import build_optimizer


class Callback:
    """Hooks, called in list order. ``on_checkpoint`` runs at scheduled steps
    (step 0 included) and fills ``info``; ``on_step_end`` runs after it."""

    def on_train_start(self, trainer: "Trainer") -> None: ...

    def on_checkpoint(self, trainer: "Trainer", info: dict[str, Any]) -> None: ...

    def on_step_end(self, trainer: "Trainer", loss) -> None: ...

    def on_train_end(self, trainer: "Trainer") -> None: ...


class Trainer:
    """Trains one model on a mixture. ``step`` counts optimizer updates done;
    the batch of update ``s`` is ``mixture.batch(s)``, so the data position is
    the step and a resumed run continues exactly. Under ``torchrun`` (``dist``), ``model`` is sharded
    (:func:`mechrare.training.distributed.shard`) and each process trains on its rows of that batch."""

    def __init__(
        self,
        model,
        mixture: Mixture,
        cfg: TrainConfig,
        device,
        schedule: list[int],
        callbacks: list[Callback] = (),
        autocast_dtype=None,
        dist: Dist = SINGLE,
    ):
        dist.check_batch(cfg.batch_size)
        self.dist = dist
        self.model = model
        self.mixture = mixture
        self.cfg = cfg
        self.device = device
        self.schedule = set(schedule)
        self.callbacks = list(callbacks)
        self.autocast_dtype = autocast_dtype
        self.optimizer, self.scheduler = build_optimizer(model, cfg, device.type)
        # the compiled wrapper shares parameters with ``model``; saving, eval and
        # state dicts use the plain module so checkpoint keys stay unprefixed
        self._forward = model
        if cfg.compile:
            import torch

            self._forward = torch.compile(model)
        self.step = 0
        self._loss_sum = None  # tensor on device: no host sync per step
        self._loss_count = 0
        self._rng = None  # see pin_rng

    def pin_rng(self) -> None:
        """Record the process's torch RNG state now as this trainer's own (what its saved state holds):
        for trainers that share a process (:mod:`mechrare.training.grouped`), each seeded in turn."""
        import torch

        self._rng = torch.get_rng_state()

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.batch_size * self.mixture.cfg.sequence_length

    # -- one update ---------------------------------------------------------------
    def train_step(self, step: int, prefetched=None):
        """One update on the batch of ``step`` (``prefetched``: its (ids, labels) built ahead)."""
        import torch

        if prefetched is None:
            batch = self.mixture.batch(step, self.cfg.batch_size)
            prefetched = torch.as_tensor(batch.input_ids), torch.as_tensor(batch.labels)
        ids, labels = prefetched
        if self.dist.active:
            return self._train_step_sharded(ids, labels)
        ids = ids.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        enabled = self.autocast_dtype is not None
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, enabled=enabled):
            loss = self._forward(input_ids=ids, labels=labels).loss
        loss.backward()
        return self._update(loss)

    def _train_step_sharded(self, ids, labels):
        """This process's rows: their summed token losses over the whole batch's token count, so that the
        sum over processes is the one-process loss; FSDP averages gradients, hence the factor ``world``."""
        import torch
        import torch.nn.functional as F

        from mechrare.data.mixture import IGNORE

        count = int((labels[:, 1:] != IGNORE).sum())  # HF's shifted labels, over the whole batch
        rows = self.dist.rows(ids.shape[0])
        ids = ids[rows].to(self.device, non_blocking=True)
        labels = labels[rows].to(self.device, non_blocking=True)
        enabled = self.autocast_dtype is not None
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, enabled=enabled):
            logits = self._forward(input_ids=ids).logits
        total = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE,
                                reduction="sum")
        loss = total / max(count, 1)
        (loss * self.dist.world).backward()
        return self._update(loss)

    def _update(self, loss):
        import torch

        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach().float()

    def fit(self, until: int | None = None) -> None:
        """Train to ``cfg.steps`` (or stop after update ``until``: the schedule stays that of the whole run)."""
        from mechrare.training.loop import fit

        fit(self, [self], self.mixture, until)

    def between_checkpoints(self) -> None:
        """After an update that is not a checkpoint's: nothing (its callbacks write the resume state)."""

    def check_finite(self) -> None:
        """Raise :class:`~mechrare.errors.TrainingDiverged` when a training loss since the last check or a
        weight is not finite; called before every checkpoint and resume-state write, so none holds NaN or inf."""
        import torch

        from mechrare.errors import TrainingDiverged

        loss_ok = self._loss_sum is None or bool(torch.isfinite(self._loss_sum))
        bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all())]
        if self.dist.active:  # every process raises, or none: its shard of the weights, and the loss of its rows
            flags = self.dist.all_sum(torch.tensor([float(not loss_ok), float(len(bad))]))
            loss_ok = bool(flags[0] == 0)
            if flags[1] and not bad:
                bad = ["a shard held by another process"]
        if loss_ok and not bad:
            return
        parts = (["the training loss"] if not loss_ok else []) + ([f"{len(bad)} weight tensor(s) (first: {bad[0]})"] if bad else [])
        what = " and ".join(parts)
        lr = float(self.scheduler.get_last_lr()[0])
        raise TrainingDiverged(f"training diverged by step {self.step}: {what}: not finite; nothing was written for this step; "
                               f"lower train.lr (the schedule is at {lr:g} now, train.lr = {self.cfg.lr:g})")

    def model_weights(self) -> dict | None:
        """The weights to write to a checkpoint folder: None in one process (the model's own), else
        gathered whole on rank 0 (empty elsewhere); collective."""
        if not self.dist.active:
            return None
        from mechrare.training.distributed import full_model_state

        return full_model_state(self.model)

    def checkpoint(self) -> None:
        """The checks and callbacks of a scheduled step: the training loss since the last one, evaluation, folders."""
        self.check_finite()
        train_loss = None
        if self._loss_count:
            train_loss = float(self.dist.all_sum(self._loss_sum).item()) / self._loss_count
        info: dict[str, Any] = {
            "step": self.step,
            "tokens": self.step * self.tokens_per_step,
            "lr": float(self.scheduler.get_last_lr()[0]),
            "train_loss": train_loss,
        }
        self._loss_sum, self._loss_count = None, 0
        for cb in self.callbacks:
            cb.on_checkpoint(self, info)

    # -- exact resume ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole training state; under torchrun (collective), this process's shards of the weights and
        optimizer moments (DTensors), and the training loss so far summed over the processes."""
        import torch

        if self.dist.active:
            from mechrare.training.distributed import sharded_train_state

            model_sd, optim_sd = sharded_train_state(self.model, self.optimizer)
            loss_sum = None if self._loss_sum is None else self.dist.all_sum(self._loss_sum)
        else:
            model_sd, optim_sd, loss_sum = self.model.state_dict(), self.optimizer.state_dict(), self._loss_sum
        return {
            "step": self.step,
            "model": model_sd,
            "optimizer": optim_sd,
            "scheduler": self.scheduler.state_dict(),
            "loss_sum": loss_sum,
            "loss_count": self._loss_count,
            "torch_rng": torch.get_rng_state() if self._rng is None else self._rng,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        if self.dist.active:  # this job's shards (from a sharded state) or whole tensors (from one process's)
            from mechrare.training.distributed import load_train_state

            load_train_state(self.model, self.optimizer, state["model"], state["optimizer"])
        else:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        loss_sum = state["loss_sum"]
        if loss_sum is not None and self.dist.active:  # the stored sum is the job's; each process carries its share
            loss_sum = loss_sum.to(self.device) / self.dist.world
        self._loss_sum = loss_sum
        self._loss_count = int(state["loss_count"])
        torch.set_rng_state(state["torch_rng"].cpu())
