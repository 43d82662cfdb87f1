"""Training under torchrun (FSDP2, gloo, 2 CPU processes): the same run as one process within float
tolerance, the same run-folder contract (the resume state sharded: each rank writes its own), a SIGKILL
of one rank followed by a relaunch resumes, and a state moves between 1 and 2 processes both ways."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors.torch import load_file

from mechrare.checkpoints import CheckpointStore, RunFolder
from mechrare.checkpoints.train_state import verify_state
from mechrare.cli import main
from mechrare.config import load_config
from mechrare.errors import ConfigError
from mechrare.training import train_run
from mechrare.ranks import Dist, from_env
from mechrare.training.distributed import by_name, by_position

MODEL = "d16-l2"
OVERRIDES = [f'ladder.models=["{MODEL}"]', "ladder.interventions=[]", "train.steps=120", "checkpoints.every=20",
             "checkpoints.resume_every=20"]


def torchrun(out, *more: str, processes: int = 2) -> subprocess.Popen:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if processes == 2 else []
    args = [sys.executable, *launcher, "-m", "mechrare", "train", "tiny", "--out", str(out), "--no-progress"]
    for o in OVERRIDES + list(more):
        args += ["--set", o]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def running_past(proc, out, step: int) -> None:
    """Wait until the job has written the checkpoint of ``step``; it must still be running then."""
    target = Path(out) / "models" / MODEL / "seed_0" / f"step_{step}"
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stdout.read()[-2000:]}"


def ranks_of(proc) -> list[int]:
    """The worker processes torchrun started (its children)."""
    return [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]


def weights(run, step):
    return load_file(Path(run) / "models" / MODEL / "seed_0" / f"step_{step}" / "model.safetensors")


def assert_same_run(a, b, atol=1e-5):
    ma, mb = xr.open_dataset(Path(a) / "metrics.nc"), xr.open_dataset(Path(b) / "metrics.nc")
    np.testing.assert_allclose(ma["train_loss"].values, mb["train_loss"].values, rtol=1e-5, equal_nan=True)  # the loss curve
    # held-out metrics, each process evaluating its share of the rows: losses within float tolerance, and the
    # exact-match accuracy the same but for an instance whose argmax the weights' float differences may flip
    for name in ("loss", "background_loss"):
        np.testing.assert_allclose(ma[name].values, mb[name].values, rtol=1e-4)
    n = load_config("tiny", OVERRIDES)[1].mixture.eval_examples
    np.testing.assert_allclose(ma["accuracy"].values, mb["accuracy"].values, atol=1.5 / n, rtol=0)
    assert CheckpointStore(a).steps(MODEL) == CheckpointStore(b).steps(MODEL)
    last = CheckpointStore(a).steps(MODEL)[-1]
    wa, wb = weights(a, last), weights(b, last)
    assert sorted(wa) == sorted(wb)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=1e-4)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "one"
    train_run(load_config("tiny", OVERRIDES)[1], out, name="tiny", progress=False)
    return out


@pytest.mark.slow
def test_two_processes_train_the_one_process_run(one_process, tmp_path, capsys):
    out = tmp_path / "two"
    proc = torchrun(out)
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]
    assert log.count("trained:") == 1  # one line, from rank 0
    assert_same_run(one_process, out)
    step = CheckpointStore(out).steps(MODEL)[-1]
    names = lambda run: sorted(p.name for p in (Path(run) / "models" / MODEL / "seed_0" / f"step_{step}").iterdir())  # noqa: E731
    assert names(out) == names(one_process)
    assert RunFolder(out).read_manifest().model(MODEL).status == "done"
    assert main(["ls", str(out), "--verify", "--no-progress"]) == 0
    assert "every file matches its checksum" in capsys.readouterr().out
    record, _ = verify_state(RunFolder(out).resume_dir(MODEL, 0))  # the resume state: each rank's shards, not gathered
    assert record["version"] == 2 and len(record["shards"]["sha256"]) == 2


@pytest.mark.slow
def test_sigkill_of_one_rank_then_relaunch_resumes(one_process, tmp_path):
    out = tmp_path / "killed"
    proc = torchrun(out)
    running_past(proc, out, 60)
    ranks = ranks_of(proc)
    assert len(ranks) == 2
    os.kill(ranks[1], signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    done = CheckpointStore(out).steps(MODEL)
    assert 60 <= max(done) < 120  # it stopped part-way
    again = torchrun(out)
    log, _ = again.communicate(timeout=600)
    assert again.returncode == 0, log[-3000:]
    assert "resuming at step" in log
    assert_same_run(one_process, out)
    assert main(["ls", str(out), "--verify", "--no-progress"]) == 0  # nothing half-written left behind


@pytest.mark.slow
def test_a_two_process_state_resumes_in_one_process(one_process, tmp_path):
    out = tmp_path / "switch"
    proc = torchrun(out)
    running_past(proc, out, 40)
    for rank in ranks_of(proc):  # both ranks at once
        os.kill(rank, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert 40 <= max(CheckpointStore(out).steps(MODEL)) < 120
    train_run(load_config("tiny", OVERRIDES)[1], out, name="tiny", progress=False)
    assert_same_run(one_process, out)


@pytest.mark.slow
def test_a_one_process_state_resumes_on_two(one_process, tmp_path):
    out = tmp_path / "grow"
    proc = torchrun(out, processes=1)
    running_past(proc, out, 40)
    proc.kill()
    proc.communicate(timeout=120)
    assert 40 <= max(CheckpointStore(out).steps(MODEL)) < 120
    assert verify_state(RunFolder(out).resume_dir(MODEL, 0))[0]["version"] == 1  # whole tensors, one file
    again = torchrun(out)
    log, _ = again.communicate(timeout=600)
    assert again.returncode == 0, log[-3000:]
    assert "resuming at step" in log
    assert_same_run(one_process, out)


def test_optimizer_state_keys_round_trip():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW([{"params": [model[1].weight, model[0].weight]}, {"params": [model[0].bias, model[1].bias]}])
    model(torch.ones(2, 3)).sum().backward()
    opt.step()
    names = ["1.weight", "0.weight", "0.bias", "1.bias"]
    positional = opt.state_dict()
    named = by_name(positional, names)
    assert set(named["state"]) == set(names) and named["param_groups"][0]["params"] == ["1.weight", "0.weight"]
    back = by_position(named, names)
    assert back["param_groups"] == positional["param_groups"]
    for i, v in positional["state"].items():
        torch.testing.assert_close(back["state"][i]["exp_avg"], v["exp_avg"])


def test_job_from_environment(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert not from_env().active and from_env().main
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    job = from_env()
    assert (job.rank, job.world, job.local_rank, job.main) == (3, 4, 1, False)
    assert job.rows(16) == slice(12, 16)
    with pytest.raises(ConfigError, match=r"^train.batch_size: 18 sequences do not split over 4 processes"):
        job.check_batch(18)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE, RANK and LOCAL_RANK must be integers"):
        from_env()
    assert Dist().agree("x") == "x" and Dist().all_sum(torch.ones(2)).sum() == 2
