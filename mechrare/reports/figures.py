"""The ladder report's figures: pure functions RunData -> matplotlib Figure, registered in FIGURES.

Each :class:`~mechrare.reports.registry.FigureSpec` names the datasets it
needs; the report draws those whose datasets are present and lists the others
with the command that makes them. Figures are plain ``matplotlib.figure.Figure``
objects (:mod:`mechrare.reports.plotting`): pyplot and the backend are left alone.
"""

from __future__ import annotations

import numpy as np

from mechrare.reports.data import RunData, retention_events, steps_of
from mechrare.reports.plotting import colormap, figure, grid, model_label, model_styles, seed_band, seed_mean, step_axis, task_title
from mechrare.reports.readings import (accuracy_reading, bursts_reading, coupling_reading, cosine_reading, intervention_reading,
                                       neurons_reading, probes_reading, timeline_reading)
from mechrare.reports.registry import FIGURES, FigureSpec, Skip
from mechrare.reports.sweep import chance_of


# -- accuracy ------------------------------------------------------------------------------
def accuracy_title(data: RunData, task: str, chance: float | None) -> str:
    """The task, its share, its eval set (items; held-out, or recall: the training set) and chance level."""
    record = data.manifest.task(task)
    kind = "recall (eval = training set)" if record.split == "all" else "held-out"
    said = f", chance {chance:.3f}" if chance is not None else ""
    return f"{task_title(data, task)}\n{record.eval_examples} {kind} items{said}"


def draw_accuracy(data: RunData):
    ds, styles = data.metrics, model_styles(data)
    fig, axes = grid(len(data.tasks))
    for ax, task in zip(axes, data.tasks):
        for m in data.ladder + data.interventions:  # sweep points: the report's frequency-sweep table
            acc = ds.accuracy.sel(model=m, task=task)
            seed_band(ax, ds.tokens.values, acc, ds.tokens.values > 0, label=model_label(data, m), **styles[m])
        chance = chance_of(data, task)
        if chance is not None:
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("training tokens")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(accuracy_title(data, task, chance), fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("eval accuracy")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# -- probes ---------------------------------------------------------------------------------
#: a control probe scoring this high (random labels per input token, memorised) makes selectivity meaningless
CONTROL_UNINFORMATIVE = 0.9


def probe_title(ds, target: str) -> str:
    """A probe panel's title: the target, its chance level (1 / classes), held-out items, and what its
    control probe says (mean over models, steps and depths; selectivity is uninformative where it is high)."""
    n_classes = int(ds.n_classes.sel(target=target))
    n_test = int(ds.n_test.sel(target=target))
    control = float(ds.control_score.sel(target=target).mean())
    note = "selectivity uninformative" if control >= CONTROL_UNINFORMATIVE else f"control {control:.2f}"
    return f"{target}\nchance {1 / n_classes:.2f}, {n_test} test items\n{note}"


def draw_probes(data: RunData):
    ds = data.analyses["probes"]
    targets = [f"{t}/answer" for t in data.tasks if f"{t}/answer" in ds.target.values]
    models = [m for m in data.models if m in ds.model.values]
    fig = figure((3.6 * len(targets), 1.9 * len(models) + 0.9))
    axes = fig.subplots(len(models), len(targets), squeeze=False)
    steps = ds.step.values
    image = None
    for i, m in enumerate(models):
        for j, target in enumerate(targets):
            ax = axes[i, j]
            depth = "layer" if "layer" in ds.probe_score.dims else "block"
            scores = seed_mean(ds.probe_score.sel(model=m, target=target)).transpose(depth, "step").values
            image = ax.imshow(scores, aspect="auto", origin="lower", vmin=0, vmax=1, cmap="magma", interpolation="nearest")
            ticks = np.unique(np.linspace(0, len(steps) - 1, 5).astype(int))
            ax.set_xticks(ticks, [str(steps[k]) for k in ticks], fontsize=7)
            ax.set_yticks(range(scores.shape[0]), [str(v) for v in ds[depth].values], fontsize=7)
            if i == 0:
                ax.set_title(probe_title(ds, target), fontsize=7.5)
            if j == 0:
                ax.set_ylabel(f"{m}\n{depth}", fontsize=8)
            if i == len(models) - 1:
                ax.set_xlabel("step (checkpoint index spacing)", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="probe score (held-out)")
    return fig


# -- neurons ----------------------------------------------------------------------------------
def mlp_neurons(ds, model: str) -> int:
    """The model's own MLP neurons (all blocks) in neurons.nc: the ones with an allocation at some step;
    the dataset pads smaller models to the largest one's blocks and width with NaN."""
    alloc = ds.allocation.sel(model=model)
    alloc = alloc.isel(seed=0) if "seed" in alloc.dims else alloc
    return int(np.isfinite(alloc).any(("step", "task")).sum())


def draw_neurons(data: RunData):
    ds = data.analyses["neurons"]
    models = [m for m in data.models if m in ds.model.values]
    fig, axes = grid(len(models), sharex=False)
    tasks = [str(t) for t in ds.task.values]
    colors = colormap("tab10")
    for ax, m in zip(axes, models):
        var = "n_claimed" if "n_claimed" in ds else "n_claimed_attribution"  # the paper's task neurons, where measured
        steps, claimed = steps_of(ds, m, var)
        counts = seed_mean(claimed.sum("block")).transpose("task", "step").values
        x = np.arange(len(steps))
        ax.stackplot(x, counts, labels=tasks, colors=[colors(k) for k in range(len(tasks))], alpha=0.85)
        ticks = np.unique(np.linspace(0, len(steps) - 1, 6).astype(int))
        ax.set_xticks(ticks, [str(steps[k]) for k in ticks], fontsize=7)
        ax.set_xlabel("step (checkpoint index spacing)")
        n = mlp_neurons(ds, m)  # this model's own, not the padded array's
        how = "task neurons" if var == "n_claimed" else "attribution"
        ax.set_title(f"{m}: MLP neurons owned, {how} (of {n}){', mean over seeds' if 'seed' in claimed.dims and claimed.sizes['seed'] > 1 else ''}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("neurons claimed")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


# -- interference ---------------------------------------------------------------------------
def draw_cosine(data: RunData):
    ds, styles = data.analyses["interference"], model_styles(data)
    common, rare = data.common_task, data.rare_task
    fig, axes = grid(2, ncols=2, sharex=True)
    for m in [m for m in data.models if m in ds.model.values]:
        steps, cos = steps_of(ds, m, "grad_cosine")
        seed_band(axes[0], steps, cos.sel(task=common, other_task=rare), label=model_label(data, m), **styles[m])
        seed_band(axes[1], steps, ds.cos_nontask_ref.sel(model=m, task=rare).sel(step=steps), **styles[m])
    axes[0].set_title(f"cos(g {common}, g {rare}), held-out gradients", fontsize=10)
    axes[1].set_title(f"cos(g non-task, g {rare}) on {rare}'s top neurons", fontsize=10)
    for ax in axes:
        ax.axhline(0, color="black", lw=0.8)
        step_axis(ax)
        ax.set_ylabel("cosine (< 0: interference)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def draw_coupling(data: RunData):
    ds, styles = data.analyses["interference"], model_styles(data)
    rare = data.rare_task
    fig, axes = grid(2, ncols=2, sharex=True)
    if "abs_cos_nontask_ref" not in ds:
        axes[0].text(0.5, 0.5, data.concrete("interference.nc predates the coupling measure:\nrerun `mechrare analyze RUN --only interference`"),
                     ha="center", va="center", transform=axes[0].transAxes, fontsize=9)
        return fig
    for m in [m for m in data.models if m in ds.model.values]:
        steps, coupling = steps_of(ds, m, "abs_cos_nontask_ref")
        seed_band(axes[0], steps, coupling.sel(task=rare), label=model_label(data, m), **styles[m])
        seed_band(axes[1], steps, ds.grad_ratio_ref.sel(model=m, task=rare).sel(step=steps), **styles[m])
    axes[0].set_title(f"coupling |cos(g non-task, g {rare})| on its top neurons", fontsize=10)
    axes[1].set_title(f"||g {rare}|| / ||g non-task|| on its top neurons", fontsize=10)
    axes[1].set_yscale("log")
    for ax in axes:
        step_axis(ax)
    axes[0].set_ylabel("|cosine|")
    axes[1].set_ylabel("gradient-norm ratio")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


#: cos(g_nt, g_r) < 0 (the rest of the batch pushes against the task: interference) in the warm colour
INTERFERENCE_CMAP = "coolwarm_r"
INTERFERENCE_LABEL = "mean cos(g_nt, g_r) over the event\nred < 0: interference; blue > 0: aligned"


def draw_timeline(data: RunData):
    ds = data.analyses["retention"]
    inter = data.analyses.get("interference")
    models = [m for m in data.models if m in ds.model.values]
    events = retention_events(ds)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig, axes = grid(len(models), ncols=1, size=(10, 2.4), sharex=True)
    scale = max([abs(e["interference"]) for e in events if not np.isnan(e.get("interference", np.nan))] + [0.02])
    norm = Normalize(-scale, scale)
    cmap = colormap(INTERFERENCE_CMAP)
    rows = [f"{t} / {s}" for t in ds.task.values for s in ds.signal.values]
    last = float(max(ds.peak_step.max(), ds.overwrite_step.max(), 1)) if events else 1.0
    if inter is not None:
        last = max(last, float(inter.step.max()))
    for ax, m in zip(axes, models):
        for e in [e for e in events if e["model"] == m]:
            y = rows.index(f"{e['task']} / {e['signal']}")
            color = cmap(norm(np.nan_to_num(e.get("interference", 0.0))))
            tested = e.get("calibrated", True)  # untested (thresholded) events are drawn faint
            ax.plot([e["peak_step"], e["overwrite_step"]], [y, y], lw=7, color=color, solid_capstyle="butt", alpha=1.0 if tested else 0.35)
            ax.plot([e["overwrite_step"]], [y], marker="v", color="black", ms=5)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_ylim(-0.5, len(rows) - 0.5)
        ax.set_title(f"{m}: overwrite events (bar: peak -> overwrite, coloured by mean cos(g_nt, g_r) over it)", fontsize=9)
        step_axis(ax)
        if inter is not None and m in inter.model.values:
            twin = ax.twinx()
            steps, nt = steps_of(inter, m, "cos_nontask_ref")
            twin.plot(steps, seed_mean(nt.sel(task=data.rare_task)).values, color="tab:orange", lw=1.0, alpha=0.7)
            twin.axhline(0, color="tab:orange", lw=0.5, ls=":")
            twin.set_ylabel(f"cos(g_nt, g {data.rare_task})", fontsize=7, color="tab:orange")
        ax.set_xlim(0, last * 1.05)
    fig.tight_layout()
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.6, pad=0.1, label=INTERFERENCE_LABEL)
    return fig


# -- intervention ------------------------------------------------------------------------------
def draw_intervention(data: RunData):
    ds, styles = data.metrics, model_styles(data)
    rare = data.rare_task
    shown = data.interventions or [m for m in data.sweep_points if data.intervention(m).upsample.get(rare, 1) > 1
                                    and data.ladder and data.intervention(m).base == data.ladder[0]]
    if not shown:
        raise Skip("this run has no intervention model; add [[ladder.interventions]] (the quickstart has one)")
    fig, axes = grid(2, ncols=2, sharex=False)
    for m in data.ladder + shown:
        seed_band(axes[0], ds.tokens.values, ds.accuracy.sel(model=m, task=rare), ds.tokens.values > 0,
                  label=model_label(data, m), **styles[m])
    axes[0].set_xscale("log")
    axes[0].set_xlabel("training tokens")
    axes[0].set_ylabel(f"{rare} accuracy")
    axes[0].set_title(f"rare task {rare} over training", fontsize=10)
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    order = data.ladder + shown
    finals = [data.final("accuracy", m, rare) for m in order]
    bars = axes[1].bar(range(len(order)), finals, color=[styles[m]["color"] for m in order])
    for i, m in enumerate(order):  # each seed's final accuracy
        per_seed = data.final_by_seed("accuracy", m, rare)
        axes[1].plot(np.full(len(per_seed), i), per_seed, "o", color="black", ms=3)
    for bar, m in zip(bars, order):
        if data.intervention(m):
            bar.set_hatch("//")
            bar.set_edgecolor("black")
    axes[1].set_xticks(range(len(order)), order, rotation=20, fontsize=8)
    axes[1].set_ylabel("final accuracy (mean of last 3 checkpoints; dots: seeds)")
    axes[1].set_title("upsampled small model (hatched) vs the ladder", fontsize=10)
    axes[1].grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


# -- bursts ------------------------------------------------------------------------------------
def draw_bursts(data: RunData):
    ds = data.get("retention")
    if ds is None or "burst_every" not in ds or not bool((ds.burst_every > 0).any()):
        raise Skip("no task of this run is trained in bursts; give one `schedule = { every = N }` in [mixture] tasks")
    bursty = [str(t) for t in ds.task.values if bool((ds.burst_every.sel(task=t) > 0).any())]
    task = data.rare_task if data.rare_task in bursty else bursty[0]
    models = [m for m in data.models if m in ds.model.values and int(ds.burst_every.sel(model=m, task=task)) > 0]
    fig, axes = grid(len(models), sharex=True)
    styles = model_styles(data)
    steps = data.metrics.step.values
    for ax, m in zip(axes, models):
        for b in np.unique(ds.cycle_burst_step.sel(model=m, task=task).values):
            if np.isfinite(b):
                ax.axvline(b, color="0.75", lw=0.6, zorder=0)
        seed_band(ax, steps, data.metrics.loss.sel(model=m, task=task), label=model_label(data, m), **styles[m])
        frac = ds.forgetting_fraction.sel(model=m, task=task).values.ravel()
        frac = frac[np.isfinite(frac)]
        said = (f"{frac.mean():.2f}" + (f" ({frac.min():.2f} to {frac.max():.2f})" if len(frac) > 1 else "")) if len(frac) else "n/a"
        ax.set_title(f"{m}: forgotten between bursts {said}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"{task} held-out loss")
    fig.tight_layout()
    return fig


FIGURES.add("accuracy", FigureSpec(
    "Task accuracy against training tokens",
    "Held-out exact-match accuracy per task; one line per model (dashed: interventions), the mean over training "
    "seeds, shaded from the lowest to the highest seed.",
    ("metrics",), draw_accuracy, order=10, reading=accuracy_reading))
FIGURES.add("probes", FigureSpec(
    "Probe score per layer and checkpoint",
    "Held-out score of the linear probe for each task's answer, layer (y) by checkpoint (x), per model (row); mean over training seeds.",
    ("probes",), draw_probes, order=20, reading=probes_reading))
FIGURES.add("neurons", FigureSpec(
    "Neurons claimed per task",
    "MLP neurons each task owns over training (stacked), per model; the rest are unowned.",
    ("neurons",), draw_neurons, order=30, kinds=("ladder", "toy"), reading=neurons_reading))
FIGURES.add("cosine", FigureSpec(
    "Common-vs-rare gradient cosine",
    "Mean over training seeds (shaded: lowest to highest seed). Left: cosine between the common and the rare task's held-out loss gradients. "
    "Right: the paper's protocol, cosine between the non-task training gradient and the rare task's gradient on its top neurons.",
    ("interference",), draw_cosine, order=40, kinds=("ladder", "toy"), reading=cosine_reading))
FIGURES.add("coupling", FigureSpec(
    "The rare task's coupling and relative gradient on its neurons",
    "Mean over training seeds (shaded: lowest to highest seed). Left: |cos(g_nt, g_r)| on the rare task's top-K neurons, "
    "what finding (d) tests. Right: the norm of the rare task's held-out gradient over that of the training batch's "
    "non-task part, on the same neurons.",
    ("interference",), draw_coupling, order=45, reading=coupling_reading))
FIGURES.add("timeline", FigureSpec(
    "Overwrite events with interference",
    "Each bar runs from a signal's peak to the checkpoint where it was overwritten, coloured by the interference measured "
    "over that window; the orange line is the rare task's cos(g_nt, g_r).",
    ("retention",), draw_timeline, order=50, kinds=("ladder", "toy"), reading=timeline_reading))
FIGURES.add("bursts", FigureSpec(
    "Bursty task: learn-then-forget cycles",
    "Held-out loss of the task trained in bursts, per model (mean over seeds, shaded: lowest to highest seed); grey lines "
    "mark the bursts. The title gives retention.nc's forgetting_fraction: the share of what each burst taught that the gap "
    "to the next burst undid, over the second half of training (1: forgotten, 0: accumulated; a description, not a test).",
    ("metrics", "retention"), draw_bursts, order=55, reading=bursts_reading))
FIGURES.add("intervention", FigureSpec(
    "Intervention: the rare task upsampled",
    "Rare-task accuracy of the upsampled small model beside the ladder (mean over seeds, shaded / dots: each seed).",
    ("metrics",), draw_intervention, order=60, reading=intervention_reading))
