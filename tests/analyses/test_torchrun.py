"""`mechrare analyze` under torchrun (gloo, 2 CPU processes): each process computes its share of the
checkpoints, rank 0 writes each dataset once, and the datasets are those of one process."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

import mechrare
from mechrare.checkpoints.datasets import open_dataset

ONLY = "probes,neurons,retention"  # two shared out per checkpoint, one (retention) run by rank 0


def fresh_copy(run, to: Path) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("analyses", "report"))
    return to


@pytest.mark.slow
def test_analyses_share_out_checkpoints_under_torchrun(tiny_run, tmp_path):
    one = fresh_copy(tiny_run.path, tmp_path / "one")
    two = fresh_copy(tiny_run.path, tmp_path / "two")
    mechrare.analyze(one, only=ONLY, models=["d16-l2"], jobs=1, progress=False)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "mechrare", "analyze", str(two), "--only", ONLY, "--models", "d16-l2", "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    for name in ONLY.split(","):
        assert done.stdout.count(f"{name}: wrote") == 1  # one line, from rank 0
        a, b = open_dataset(one / "analyses" / f"{name}.nc"), open_dataset(two / "analyses" / f"{name}.nc")
        assert set(a.data_vars) == set(b.data_vars)
        xr.testing.assert_allclose(a.drop_attrs(), b.drop_attrs(), rtol=1e-4, atol=1e-5)
        assert not (two / "analyses" / f"{name}.parts").exists()  # removed once written


def test_without_a_process_group_the_driver_works_alone(monkeypatch):
    """Under torchrun's variables but with no process group up, code runs as one process would."""
    from mechrare.ranks import current_job

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert not current_job().active and current_job().main
