"""The `paper` preset holds what issue 17 asks of it, resolves on the example corpus, and names its fixes."""

import math

import pytest

from mechrare.config import load_config
from mechrare.errors import ConfigError
from mechrare.examples.corpus import write_corpus
from mechrare.training.runner import Plan


def test_the_paper_preset_is_the_papers_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHRARE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus", n_files=4)
    name, cfg = load_config("paper", ["train.device=cpu"])
    plan = Plan(cfg, tmp_path / "run")
    assert cfg.mixture.background.kind == "text" and len(plan.mixture.vocab) == 8192
    assert [s.name for s in plan.shapes] == ["4M", "20M", "60M", "4M-up10"] and plan.seeds == [0, 1]
    rows = {r["task"]: r for r in plan.mixture.describe()}
    for family in ("compare", "modadd"):
        shares = [r["share"] for t, r in rows.items() if t.startswith(family) and r["schedule"] == "iid"]
        assert len(shares) >= 3 and math.log10(max(shares) / min(shares)) >= 2 - 1e-9
    bursty = [r for r in rows.values() if r["schedule"] != "iid"]
    assert len(bursty) == 1 and bursty[0]["share"] == pytest.approx(rows["compare:100:mid"]["share"])  # matched frequency
    # dense: log-spaced at the start, every 250 steps, and around every burst
    assert len(plan.schedule) >= 30 and {1, 2, 4, 250, 1000, 1001} <= set(plan.schedule)


def test_the_paper_preset_says_where_its_corpus_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHRARE_CACHE", str(tmp_path / "cache"))  # nothing prepared before
    monkeypatch.chdir(tmp_path)
    _, cfg = load_config("paper", ["train.device=cpu"])
    with pytest.raises(ConfigError, match=r"^mixture.background.files\[0\]: 'corpus/\*.txt' matches no file .*mechrare.examples.corpus"):
        Plan(cfg, tmp_path / "run")
