"""Finding an external series' checkpoints: folder patterns, styles, explicit paths, the HF cache."""

import shutil
from pathlib import Path

import pytest

from mechrare.checkpoints.folders import discover
from mechrare.checkpoints.series_spec import SeriesModelSpec, read_series_spec
from mechrare.errors import ConfigError


def folders(root: Path, names: list[str]) -> Path:
    for n in names:
        (root / n).mkdir(parents=True)
        (root / n / "config.json").write_text("{}")
    return root


@pytest.mark.parametrize("style", ["step{step}", "step_{step}", "global_step{step}"])
def test_a_folder_of_checkpoints_is_discovered_in_each_style(tmp_path, style):
    root = folders(tmp_path, [style.replace("{step}", str(s)) for s in (0, 1000, 20, 3)] + ["unrelated"])
    found = discover(SeriesModelSpec(name="m", path=str(root)))
    assert list(found) == [0, 3, 20, 1000]
    assert found[20] == root / style.replace("{step}", "20")
    by_pattern = discover(SeriesModelSpec(name="m", path=str(root / style)))
    assert by_pattern == found


def test_given_steps_take_only_those_and_a_missing_one_is_one_line(tmp_path):
    root = folders(tmp_path, ["step0", "step5", "step9"])
    assert list(discover(SeriesModelSpec(name="m", path=str(root / "step{step}"), steps=[0, 9]))) == [0, 9]
    with pytest.raises(ConfigError, match=r"models.steps: no checkpoint at .*step7"):
        discover(SeriesModelSpec(name="m", path=str(root / "step{step}"), steps=[0, 7]))


def test_explicit_paths_and_ambiguous_or_empty_folders(tmp_path):
    root = folders(tmp_path, ["a", "b", "step1", "step_2"])
    assert discover(SeriesModelSpec(name="m", paths=[str(root / "a"), str(root / "b")], steps=[10, 20])) == {10: root / "a", 20: root / "b"}
    with pytest.raises(ConfigError, match="several styles"):
        discover(SeriesModelSpec(name="m", path=str(root)))
    with pytest.raises(ConfigError, match="no checkpoint folder matches"):
        discover(SeriesModelSpec(name="m", path=str(root / "ckpt-{step}")))


def test_spec_checks_are_one_line(tmp_path):
    def spec(text: str):
        path = tmp_path / "S.toml"
        path.write_text(text)
        return read_series_spec(path)

    tasks = '[tasks]\nfiles = ["t.jsonl"]\n'
    with pytest.raises(ConfigError, match=r"models\[0\].steps: must be strictly increasing; step 10 follows 20"):
        spec(f'[[models]]\nname = "m"\npath = "x/step{{step}}"\nsteps = [0, 20, 10]\n{tasks}')
    with pytest.raises(ConfigError, match="give exactly one of path"):
        spec(f'[[models]]\nname = "m"\npath = "x"\nrepo = "a/b"\nsteps = [1]\n{tasks}')
    with pytest.raises(ConfigError, match=r"models\[0\].name: '\.\./x' is not a plain name"):
        spec(f'[[models]]\nname = "../x"\npath = "x"\n{tasks}')
    with pytest.raises(ConfigError, match="colour: unknown key"):
        spec(f'colour = 1\n[[models]]\nname = "m"\npath = "x"\n{tasks}')
    with pytest.raises(ConfigError, match="background: give files .* or dataset"):
        spec(f'[[models]]\nname = "m"\npath = "x"\n{tasks}[background]\nfiles = ["a.txt"]\ndataset = "d"\n')
    assert spec(f'[[models]]\nname = "m"\npath = "x"\n{tasks}[background]\ndataset = "d"\n').background.dataset == str(tmp_path / "d")
    s = spec(f'[[models]]\nname = "m"\npath = "ck/step{{step}}"\n{tasks}')
    assert s.models[0].path == str(tmp_path / "ck/step{step}") and s.tasks.files == [str(tmp_path / "t.jsonl")] and s.name == "S"


def test_a_hub_repo_resolves_offline_from_the_local_cache(tmp_path, monkeypatch):
    """Revisions of a repo id come from huggingface_hub's cache when offline (as Pythia's step branches would)."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hub"
    repo = cache / "models--EleutherAI--pythia-tiny"
    for step, commit in ((0, "a" * 40), (1000, "b" * 40)):
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / f"step{step}").write_text(commit)
        folders(repo / "snapshots", [commit])
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    found = discover(SeriesModelSpec(name="p", repo="EleutherAI/pythia-tiny", steps=[0, 1000]))
    assert found == {0: repo / "snapshots" / ("a" * 40), 1000: repo / "snapshots" / ("b" * 40)}
    shutil.rmtree(repo / "snapshots" / ("b" * 40))
    (repo / "refs" / "step1000").unlink()
    with pytest.raises(ConfigError, match=r"cannot get EleutherAI/pythia-tiny@step1000 .*local Hugging Face cache"):
        discover(SeriesModelSpec(name="p", repo="EleutherAI/pythia-tiny", steps=[0, 1000]))
