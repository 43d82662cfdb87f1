"""The training state on disk, without pickle: tensors in safetensors, everything else in JSON.

A resume folder holds::

    state.json                  the state's structure and plain values, the tensor file's name and
                                sha256, and the sha256 of its own content
    state-<step>.safetensors    every tensor of the state (weights, optimizer moments, RNG state)

A state saved under ``torchrun`` (FSDP2) is sharded (format version 2): the tensors each process holds
only a shard of (weights and optimizer moments) are written by every process into a shard folder
(:mod:`mechrare.checkpoints.sharded_state`), whose files and sha256 ``state.json`` also records; the
rest (RNG state, step counts) stays in ``state-<step>.safetensors``, written by rank 0::

    state-<step>-<token>.shards/shard-<k>-model-00001-of-00001.safetensors   process k-1's shards

Such a state loads on any number of processes, or whole in one. ``state.json`` is written last and
names its tensor file (and shard folder), so a crash between the writes leaves the previous state
whole; older tensor files and shard folders are removed after. Reading parses JSON and safetensors
only, so no file in a run folder can run code, and both checksums are verified before anything is
used. A run folder from before this format keeps a ``state.pt``; it is read with
``torch.load(weights_only=True)`` (tensors and plain values only) and replaced at the next save.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import shutil
from pathlib import Path
from typing import Any

from mechrare.atomic import atomic_file, atomic_write_text, sha256_file
from mechrare.checkpoints.sharded_state import SUFFIX, is_shard, load_shards, save_shards
from mechrare.errors import RunFolderError
from mechrare.ranks import SINGLE, Dist

STATE_JSON = "state.json"
LEGACY_STATE = "state.pt"
FORMAT = "mechrare-training-state"
VERSION = 1  # a state of whole tensors
SHARDED_VERSION = 2  # a state with a shard folder (saved under torchrun)

_TENSOR, _TUPLE, _DICT, _FLOAT, _SHARD = "__tensor__", "__tuple__", "__dict__", "__float__", "__shard__"


def _encode(obj: Any, tensors: dict, path: str, shards: dict, key: str = "") -> Any:
    """``obj`` as JSON values; its tensors moved into ``tensors`` under their path, and its sharded
    tensors into ``shards`` under their key (the dict keys on the way, joined by "/": the same in any
    process layout, so a state loads into another one)."""
    import torch

    if is_shard(obj):
        if key in shards:
            raise TypeError(f"training state: two sharded tensors at the key {key!r}")
        shards[key] = obj
        return {_SHARD: key}
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: path}
    sub = lambda k: f"{key}/{k}" if key else str(k)  # noqa: E731
    if isinstance(obj, dict):
        return {_DICT: [[_encode(k, tensors, f"{path}.k{i}", shards), _encode(v, tensors, f"{path}.{i}", shards, sub(k))]
                        for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{path}.{i}", shards, sub(i)) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}", shards, sub(i)) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_FLOAT: repr(obj)}  # JSON has no inf or nan
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"training state: cannot store a {type(obj).__name__} at {path!r}")


def _decode(obj: Any, tensors: dict, shards: dict) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, shards) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_SHARD}:
            return shards[obj[_SHARD]]
        if set(obj) == {_TUPLE}:
            return tuple(_decode(v, tensors, shards) for v in obj[_TUPLE])
        if set(obj) == {_DICT}:
            return {_decode(k, tensors, shards): _decode(v, tensors, shards) for k, v in obj[_DICT]}
        if set(obj) == {_FLOAT}:
            return float(obj[_FLOAT])
        raise ValueError(f"unknown entry with keys {sorted(obj)}")
    return obj


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def save_state(folder: str | Path, state: dict, step: int, dist: Dist = SINGLE) -> None:
    """Write ``state`` (nested dicts, lists, tuples, tensors and plain values) into ``folder``. A state
    holding sharded tensors (under torchrun) is saved by every process (collective); rank 0 writes the rest."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict = {}
    shards: dict = {}
    encoded = _encode(state, tensors, "state", shards)
    shard_dir = None
    if shards:  # a fresh folder name each time: a save never writes into the folder the current state names
        shard_dir = folder / dist.agree(f"state-{int(step)}-{secrets.token_hex(4)}{SUFFIX}")
        shard_sha = save_shards(shard_dir, shards, dist)
    if not dist.main:
        return
    name = f"state-{int(step)}.safetensors"
    with atomic_file(folder / name) as tmp:
        save_file(tensors, str(tmp))
        tensors_sha = sha256_file(tmp)
    payload = {"format": FORMAT, "version": VERSION, "tensors": name, "tensors_sha256": tensors_sha, "state": encoded}
    if shard_dir is not None:
        payload.update(version=SHARDED_VERSION, shards={"folder": shard_dir.name, "sha256": shard_sha})
    atomic_write_text(folder / STATE_JSON, json.dumps({**payload, "sha256": _digest(payload)}) + "\n")
    for old in folder.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    for old in folder.glob(f"state-*{SUFFIX}"):  # earlier states' shards, and those of a save cut short
        if shard_dir is None or old.name != shard_dir.name:
            shutil.rmtree(old, ignore_errors=True)
    (folder / LEGACY_STATE).unlink(missing_ok=True)


def has_state(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / STATE_JSON).is_file() or (folder / LEGACY_STATE).is_file()


def _refuse(path: Path, why: str) -> RunFolderError:
    return RunFolderError(f"{path}: not a training state mechrare can load safely ({why[:160]}); "
                          "move the resume folder away to train this model and seed again from step 0")


def verify_state(folder: str | Path, dist: Dist = SINGLE) -> tuple[dict, Path]:
    """Check every checksum of the state in ``folder``; returns (the JSON record, the tensor file). Under
    torchrun (``dist``; collective) each process hashes a share of the shard files, and all refuse alike."""
    path = Path(folder) / STATE_JSON
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(path, f"unreadable JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise _refuse(path, f"no {FORMAT!r} record")
    if record.get("version") not in (VERSION, SHARDED_VERSION):
        raise _refuse(path, f"format version {record.get('version')!r}; this mechrare reads versions {VERSION} "
                            f"and {SHARDED_VERSION}")
    claimed = record.pop("sha256", None)
    if claimed != _digest(record):
        raise _refuse(path, "its content does not match its sha256: the file is damaged")
    tensors = Path(folder) / str(record.get("tensors", ""))
    if tensors.parent != Path(folder) or not tensors.name.startswith("state-") or not tensors.is_file():
        raise _refuse(path, f"its tensor file {record.get('tensors')!r} is missing")
    if sha256_file(tensors) != record.get("tensors_sha256"):
        raise _refuse(tensors, "sha256 does not match the one in state.json: the file is damaged")
    if (record.get("version") == SHARDED_VERSION) != ("shards" in record):
        raise _refuse(path, "its version and its shard folder do not go together")
    if "shards" in record:
        _verify_shards(Path(folder), record["shards"], path, dist)
    return record, tensors


def _verify_shards(folder: Path, shards: Any, path: Path, dist: Dist) -> None:
    """The shard folder ``state.json`` names holds exactly its recorded safetensors files, each with its sha256
    (the reader reads every safetensors file there, so an extra one is refused too)."""
    sub = folder / str(shards.get("folder", "")) if isinstance(shards, dict) else folder
    recorded = shards.get("sha256") if isinstance(shards, dict) else None
    if sub.parent != folder or not sub.name.startswith("state-") or not sub.name.endswith(SUFFIX) or not sub.is_dir():
        raise _refuse(path, f"its shard folder {sub.name!r} is missing")
    if not isinstance(recorded, dict) or not recorded:
        raise _refuse(path, "it records no shard files")
    on_disk = sorted(p.name for p in sub.iterdir() if p.name.endswith(".safetensors"))
    if on_disk != sorted(recorded):
        missing, extra = sorted(set(recorded) - set(on_disk)), sorted(set(on_disk) - set(recorded))
        raise _refuse(sub, f"shard files missing {missing} or not recorded {extra}")
    names, bad = sorted(recorded), {}
    for i in range(dist.rank, len(names), dist.world):  # this process's share; the checks above read the same files everywhere
        try:
            same = sha256_file(sub / names[i]) == recorded[names[i]]
        except OSError:
            same = False
        if not same:
            bad[i] = names[i]
            break
    bad = dist.union(bad)
    if bad:  # the first bad file in name order, on every process
        raise _refuse(sub / bad[min(bad)], "sha256 does not match the one in state.json: the file is damaged")


def load_state(folder: str | Path, device, like=None, dist: Dist = SINGLE) -> dict:
    """The training state saved in ``folder`` (verified; tensors on ``device``). A damaged, foreign or
    crafted file is refused with one line (RunFolderError) and left where it is.

    A sharded state is read whole, unless ``like`` (a callable giving a state of this job's layout, whose
    sharded tensors receive the saved ones) is given: then every process loads its own shards. Under
    torchrun pass ``dist`` too (collective): the shard files' hashing is shared out."""
    folder = Path(folder)
    if not (folder / STATE_JSON).is_file() and (folder / LEGACY_STATE).is_file():
        return load_legacy_state(folder / LEGACY_STATE, device)
    record, tensors_path = verify_state(folder, dist)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(tensors_path), device=str(device))
        shards: dict = {}
        if "shards" in record:
            into: dict = {}
            if like is not None:
                _encode(like(), {}, "state", into)
            shards = load_shards(folder / record["shards"]["folder"], device, into or None)
        return _decode(record["state"], tensors, shards)
    except (SafetensorError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise _refuse(tensors_path, f"{type(exc).__name__}: {exc}") from None


def load_legacy_state(path: Path, device) -> dict:
    """A ``state.pt`` from before the safetensors format: ``torch.load`` with ``weights_only=True``
    accepts tensors and plain Python values only, so a crafted pickle is refused, not run."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch's notes on a foreign pickle protocol: the one line says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise _refuse(path, "it holds Python objects other than tensors and plain values: a pickle mechrare will not run") from None
        raise _refuse(path, (str(exc).strip().splitlines() or ["unreadable pickle"])[0]) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise _refuse(path, first) from None


def check_state(folder: str | Path, dist: Dist = SINGLE) -> None:
    """Refuse (one line) a resume state in ``folder`` that cannot be loaded, before anything is written
    (collective under torchrun: see :func:`verify_state`)."""
    folder = Path(folder)
    if (folder / STATE_JSON).is_file():
        verify_state(folder, dist)
    elif (folder / LEGACY_STATE).is_file():
        load_legacy_state(folder / LEGACY_STATE, "cpu")
