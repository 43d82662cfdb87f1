"""Plotting helpers for figures: matplotlib ``Figure`` objects, never pyplot's global state.

Figures are built with ``matplotlib.figure.Figure`` directly, so drawing a
report (or a figure in a notebook) leaves the user's backend and pyplot's
current figure alone; a Figure displays in Jupyter and saves with ``savefig``.
"""

from __future__ import annotations

import numpy as np


def figure(figsize=(6.4, 4.8)):
    """A new Figure, not registered with pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def grid(n: int, ncols: int = 3, size=(4.2, 3.0), sharex=True, sharey=False):
    """A Figure with ``n`` axes on a grid of ``ncols`` columns (unused cells hidden): (fig, [ax])."""
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig = figure((size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def error_bars(ax, x, y, low, high, **style) -> None:
    """Interval bars from ``low`` to ``high`` around ``y`` at ``x``, where both ends are finite (an
    interval not measured, e.g. from one seed, is NaN and draws nothing); ``style``: errorbar's keywords."""
    x, y, low, high = (np.asarray(v, dtype=float) for v in (x, y, low, high))
    have = np.isfinite(low) & np.isfinite(high)
    if have.any():
        ax.errorbar(x[have], y[have], yerr=[(y - low)[have], (high - y)[have]], fmt="none", **style)


def step_axis(ax, xlabel: str = "step") -> None:
    """A symlog step axis (0 and the log-spaced early checkpoints both visible)."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def model_styles(data) -> dict[str, dict]:
    """One colour per ladder model (light = small), interventions dashed in their base's colour."""
    cmap, others = colormap("viridis"), colormap("tab10")
    ladder = data.ladder
    styles = {m: {"color": cmap(0.1 + 0.75 * i / max(len(ladder) - 1, 1)), "linestyle": "-"} for i, m in enumerate(ladder)}
    for j, m in enumerate(data.interventions + data.sweep_points):
        base = data.intervention(m).base
        color = styles[base]["color"] if base in styles else others(j)
        styles[m] = {"color": color, "linestyle": "--"}
    for m in data.models:
        styles.setdefault(m, {"color": "grey", "linestyle": ":"})
    return styles


def model_label(data, model: str) -> str:
    iv = data.intervention(model)
    if iv:
        return f"{model} ({', '.join(f'{t} x{f:g}' for t, f in iv.upsample.items())})"
    return f"{model} ({data.n_params(model):,} params)"


def task_title(data, task: str) -> str:
    tag = " (rare)" if task == data.rare_task else " (common)" if task == data.common_task else ""
    return f"{task}{tag}, share {data.shares[task]:.3f}"


def seed_mean(da):
    """``da`` averaged over training seeds (unchanged when it has none)."""
    return da.mean("seed") if "seed" in da.dims else da


def seed_band(ax, x, da, mask=None, label=None, **style) -> None:
    """One line per model: the mean over training seeds, and with two or more seeds a shaded band
    from the lowest to the highest seed. ``da``: a DataArray over (seed, step) or (step)."""
    values = da.transpose("seed", ...).values if "seed" in da.dims else da.values[None]
    values = values.reshape(values.shape[0], -1)
    x = np.asarray(x)
    keep = np.isfinite(values).any(axis=0) & (np.ones(len(x), bool) if mask is None else np.asarray(mask))
    if not keep.any():
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step where only some seeds have values
        mean = np.nanmean(values[:, keep], axis=0)
        low, high = np.nanmin(values[:, keep], axis=0), np.nanmax(values[:, keep], axis=0)
    ax.plot(x[keep], mean, label=label, **style)
    if values.shape[0] >= 2:
        ax.fill_between(x[keep], low, high, color=style.get("color"), alpha=0.18, lw=0)
