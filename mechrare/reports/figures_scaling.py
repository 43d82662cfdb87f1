"""Report figures across model size and over training: the paper's interference-against-size plot,
final accuracy against parameters, per-task loss curves, ownership turnover and the SAE features
(registered in FIGURES beside :mod:`mechrare.reports.figures`), each with a reading from the run's numbers."""

from __future__ import annotations

import numpy as np

from mechrare.reports.data import FINAL_WORDS, RunData, steps_of
from mechrare.reports.findings import interference_by_model
from mechrare.reports.plotting import colormap, error_bars, grid, model_label, model_styles, seed_band, seed_mean, step_axis, task_title
from mechrare.reports.sweep import chance_of, final_interval, sweep_cells
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
        ax.plot(x, y, "o-", color="tab:red" if key == "cos" else "tab:blue")
        error_bars(ax, x, y, lo, hi, ecolor="black", capsize=3)
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


def size_lines(data: RunData, task: str) -> list[tuple[str, list[str]]]:
    """(label, ladder-ordered models) per frequency of ``task``: the ladder itself, and each swept factor."""
    found = sweep_cells(data)
    if found is None or found[0] != task:
        return [(f"share {data.shares[task]:.4f}", list(data.ladder))]
    _, factors, table = found
    out = []
    for f in factors:
        models = [table[(b, f)] for b in data.ladder if (b, f) in table]
        share = data.manifest.model(models[0]).shares.get(task, np.nan) if models else np.nan
        out.append((f"x{f:g}, share {share:.4f}", models))
    return out


def draw_accuracy_size(data: RunData):
    if len(data.ladder) < 2:
        raise Skip("needs at least two ladder sizes")
    fig, axes = grid(len(data.tasks), ncols=3, sharex=False)
    shades = colormap("plasma")
    for ax, task in zip(axes, data.tasks):
        n = max(data.eval_examples(task), 1)
        lines = size_lines(data, task)
        for i, (label, models) in enumerate(lines):
            x = np.array([data.n_params(m) for m in models], dtype=float)
            ests = [final_interval(data, m, task, n) for m in models]
            y = np.array([e.value for e in ests])
            color = shades(0.15 + 0.7 * i / max(len(lines) - 1, 1)) if len(lines) > 1 else "tab:blue"
            ax.plot(x, y, "o-", color=color, label=label)
            error_bars(ax, x, y, np.clip([e.low for e in ests], 0, 1), np.clip([e.high for e in ests], 0, 1), ecolor=color, capsize=3)
        chance = chance_of(data, task)
        if chance is not None:
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        ax.set_xscale("log")
        ax.minorticks_off()
        xs = [data.n_params(m) for m in data.ladder]
        ax.set_xticks(xs, [_count(v) for v in xs], fontsize=7)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("parameters")
        ax.set_title(task_title(data, task), fontsize=9)
        ax.grid(alpha=0.3)
        if len(lines) > 1 or chance is not None:
            ax.legend(fontsize=6.5)
    axes[0].set_ylabel(f"final accuracy ({FINAL_WORDS})\nbars: 95% CI, seeds and eval items", fontsize=8)
    fig.tight_layout()
    return fig


def accuracy_size_reading(data: RunData) -> str:
    if data.metrics is None or len(data.ladder) < 2:
        return ""
    rare, small, large = data.rare_task, data.ladder[0], data.ladder[-1]
    return (f"{rare} (rare) final accuracy {data.final('accuracy', small, rare):.3f} at {small} and "
            f"{data.final('accuracy', large, rare):.3f} at {large}; finding (a) tests the slope.")


def turnover_var(ds) -> tuple[str, str]:
    """(turnover variable, rare_to_common variable) of neurons.nc: the paper's task neurons where measured."""
    return ("turnover", "rare_to_common") if "turnover" in ds else ("turnover_attribution", "rare_to_common_attribution")


def draw_turnover(data: RunData):
    ds = data.analyses["neurons"]
    moved, to_common = turnover_var(ds)
    models = [m for m in data.ladder + data.interventions if m in ds.model.values]
    styles = model_styles(data)
    fig, axes = grid(2, ncols=2, size=(5.6, 3.2))
    for m in models:
        steps, da = steps_of(ds, m, moved)
        seed_band(axes[0], steps, da.sum(("task", "other_task")), steps > 0, label=model_label(data, m), **styles[m])
        steps, rc = steps_of(ds, m, to_common)
        seed_band(axes[1], steps, rc, steps > 0, **styles[m])
    how = "the paper's task neurons" if moved == "turnover" else "attribution"
    axes[0].set_title(f"neurons whose owner changed since the previous\ncheckpoint (owned both times; {how})", fontsize=9)
    axes[1].set_title("of them, moved to a task with a larger\ntraining share (rare -> common)", fontsize=9)
    for ax in axes:
        step_axis(ax)
    axes[0].set_ylabel("neurons (all blocks)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def turnover_reading(data: RunData) -> str:
    ds = data.analyses.get("neurons")
    if ds is None:
        return ""
    moved, to_common = turnover_var(ds)
    parts = []
    for m in data.ladder:
        if m in ds.model.values:
            total = seed_mean(ds[moved].sel(model=m).sum(("step", "task", "other_task"))).values
            rc = seed_mean(ds[to_common].sel(model=m).sum("step")).values
            parts.append(f"{m} {float(total):.1f} ({float(rc):.1f} rare -> common)")
    return "owner changes over training, mean over seeds: " + ", ".join(parts) + "." if parts else ""


def loss_reading(data: RunData) -> str:
    if data.metrics is None or "loss" not in data.metrics:
        return ""
    rare = data.rare_task
    return (f"{rare} (rare) final answer loss: " + ", ".join(f"{m} {data.final('loss', m, rare):.3f}" for m in data.ladder)
            + " nats.")


def interference_size_reading(data: RunData) -> str:
    points = size_points(data)["cos"]
    if not points:
        return ""
    return (f"{data.rare_task}: mean cos(g_nt, g_r) " + ", ".join(f"{_count(p[0])} {p[1]:+.3f}" for p in points)
            + "; finding (d) tests the coupling's slope.")


def sae_reading(data: RunData) -> str:
    ds = data.analyses.get("sae")
    if ds is None or "feature_retention" not in ds:
        return ""
    parts = []
    for t in (str(x) for x in ds.task.values):
        if not float(ds.n_task_features.sel(task=t).sum()):
            parts.append(f"{t}: no task-specific feature in any SAE")
            continue
        kept = []
        for m in data.ladder:
            if m in ds.model.values:
                value = float(ds.feature_retention.sel(model=m, task=t).mean())  # NaN-skipping: over seeds, steps, layers
                kept.append(f"{m} {value:.2f}" if np.isfinite(value) else f"{m} -")
        parts.append(f"{t}: share kept " + ", ".join(kept))
    return "; ".join(parts) + "."


FIGURES.add("accuracy_size", FigureSpec(
    "Final accuracy against parameters",
    "Each task's final accuracy per ladder size (log axis); where the run sweeps a task's frequency, one line per swept "
    "share. Dots: mean over seeds; bars: 95% interval (seeds and eval items); dotted: chance. Read up a line: does a "
    "larger model learn the task at that frequency? Across lines: how frequency substitutes for size.",
    ("metrics",), draw_accuracy_size, order=11, reading=accuracy_size_reading))
FIGURES.add("turnover", FigureSpec(
    "Ownership turnover",
    "Left: MLP neurons whose owning task changed between consecutive checkpoints (owned at both), per model, mean over "
    "seeds (shaded: lowest to highest seed). Right: those that moved to a task with a larger training share, the "
    "common task taking over neurons a rarer one had. Turnover late in training is the overwriting the paper describes.",
    ("neurons",), draw_turnover, order=31, reading=turnover_reading))
FIGURES.add("loss", FigureSpec(
    "Task loss against training tokens",
    "Eval loss on each task's answer tokens (more telling than accuracy near chance); one line per model (dashed: "
    "interventions), mean over training seeds, shaded from the lowest to the highest seed.",
    ("metrics",), draw_loss, order=12, reading=loss_reading))
FIGURES.add("interference_size", FigureSpec(
    "Interference against model size (the paper's plot)",
    "The rare task's cos(g_nt, g_r) on its top-K neurons (left; below 0: the rest of the batch pushes against it), its "
    "magnitude (middle, what finding (d) tests) and the rare task's gradient relative to the rest (right), each the mean "
    "over checkpoints after step 0, per ladder model; bars: 95% t intervals over training seeds. Look for the left panel "
    "rising toward 0 and the middle one falling with size: larger models interfere less.",
    ("interference",), draw_interference_size, order=42, reading=interference_size_reading))
FIGURES.add("sae", FigureSpec(
    "SAE task features and their retention",
    "Left: features of each checkpoint's SAE specific to a task (>= specificity of their activation mass on its tokens), "
    "summed over layers. Right: the share of them matched (decoder cosine) at the next analysed checkpoint; dotted: the "
    "seed baseline, the share an SAE trained with another seed on the same activations matches. Retention below the "
    "dotted line is more turnover than SAE training noise alone gives.",
    ("sae",), draw_sae, order=35, reading=sae_reading))
