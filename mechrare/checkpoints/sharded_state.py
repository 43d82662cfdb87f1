"""The sharded part of a training state saved under ``torchrun``: each process writes its own shards.

The tensors a process holds only a shard of (FSDP2's ``DTensor`` weights and optimizer moments) are
saved with ``torch.distributed.checkpoint`` through its ``HuggingFaceStorageWriter`` in distributed
mode: every process writes one safetensors file of its shards, with each shard's offset in the
tensor recorded in the file's header (``DCP_SHARDING_INFO``). There is no pickled ``.metadata`` file:
``HuggingFaceStorageReader`` rebuilds the layout from the headers, so the folder is read with JSON
and safetensors only, and loads on any number of processes (DCP reshards) or whole in one process.

The folder's files and their sha256 are recorded in ``state.json`` by
:mod:`mechrare.checkpoints.train_state`, which verifies them before anything here reads them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from mechrare.atomic import sha256_file
from mechrare.errors import RunFolderError
from mechrare.ranks import Dist

SUFFIX = ".shards"  # a shard folder's name: state-<step>-<token>.shards


def is_shard(obj) -> bool:
    """Whether ``obj`` is a tensor this process holds only part of (a ``DTensor``)."""
    import torch

    if not isinstance(obj, torch.Tensor) or not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(obj, DTensor)


def save_shards(folder: Path, shards: dict, dist: Dist) -> dict[str, str]:
    """Write ``shards`` ({key: DTensor}, the same keys on every process) into ``folder``; collective.
    Returns {file name: sha256} of every file written, on every process (each hashes a share)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        dcp.save(shards, storage_writer=HuggingFaceStorageWriter(str(folder), save_distributed=True))
    except CheckpointException as exc:  # every process raises the first process's own error (a full disk: OSError)
        raise first_failure(exc) from None
    dist.barrier()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return dict(sorted(dist.union({p.name: sha256_file(p) for p in files[dist.rank::dist.world]}).items()))


def first_failure(exc) -> BaseException:
    """The error of the lowest-ranked failing process in DCP's ``CheckpointException`` (a BaseException
    whose text is every process's traceback)."""
    failures = getattr(exc, "failures", None) or {}
    return failures[min(failures)][0] if failures else RuntimeError(str(exc).splitlines()[0])


def load_shards(folder: Path, device, into: dict | None = None) -> dict:
    """The tensors saved in ``folder`` by :func:`save_shards`, by key. With ``into`` ({key: DTensor} of
    this job's layout; collective) they are loaded in place into its shards, on any number of
    processes; without, each is read whole, in this process, onto ``device``."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        if into is not None:
            dcp.load(into, storage_reader=HuggingFaceStorageReader(str(folder)))
            return into
        reader = HuggingFaceStorageReader(str(folder))
        whole = {k: torch.empty(m.size, dtype=m.properties.dtype) for k, m in reader.read_metadata().state_dict_metadata.items()}
        with warnings.catch_warnings():  # DCP's note that it loads in one process: that is the intent
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(whole, storage_reader=reader, no_dist=True)
    except (CheckpointException, RuntimeError, ValueError, KeyError, AssertionError, OSError) as exc:
        cause = first_failure(exc) if isinstance(exc, CheckpointException) else exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise RunFolderError(f"{folder}: its shards do not load into this model ({first[:200]}); move the resume "
                             "folder away to train this model and seed again from step 0") from None
    return {k: v.to(device) for k, v in whole.items()}
