"""Finding (f) and its figure: are the neurons a task claims causal for it? (analyses/ablation.nc)

Per training seed, the *excess* of a (model, task) is the rise of the task's answer loss when its
claimed MLP neurons are zeroed minus the mean rise over matched random draws (as many neurons per
block, not owned by the task), at the model's last ablated checkpoint
(:mod:`mechrare.analyses.ablation`). The finding averages the excess over every (model, task) that
owns neurons there, per seed, and decides on the 95% t interval over seeds. The rule was fixed
before any ablation.nc was looked at.
"""

from __future__ import annotations

import warnings

import numpy as np

from mechrare.reports.data import RunData, steps_of
from mechrare.reports.findings import _decide, _with, finding
from mechrare.reports.plotting import grid, model_styles
from mechrare.reports.registry import FIGURES, INCONCLUSIVE, MISSING, FigureSpec, Finding, Skip
from mechrare.stats import MIN_SEEDS, seed_interval

F_CLAIM = "(f) The neurons a task claims are causal for it: zeroing them raises its loss more than zeroing as many random neurons"
F_RULE = (
    "per seed, excess = rise of the owner's answer loss with its claimed MLP neurons zeroed minus the mean rise over the "
    "matched random draws (as many neurons per block, not owned by the task), averaged over every (model, task) owning "
    "neurons at the model's last ablated checkpoint; holds if the 95% interval over seeds lies above 0, does not hold if "
    "it lies below 0, else inconclusive"
)
F_TEST = f"mean over seeds +- t(0.975, seeds - 1) x seed s.e. of the per-seed mean excess; needs >= {MIN_SEEDS} seeds"


def last_ablated(ds) -> dict[str, int]:
    """Each model's last step with an ablation (any seed, any task)."""
    out = {}
    for m in (str(x) for x in ds.model.values):
        steps, _ = steps_of(ds, m, "rise_owned")
        if len(steps):
            out[m] = int(steps[-1])
    return out


def _seeded(da):
    return da if "seed" in da.dims else da.expand_dims(seed=[0])


def excess_table(ds) -> tuple[dict[tuple[str, str], np.ndarray], list[int]]:
    """{(model, task): [seed] excess at the model's last ablated checkpoint (NaN: the task owned too few
    neurons under that seed)}, for the pairs with any value; and the seeds."""
    table, seeds = {}, [int(s) for s in _seeded(ds.excess).seed.values]
    for m, step in last_ablated(ds).items():
        for t in ds.task.values:
            values = _seeded(ds.excess.sel(model=m, step=step, task=t)).transpose("seed").values.astype(float)
            if np.isfinite(values).any():
                table[(m, str(t))] = values
    return table, seeds


@finding("f", 60, figure="ablation")
def claimed_neurons_are_causal(data: RunData) -> Finding:
    ds = data.analyses.get("ablation")
    if ds is None:
        return Finding("f", F_CLAIM, MISSING, "needs ablation.nc (`mechrare analyze RUN --only ablation`)", F_RULE)
    table, seeds = excess_table(ds)
    if not table:
        return Finding("f", F_CLAIM, MISSING, "no task owns neurons at any ablated checkpoint (neurons.nc's "
                       f"{'owner' if ds.attrs.get('measure', 'task_neurons') == 'task_neurons' else 'owner_attribution'}), "
                       "so there is nothing to ablate", F_RULE)
    stack = np.stack(list(table.values()))  # [pair, seed]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_seed = np.nanmean(stack, axis=0)
    est = seed_interval(per_seed)
    draws = int(ds.sizes["draw"])
    rank = _seeded(ds.rank_p)
    last = last_ablated(ds)
    wins, cases = 0, 0
    for (m, t) in table:
        p = rank.sel(model=m, step=last[m], task=t).values
        cases += int(np.isfinite(p).sum())
        wins += int((p <= 1 / (draws + 1) + 1e-12).sum())
    pairs = ", ".join(f"{m}/{t} {np.nanmean(v):+.3f}" for (m, t), v in table.items())
    evidence = (f"mean excess per (model, task), nats, mean over seeds: {pairs}; zeroing the claimed neurons raised the loss more "
                f"than every one of the {draws} random draws in {wins} of {cases} (model, task, seed) cases; measure: "
                f"{ds.attrs.get('measure', 'task_neurons')}")
    f = Finding("f", F_CLAIM, INCONCLUSIVE, evidence, F_RULE)
    _decide(f, est, holds_above=True)
    return _with(f, est, F_TEST)


def draw_ablation(data: RunData):
    ds = data.analyses["ablation"]
    table, _ = excess_table(ds)
    if not table:
        raise Skip("no task owns neurons at any ablated checkpoint")
    tasks = [t for t in (str(x) for x in ds.task.values) if any(k[1] == t for k in table)]
    models = [m for m in data.models if any(k[0] == m for k in table)]
    styles = model_styles(data)
    last = last_ablated(ds)
    fig, axes = grid(len(tasks), ncols=3, size=(4.4, 3.2), sharex=False)
    for ax, t in zip(axes, tasks):
        for i, m in enumerate(models):
            if (m, t) not in table:
                continue
            owned = _seeded(ds.rise_owned.sel(model=m, step=last[m], task=t)).values.astype(float)
            rand = _seeded(ds.rise_random.sel(model=m, step=last[m], task=t)).transpose("seed", "draw").values.astype(float)
            est = seed_interval(owned)
            color = styles.get(m, {}).get("color", "black")
            lo, hi = np.nanpercentile(rand, [2.5, 97.5])
            ax.plot([i + 0.15, i + 0.15], [lo, hi], color="grey", lw=4, alpha=0.5, solid_capstyle="butt",
                    label="random draws (2.5-97.5%)" if i == 0 else None)
            ax.plot(i + 0.15, np.nanmean(rand), "_", color="black", ms=12, label="random mean" if i == 0 else None)
            err = None if not est.measured else [[est.value - est.low], [est.high - est.value]]
            ax.errorbar(i - 0.15, est.value, yerr=err, fmt="o", color=color, mec="black", ecolor="black", capsize=3,
                        label="claimed neurons zeroed (95% CI, seeds)" if i == 0 else None)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(models)), [f"{m}\nstep {last[m]}" for m in models], fontsize=7)
        ax.set_title(f"{t}", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("rise of the task's answer loss (nats)")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def ablation_reading(data: RunData) -> str:
    ds = data.analyses.get("ablation")
    if ds is None:
        return ""
    table, _ = excess_table(ds)
    if not table:
        return "no task owns neurons at the ablated checkpoints."
    big = max(table, key=lambda k: np.nanmean(table[k]))
    return (f"largest excess {np.nanmean(table[big]):+.3f} nats ({big[0]}, {big[1]}); "
            f"{sum(np.nanmean(v) > 0 for v in table.values())} of {len(table)} (model, task) pairs above 0 on average over seeds.")


FIGURES.add("ablation", FigureSpec(
    "Are claimed neurons causal? Zeroing them against random neurons",
    "At each model's last ablated checkpoint: the rise of a task's answer loss when the MLP neurons it claims are zeroed "
    "(dots, mean over seeds with a 95% t interval), beside the rise from as many random neurons per block (grey: the "
    "middle 95% of the draws over seeds; tick: their mean). A dot above the grey bar: the claimed neurons matter more "
    "to their task than chance neurons (finding f).",
    ("ablation",), draw_ablation, order=32, reading=ablation_reading))
