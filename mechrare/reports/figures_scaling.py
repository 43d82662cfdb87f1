"""Report figures across model size and over training: the paper's interference-against-size plot,
per-task loss curves, and the SAE features (registered in FIGURES beside :mod:`mechrare.reports.figures`)."""

from __future__ import annotations

import numpy as np

from mechrare.reports.data import RunData, steps_of
from mechrare.reports.findings import interference_by_model
from mechrare.reports.plotting import colormap, grid, model_label, model_styles, seed_band, seed_mean, task_title
from mechrare.reports.registry import FIGURES, FigureSpec, Skip
from mechrare.stats import seed_interval

SIZE_PANELS = (
    ("cos", "cos(g_nt, g_r) on the rare task's neurons\n(< 0: interference)"),
    ("coupling", "|cos(g_nt, g_r)| (coupling, finding d)"),
    ("log_ratio", "log10 ||g_r|| / ||g_nt||"),
)


def size_points(data: RunData) -> dict[str, list[tuple[float, float, float, int]]]:
    """Per measure, one (n_params, mean over seeds, 95% low, 95% high) point per ladder model
    (the interval: t over seeds, NaN with fewer than 2 seeds)."""
    per = interference_by_model(data)
    out = {key: [] for key, _ in SIZE_PANELS}
    for m, measures in per.items():
        for key, _ in SIZE_PANELS:
            values = measures[key][np.isfinite(measures[key])]
            if not len(values):
                continue
            est = seed_interval(values)
            out[key].append((float(data.n_params(m)), float(values.mean()), est.low, est.high, len(values)))
    return out


def _count(n: float) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k"


def draw_interference_size(data: RunData):
    if len(data.ladder) < 2:
        raise Skip("needs at least two ladder sizes")
    points = size_points(data)
    fig, axes = grid(len(SIZE_PANELS), ncols=3)
    for ax, (key, label) in zip(axes, SIZE_PANELS):
        pts = np.array([p[:4] for p in points[key]], dtype=float).reshape(-1, 4)
        if not len(pts):
            continue
        x, y, lo, hi = pts.T
        have = np.isfinite(lo) & np.isfinite(hi)
        ax.plot(x, y, "o-", color="tab:red" if key == "cos" else "tab:blue")
        if have.any():
            ax.errorbar(x[have], y[have], yerr=[y[have] - lo[have], hi[have] - y[have]], fmt="none", ecolor="black", capsize=3)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, [_count(v) for v in x], fontsize=7)
        ax.set_xlabel("parameters")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        if key == "cos":
            ax.axhline(0, color="black", lw=0.6)
    n = max((p[4] for pts in points.values() for p in pts), default=0)
    axes[0].set_ylabel(f"{data.rare_task}: mean over checkpoints\n({n} seed{'s' if n != 1 else ''}; bars: 95% CI over seeds)", fontsize=8)
    fig.tight_layout()
    return fig


def draw_loss(data: RunData):
    ds, styles = data.metrics, model_styles(data)
    if "loss" not in ds:
        raise Skip("metrics.nc has no per-task loss")
    fig, axes = grid(len(data.tasks))
    for ax, task in zip(axes, data.tasks):
        for m in data.ladder + data.interventions:
            seed_band(ax, ds.tokens.values, ds.loss.sel(model=m, task=task), ds.tokens.values > 0, label=model_label(data, m), **styles[m])
        ax.set_xscale("log")
        ax.set_xlabel("training tokens")
        ax.set_title(task_title(data, task), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("eval loss on answer tokens (nats)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def draw_sae(data: RunData):
    ds = data.analyses["sae"]
    models = [m for m in data.models if m in ds.model.values]
    tasks = [str(t) for t in ds.task.values]
    colors = colormap("tab10")
    fig, axes = grid(2 * len(models), ncols=2, size=(6.5, 2.6))
    for i, m in enumerate(models):
        left, right = axes[2 * i], axes[2 * i + 1]
        for k, t in enumerate(tasks):
            steps, n = steps_of(ds, m, "n_task_features")
            seed_band(left, steps, n.sel(task=t).sum("layer", min_count=1), label=t, color=colors(k))
            steps, kept = steps_of(ds, m, "feature_retention")
            seed_band(right, steps, kept.sel(task=t).mean("layer"), color=colors(k))
            base = seed_mean(ds.seed_match_task.sel(model=m, task=t)).mean("layer")
            if np.isfinite(float(base)):
                right.axhline(float(base), color=colors(k), ls=":", lw=1)
        left.set_title(f"{m}: task features (all layers)", fontsize=9)
        right.set_title(f"{m}: task features kept at the next checkpoint\n(dotted: matched by another seed's SAE)", fontsize=9)
        right.set_ylim(-0.02, 1.02)
        for ax in (left, right):
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


FIGURES.add("loss", FigureSpec(
    "Task loss against training tokens",
    "Eval loss on each task's answer tokens (more telling than accuracy near chance); one line per model (dashed: "
    "interventions), mean over training seeds, shaded from the lowest to the highest seed.",
    ("metrics",), draw_loss, order=12))
FIGURES.add("interference_size", FigureSpec(
    "Interference against model size (the paper's plot)",
    "The rare task's cos(g_nt, g_r) on its top-K neurons (left; below 0: the rest of the batch pushes against it), its "
    "magnitude (middle, what finding (d) tests) and the rare task's gradient relative to the rest (right), each the mean "
    "over checkpoints after step 0, per ladder model; bars: 95% t intervals over training seeds. Look for the left panel "
    "rising toward 0 and the middle one falling with size: larger models interfere less.",
    ("interference",), draw_interference_size, order=42))
FIGURES.add("sae", FigureSpec(
    "SAE task features and their retention",
    "Left: features of each checkpoint's SAE specific to a task (>= specificity of their activation mass on its tokens), "
    "summed over layers. Right: the share of them matched (decoder cosine) at the next analysed checkpoint; dotted: the "
    "seed baseline, the share an SAE trained with another seed on the same activations matches. Retention below the "
    "dotted line is more turnover than SAE training noise alone gives.",
    ("sae",), draw_sae, order=35))
