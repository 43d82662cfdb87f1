"""Analysis parts on disk: one checkpoint's arrays as an ``.npz`` with the sha256 of its arrays.

A part is read with ``allow_pickle=False`` (arrays only: a pickled object array is refused, never
run) and checked against its checksum (``__sha256__``) before use. See
:mod:`mechrare.analyses.driver` for where parts live and when they are reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mechrare.atomic import atomic_file
from mechrare.errors import RunFolderError

PART_CHECKSUM = "__sha256__"


def arrays_sha256(arrays: dict) -> str:
    """The sha256 of a part's arrays: names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_part(path: Path, arrays: dict) -> None:
    """Write one checkpoint's arrays (npz) atomically, with their checksum."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if PART_CHECKSUM in arrays:
        raise ValueError(f"a part array may not be named {PART_CHECKSUM!r}")
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays, **{PART_CHECKSUM: np.array(arrays_sha256(arrays))})


def load_part(path: Path) -> dict[str, np.ndarray]:
    """A part's arrays, checked against its checksum (RunFolderError when damaged or unchecked)."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:  # arrays only: a pickled object array is refused, never run
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise RunFolderError(f"{path}: damaged analysis part ({str(exc)[:160]}); delete it and rerun to recompute it") from None
    claimed = arrays.pop(PART_CHECKSUM, None)
    if claimed is None:
        raise RunFolderError(f"{path}: analysis part without a checksum (written before checksums); rerun to recompute it")
    if str(claimed) != arrays_sha256(arrays):
        raise RunFolderError(f"{path}: damaged analysis part (its arrays do not match its checksum); rerun to recompute it")
    return arrays


def check_parts(paths: dict) -> tuple[dict, list[str]]:
    """The parts among ``paths`` (key -> path) that read and verify, as key -> arrays, and one line
    for each that exists but does not (it is recomputed)."""
    good, bad = {}, []
    for key, path in paths.items():
        if path.is_file():
            try:
                good[key] = load_part(path)
            except RunFolderError as exc:
                bad.append(str(exc))
    return good, bad
