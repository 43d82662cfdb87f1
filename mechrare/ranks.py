"""This process's place in a ``torchrun`` job, and the few collectives mechrare needs (no-ops alone).

The ground floor every layer may use: training shards its models over the job
(:mod:`mechrare.training.distributed`), analyses share out their checkpoints
(:mod:`mechrare.analyses.driver`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mechrare.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: ``rank`` of ``world``, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This process's rows of a batch of ``batch_size`` sequences."""
        per = batch_size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise ConfigError(f"train.batch_size: {batch_size} sequences do not split over {self.world} processes; "
                              f"make it a multiple of {self.world}")

    # -- collectives (no-ops in one process) ------------------------------------------
    def barrier(self) -> None:
        if self.active:
            import torch.distributed as td

            td.barrier()

    def agree(self, value: Any) -> Any:
        """Rank 0's ``value``, on every process (decisions read from disk must be the same everywhere)."""
        if not self.active:
            return value
        import torch.distributed as td

        box = [value]
        td.broadcast_object_list(box, src=0)
        return box[0]

    def union(self, part: dict) -> dict:
        """Every process's ``part`` merged into one dict, on every process (later ranks win on a shared key)."""
        if not self.active:
            return dict(part)
        import torch.distributed as td

        parts: list = [None] * self.world
        td.all_gather_object(parts, part)
        return {k: v for p in parts for k, v in p.items()}

    def all_sum(self, tensor):
        """The sum of ``tensor`` over the processes (a new tensor; ``tensor`` itself is untouched)."""
        if not self.active:
            return tensor
        import torch.distributed as td

        out = tensor.detach().clone()
        td.all_reduce(out, op=td.ReduceOp.SUM)
        return out


SINGLE = Dist()


def from_env() -> Dist:
    """The job ``torchrun`` started this process in (its RANK, WORLD_SIZE, LOCAL_RANK), or one process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if world <= 1:
        return SINGLE
    return Dist(rank=rank, world=world, local_rank=local)


def process_device(dist: Dist, device):
    """This process's device: ``cuda:LOCAL_RANK`` under torchrun on CUDA, else ``device`` itself."""
    import torch

    if not dist.active or device.type != "cuda":
        return device
    if dist.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK {dist.local_rank}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                          "start at most one process per GPU (torchrun --nproc_per_node)")
    torch.cuda.set_device(dist.local_rank)
    return torch.device("cuda", dist.local_rank)


@contextmanager
def process_group(dist: Dist, device=None):
    """The default process group for the block (NCCL on a CUDA ``device``, else gloo); nothing in one
    process. A group set up by the caller is used as it is and left up."""
    if not dist.active:
        yield
        return
    import torch.distributed as td

    if td.is_initialized():
        yield
        return
    td.init_process_group("nccl" if device is not None and device.type == "cuda" else "gloo")
    try:
        yield
        # every process done with the group before any takes it down, and what held its work freed while
        # the interpreter is whole (one CI run saw a gloo process abort at exit after a finished run)
        td.barrier()
        import gc

        gc.collect()
    finally:
        td.destroy_process_group()


def current_job() -> Dist:
    """The job of :func:`from_env` once its process group is up (the caller's command set it up), else
    one process: code called under torchrun without a group works alone, as it would anywhere."""
    job = from_env()
    if not job.active:
        return job
    import torch.distributed as td

    return job if td.is_available() and td.is_initialized() else SINGLE
