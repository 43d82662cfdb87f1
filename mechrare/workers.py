"""Independent jobs on every CPU core: worker processes with threads split so the machine is never oversubscribed.

Training a (model, seed) and computing one checkpoint's analysis part are
independent, and on a CPU a small model uses one core badly. ``jobs`` worker
processes, each with ``cores // jobs`` torch threads, run them side by side.
Workers are *spawned* (never forked from a process whose thread pools are
already running) and each job writes its own files atomically, so a killed
run resumes as after a sequential one; a worker ends itself within half a
second of its parent's end, however the parent ended. On CUDA there is one job at a time.
Every thread pool of a worker is limited (torch, and BLAS / OpenMP through
threadpoolctl and the ``*_NUM_THREADS`` variables): two workers whose scipy
each started two threads on two cores ran 3x slower than one process.

``jobs``: 0 = auto (one per usable CPU core on CPU, 1 on CUDA), 1 = in this
process, N = N workers.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

_WORKER: dict[str, Any] = {}


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_jobs(jobs: int, device_type: str, n_items: int, threads_per_job: int = 1) -> int:
    """How many worker processes to use (1: run in this process)."""
    if jobs < 0:
        from mechrare.errors import ConfigError

        raise ConfigError(f"jobs: must be >= 0 (0 = one per CPU core), got {jobs}")
    if device_type != "cpu" or n_items <= 1:
        return 1
    if jobs == 0:
        jobs = usable_cores() // max(threads_per_job, 1)
    return max(1, min(jobs, n_items))


#: the thread pools of BLAS / OpenMP libraries (numpy, scipy, scikit-learn), read when they load
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


#: how often a worker looks whether the process that started it is still there (seconds)
PARENT_CHECK_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """End this worker as soon as ``parent`` (the process that spawned it) has ended. A worker outlives a
    parent killed with SIGKILL (nothing closes its job queue): a killed ``mechrare train`` left its workers
    training and writing checkpoints into the run folder, with no lock held, beside the rerun."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)  # as if killed with the parent: every file is written atomically, a rerun resumes

    threading.Thread(target=watch, name="mechrare-parent-watch", daemon=True).start()


def _init(parent: int, threads: int, initializer: Callable | None, initargs: tuple) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    _exit_with_parent(parent)
    torch.set_num_threads(threads)
    threadpool_limits(threads)  # the pools already loaded; THREAD_VARS cover the ones loaded later
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def _thread_env(threads: int):
    """THREAD_VARS set for the workers about to be spawned (they inherit the environment)."""
    before = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_jobs(fn: Callable, items: Iterable, jobs: int, *, threads: int | None = None,
             initializer: Callable | None = None, initargs: tuple = ()) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, fn(item))`` as each finishes, from ``jobs`` spawned workers with ``threads``
    torch threads each (default: the usable cores split between them). ``initializer(*initargs)``
    runs once per worker (shared inputs go there, not into every item). The first job to fail
    raises its error here and the others are cancelled."""
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    items = list(items)
    threads = threads or max(1, usable_cores() // jobs)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init,
                             initargs=(os.getpid(), threads, initializer, initargs)) as pool:
        with _thread_env(threads):
            pending = {pool.submit(fn, item): item for item in items}  # the workers start here
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    item = pending.pop(future)
                    yield item, future.result()
        finally:
            for future in pending:
                future.cancel()


def set_worker_state(state: dict[str, Any]) -> None:
    """An initializer: keep ``state`` in the worker for its jobs (see :func:`worker_state`)."""
    _WORKER.clear()
    _WORKER.update(state)


def worker_state() -> dict[str, Any]:
    return _WORKER
