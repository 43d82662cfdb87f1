"""What the figures of :mod:`mechrare.reports.figures` show on this run, read from the numbers: the
"On this run:" sentence after a caption (``FigureSpec.reading``; the other figure modules keep theirs
beside their figures). Each returns "" where the run lacks what it reads."""

from __future__ import annotations

import warnings

import numpy as np

from mechrare.reports.data import RunData, retention_events, steps_of
from mechrare.reports.plotting import seed_mean


def _after_zero_mean(da) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(da.sel(step=da.step > 0).values))


def accuracy_reading(data: RunData) -> str:
    if data.metrics is None:
        return ""
    parts = [f"{t} " + "/".join(f"{data.final('accuracy', m, t):.2f}" for m in data.ladder) for t in data.tasks]
    return f"final accuracy ({'/'.join(data.ladder)}): " + "; ".join(parts) + "."


def neurons_reading(data: RunData) -> str:
    ds = data.analyses.get("neurons")
    if ds is None or data.kind == "toy":
        return ""
    var = "n_claimed" if "n_claimed" in ds else "n_claimed_attribution"
    parts = []
    for m in data.ladder:
        if m not in ds.model.values:
            continue
        steps, claimed = steps_of(ds, m, var)
        last = seed_mean(claimed.sum("block")).isel(step=-1)
        owned = ", ".join(f"{t} {float(last.sel(task=t)):.1f}" for t in last.task.values if float(last.sel(task=t)) > 0)
        parts.append(f"{m} ({int(steps[-1])}): {owned or 'none'}")
    return "owned at the last checkpoint, mean over seeds: " + "; ".join(parts) + "." if parts else ""


def probes_reading(data: RunData) -> str:
    ds = data.analyses.get("probes")
    if ds is None or not data.ladder:
        return ""
    depth = "layer" if "layer" in ds.probe_score.dims else "block"
    parts = []
    for t in data.tasks:
        target = f"{t}/answer"
        if target not in ds.target.values:
            continue
        cells = []
        for m in data.ladder:
            if m in ds.model.values:
                steps, da = steps_of(ds, m, "probe_score")
                best = seed_mean(da.sel(target=target).isel(step=-1)).max(depth)
                cells.append(f"{float(best):.2f}")
        parts.append(f"{t} {'/'.join(cells)}")
    return f"answer probes at the last checkpoint, best depth ({'/'.join(data.ladder)}): " + "; ".join(parts) + "." if parts else ""


def cosine_reading(data: RunData) -> str:
    ds = data.analyses.get("interference")
    if ds is None or data.kind == "toy" or data.common_task == data.rare_task or "grad_cosine" not in ds:
        return ""
    common, rare = data.common_task, data.rare_task
    held = [f"{m} {_after_zero_mean(ds.grad_cosine.sel(model=m, task=common, other_task=rare)):+.3f}"
            for m in data.ladder if m in ds.model.values]
    paper = [f"{m} {_after_zero_mean(ds.cos_nontask_ref.sel(model=m, task=rare)):+.3f}" for m in data.ladder if m in ds.model.values]
    return (f"mean after step 0, cos(g {common}, g {rare}): " + ", ".join(held)
            + f"; cos(g non-task, g {rare}): " + ", ".join(paper) + ".")


def coupling_reading(data: RunData) -> str:
    from mechrare.reports.findings import interference_by_model

    ds = data.analyses.get("interference")
    if ds is None or "abs_cos_nontask_ref" not in ds:
        return ""
    per = interference_by_model(data)
    return (f"{data.rare_task}: |cos(g_nt, g_r)| " + ", ".join(f"{m} {np.nanmean(v['coupling']):.3f}" for m, v in per.items())
            + "; ||g_r|| / ||g_nt|| " + ", ".join(f"{m} {10 ** np.nanmean(v['log_ratio']):.3g}" for m, v in per.items()) + ".")


def timeline_reading(data: RunData) -> str:
    ds = data.analyses.get("retention")
    if ds is None:
        return ""
    events = retention_events(ds)
    if not events:
        return "no overwrite event in any model, seed, task or signal."
    counts: dict[str, int] = {}
    for e in events:
        counts[e["model"]] = counts.get(e["model"], 0) + 1
    rare = [e for e in events if e["task"] == data.rare_task and e["signal"] == "accuracy"]
    return (f"{len(events)} overwrite events (" + ", ".join(f"{m} {n}" for m, n in counts.items()) + f"); {len(rare)} of them "
            f"in the rare task's accuracy.")


def intervention_reading(data: RunData) -> str:
    if data.metrics is None or not data.ladder:
        return ""
    rare = data.rare_task
    shown = data.interventions or [m for m in data.sweep_points if data.intervention(m).upsample.get(rare, 1) > 1
                                    and data.intervention(m).base == data.ladder[0]]
    if not shown:
        return ""
    cells = [f"{m} {data.final('accuracy', m, rare):.3f}" for m in [data.ladder[0], *shown, data.ladder[-1]]]
    return f"{rare} final accuracy, mean over seeds: " + ", ".join(cells) + "; finding (e) tests the gap closed."


def bursts_reading(data: RunData) -> str:
    ds = data.analyses.get("retention")
    if ds is None or "forgetting_fraction" not in ds:
        return ""
    ff = ds.forgetting_fraction
    parts = []
    for t in (str(x) for x in ff.task.values):
        cells = [f"{m} {float(seed_mean(ff.sel(model=m, task=t))):+.2f}" for m in data.ladder if m in ff.model.values]
        if any(not c.endswith("nan") for c in cells):
            parts.append(f"{t}: " + ", ".join(cells))
    return ("forgetting_fraction (second half, mean over seeds): " + "; ".join(parts) + ".") if parts else ""
