"""The toy run's findings (theory against measurement) and its figures.

They reach the report through the ``mechrare.findings`` and ``mechrare.figures``
entry-point groups (see pyproject.toml), the same way a third-party package
adds its own: the report itself knows nothing of the toy.
"""

from __future__ import annotations

import numpy as np

from mechrare.reports.data import RunData, retention_events
from mechrare.reports.plotting import colormap, figure, grid, step_axis
from mechrare.reports.registry import FAILS, HOLDS, MISSING, FigureSpec, Finding, FindingSpec, Skip
from mechrare.toy.datasets import LEARNED


def toy_config(data: RunData) -> dict:
    return data.manifest.config


def learning_order(data: RunData) -> tuple[float, int]:
    """Spearman correlation between utility and learning speed (1 / learned_step) over the
    (task, direction) pairs the widest model learned; and how many pairs that was."""
    from scipy.stats import spearmanr

    toy = data.analyses["toy"]
    widest = str(toy.model.values[-1])
    steps = toy.learned_step.sel(model=widest).values.ravel()
    util = toy.utility.values.ravel()
    ok = np.isfinite(steps)
    if ok.sum() < 3:
        return np.nan, int(ok.sum())
    return float(spearmanr(util[ok], -steps[ok]).statistic), int(ok.sum())


def bursty_cycles(data: RunData) -> dict:
    """For a bursty run: the narrowest width's overwrite events of s_r, and for every width
    >= N_crit the troughs of s_r (its value just before each burst) over the second half of training."""
    cfg = toy_config(data)
    ret, toy = data.analyses["retention"], data.analyses["toy"]
    narrow = str(toy.model.values[0])
    events = [e for e in retention_events(ret) if e["model"] == narrow and e["task"] == data.rare_task and e["signal"] == "retained_signal"]
    steps = data.metrics.step.values
    gap = int(cfg["gap"])
    before = [i for i, s in enumerate(steps) if s > 0 and s % gap == 0 and s >= steps[-1] / 2]
    crit = int(toy.attrs["critical_width"])
    signal = data.metrics.retained_signal.sel(task=data.rare_task)
    troughs = {str(m): signal.sel(model=m).values[before] for m, w in zip(toy.model.values, toy.width.values) if w >= crit}
    return {"narrow": narrow, "events": events, "gaps": int(cfg["steps"] // gap), "troughs": troughs, "critical_width": crit}


def _needs_toy(data: RunData, key: str, claim: str, rule: str) -> Finding | None:
    if data.analyses.get("toy") is None:
        return Finding(key, claim, MISSING, "needs analyses/toy.nc (`mechrare toy`)", rule)
    return None


def critical_width_finding(data: RunData) -> Finding:
    rule = "holds if the smallest width from which on every model keeps s_r >= 0.5 at the end is within 1 of N_crit"
    claim = "(t1) The rare task survives from the predicted critical width N_crit = min{N : mu_N^F <= pi_r lambda_r1} on"
    missing = _needs_toy(data, "t1", claim, rule)
    if missing:
        return missing
    toy = data.analyses["toy"]
    pred, meas = toy.attrs["critical_width"], float(toy.attrs["measured_critical_width"])
    widths = list(toy.width.values)
    finals = ", ".join(f"w{w} {v:.2f}" for w, v in zip(widths, toy.final_signal.sel(task=data.rare_task).values))
    if np.isnan(meas):
        return Finding("t1", claim, FAILS if pred <= max(widths) else MISSING,
                       f"predicted N_crit {pred}; no trained width keeps the rare task (final s_r: {finals})", rule)
    return Finding("t1", claim, HOLDS if abs(meas - pred) <= 1 else FAILS,
                   f"predicted N_crit {pred}, measured {meas:.0f} (final s_r: {finals})", rule)


def learning_order_finding(data: RunData) -> Finding:
    rule = "holds if Spearman(utility, 1 / learned step) >= 0.9 over the directions the widest model learned"
    claim = "(t2) Features are learned in order of utility pi_k lambda_kj"
    missing = _needs_toy(data, "t2", claim, rule)
    if missing:
        return missing
    rho, n = learning_order(data)
    status = MISSING if np.isnan(rho) else HOLDS if rho >= 0.9 else FAILS
    return Finding("t2", claim, status, f"Spearman {rho:.3f} over {n} (task, direction) pairs learned by the widest model", rule)


def bursty_finding(data: RunData) -> Finding:
    claim = "(t3) Bursty injection: the narrowest model learns and forgets the rare task every gap; widths >= N_crit accumulate it"
    rule = ("holds if the narrowest width has an s_r overwrite event in at least all but one gap and, at every width >= N_crit, "
            "s_r just before each burst never falls (by > 0.01) over the second half of training")
    missing = _needs_toy(data, "t3", claim, rule)
    if missing:
        return missing
    if not toy_config(data).get("gap"):
        return Finding("t3", claim, MISSING, "this run is i.i.d.; run `mechrare toy --set gap=G` for the bursty schedule", rule)
    b = bursty_cycles(data)
    keeps = {m: bool(len(t) >= 2 and np.all(np.diff(t) >= -0.01)) for m, t in b["troughs"].items()}
    ok = len(b["events"]) >= b["gaps"] - 1 and bool(keeps) and all(keeps.values())
    wide = ", ".join(f"{m} {t[0]:.2f}->{t[-1]:.2f}" for m, t in b["troughs"].items() if len(t)) or "none trained"
    return Finding("t3", claim, HOLDS if ok else FAILS,
                   f"{b['narrow']}: {len(b['events'])} overwrite events of s_r in {b['gaps']} gaps; s_r before each burst, "
                   f"second half, at widths >= N_crit {b['critical_width']}: {wide}", rule)


T1 = FindingSpec("t1", critical_width_finding, order=10, kinds=("toy",))
T2 = FindingSpec("t2", learning_order_finding, order=20, kinds=("toy",))
T3 = FindingSpec("t3", bursty_finding, order=30, kinds=("toy",))


# -- figures -------------------------------------------------------------------------------------
def draw_signal(data: RunData):
    toy, metrics = data.analyses["toy"], data.metrics
    fig, axes = grid(2, ncols=2, sharex=False, size=(5.5, 3.4))
    cmap = colormap("viridis")
    widths = list(toy.width.values)
    for i, m in enumerate(toy.model.values):
        axes[0].plot(metrics.step.values, metrics.retained_signal.sel(model=m, task=data.rare_task).values,
                     color=cmap(i / max(len(widths) - 1, 1)), label=str(m), lw=1.2)
    axes[0].set_ylabel("s_r(U), rare task")
    axes[0].set_title("rare-task signal over training, one line per width", fontsize=10)
    step_axis(axes[0])
    axes[0].legend(fontsize=6, ncol=2)
    for k, task in enumerate(data.tasks):
        color = colormap("tab10")(k)
        axes[1].plot(widths, toy.final_signal.sel(task=task).values, "o", color=color, label=f"{task} measured", ms=4)
        axes[1].plot(widths, toy.predicted_signal.sel(task=task).values, "-", color=color, alpha=0.6, lw=1)
    pred, meas = toy.attrs["critical_width"], float(toy.attrs["measured_critical_width"])
    axes[1].axvline(pred, color="black", ls="--", lw=1, label=f"predicted N_crit = {pred}")
    if np.isfinite(meas):
        axes[1].axvline(meas, color="red", ls=":", lw=1.5, label=f"measured = {meas:.0f}")
    axes[1].set_xlabel("encoder width N")
    axes[1].set_ylabel("final s_k (dots) vs theory (lines)")
    axes[1].set_title("critical width: theory vs measurement", fontsize=10)
    axes[1].legend(fontsize=6)
    axes[1].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def draw_order(data: RunData):
    toy = data.analyses["toy"]
    widest = str(toy.model.values[-1])
    steps = toy.learned_step.sel(model=widest).values
    util = toy.utility.values
    if not np.isfinite(steps).any():
        raise Skip(f"{widest} learned no direction (gain >= {LEARNED})")
    from matplotlib.ticker import NullFormatter

    fig = figure((5.5, 3.8))
    ax = fig.subplots()
    for k, task in enumerate(data.tasks):
        ax.scatter(util[k], steps[k], label=task, s=18, color=colormap("tab10")(k))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    rho, n = learning_order(data)
    ax.set_xlabel("utility pi_k lambda_kj")
    ax.set_ylabel(f"step the direction is learned (gain >= {LEARNED})")
    ax.set_title(f"learning order in {widest}: Spearman(utility, speed) = {rho:.3f} ({n} directions)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


TOY_SIGNAL = FigureSpec(
    "Rare-task signal and the critical width",
    "Left: s_r(U) = Tr(P_U C_r)/Tr(C_r) over training per width. Right: final s_k per task against the "
    "top-N-eigenspace prediction; dashed: predicted N_crit, dotted: measured.",
    ("metrics", "toy"), draw_signal, order=5, kinds=("toy",))
TOY_ORDER = FigureSpec(
    "Learning order",
    "Step at which each (task, direction) is learned by the widest model against its utility pi_k lambda_kj.",
    ("toy",), draw_order, order=6, kinds=("toy",))
