"""docs/extending_probes.md: its example is the plugin package the tests run."""

import re
import sys
from pathlib import Path

from mechrare.checkpoints import open_dataset
from mechrare.cli import main
from mechrare.probes import PROBES

ROOT = Path(__file__).parents[2]
PLUGIN = Path(__file__).parent / "plugin"


def code_blocks(lang):
    text = (ROOT / "docs" / "extending_probes.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_doc_shows_the_code_that_runs():
    module = (PLUGIN / "mechrare_mlp_probe" / "__init__.py").read_text()
    assert module in code_blocks("python")
    entry_points = (PLUGIN / "mechrare_mlp_probe-0.1.0.dist-info" / "entry_points.txt").read_text()
    toml = next(b for b in code_blocks("toml") if "mechrare.probes" in b)
    assert 'mlp = "mechrare_mlp_probe:MLPProbe"' in toml and "mlp = mechrare_mlp_probe:MLPProbe" in entry_points


def test_plugin_probe_runs_through_mechrare_analyze(tiny_run_copy, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(PROBES, "_entry_points_loaded", False)
    try:
        code = main(["analyze", str(tiny_run_copy), "--only", "probes", "--models", "d8-l1", "--no-progress",
                     "--set", "probes.probe=mlp", "--set", "probes.params.epochs=40"])
        assert code == 0, capsys.readouterr().err
        ds = open_dataset(tiny_run_copy / "analyses" / "probes.nc")
        assert '"probe": "mlp"' in ds.attrs["analysis_config"]
        assert float(ds.probe_score.sel(step=300, target="task").max()) > 0.9
    finally:
        PROBES._entries.pop("mlp", None)
        sys.modules.pop("mechrare_mlp_probe", None)
