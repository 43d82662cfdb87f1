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


def hashing_threads(monkeypatch) -> set:
    """The names of the threads that hash a file from now on (filled as they do)."""
    threads = set()
    real = atomic.sha256_file

    def counted(path, *args, **kwargs):
        threads.add(threading.current_thread().name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(atomic, "sha256_file", counted)
    return threads


def test_side_by_side_gives_the_answers_of_one_at_a_time(run_copy, tmp_path, monkeypatch):
    import mechrare.checkpoints.verify as verify

    run = damaged(run_copy, tmp_path)
    folders = [run.step_dir("d8-l1", s) for s in range(0, 45, 5)]
    threads = hashing_threads(monkeypatch)
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


def test_a_series_is_checked_side_by_side_with_the_answers_of_one_at_a_time(example_series, tmp_path, monkeypatch):
    """An external series' checkpoints (mechrare.checkpoints.verify.series_problems): a changed file and a
    missing one found by threads and one at a time alike, every checkpoint counted once."""
    import mechrare
    import mechrare.checkpoints.verify as verify
    from mechrare.checkpoints.folders import read_record

    src = example_series()
    series = tmp_path / "series"
    shutil.copytree(src.parent, series)
    out = tmp_path / "out"
    mechrare.open_series(series / "SERIES.toml", out=out, progress=False)  # records every file's sha256
    changed = series / "checkpoints" / "small" / "step20" / "model.safetensors"
    data = bytearray(changed.read_bytes())
    data[-5] ^= 0xFF
    changed.write_bytes(bytes(data))
    (series / "checkpoints" / "tiny" / "step10" / "config.json").unlink()
    threads = hashing_threads(monkeypatch)
    answers = {}
    for cores in (4, 1):
        monkeypatch.setattr(verify, "usable_cores", lambda cores=cores: cores)
        threads.clear()
        answers[cores] = verify.series_problems(read_record(out))
        assert (len(threads) > 1) == (cores > 1)
    assert answers[4] == answers[1]
    problems, n = answers[4]
    assert n == 8  # 2 sizes x 4 steps
    assert [(p.path.parent.parent.name, p.path.parent.name, p.path.name) for p in problems] == [
        ("tiny", "step10", "config.json"), ("small", "step20", "model.safetensors")]
    assert "is missing" in problems[0].what and "sha256 differs" in problems[1].what
