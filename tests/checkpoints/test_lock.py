"""One writer per run folder: a second `train` or `analyze` is refused with one line naming the holder."""

import os

from mechrare.checkpoints.lock import LOCK_FILE, run_lock
from mechrare.cli import main

ARGS = ["--set", 'ladder.models=["d8-l1"]', "--set", "train.steps=10", "--set", "checkpoints.every=5",
        "--set", "ladder.interventions=[]", "--no-progress"]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "run"
    with run_lock(out, "a test holding it"):
        assert main(["train", "tiny", "--out", str(out), *ARGS]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"in use by pid {os.getpid()} (a test holding it)" in err
        assert [p.name for p in out.iterdir()] == [LOCK_FILE]  # nothing else written
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 0  # released: trains
    with run_lock(out, "another test"):
        assert main(["analyze", str(out), "--only", "retention", "--no-progress"]) == 2
        assert "in use by pid" in capsys.readouterr().err
    assert main(["analyze", str(out), "--only", "retention", "--no-progress"]) == 0


def test_out_at_a_file_or_foreign_folder_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    for out in (afile, afile / "under"):
        assert main(["train", "tiny", "--out", str(out), *ARGS]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(out) in err
    assert afile.read_text() == "keep me"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["train", "tiny", "--out", str(foreign), *ARGS]) == 2
    assert "is not a mechrare run" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]  # no lock file left in someone else's folder
