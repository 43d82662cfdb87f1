"""Names that become folder names: one strict pattern, from config and manifest alike."""

import pytest

from mechrare.cli import main
from mechrare.names import is_safe_name


@pytest.mark.parametrize("name", ["d16-l2", "d16-l2-up0.3", "mine", "A_b+c.1"])
def test_plain_names_pass(name):
    assert is_safe_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "../x", "a/b", "a\\b", "a b", "ü", "x" * 129, None, 3])
def test_names_that_could_leave_a_folder_fail(name):
    assert not is_safe_name(name)


@pytest.mark.parametrize("name", ["..", "../../elsewhere", "a b"])
def test_a_config_model_name_that_is_not_a_folder_name_is_one_line_exit_2(tmp_path, capsys, name):
    out = tmp_path / "run"
    code = main(["train", "tiny", "--out", str(out), "--set",
                 f'ladder.models=[{{ name = "{name}", d_model = 8, n_layers = 1, n_heads = 1 }}]', "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "must be letters, digits" in err
    assert not out.exists()  # nothing written


def test_inside_refuses_paths_that_leave_the_root(tmp_path):
    from mechrare.errors import RunFolderError
    from mechrare.names import inside

    root = tmp_path / "run"
    assert inside(root, root / "models" / "a") == root / "models" / "a"
    for bad in [root / ".." / "x", root / "models" / ".." / ".." / "x", tmp_path / "elsewhere", root.parent]:
        with pytest.raises(RunFolderError, match="leads outside the run folder"):
            inside(root, bad)


def test_run_folder_paths_refuse_unsafe_model_names(tmp_path):
    from mechrare.checkpoints import RunFolder
    from mechrare.errors import RunFolderError

    run = RunFolder(tmp_path)
    run._layout = 2
    with pytest.raises(RunFolderError, match="not a plain folder name"):
        run.step_dir("../../elsewhere", 10)
    with pytest.raises(RunFolderError, match="leads outside"):
        run.analysis_path("../../x")


def test_the_api_refuses_an_unsafe_run_name(tmp_path, monkeypatch):
    import mechrare

    monkeypatch.chdir(tmp_path)
    with pytest.raises(mechrare.ConfigError, match="not a plain run name"):
        mechrare.train("tiny", name="../../elsewhere", progress=False)
    assert not list(tmp_path.iterdir())


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("key", ["../../../elsewhere/m", "..", "../m"])
def test_a_traversing_model_key_in_a_manifest_reads_and_writes_nothing_outside(tmp_path, capsys, key):
    """The attack from the issue: a manifest whose model key climbs out of the run folder."""
    import json

    from mechrare.atomic import sealed

    out = tmp_path / "a" / "b" / "run"
    assert main(["train", "tiny", "--out", str(out), "--set", 'ladder.models=["d8-l1"]', "--set", "train.steps=10",
                 "--set", "ladder.interventions=[]", "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["models"] = {key: manifest["models"]["d8-l1"]}
    (out / "manifest.json").write_text(json.dumps(sealed(manifest)))  # the seal is a checksum, not a signature
    (tmp_path / "elsewhere" / "m" / "seed_0").mkdir(parents=True)  # what the attacker points at
    before_outside = tree(tmp_path)
    for command in (["analyze", str(out), "--no-progress"], ["ls", str(out), "--verify"], ["report", str(out)],
                    ["train", "tiny", "--out", str(out), "--no-progress"]):
        capsys.readouterr()
        assert main(command) == 2, command
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "not a plain folder name" in err, (command, err)
    assert tree(tmp_path) == before_outside  # nothing read into being, nothing written, inside or out
