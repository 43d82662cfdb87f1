"""The training state on disk, without pickle: tensors in safetensors, everything else in JSON.

A resume folder holds::

    state.json                  the state's structure and plain values, the tensor file's name and
                                sha256, and the sha256 of its own content
    state-<step>.safetensors    every tensor of the state (weights, optimizer moments, RNG state)

``state.json`` is written last and names its tensor file, so a crash between the two writes leaves
the previous pair whole; older tensor files are removed after. Reading parses JSON and safetensors
only, so no file in a run folder can run code, and both checksums are verified before anything is
used. A run folder from before this format keeps a ``state.pt``; it is read with
``torch.load(weights_only=True)`` (tensors and plain values only) and replaced at the next save.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from mechrare.atomic import atomic_file, atomic_write_text, sha256_file
from mechrare.errors import RunFolderError

STATE_JSON = "state.json"
LEGACY_STATE = "state.pt"
FORMAT = "mechrare-training-state"
VERSION = 1

_TENSOR, _TUPLE, _DICT, _FLOAT = "__tensor__", "__tuple__", "__dict__", "__float__"


def _encode(obj: Any, tensors: dict, path: str) -> Any:
    """``obj`` as JSON values; its tensors moved into ``tensors`` under their path."""
    import torch

    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: path}
    if isinstance(obj, dict):
        return {_DICT: [[_encode(k, tensors, f"{path}.k{i}"), _encode(v, tensors, f"{path}.{i}")]
                        for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_FLOAT: repr(obj)}  # JSON has no inf or nan
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"training state: cannot store a {type(obj).__name__} at {path!r}")


def _decode(obj: Any, tensors: dict) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(_decode(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_DICT}:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj[_DICT]}
        if set(obj) == {_FLOAT}:
            return float(obj[_FLOAT])
        raise ValueError(f"unknown entry with keys {sorted(obj)}")
    return obj


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def save_state(folder: str | Path, state: dict, step: int) -> None:
    """Write ``state`` (nested dicts, lists, tuples, tensors and plain values) into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict = {}
    encoded = _encode(state, tensors, "state")
    name = f"state-{int(step)}.safetensors"
    with atomic_file(folder / name) as tmp:
        save_file(tensors, str(tmp))
        tensors_sha = sha256_file(tmp)
    payload = {"format": FORMAT, "version": VERSION, "tensors": name, "tensors_sha256": tensors_sha, "state": encoded}
    atomic_write_text(folder / STATE_JSON, json.dumps({**payload, "sha256": _digest(payload)}) + "\n")
    for old in folder.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    (folder / LEGACY_STATE).unlink(missing_ok=True)


def has_state(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / STATE_JSON).is_file() or (folder / LEGACY_STATE).is_file()


def _refuse(path: Path, why: str) -> RunFolderError:
    return RunFolderError(f"{path}: not a training state mechrare can load safely ({why[:160]}); "
                          "move the resume folder away to train this model and seed again from step 0")


def verify_state(folder: str | Path) -> tuple[dict, Path]:
    """Check both checksums of the state in ``folder``; returns (the JSON record, the tensor file)."""
    path = Path(folder) / STATE_JSON
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(path, f"unreadable JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise _refuse(path, f"no {FORMAT!r} record")
    if record.get("version") != VERSION:
        raise _refuse(path, f"format version {record.get('version')!r}; this mechrare reads version {VERSION}")
    claimed = record.pop("sha256", None)
    if claimed != _digest(record):
        raise _refuse(path, "its content does not match its sha256: the file is damaged")
    tensors = Path(folder) / str(record.get("tensors", ""))
    if tensors.parent != Path(folder) or not tensors.name.startswith("state-") or not tensors.is_file():
        raise _refuse(path, f"its tensor file {record.get('tensors')!r} is missing")
    if sha256_file(tensors) != record.get("tensors_sha256"):
        raise _refuse(tensors, "sha256 does not match the one in state.json: the file is damaged")
    return record, tensors


def load_state(folder: str | Path, device) -> dict:
    """The training state saved in ``folder`` (verified; tensors on ``device``). A damaged, foreign or
    crafted file is refused with one line (RunFolderError) and left where it is."""
    folder = Path(folder)
    if not (folder / STATE_JSON).is_file() and (folder / LEGACY_STATE).is_file():
        return load_legacy_state(folder / LEGACY_STATE, device)
    record, tensors_path = verify_state(folder)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(tensors_path), device=str(device))
        return _decode(record["state"], tensors)
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


def check_state(folder: str | Path) -> None:
    """Refuse (one line) a resume state in ``folder`` that cannot be loaded, before anything is written."""
    folder = Path(folder)
    if (folder / STATE_JSON).is_file():
        verify_state(folder)
    elif (folder / LEGACY_STATE).is_file():
        load_legacy_state(folder / LEGACY_STATE, "cpu")
