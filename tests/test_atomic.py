import pytest

from mechrare.atomic import TMP_PREFIX, atomic_dir, atomic_write_text, remove_stale_temps


def test_atomic_dir_renames_only_on_success(tmp_path):
    target = tmp_path / "step_1"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("whole")
    assert (target / "a.txt").read_text() == "whole"
    with pytest.raises(FileExistsError):
        with atomic_dir(target):
            pass
    assert (target / "a.txt").read_text() == "whole"


def test_atomic_write_and_stale_cleanup(tmp_path):
    atomic_write_text(tmp_path / "x.json", "1")
    atomic_write_text(tmp_path / "x.json", "2")
    assert (tmp_path / "x.json").read_text() == "2"
    (tmp_path / f"{TMP_PREFIX}step_9-abc").mkdir()
    (tmp_path / f"{TMP_PREFIX}y-123").write_text("junk")
    assert remove_stale_temps(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
