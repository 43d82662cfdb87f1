"""One writer per run folder: an OS-level lock (``fcntl.flock``) on ``RUN/.mechrare.lock``.

``mechrare train`` and ``mechrare analyze`` hold it while they write; a second writer is refused
with one line naming the holder's PID and what it is doing. The lock is released when the holder
exits, however it exits (the OS drops it with the process), so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from mechrare.errors import RunFolderError

LOCK_FILE = ".mechrare.lock"


@contextmanager
def run_lock(folder: str | Path, what: str):
    """Hold the run folder's lock for the block (``folder`` is created if missing); ``what`` says what
    this process is doing, for the one line a second writer gets."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunFolderError(f"{folder}: cannot create or open the run folder ({exc.strerror or exc}); "
                             "choose another --out") from None
    try:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                raise RunFolderError(f"{folder}: in use by {holder}; wait for it to finish or stop it, then rerun "
                                     "(one writer per run folder)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({what})".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
