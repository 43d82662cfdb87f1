"""SIGKILL a training process mid-run, rerun the same command: it resumes and ends
with weights identical, bit for bit, to an uninterrupted run; no checkpoint
folder is ever left half-written."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from mechrare.checkpoints import CheckpointStore, RunFolder
from mechrare.atomic import TMP_PREFIX
from mechrare.config import load_config
from mechrare.training import train_run
from mechrare.checkpoints.train_state import load_state

OVERRIDES = [
    'ladder.models=["d16-l2"]',
    "train.steps=400",
    "checkpoints.every=40",
    "checkpoints.resume_every=20",
]


def command(out):
    args = [sys.executable, "-m", "mechrare", "train", "tiny", "--out", str(out), "--no-progress"]
    for o in OVERRIDES:
        args += ["--set", o]
    return args


def assert_no_half_written_checkpoint(run_dir):
    run = RunFolder(run_dir)
    folder = run.seed_dir("d16-l2", 0)
    step_dirs = sorted(p.name for p in folder.iterdir() if p.name.startswith("step_"))
    assert step_dirs == sorted(f"step_{s}" for s in run.complete_steps("d16-l2"))
    store = CheckpointStore(run_dir)
    for step in store.steps("d16-l2"):
        store.verify("d16-l2", step)


@pytest.mark.slow
def test_sigkill_then_rerun_matches_uninterrupted(tmp_path):
    _, config = load_config("tiny", OVERRIDES)
    reference = train_run(config, tmp_path / "straight", name="tiny", progress=False)

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command(out), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    target = out / "models" / "d16-l2" / "seed_0" / "step_160"
    deadline = time.time() + 240
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stdout.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    killed_at = max(RunFolder(out).complete_steps("d16-l2"))
    assert 160 <= killed_at < 400
    assert_no_half_written_checkpoint(out)
    state = load_state(out / "models" / "d16-l2" / "seed_0" / "resume", "cpu")
    assert 140 <= state["step"] < 400

    rerun = subprocess.run(command(out), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_no_half_written_checkpoint(out)
    assert not [p for p in out.rglob(f"{TMP_PREFIX}*")]

    a, b = CheckpointStore(reference.path), CheckpointStore(out)
    assert a.steps("d16-l2") == b.steps("d16-l2")
    for step in a.steps("d16-l2"):
        assert a.info("d16-l2", step)["sha256"] == b.info("d16-l2", step)["sha256"], step
    final_a = load_file(a.path("d16-l2", 400) / "model.safetensors")
    final_b = load_file(b.path("d16-l2", 400) / "model.safetensors")
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert b.manifest.models["d16-l2"].status == "done"
