"""README's notebook-style Python example runs as written (on the session's tiny run)."""

import os
import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def api_example() -> str:
    text = README.read_text()
    section = text.split("## The Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_readme_python_example_runs(tiny_run, tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    os.symlink(tiny_run.path, tmp_path / "runs" / "tiny")  # "training" resumes a finished run at once
    monkeypatch.chdir(tmp_path)
    code = api_example()
    assert 'mechrare.train("tiny", out="runs/tiny"' in code
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "Run('runs/tiny': 4 models, tasks facts:8, compare:4, lookup:2)" in out
    assert "(2, 16)" in out  # two texts, d_model 16
    for key in "abcdef":
        assert re.search(rf"^{key} (holds|does not hold|inconclusive|not measured) \S+ \(\S+, \S+\) - ", out, flags=re.M), key
    assert (tmp_path / "runs" / "tiny" / "report" / "index.html").is_file()


def test_readme_config_example_loads(tmp_path):
    """The annotated run config in README is a valid config, sweep and intervention included."""
    from mechrare.config import load_config
    from mechrare.training.runner import Plan

    block = re.search(r"```toml\n(.*?)```", README.read_text(), flags=re.S).group(1)
    path = tmp_path / "example.toml"
    path.write_text(block)
    plan = Plan(load_config(str(path))[1])
    names = [s.name for s in plan.shapes]
    assert "d16-l2-up10" in names and "d64-l2-up0.3" in names
