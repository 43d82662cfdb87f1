"""Report figures inside the model: probes for the tasks' intermediate latents, and interference per
parameter group (embedding, each block, head). Registered in FIGURES beside the other figure modules."""

from __future__ import annotations

import warnings

import numpy as np

from mechrare.reports.data import RunData, steps_of
from mechrare.reports.figures import probe_title
from mechrare.reports.plotting import error_bars, grid, model_label, model_styles, seed_band, step_axis
from mechrare.reports.registry import FIGURES, FigureSpec, Skip
from mechrare.stats import seed_interval

MAX_LATENTS = 9  # panels; the rest are in probes.nc


def latent_targets(data: RunData, ds) -> list[str]:
    """Probe targets that are not a task's answer (``task/latent``), the rare and common task's first."""
    order = {t: i for i, t in enumerate(sorted(data.tasks, key=lambda t: (t != data.rare_task, t != data.common_task, t)))}
    targets = [str(t) for t in ds.target.values if not str(t).endswith("/answer") and str(t).split("/")[0] in order]
    return sorted(targets, key=lambda t: (order[t.split("/")[0]], t))[:MAX_LATENTS]


def best_depth(ds, model: str, target: str):
    """(steps, [seed, step] probe score at the best depth of each checkpoint) of one target."""
    depth = "layer" if "layer" in ds.probe_score.dims else "block"
    steps, da = steps_of(ds, model, "probe_score")
    return steps, da.sel(target=target).max(depth)


def draw_latents(data: RunData):
    ds = data.analyses["probes"]
    targets = latent_targets(data, ds)
    if not targets:
        raise Skip("the tasks' probe targets are their answers only")
    models = [m for m in data.ladder + data.interventions if m in ds.model.values]
    styles = model_styles(data)
    fig, axes = grid(len(targets), ncols=3, size=(4.2, 2.9))
    for ax, target in zip(axes, targets):
        for m in models:
            steps, best = best_depth(ds, m, target)
            seed_band(ax, steps, best, label=model_label(data, m), **styles[m])
        n = int(ds.n_classes.sel(target=target))
        ax.axhline(1 / n, color="grey", ls=":", lw=1, label="chance")
        ax.set_ylim(-0.02, 1.02)
        step_axis(ax)
        ax.set_title(probe_title(ds, target), fontsize=7.5)
    axes[0].set_ylabel("probe score, best depth (held-out)")
    axes[0].legend(fontsize=6.5)
    fig.tight_layout()
    return fig


def latents_reading(data: RunData) -> str:
    ds = data.analyses.get("probes")
    if ds is None or not data.ladder:
        return ""
    parts = []
    for target in latent_targets(data, ds)[:4]:
        finals = []
        for m in (data.ladder[0], data.ladder[-1]):
            if m in ds.model.values:
                steps, best = best_depth(ds, m, target)
                last = best.isel(step=-1)
                finals.append(f"{m} {float(last.mean()):.2f}")  # mean over seeds
        parts.append(f"{target}: " + ", ".join(finals))
    return "last checkpoint, best depth: " + "; ".join(parts) + "." if parts else ""


def group_cosines(data: RunData, ds, model: str) -> tuple[list[str], np.ndarray]:
    """(parameter groups, [seed, group] cosine between the common and the rare task's held-out gradients on
    each group, averaged over the checkpoints after step 0)."""
    da = ds.grad_cosine_layer.sel(model=model, task=data.common_task, other_task=data.rare_task)
    da = da.sel(step=da.step > 0)
    if "seed" not in da.dims:
        da = da.expand_dims(seed=[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a block this model lacks: NaN
        values = np.nanmean(da.transpose("seed", "param_group", "step").values, axis=-1)
    return [str(g) for g in ds.param_group.values], values


def draw_layers(data: RunData):
    ds = data.analyses["interference"]
    if data.common_task == data.rare_task or "grad_cosine_layer" not in ds:
        raise Skip("needs a common and a rare task, and interference.nc's grad_cosine_layer")
    models = [m for m in data.ladder + data.interventions if m in ds.model.values]
    styles = model_styles(data)
    fig, axes = grid(1, ncols=1, size=(7.5, 3.4))
    ax = axes[0]
    for i, m in enumerate(models):
        groups, values = group_cosines(data, ds, m)
        have = np.isfinite(values).any(axis=0)
        x = np.arange(len(groups))[have] + (i - (len(models) - 1) / 2) * 0.08
        ests = [seed_interval(values[:, g]) for g in np.flatnonzero(have)]
        y = np.array([e.value for e in ests])
        ax.plot(x, y, marker="o", label=model_label(data, m), **styles[m])
        error_bars(ax, x, y, [e.low for e in ests], [e.high for e in ests], ecolor=styles[m]["color"], capsize=2)
    groups = [str(g) for g in ds.param_group.values]
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel(f"cos(g_{data.common_task}, g_{data.rare_task})\n(< 0: the tasks pull apart)", fontsize=8)
    ax.set_xlabel("parameter group")
    ax.set_title("common vs rare task gradient cosine per parameter group, mean over checkpoints after step 0\n"
                 "(bars: 95% t interval over seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def layers_reading(data: RunData) -> str:
    ds = data.analyses.get("interference")
    if ds is None or "grad_cosine_layer" not in ds or data.common_task == data.rare_task:
        return ""
    parts = []
    for m in data.ladder:
        if m not in ds.model.values:
            continue
        groups, values = group_cosines(data, ds, m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
        cells = ", ".join(f"{g} {v:+.3f}" for g, v in zip(groups, mean) if np.isfinite(v))
        below = [g for g, v in zip(groups, mean) if np.isfinite(v) and v < 0]
        parts.append(f"{m}: {cells} ({'below 0 at ' + ', '.join(below) if below else 'none below 0'})")
    return "mean over seeds: " + "; ".join(parts) + "." if parts else ""


FIGURES.add("latents", FigureSpec(
    "Probes for the tasks' intermediate latents",
    "Held-out score of the linear probe for each latent a task computes on the way to its answer (compare's ranks, "
    "modadd's partial sums, lookup's query key), at the best depth of each checkpoint; one line per model, mean over "
    "seeds (shaded: lowest to highest seed); dotted: chance. Each title gives the control probe's score: where it is "
    "high the latent is readable from the token at the probed position itself (selectivity uninformative), so a high "
    "score there says nothing about what the model computed; elsewhere, a latent decodable before the answer is "
    "learned is task signal that accuracy does not show.",
    ("probes",), draw_latents, order=21, reading=latents_reading))
FIGURES.add("layers", FigureSpec(
    "Interference per parameter group",
    "Cosine between the common and the rare task's held-out loss gradients restricted to each parameter group "
    "(embedding, each block, head), the mean over checkpoints after step 0, per model; bars: 95% t interval over "
    "seeds. Where it is most negative is where the common task's updates undo the rare task's.",
    ("interference",), draw_layers, order=43, reading=layers_reading))
