"""`mechrare toy`: the default run with its report, the bursty schedule, and the gap sweep."""

import numpy as np
import pytest

from mechrare.checkpoints.metrics import open_dataset
from mechrare.cli import main as run_cli
from mechrare.toy.config import ToyConfig
from mechrare.toy.train import toy_lr, train_toy


def findings(run) -> dict[str, list[str]]:
    rows = (run / "report" / "summary.md").read_text().split("## Findings")[1].split("How each")[0]
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows.strip().splitlines() if r.startswith("| (t")]
    return {c[0][1:3]: c for c in cells}


@pytest.mark.slow
def test_default_toy_run_with_report_matches_the_theory(tmp_path, capsys):
    out = tmp_path / "toy"
    assert run_cli(["toy", "--out", str(out), "--no-progress"]) == 0
    f = findings(out)
    assert f["t1"][1] == "**holds**" and "predicted N_crit 6, measured 6" in f["t1"][-1]
    assert f["t2"][1] == "**holds**"  # learning order: Spearman >= 0.9
    rho = float(f["t2"][-1].split("Spearman ")[1].split()[0])
    assert rho >= 0.9
    assert f["t3"][1] == "**not measured**"  # i.i.d. by default
    # the contracts: the ladder's dataset names, model = width
    inter = open_dataset(out / "analyses" / "interference.nc")
    assert {"grad_norm", "grad_cosine", "loss_change", "cos_nontask_ref", "cos_batch_ref"} <= set(inter.data_vars)
    assert list(inter.model.values)[:3] == ["w1", "w2", "w3"]
    diag = inter.grad_cosine.isel(step=-1).values.diagonal(axis1=-2, axis2=-1)
    moving = inter.grad_norm.isel(step=-1).values > 0  # a task with no gradient at all has no cosine
    assert np.allclose(diag[moving], 1, atol=1e-5) and np.isnan(diag[~moving]).all()
    # the per-task parts add up to the total (the first-order accuracy itself is tested at small
    # steps in test_tracking; at this run's large steps second-order terms are not small)
    lc = inter.loss_change.values[:, 1:]
    assert np.isfinite(lc).all()
    assert np.allclose(lc.sum(-1), inter.loss_change_total.values[:, 1:], rtol=1e-4, atol=1e-6)
    neurons = open_dataset(out / "analyses" / "neurons.nc")
    assert {"allocation", "owner", "n_claimed", "claim_step"} <= set(neurons.data_vars)
    assert neurons.owner.dims[-2:] == ("block", "neuron")
    metrics = open_dataset(out / "metrics.nc")
    assert metrics.attrs["Conventions"] == "CF-1.10" and metrics.attrs["run"] == "." and "share" in metrics.coords
    retention = open_dataset(out / "analyses" / "retention.nc")
    assert "retained_signal" in retention.signal.values
    pngs = {p.stem for p in (out / "report" / "figures").glob("*.png")}
    assert {"toy_signal", "toy_order", "neurons", "cosine", "timeline"} <= pngs
    # a rerun with the same settings replaces the files; another config is refused
    assert run_cli(["toy", "--out", str(out), "--no-progress", "--no-report", "--set", "steps=10"]) == 2
    assert "holds another run" in capsys.readouterr().err


@pytest.mark.slow
def test_bursty_narrow_width_forgets_every_gap_and_wide_ones_accumulate(tmp_path):
    out = tmp_path / "bursty"
    assert run_cli(["toy", "--out", str(out), "--no-progress", "--set", "gap=200", "--set", "every=20"]) == 0
    f = findings(out)
    assert f["t3"][1] == "**holds**", f["t3"]
    events = int(f["t3"][-1].split("w1: ")[1].split()[0])
    assert events >= 19  # 20 gaps of 200 steps in 4,000
    retention = open_dataset(out / "analyses" / "retention.nc")
    n = retention.n_overwrites.sel(signal="retained_signal", task="rare", seed=0)  # a toy run has one seed
    assert int(n.sel(model="w1")) >= 19
    assert all(int(n.sel(model=f"w{w}")) <= 2 for w in range(7, 13))  # wider than N_crit: (almost) never overwritten


@pytest.mark.slow
def test_final_rare_loss_rises_with_the_gap():
    widths = [1, 3, 6, 9, 12]
    lr = float(toy_lr(ToyConfig(gap=800))[0])  # one step size for every schedule
    loss = {}
    for gap in (0, 25, 100, 400, 800):
        rows, _ = train_toy(ToyConfig(gap=gap, lr=lr, widths=widths, every=4000), progress=False)
        loss[gap] = rows[-1]["loss"][:, -1]  # [W] rare-task population loss at the last step
    crit = [i for i, w in enumerate(widths) if w >= 6]  # N_crit = 6 with the defaults
    mean = np.array([loss[g][crit].mean() for g in loss])
    assert np.all(np.diff(mean) >= -0.02 * mean[:-1]), mean  # never falls (2% noise) ...
    assert mean[-1] > 2 * mean[0], mean  # ... and the longest gap at least doubles it
