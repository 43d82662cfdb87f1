"""Temp-then-rename writes: a crash never leaves a half-written file or folder that looks whole.

A write that fails for lack of space or another I/O reason raises an ``OSError`` naming the file it
was writing, whichever library failed (safetensors, netCDF and others report I/O errors in their own
exception types), so that the CLI can say in one line what happened where.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

TMP_PREFIX = ".tmp-"


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_OS_ERROR = re.compile(r"os error (\d+)|\[Errno (\d+)\]")
LOW_SPACE = 64 * 1024


def as_os_error(exc: BaseException, path: Path) -> OSError | None:
    """``exc`` as an OSError naming ``path``, when it is an I/O failure (None otherwise): an OSError
    without a file name, another library's error that carries an OS error number, or any failure
    while the file system is out of space."""
    if isinstance(exc, OSError):
        if exc.filename is None and exc.errno is not None:
            return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
        return None
    from mechrare.errors import MechrareError

    if not isinstance(exc, Exception) or isinstance(exc, MechrareError):
        return None
    m = _OS_ERROR.search(str(exc))
    code = int(m.group(1) or m.group(2)) if m else None
    if code is None:
        try:
            if shutil.disk_usage(path.parent if path.parent.exists() else ".").free < LOW_SPACE:
                code = errno.ENOSPC
        except OSError:
            return None
    return None if code is None else OSError(code, os.strerror(code), str(path))


def _reraise_io(exc: BaseException, path: Path) -> None:
    converted = as_os_error(exc, path)
    if converted is not None:
        raise converted from exc


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except Exception as exc:
        _reraise_io(exc, path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


#: the key under which a JSON record carries the sha256 of the rest of its content
RECORD_SHA = "record_sha256"


def _record_digest(obj: dict) -> str:
    rest = {k: v for k, v in obj.items() if k != RECORD_SHA}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def sealed(obj: dict) -> dict:
    """``obj`` with the sha256 of its content under ``record_sha256`` (see :func:`seal_ok`)."""
    return {**{k: v for k, v in obj.items() if k != RECORD_SHA}, RECORD_SHA: _record_digest(obj)}


def seal_ok(obj: dict) -> bool | None:
    """Whether a JSON record read back matches its ``record_sha256`` (None: it carries none, an older file)."""
    if RECORD_SHA not in obj:
        return None
    return obj[RECORD_SHA] == _record_digest(obj)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except Exception as exc:
        _reraise_io(exc, path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` on success.

    ``path`` must not exist yet (folders are never overwritten in place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        raise FileExistsError(path)
    tmp = _tmp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        for child in tmp.iterdir():
            if child.is_file():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
        os.rename(tmp, path)
        _fsync_dir(path.parent)
    except Exception as exc:
        _reraise_io(exc, path)
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(folder: str | Path) -> int:
    """Delete leftovers of interrupted atomic writes in ``folder``. Returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for child in folder.iterdir():
        if child.name.startswith(TMP_PREFIX):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            n += 1
    return n


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def first_mismatch(folder: Path, recorded: dict) -> tuple[Path, str | None, str] | None:
    """The first file of ``recorded`` ({name: sha256}) that is missing from ``folder`` (or names a path
    outside it) or does not match: (path, its sha256 or None when missing, the recorded sha256)."""
    for name, expected in recorded.items():
        target = folder / str(name)
        if target.parent != folder or not target.is_file():
            return target, None, expected
        actual = sha256_file(target)
        if actual != expected:
            return target, actual, expected
    return None
