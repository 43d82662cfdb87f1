"""A run with two seeds, end to end: every dataset has both, every finding has its interval."""

import json

import pytest

from mechrare.checkpoints import open_dataset
from mechrare.cli import main
from mechrare.reports.registry import STATUSES

OVERRIDES = ["ladder.models=[\"d8-l1\", \"d16-l2\"]", "ladder.seeds=2", "train.steps=60", "checkpoints.every=20"]


@pytest.mark.slow
def test_two_seeds_train_analyse_and_report(tmp_path):
    out = tmp_path / "two"
    args = ["run", "tiny", "--out", str(out), "--no-progress"]
    for o in OVERRIDES + ["sae.max_checkpoints=2"]:
        args += ["--set", o]
    assert main(args) == 0
    for name in ("probes", "neurons", "interference", "sae", "retention"):
        ds = open_dataset(out / "analyses" / f"{name}.nc")
        assert list(ds.seed.values) == [0, 1], name
        for var in ds.data_vars.values():
            if "model" in var.dims:
                assert var.dims[:2] == ("model", "seed"), (name, var.name)
    assert list(open_dataset(out / "metrics.nc").seed.values) == [0, 1]
    record = json.loads((out / "report" / "findings.json").read_text())
    assert record["seeds"] == [0, 1]
    by = {f["key"]: f for f in record["findings"]}
    assert all(f["status"] in STATUSES for f in by.values())
    for key in ("a", "d", "e"):  # contrasts of per-seed measurements: two seeds give an interval
        f = by[key]
        assert f["n_seeds"] == 2 and f["ci_low"] is not None and f["ci_low"] <= f["estimate"] <= f["ci_high"], f
    assert by["c"]["n_seeds"] == 2 and "of 2 seeds" in by["c"]["evidence"]
    summary = (out / "report" / "summary.md").read_text()
    assert "x 2 training seeds" in summary
    assert (out / "report" / "figures" / "accuracy.png").is_file()
    # the seeds are different runs
    loss = open_dataset(out / "metrics.nc").train_loss.sel(model="d16-l2").isel(step=-1)
    assert loss.sel(seed=0) != loss.sel(seed=1)
