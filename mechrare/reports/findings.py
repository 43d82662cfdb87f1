"""The findings table: each of the paper's claims measured on this run.

Every finding is a function of the run's datasets that returns its status
(``holds``, ``does not hold``, or ``not measured`` with the command that would
measure it), the numbers behind it and the rule used to decide. None is
asserted: a status is only ever read off the numbers.

The rare task is the least frequent one, the common task the most frequent;
"final" is the mean over a model's last three checkpoints. Ladder findings use
the ladder's models (interventions excluded), smallest first.
"""

from __future__ import annotations

import json

import numpy as np

from mechrare.reports.data import RunData, retention_events
from mechrare.reports.registry import FAILS, FINDINGS, HOLDS, MISSING, Finding, FindingSpec, applicable

__all__ = ["FAILS", "FINDINGS", "HOLDS", "MISSING", "Finding", "finding", "measure_findings"]


def finding(key: str, order: int, kinds: tuple[str, ...] = ("ladder",)):
    """Decorator: register ``fn(RunData) -> Finding`` as finding ``key``."""

    def decorator(fn):
        FINDINGS.add(key, FindingSpec(key, fn, order, kinds))
        return fn

    return decorator


def measure_findings(data: RunData) -> list[Finding]:
    """Every registered finding that applies to this run's kind, in order."""
    return [FINDINGS.get(key).measure(data) for key in applicable(FINDINGS, data.kind)]


def _fmt(values: dict[str, float], digits: int = 3) -> str:
    return ", ".join(f"{m} {v:.{digits}f}" for m, v in values.items())


def _monotone(values: list[float], decreasing: bool = False, tol: float = 0.0) -> bool:
    diffs = np.diff(values) * (-1 if decreasing else 1)
    return bool(np.all(diffs >= -tol))


# -- (a) ----------------------------------------------------------------------------------
@finding("a", 10)
def rare_accuracy_rises_with_size(data: RunData) -> Finding:
    claim = "(a) At a fixed frequency, rare-task final accuracy rises with model size"
    rare = data.rare_task
    rule = (
        "holds if no step down the ladder is significant (each drop < 1 binomial s.e.) and the largest model "
        "beats the smallest by > 2 s.e."
    )
    if data.metrics is None or len(data.ladder) < 2:
        return Finding("a", claim, MISSING, "needs metrics.nc and at least two ladder models (`mechrare train`)", rule)
    acc = {m: data.final("accuracy", m, rare) for m in data.ladder}
    n = max(data.eval_examples(rare), 1)
    p = float(np.nanmean(list(acc.values())))
    se = float(np.sqrt(max(p * (1 - p), 1e-4) / n))
    values = list(acc.values())
    ok = _monotone(values, tol=se) and values[-1] - values[0] > 2 * se * np.sqrt(2)
    evidence = f"{rare} final accuracy: {_fmt(acc)} (s.e. {se:.3f}, {n} eval items)"
    return Finding("a", claim, HOLDS if ok else FAILS, evidence, rule)


# -- (b) ----------------------------------------------------------------------------------
@finding("b", 20)
def common_claims_first(data: RunData) -> Finding:
    claim = "(b) Common tasks reach their claim_step before rare tasks"
    common, rare = data.common_task, data.rare_task
    ds = data.get("neurons")
    rule = f"holds if claim_step({common}) < claim_step({rare}) in every ladder model (never claimed counts as last)"
    if ds is None or not data.ladder:
        return Finding("b", claim, MISSING, "needs neurons.nc (`mechrare analyze RUN --only neurons`)", rule)
    parts, wins = [], 0
    for m in data.ladder:
        c = float(ds.claim_step.sel(model=m, task=common))
        r = float(ds.claim_step.sel(model=m, task=rare))
        first = (np.inf if np.isnan(c) else c) < (np.inf if np.isnan(r) else r)
        wins += first
        parts.append(f"{m} {_step(c)} vs {_step(r)}")
    evidence = f"claim_step {common} vs {rare}: " + "; ".join(parts) + f" (earlier in {wins} of {len(data.ladder)})"
    return Finding("b", claim, HOLDS if wins == len(data.ladder) else FAILS, evidence, rule)


def _step(value: float) -> str:
    return "never" if np.isnan(value) else str(int(value))


# -- (c) ----------------------------------------------------------------------------------
@finding("c", 30)
def smallest_model_overwrites(data: RunData) -> Finding:
    claim = "(c) In the smallest model, some rare-task signal rises and is then overwritten"
    ds = data.get("retention")
    rule = (
        "holds if, in the smallest ladder model, the rare task's held-out accuracy rose above chance and then fell, "
        "each by more than binomial noise on its eval items allows (retention's calibrated tests, false-positive "
        "rate alpha per series); events of the uncalibrated signals (probe, neurons, SAE) are listed and never decide"
    )
    if ds is None or not data.ladder:
        return Finding("c", claim, MISSING, "needs retention.nc (`mechrare analyze RUN --only retention`)", rule)
    small, rare = data.ladder[0], data.rare_task
    calibrated = [str(s) for s in ds.signal.values if "calibrated" in ds and bool(ds.calibrated.sel(signal=s))]
    if not calibrated or small not in ds.model.values:
        return Finding("c", claim, MISSING, "needs retention.nc with calibrated accuracy tests (`mechrare analyze RUN --only retention`)", rule)
    alpha = float(json.loads(ds.attrs.get("analysis_config", "{}")).get("alpha", 0.05))
    others = [e for e in retention_events(ds) if e["model"] == small and e["task"] == rare and e["signal"] not in calibrated]
    context = "; uncalibrated signals with an event: " + (", ".join(
        f"{e['signal']} {e['peak_step']:.0f} -> {e['overwrite_step']:.0f}" for e in others) if others else "none")
    parts, status = [], FAILS
    for sig in calibrated:
        row = ds.sel(model=small, task=rare, signal=sig)
        p_learn, p_over = float(row.p_learned), float(row.p_overwrite)
        if p_learn > alpha:
            parts.append(f"{sig}: never above chance {float(ds.chance.sel(task=rare)):.3f} (p_learned {p_learn:.3f})")
        elif p_over > alpha:
            parts.append(f"{sig}: learned by step {float(row.learned_step):.0f} (p {p_learn:.3f}), no drop beyond noise "
                         f"(p_overwrite {p_over:.3f}; peak {float(row.peak_value):.3f}, final {float(row.final_value):.3f})")
        else:
            status = HOLDS
            parts.append(f"{sig}: learned by step {float(row.learned_step):.0f}, peak {float(row.peak_value):.3f} at "
                         f"{float(row.peak_step):.0f} -> overwritten at {float(row.overwrite_step):.0f} "
                         f"(final {float(row.final_value):.3f}; p_overwrite {p_over:.3f})")
    n = int(ds.eval_items.sel(task=rare)) if "eval_items" in ds.coords else 0
    return Finding("c", claim, status, f"{small} / {rare} ({n} eval items, alpha {alpha:g}): " + "; ".join(parts) + context, rule)


# -- (d) ----------------------------------------------------------------------------------
def interference_by_model(data: RunData) -> dict[str, tuple[float, float]]:
    """Per ladder model: (mean -cos(g_common, g_rare) over checkpoints after step 0,
    summed loss_change of the rare task caused by the common task's updates)."""
    ds = data.analyses["interference"]
    common, rare = data.common_task, data.rare_task
    out = {}
    for m in data.ladder:
        cos = ds.grad_cosine.sel(model=m, task=common, other_task=rare)
        cos = cos.where(cos.step > 0).values
        lc = ds.loss_change.sel(model=m, task=rare, other_task=common).values
        out[m] = (float(-np.nanmean(cos)), float(np.nansum(lc)))
    return out


@finding("d", 40)
def interference_lower_when_larger(data: RunData) -> Finding:
    claim = "(d) Common-rare gradient interference (negative cosine or loss_change) is lower in larger models"
    rule = (
        "holds if, going up the ladder, both -mean cos(g_common, g_rare) and the summed loss_change of the rare "
        "task from the common task's updates never rise"
    )
    if "interference" not in data.analyses or len(data.ladder) < 2:
        return Finding("d", claim, MISSING, "needs interference.nc (`mechrare analyze RUN --only interference`)", rule)
    by = interference_by_model(data)
    neg_cos = [v[0] for v in by.values()]
    lc = [v[1] for v in by.values()]
    ok = _monotone(neg_cos, decreasing=True) and _monotone(lc, decreasing=True)
    evidence = (
        f"-mean cos({data.common_task}, {data.rare_task}): "
        + ", ".join(f"{m} {v[0]:+.3f}" for m, v in by.items())
        + "; summed loss_change(rare <- common): "
        + ", ".join(f"{m} {v[1]:+.3f}" for m, v in by.items())
    )
    return Finding("d", claim, HOLDS if ok else FAILS, evidence, rule)


# -- (e) ----------------------------------------------------------------------------------
@finding("e", 50)
def upsampling_closes_the_gap(data: RunData) -> Finding:
    claim = "(e) The upsampled small model closes the rare-task gap to the larger model"
    rare = data.rare_task
    rule = (
        "gap = final rare accuracy of the largest ladder model minus the intervention's base model; holds if the "
        "upsampled model closes at least half of it"
    )
    chosen = [m for m in data.interventions if rare in data.intervention(m).upsample]
    if data.metrics is None or not chosen or len(data.ladder) < 2:
        how = "add `[[ladder.interventions]]` with the rare task upsampled (the quickstart has one)"
        return Finding("e", claim, MISSING, f"needs a model trained with {rare} upsampled: {how}", rule)
    up = chosen[0]
    base, large = data.intervention(up).base, data.ladder[-1]
    if base not in data.ladder:
        return Finding("e", claim, MISSING, f"the intervention's base model {base} is not in this run's ladder", rule)
    acc = {m: data.final("accuracy", m, rare) for m in (base, up, large)}
    gap = acc[large] - acc[base]
    factor = data.intervention(up).upsample[rare]
    evidence = f"{rare} final accuracy: {base} {acc[base]:.3f}, {up} (x{factor:g}) {acc[up]:.3f}, {large} {acc[large]:.3f}"
    if gap <= 0:
        return Finding("e", claim, FAILS, evidence + f"; no gap to close ({large} is not ahead of {base})", rule)
    closed = (acc[up] - acc[base]) / gap
    evidence += f"; {closed:.1%} of the gap to {large} closed"
    bigger = [m for m in data.ladder if data.n_params(m) > data.n_params(base)]
    if bigger and bigger[0] != large:  # context: the next size up
        nxt = bigger[0]
        evidence += f" ({nxt}: {data.final('accuracy', nxt, rare):.3f})"
    return Finding("e", claim, HOLDS if closed >= 0.5 else FAILS, evidence, rule)
