"""The frequency sweep: its table in the report (cells against an independent computation from
metrics.nc) and finding (e)'s comparison at equal rare exposure."""

import numpy as np
import pytest
from scipy.stats import t as student_t

from mechrare.checkpoints import open_dataset
from mechrare.config import RunConfig

TASK = "compare:4"


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    from mechrare.reports import build_report
    from mechrare.training import train_run

    cfg = RunConfig.from_dict({
        "mixture": {"sequence_length": 16, "eval_examples": 32,
                    "tasks": [{"family": "facts", "complexity": 8, "frequency": 0.3},
                              {"family": "compare", "complexity": 4, "frequency": 0.05}],
                    "background": {"vocab_size": 16, "branching": 2}},
        "ladder": {"models": ["d8-l1", "d16-l2"], "seeds": 2, "sweep": {"task": TASK, "factors": [0.25, 4]}},
        "train": {"steps": 40, "batch_size": 16, "lr": 3e-3, "threads": 1},
        "checkpoints": {"every": 10, "log_spaced": False},
    })
    path = train_run(cfg, tmp_path_factory.mktemp("sweep") / "s", name="s", progress=False).path
    return path, build_report(path, progress=False)


def _final(metrics, model):
    """[seed] mean accuracy over the last 3 checkpoints, by hand."""
    acc = metrics.accuracy.sel(model=model, task=TASK)
    return np.array([acc.sel(seed=s).dropna("step").values[-3:].mean() for s in acc.seed.values])


@pytest.mark.slow
def test_sweep_table_cells(sweep_run):
    path, report = sweep_run
    text = report.summary.read_text()
    assert "## Frequency sweep" in text and "id='sweep'" in report.index.read_text()
    lines = text.split("## Frequency sweep")[1].split("## Figures")[0].strip().splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:2] == ["model", "parameters"] and [h.split(" (")[0] for h in header[2:]] == [f"{TASK} x0.25", f"{TASK} x1", f"{TASK} x4"]
    from mechrare.runs import open_run

    n = len(open_run(path).tasks.eval_instances(TASK))  # compare:4 has few items: its whole pool's held-out part
    metrics = open_dataset(path / "metrics.nc")
    rows = {r.strip("|").split("|")[0].strip(): [c.strip() for c in r.strip("|").split("|")] for r in lines[4:]}
    for base in ("d8-l1", "d16-l2"):
        for col, model in zip(rows[base][2:], (f"{base}-up0.25", base, f"{base}-up4")):
            x = _final(metrics, model)
            p = x.mean()
            p_c = min(max(p, 0.5 / n), 1 - 0.5 / n)
            half = student_t.ppf(0.975, 1) * np.sqrt(x.var(ddof=1) / 2 + p_c * (1 - p_c) / n)
            assert col.split(" *")[0] == f"{p:.3f} [{max(p - half, 0):.3f}, {min(p + half, 1):.3f}]", (model, col)


@pytest.mark.slow
def test_equal_exposure_in_finding_e(sweep_run):
    path, report = sweep_run
    e = next(f for f in report.findings if f.key == "e")
    assert "d8-l1-up4 (x4)" in e.evidence  # the upsampling intervention, not the sweep's downsampled model
    metrics = open_dataset(path / "metrics.nc")
    from mechrare.runs import open_run

    manifest = open_run(path).manifest
    s_base, s_up = manifest.model("d8-l1").shares[TASK], manifest.model("d8-l1-up4").shares[TASK]
    target = 40 * s_base / s_up
    acc = metrics.accuracy.sel(model="d8-l1-up4", task=TASK)
    at = [np.interp(target, acc.step.values, acc.sel(seed=s).values) for s in acc.seed.values]
    assert f"at step {target:.0f} of 40" in e.evidence
    assert f"up {np.mean(at):.3f} - base = {np.mean(at) - _final(metrics, 'd8-l1').mean():+.3f}" in e.evidence


@pytest.mark.slow
def test_sweep_points_are_recorded_and_left_out_of_analyses_by_default(sweep_run):
    from mechrare.analyses.driver import select_models
    from mechrare.runs import open_run

    path, report = sweep_run
    run = open_run(path)
    assert run.manifest.model("d16-l2-up4").intervention.sweep
    ctx = run.context()
    assert select_models(ctx, None) == ["d8-l1", "d16-l2"]
    assert select_models(ctx, ["d16-l2-up4"]) == ["d16-l2-up4"]  # named: analysed
    assert "d16-l2-up4" in report.summary.read_text()  # in the models table


@pytest.mark.slow
def test_finding_a_shows_the_slope_at_every_swept_frequency(sweep_run):
    path, report = sweep_run
    a = next(f for f in report.findings if f.key == "a")
    assert "across the frequency sweep (shown, not deciding)" in a.evidence
    metrics = open_dataset(path / "metrics.nc")
    from mechrare.runs import open_run

    n_params = [open_run(path).manifest.model(m).n_params for m in ("d8-l1", "d16-l2")]
    for f, suffix in ((0.25, "-up0.25"), (1, ""), (4, "-up4")):
        means = [_final(metrics, m + suffix).mean() for m in ("d8-l1", "d16-l2")]
        slope = np.polyfit(np.log10(n_params), means, 1)[0]
        assert f"x{f:g} (share " in a.evidence and f"{slope:+.3f} [" in a.evidence.split(f"x{f:g} (share ")[1][:40]
    assert "lowest swept share" not in a.evidence  # no retention.nc: no chance level to compare with
