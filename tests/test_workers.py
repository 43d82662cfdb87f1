"""mechrare.workers: how many workers, their thread limits, shared state and errors."""

import os

import pytest

from mechrare.errors import ConfigError
from mechrare.workers import resolve_jobs, run_jobs, set_worker_state, usable_cores, worker_state


def test_resolve_jobs():
    assert resolve_jobs(4, "cuda", 100) == 1  # one job at a time on a GPU
    assert resolve_jobs(0, "cpu", 1) == 1 and resolve_jobs(4, "cpu", 0) == 1
    assert resolve_jobs(0, "cpu", 100) == usable_cores()
    assert resolve_jobs(0, "cpu", 100, threads_per_job=usable_cores()) == 1  # a job that takes every core
    assert resolve_jobs(8, "cpu", 3) == 3  # never more workers than jobs
    with pytest.raises(ConfigError, match="jobs: must be >= 0"):
        resolve_jobs(-1, "cpu", 10)


def report(item):
    """What a worker sees: its threads, the shared state, its process."""
    import torch
    from threadpoolctl import threadpool_info

    blas = {p["num_threads"] for p in threadpool_info()}
    return torch.get_num_threads(), blas, worker_state()["offset"] + item, os.getpid(), os.environ.get("OMP_NUM_THREADS")


def fail(item):
    if item == 2:
        raise ValueError("job 2 is bad")
    return item


def test_workers_are_spawned_with_one_thread_and_the_shared_state():
    env = dict(os.environ)
    results = dict(run_jobs(report, range(4), 2, threads=1, initializer=set_worker_state, initargs=({"offset": 10},)))
    assert sorted(results) == [0, 1, 2, 3]
    assert all(r[0] == 1 and r[1] <= {1} and r[4] == "1" for r in results.values())  # torch, BLAS and OpenMP pools
    assert [results[i][2] for i in range(4)] == [10, 11, 12, 13]
    assert os.getpid() not in {r[3] for r in results.values()}
    assert dict(os.environ) == env  # the thread variables were set for the workers only
    with pytest.raises(ValueError, match="job 2 is bad"):
        list(run_jobs(fail, range(4), 2, threads=1))
