"""Checking checkpoints side by side (mechrare.checkpoints.verify.check_checkpoints): the same answers in
the same order as one at a time, with the hashing spread over threads."""

import shutil
import threading

import pytest

import mechrare.atomic as atomic
from mechrare.checkpoints import RunFolder
from mechrare.checkpoints.verify import check_checkpoints, checkpoint_problems, verify_run
from mechrare.cli import main


@pytest.fixture(scope="module")
def run_copy(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify") / "run"
    args = ["train", "tiny", "--out", str(out), "--no-progress", "--set", 'ladder.models=["d8-l1"]', "--set", "train.steps=40",
            "--set", "checkpoints.every=5", "--set", "checkpoints.log_spaced=false", "--set", "ladder.interventions=[]"]
    assert main(args) == 0
    return out


def damaged(run_copy, tmp_path):
    """A copy with a flipped byte at step 10, step 25's weights gone and step 35's record gone."""
    out = tmp_path / "run"
    shutil.copytree(run_copy, out)
    run = RunFolder(out)
    weights = run.step_dir("d8-l1", 10) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-9] ^= 0x10
    weights.write_bytes(bytes(data))
    (run.step_dir("d8-l1", 25) / "model.safetensors").unlink()
    (run.step_dir("d8-l1", 35) / "mechrare.json").unlink()
    return run


def test_side_by_side_gives_the_answers_of_one_at_a_time(run_copy, tmp_path, monkeypatch):
    import mechrare.checkpoints.verify as verify

    run = damaged(run_copy, tmp_path)
    folders = [run.step_dir("d8-l1", s) for s in range(0, 45, 5)]
    threads = set()
    real = atomic.sha256_file

    def counted(path, *args, **kwargs):
        threads.add(threading.current_thread().name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(atomic, "sha256_file", counted)
    monkeypatch.setattr(verify, "usable_cores", lambda: 4)
    side_by_side = check_checkpoints(folders)
    assert len(threads) > 1 and all(t.startswith("mechrare-verify") for t in threads)
    monkeypatch.setattr(verify, "usable_cores", lambda: 1)
    threads.clear()
    assert check_checkpoints(folders) == side_by_side
    assert threads == {threading.main_thread().name}
    bad = {s: what for s, what in zip(range(0, 45, 5), side_by_side) if what}
    assert sorted(bad) == [10, 25, 35]
    assert "does not match" in bad[10] and "is missing" in bad[25] and "no mechrare.json" in bad[35]
    monkeypatch.setattr(verify, "usable_cores", lambda: 4)
    assert sorted(checkpoint_problems(run, "d8-l1", 0)) == [10, 25, 35]
    problems, counts = verify_run(run.path)
    assert counts["checkpoints"] == 9 and len([p for p in problems if "step_" in str(p.path)]) == 3
