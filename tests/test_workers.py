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


def wait_forever(item):
    """A job that says where it runs, then never ends."""
    import time

    folder, k = item
    (folder / f"pid-{k}").write_text(str(os.getpid()))
    time.sleep(600)


def running(pid: int) -> bool:
    """The process exists and has not exited (a zombie nobody reaped counts as ended)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


PARENT = """
import sys
sys.path.insert(0, {tests!r})
from mechrare.workers import run_jobs
from test_workers import wait_forever
from pathlib import Path

if __name__ == "__main__":
    list(run_jobs(wait_forever, [(Path({folder!r}), 0), (Path({folder!r}), 1)], 2, threads=1))
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    """SIGKILL of the parent (what a killed `mechrare train` or `analyze` gets) ends its workers too: they
    did go on running (training and writing checkpoints into the run folder) before the parent watch."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(tests=str(Path(__file__).parent), folder=str(tmp_path)))
    parent = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(list(tmp_path.glob("pid-*"))) < 2:
        assert parent.poll() is None, parent.stderr.read().decode()[-2000:]
        assert time.time() < deadline, "the workers did not start"
        time.sleep(0.1)
    workers = [int(p.read_text()) for p in sorted(tmp_path.glob("pid-*"))]
    assert all(running(w) for w in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while any(running(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if running(w)]
    for w in left:  # do not leave them behind if the check fails
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent"
