"""The frequency sweep table: final accuracy of the swept task by model size and frequency.

A run with ``[ladder.sweep]`` (or interventions that each change one task's frequency) trains
every chosen size again at other frequencies of that task. The table reads it as "at a fixed
frequency, do larger models learn the task?" (down a column) and "at a fixed size, from which
frequency is it learned?" (along a row). Each cell is the mean final accuracy over training seeds
with its 95% interval (:func:`mechrare.stats.seed_interval`: seeds and the binomial noise of the
eval items), and ``*`` marks cells whose interval lies above the task's chance level.
"""

from __future__ import annotations

import numpy as np

from mechrare.stats import binomial_variance, seed_interval


def sweep_cells(data) -> tuple[str, list[float], dict[tuple[str, float], str]] | None:
    """(task, factors, {(ladder model, factor): model}) of the run's frequency sweep, or None: the
    interventions that change one task's frequency, with factor 1 the ladder model itself."""
    cells: dict[tuple[str, str, float], str] = {}
    for m in data.interventions + data.sweep_points:
        iv = data.intervention(m)
        if len(iv.upsample) == 1 and iv.base in data.ladder:
            (task, factor), = iv.upsample.items()
            cells[(iv.base, task, float(factor))] = m
    tasks = sorted({t for _, t, _ in cells}, key=lambda t: (t != data.rare_task, t))
    for task in tasks:
        factors = sorted({f for _, t, f in cells if t == task} | {1.0})
        bases = {b for b, t, _ in cells if t == task}
        if len(factors) >= 3 or len(bases) >= 2:  # a sweep, not the single upsampled model
            table = {(b, 1.0): b for b in data.ladder}
            table.update({(b, f): m for (b, t, f), m in cells.items() if t == task})
            return task, factors, table
    return None


def chance_of(data, task: str) -> float | None:
    """The task's chance level from retention.nc (None where it is not there)."""
    ds = data.get("retention")
    if ds is None or "chance" not in ds.coords or task not in ds.task.values:
        return None
    value = float(ds.chance.sel(task=task))
    return value if np.isfinite(value) else None


def final_interval(data, model: str, task: str, n: int):
    """Mean final accuracy over seeds with its 95% interval (seeds and the binomial noise of n items)."""
    per_seed = data.final_by_seed("accuracy", model, task)
    return seed_interval(per_seed, binomial_variance(float(np.nanmean(per_seed)), n))


def accuracy_text(est) -> str:
    """An accuracy's estimate and interval, the interval clipped to [0, 1] (where accuracies live)."""
    if not est.measured:
        return est.text(signed=False)
    return f"{est.value:.3f} [{max(est.low, 0.0):.3f}, {min(est.high, 1.0):.3f}]"


def sweep_rows(data, chance: float | None = None) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of the table, or None for a run without a sweep."""
    found = sweep_cells(data)
    if found is None or data.metrics is None:
        return None
    task, factors, table = found
    n = max(data.eval_examples(task), 1)
    share = {}
    for (b, f), m in table.items():
        share.setdefault(f, data.manifest.model(m).shares.get(task, np.nan))
    header = ["model", "parameters"] + [f"{task} x{f:g} (share {share[f]:.4f})" for f in factors]
    rows = []
    for b in data.ladder:
        row = [b, f"{data.n_params(b):,}"]
        for f in factors:
            m = table.get((b, f))
            if m is None:
                row.append("-")
                continue
            est = final_interval(data, m, task, n)
            mark = " *" if chance is not None and est.above(chance) else ""
            row.append(accuracy_text(est) + mark)
        rows.append(row)
    return header, rows


def sweep_evidence(data, task: str, chance: float | None) -> str:
    """For finding (a): the slope on log10(n_params) at each swept frequency of ``task`` (seeds and eval items),
    and per size the smallest swept share whose interval lies above chance. Shown, not deciding."""
    from mechrare.stats import contrast, slope_weights

    found = sweep_cells(data)
    if found is None or found[0] != task or data.metrics is None:
        return ""
    _, factors, table = found
    n = max(data.eval_examples(task), 1)
    x = np.log10([data.n_params(m) for m in data.ladder])
    parts = []
    for f in factors:
        models = [table.get((b, f)) for b in data.ladder]
        if None in models or len(models) < 2:
            continue
        acc = np.stack([data.final_by_seed("accuracy", m, task) for m in models], axis=1)
        share = data.manifest.model(models[0]).shares.get(task, np.nan)
        parts.append(f"x{f:g} (share {share:.4f}) {contrast(acc, slope_weights(x), n).text()}")
    text = "; across the frequency sweep (shown, not deciding): slope per decade at " + ", ".join(parts) if parts else ""
    if chance is not None:
        lowest = []
        for b in data.ladder:
            learned = [f for f in factors if (b, f) in table and final_interval(data, table[(b, f)], task, n).above(chance)]
            share = data.manifest.model(table[(b, min(learned))]).shares.get(task, np.nan) if learned else None
            lowest.append(f"{b} {share:.4f}" if share is not None else f"{b} none")
        text += f"; lowest swept share learned above chance ({chance:.3g}): " + ", ".join(lowest)
    return text
