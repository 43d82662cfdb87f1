"""The findings table: each of the paper's claims tested on this run.

Every finding is a function of the run's datasets that returns its status, the
effect it is decided on with its 95% interval (:mod:`mechrare.stats`: seeds
and eval items), the test used and the rule, whose text is built from the same
constants the code uses. Statuses:

* ``holds``: the test rejects the null in the claim's direction;
* ``does not hold``: the interval lies on the other side of the null (or the
  rule's stated counter-condition is met);
* ``inconclusive``: the interval includes the null, or the run has fewer
  seeds than the test needs (``MIN_SEEDS``); the reason is given;
* ``not measured``: a dataset is missing (the command that makes it is given).

None is asserted: a status is only ever read off the numbers, and the rules
were fixed before the numbers they decide were looked at.

The rare task is the least frequent one, the common task the most frequent;
"final" is the mean over a model's last three checkpoints. Ladder findings use
the ladder's models (interventions excluded), smallest first.
"""

from __future__ import annotations

import json

import numpy as np

from mechrare.reports.data import RunData, retention_events
from mechrare.reports.registry import FAILS, FINDINGS, HOLDS, INCONCLUSIVE, MISSING, Finding, FindingSpec, applicable
from mechrare.reports.sweep import chance_of, sweep_evidence
from mechrare.stats import MIN_SEEDS, Estimate, binomial_tail, clopper_pearson, contrast, slope_weights

__all__ = ["FAILS", "FINDINGS", "HOLDS", "INCONCLUSIVE", "MISSING", "Finding", "finding", "measure_findings"]

ALPHA = 0.05  # every finding's test level (two-sided 95% intervals)
T_TEST = (f"mean over seeds +- t(0.975, seeds - 1) x sqrt(seed variance / seeds + binomial item variance); "
          f"needs >= {MIN_SEEDS} seeds")


def finding(key: str, order: int, kinds: tuple[str, ...] = ("ladder",), figure: str = ""):
    """Decorator: register ``fn(RunData) -> Finding`` as finding ``key`` (``figure``: the figure that shows it)."""

    def decorator(fn):
        FINDINGS.add(key, FindingSpec(key, fn, order, kinds, figure))
        return fn

    return decorator


def measure_findings(data: RunData) -> list[Finding]:
    """Every registered finding that applies to this run's kind, in order. On a series trained elsewhere
    whose task shares are unknown, none is measured: which task is rare is what they all turn on."""
    findings = [FINDINGS.get(key).measure(data) for key in applicable(FINDINGS, data.kind)]
    if data.kind == "series" and not any(data.shares.values()):
        why = "needs each task's share of training, to tell the rare task from the common: give [tasks] shares in SERIES.toml"
        findings = [Finding(f.key, f.claim, MISSING, why, f.rule) for f in findings]
    for f in findings:
        f.evidence = data.concrete(f.evidence)
        f.figure = f.figure or FINDINGS.get(f.key).figure
    return findings


def _fmt(values: dict[str, float], digits: int = 3) -> str:
    return ", ".join(f"{m} {v:.{digits}f}" for m, v in values.items())


def _few_seeds(n: int) -> str:
    return f"inconclusive: {n} seed{'s' if n != 1 else ''}, the test needs >= {MIN_SEEDS} (set ladder.seeds)"


def _with(finding: Finding, est: Estimate, test: str) -> Finding:
    finding.estimate, finding.ci_low, finding.ci_high, finding.n_seeds, finding.test = est.value, est.low, est.high, est.n_seeds, test
    return finding


def _decide(f: Finding, est: Estimate, holds_above: bool) -> None:
    """The status of a one-interval test: holds when the interval lies on the claim's side of 0, does not
    hold on the other side, else (and with too few seeds, saying so) inconclusive."""
    if est.n_seeds < MIN_SEEDS:
        f.evidence += "; " + _few_seeds(est.n_seeds)
    elif est.above(0) if holds_above else est.below(0):
        f.status = HOLDS
    elif est.below(0) if holds_above else est.above(0):
        f.status = FAILS


def _accuracy_table(data: RunData, models: list[str], task: str) -> np.ndarray:
    """[seed, model] final accuracies."""
    return np.stack([data.final_by_seed("accuracy", m, task) for m in models], axis=1)


# -- (a) ----------------------------------------------------------------------------------
A_RULE = (
    "slope = least-squares slope of the rare task's final accuracy on log10(n_params) over the ladder, per seed; "
    "holds if its 95% interval lies above 0 and no step up the ladder is significantly lower (a step's 95% interval "
    "of the accuracy difference lies below 0); does not hold if the slope's interval lies below 0 or a step is "
    "significantly lower; else inconclusive"
)


@finding("a", 10, figure="accuracy_size")
def rare_accuracy_rises_with_size(data: RunData) -> Finding:
    claim = "(a) At a fixed frequency, rare-task final accuracy rises with model size"
    rare = data.rare_task
    if data.metrics is None or len(data.ladder) < 2:
        return Finding("a", claim, MISSING, "needs metrics.nc and at least two ladder models (`mechrare train`)", A_RULE)
    table = _accuracy_table(data, data.ladder, rare)
    n = max(data.eval_examples(rare), 1)
    x = np.log10([data.n_params(m) for m in data.ladder])
    slope = contrast(table, slope_weights(x), n)
    steps = []
    for i in range(len(data.ladder) - 1):
        w = np.zeros(len(data.ladder))
        w[i], w[i + 1] = -1, 1
        steps.append(contrast(table, w, n))
    means = np.nanmean(table, axis=0)
    evidence = (f"{rare} final accuracy ({n} eval items, {slope.n_seeds} seed{'s' if slope.n_seeds != 1 else ''}): "
                + ", ".join(f"{m} {v:.3f}" for m, v in zip(data.ladder, means))
                + f"; slope per decade of params {slope.text()}; steps up: " + ", ".join(e.text() for e in steps)
                + sweep_evidence(data, rare, chance_of(data, rare)))
    f = Finding("a", claim, INCONCLUSIVE, evidence, A_RULE)
    if slope.n_seeds < MIN_SEEDS:
        f.evidence += "; " + _few_seeds(slope.n_seeds)
    elif slope.below(0) or any(e.below(0) for e in steps):
        f.status = FAILS
    elif slope.above(0):
        f.status = HOLDS
    return _with(f, slope, "slope: " + T_TEST)


# -- (b) ----------------------------------------------------------------------------------
B_RULE = (
    "per (ladder model, seed): the step at which the common task is claimed vs the rare task's (claimed = retention's "
    "tested 'learned' event on the task's owned-neuron count, neurons owned by the paper's definition (top-K MLP "
    "neurons by the task's held-out gradient, once the task is learned, above a null floor from initialisation): a "
    "rise beyond a permutation of its own jitter, "
    "false-positive rate alpha per series), as earlier / tie / later / rare never claimed / common never claimed; "
    "win = common strictly earlier and the rare task claims at some step (never claimed is not a win, ties are "
    "ties). Holds if the 95% Clopper-Pearson interval of the win fraction lies above 0.5 and no pair has the rare "
    "task earlier; does not hold if it lies below 0.5; else inconclusive"
)


def _claims(ds, model: str, seed: int, tasks: tuple[str, str]) -> tuple[float, float] | None:
    """(common, rare) tested claim steps of one (model, seed); None if either series was not tested."""
    if not all(_tested(ds, model, seed, t, "neurons") for t in tasks):
        return None
    row = ds.learned_step.sel(model=model, signal="neurons")
    row = row.sel(seed=seed) if "seed" in row.dims else row
    return float(row.sel(task=tasks[0])), float(row.sel(task=tasks[1]))


def _learned_order(data: RunData, seeds: list[int]) -> str:
    """The steps from which neurons.nc let each task own neurons (its accuracy's tested learned step):
    where claims follow them, (b) reads the order in which the tasks were learned."""
    ds = data.get("neurons")
    if ds is None or "owns_from" not in ds:
        return ""
    common, rare = data.common_task, data.rare_task
    rows = []
    for m in (m for m in data.ladder if m in ds.model.values):
        pairs = []
        for seed in seeds:
            row = ds.owns_from.sel(model=m)
            row = row.sel(seed=seed) if "seed" in row.dims else row
            pairs.append(" vs ".join(_gate_text(float(row.sel(task=t))) for t in (common, rare)))
        rows.append(f"{m} " + ", ".join(pairs))
    return ("; ownership allowed from (accuracy learned, the neuron analysis's gate): " + "; ".join(rows)
            + " (a claim at the gate's step is set by learning, not by the neuron count)")


def _gate_text(value: float) -> str:
    return "never" if np.isinf(value) else "ungated" if value == 0 else str(int(value))


@finding("b", 20, figure="neurons")
def common_claims_first(data: RunData) -> Finding:
    claim = "(b) Common tasks claim their neurons before rare tasks"
    common, rare = data.common_task, data.rare_task
    ds = data.get("retention")
    how = "needs retention.nc with tested neuron counts (`mechrare analyze RUN --only neurons,retention`)"
    if ds is None or not data.ladder or "neurons" not in ds.signal.values:
        return Finding("b", claim, MISSING, how, B_RULE)
    kinds = {"earlier": 0, "tie": 0, "later": 0, "rare never": 0, "common never": 0}
    per_model, untested = [], 0
    seeds = [int(s) for s in ds.seed.values] if "seed" in ds.dims else [0]
    for m in (m for m in data.ladder if m in ds.model.values):
        marks = []
        for seed in seeds:
            pair = _claims(ds, m, seed, (common, rare))
            if pair is None:
                untested += 1
                marks.append("untested")
                continue
            c, r = pair
            kind = ("rare never" if np.isnan(r) else "common never" if np.isnan(c)
                    else "earlier" if c < r else "tie" if c == r else "later")
            kinds[kind] += 1
            marks.append(f"{_step(c)} vs {_step(r)}")
        per_model.append(f"{m} " + ", ".join(marks))
    pairs = sum(kinds.values())
    if not pairs:
        return Finding("b", claim, MISSING, how + f"; {untested} (model, seed) pairs were too short to test", B_RULE)
    wins = kinds["earlier"]
    low, high = clopper_pearson(wins, pairs)
    evidence = (f"claimed (tested) {common} vs {rare} per seed: " + "; ".join(per_model)
                + f"; common earlier in {wins} of {pairs} pairs (" + ", ".join(f"{k} {v}" for k, v in kinds.items() if v) + ")"
                + (f"; {untested} pairs not tested" if untested else ""))
    evidence += _learned_order(data, seeds)
    f = Finding("b", claim, INCONCLUSIVE, evidence, B_RULE)
    if low > 0.5 and kinds["later"] == 0:
        f.status = HOLDS
    elif high < 0.5:
        f.status = FAILS
    est = Estimate(wins / pairs, low, high, len(seeds))
    return _with(f, est, "win fraction over (model, seed) pairs, exact Clopper-Pearson 95% interval")


def _step(value: float) -> str:
    return "never" if np.isnan(value) else str(int(value))


# -- (c) ----------------------------------------------------------------------------------
C_RULE = (
    "per seed of the smallest ladder model: an overwrite event = the rare task's held-out accuracy rose above "
    f"chance and then fell, each by more than binomial noise on its eval items allows (retention's calibrated "
    f"tests, false-positive rate alpha per series). Holds if the number of seeds with an event is significant "
    f"against each seed firing at rate alpha (exact binomial test, p < {ALPHA}); does not hold if no seed has an "
    f"event; else inconclusive, and inconclusive with fewer than {MIN_SEEDS} seeds. Only accuracy decides: the "
    "other signals' tested events (probe, neurons, SAE: permutation tests) are listed as agreeing or not, and "
    "untested (thresholded) events are listed apart"
)


def _tested(ds, model: str, seed: int, task: str, signal: str) -> bool:
    """Whether retention tested this series (older files say it per signal only)."""
    if "calibrated" not in ds or signal not in ds.signal.values:
        return False
    c = ds.calibrated.sel(signal=signal)
    for dim, value in (("model", model), ("seed", seed), ("task", task)):
        if dim in c.dims:
            c = c.sel({dim: value})
    return bool(c)


def _agreement(ds, small: str, rare: str, seed: int, decider: str) -> str:
    """What the other tested signals of (small, seed, rare) say: overwritten, learned only, never learned."""
    parts = []
    for sig in (str(s) for s in ds.signal.values if s != decider):
        if not _tested(ds, small, seed, rare, sig):
            continue
        row = ds.sel(model=small, task=rare, signal=sig)
        row = row.sel(seed=seed) if "seed" in row.dims else row
        if np.isfinite(float(row.overwrite_step)):
            parts.append(f"{sig} overwritten {float(row.peak_step):.0f} -> {float(row.overwrite_step):.0f} (p {float(row.p_overwrite):.3f})")
        elif np.isfinite(float(row.learned_step)):
            parts.append(f"{sig} learned by {float(row.learned_step):.0f}, not overwritten")
        else:
            parts.append(f"{sig} not learned")
    return "; ".join(parts) if parts else "no other tested signal"


@finding("c", 30, figure="timeline")
def smallest_model_overwrites(data: RunData) -> Finding:
    claim = "(c) In the smallest model, some rare-task signal rises and is then overwritten"
    ds = data.get("retention")
    if ds is None or not data.ladder:
        return Finding("c", claim, MISSING, "needs retention.nc (`mechrare analyze RUN --only retention`)", C_RULE)
    small, rare, sig = data.ladder[0], data.rare_task, "accuracy"
    seeds = [int(s) for s in ds.seed.values] if "seed" in ds.dims else [0]
    seeds = [s for s in seeds if small in ds.model.values and _tested(ds, small, s, rare, sig)]
    if not seeds:
        return Finding("c", claim, MISSING, "needs retention.nc with calibrated accuracy tests (`mechrare analyze RUN --only retention`)", C_RULE)
    alpha = float(json.loads(ds.attrs.get("analysis_config", "{}")).get("alpha", 0.05))
    parts, fired = [], 0
    for seed in seeds:
        row = ds.sel(model=small, task=rare, signal=sig)
        row = row.sel(seed=seed) if "seed" in row.dims else row
        p_learn, p_over = float(row.p_learned), float(row.p_overwrite)
        event = p_learn <= alpha and p_over <= alpha
        fired += event
        if p_learn > alpha:
            text = f"seed {seed}: never above chance (p_learned {p_learn:.3f})"
        elif not event:
            text = (f"seed {seed}: learned by {float(row.learned_step):.0f}, no drop beyond noise (p_overwrite {p_over:.3f}; "
                    f"peak {float(row.peak_value):.3f}, final {float(row.final_value):.3f})")
        else:
            text = (f"seed {seed}: peak {float(row.peak_value):.3f} at {float(row.peak_step):.0f} -> overwritten at "
                    f"{float(row.overwrite_step):.0f} (final {float(row.final_value):.3f}; p_overwrite {p_over:.3f})")
        parts.append(f"{text} [other tested signals: {_agreement(ds, small, rare, seed, sig)}]")
    untested = [e for e in retention_events(ds) if e["model"] == small and e["task"] == rare
                and e["signal"] != sig and not e.get("calibrated", False)]
    context = "; untested (thresholded) events: " + (", ".join(
        f"{e['signal']} seed {e.get('seed', 0):.0f} {e['peak_step']:.0f} -> {e['overwrite_step']:.0f}" for e in untested) if untested else "none")
    k = len(seeds)
    p = binomial_tail(fired, k, alpha) if fired else 1.0
    n = int(ds.eval_items.sel(task=rare)) if "eval_items" in ds.coords else 0
    evidence = (f"{small} / {rare} ({n} eval items, alpha {alpha:g}): {sig} overwritten in {fired} of {k} seeds "
                f"(binomial p {p:.3f}); " + "; ".join(parts) + context)
    f = Finding("c", claim, INCONCLUSIVE, evidence, C_RULE)
    if k < MIN_SEEDS:
        f.evidence += "; " + _few_seeds(k)
    elif p < ALPHA:
        f.status = HOLDS
    elif fired == 0:
        f.status = FAILS
    low, high = clopper_pearson(fired, k)
    return _with(f, Estimate(fired / k, low, high, k), "fraction of seeds with an overwrite event (Clopper-Pearson); "
                 f"status: exact binomial test of the count against alpha {alpha:g} per seed")


# -- (d) ----------------------------------------------------------------------------------
def _per_seed_mean(da) -> np.ndarray:
    """[seed] mean over checkpoints after step 0 of a (seed, step) series."""
    da = da if "seed" in da.dims else da.expand_dims(seed=[0])
    return np.nanmean(da.where(da.step > 0).transpose("seed", "step").values, axis=1)


def interference_by_model(data: RunData) -> dict[str, dict[str, np.ndarray]]:
    """Per ladder model, per seed, the rare task's measures on its top-K neurons (means over the checkpoints
    after step 0): coupling |cos(g_nt, g_r)|, signed cos(g_nt, g_r), log10 ||g_r|| / ||g_nt||."""
    ds = data.analyses["interference"]
    rare = data.rare_task
    out = {}
    for m in data.ladder:
        here = ds.sel(model=m, task=rare)
        out[m] = {
            "coupling": _per_seed_mean(here.abs_cos_nontask_ref),
            "cos": _per_seed_mean(here.cos_nontask_ref),
            "log_ratio": np.log10(_per_seed_mean(here.grad_ratio_ref)),
        }
    return out


D_RULE = (
    "coupling = mean over checkpoints (after step 0) of |cos(g_nt, g_r)| on the rare task's top-K MLP neurons "
    "(the paper's task neurons and cosine; g_nt: the non-task part of a training batch's gradient, g_r: the rare "
    "task's held-out gradient), per seed; its least-squares slope on log10(n_params) over the ladder; holds if the "
    "slope's 95% interval lies below 0 (weaker coupling in larger models), does not hold if it lies above 0, else "
    "inconclusive. Shown, not deciding: the signed cos(g_nt, g_r) and the slope of log10 ||g_r|| / ||g_nt|| "
    "(the rare task's gradient relative to the rest) on the same neurons, each with its interval"
)


def _direction(est: Estimate) -> str:
    if est.above(0):
        return "rises with size"
    if est.below(0):
        return "falls with size"
    return "unresolved"


@finding("d", 40, figure="interference_size")
def interference_lower_when_larger(data: RunData) -> Finding:
    claim = "(d) Gradient coupling |cos(g_nt, g_r)| on the rare task's neurons is weaker in larger models"
    ds = data.analyses.get("interference")
    if ds is None or len(data.ladder) < 2:
        return Finding("d", claim, MISSING, "needs interference.nc (`mechrare analyze RUN --only interference`)", D_RULE)
    if "abs_cos_nontask_ref" not in ds:
        return Finding("d", claim, MISSING, "interference.nc predates the coupling measure; rerun "
                       "`mechrare analyze RUN --only interference`", D_RULE)
    lacking = [m for m in data.ladder if m not in ds.model.values]
    if lacking:
        return Finding("d", claim, MISSING, f"interference.nc lacks ladder model(s) {', '.join(lacking)}: analyse every "
                       "ladder model (`mechrare analyze RUN --only interference`)", D_RULE)
    by = interference_by_model(data)
    x = np.log10([data.n_params(m) for m in data.ladder])
    slopes = {k: contrast(np.stack([by[m][k] for m in data.ladder], axis=1), slope_weights(x)) for k in ("coupling", "cos", "log_ratio")}
    ratio = slopes["log_ratio"]

    def means(key: str, fmt=lambda v: f"{v:+.3f}") -> str:
        return ", ".join(f"{m} {fmt(np.nanmean(v[key]))}" for m, v in by.items())

    evidence = (
        f"{data.rare_task}: |cos(g_nt, g_r)| {means('coupling', lambda v: f'{v:.3f}')}; slope per decade "
        f"{slopes['coupling'].text()}; signed cos {means('cos')} (slope {slopes['cos'].text()}); "
        f"||g_r|| / ||g_nt|| {means('log_ratio', lambda v: f'{10 ** v:.3g}')}: log10 slope per decade {ratio.text()}, "
        f"{_direction(ratio)}"
    )
    if str(ds.attrs.get("batches", "")).startswith("proxy"):
        evidence += "; g_nt from proxy batches (the series' background text with its tasks at the given shares), not its training batches"
    f = Finding("d", claim, INCONCLUSIVE, evidence, D_RULE)
    _decide(f, slopes["coupling"], holds_above=False)
    return _with(f, slopes["coupling"], "slope: mean over seeds +- t(0.975, seeds - 1) x seed s.e.; "
                 f"needs >= {MIN_SEEDS} seeds")


# -- (e) ----------------------------------------------------------------------------------
E_RULE = (
    "the upsampled model = the smallest ladder model's intervention (else frequency-sweep point) with the largest "
    "factor on the rare task; closed = final rare accuracy of the upsampled model minus half the sum of its base model's and the largest "
    "ladder model's (> 0: more than half the gap closed), paired by seed; holds if its 95% interval lies above 0, "
    "does not hold if it lies below 0, else inconclusive. The rescue up - base is shown with its interval"
)


def _equal_exposure(data: RunData, base: str, up: str, task: str, n: int) -> str:
    """The upsampled model at the step where it has seen as many rare instances as its base model in all of
    training (step T x share_base / share_up, interpolated between checkpoints), against the base's final
    accuracy, paired by seed: does the intervention help beyond showing more instances?"""
    s_base = data.manifest.model(base).shares.get(task, np.nan)
    s_up = data.manifest.model(up).shares.get(task, np.nan)
    acc = data.metrics.accuracy
    acc = acc if "seed" in acc.dims else acc.expand_dims(seed=[0])
    last = acc.sel(model=base, task=task).dropna("step", how="all").step.values
    if not (np.isfinite(s_base) and np.isfinite(s_up) and s_up > 0 and len(last)):
        return ""
    target = float(last[-1]) * s_base / s_up
    at = []
    for seed in acc.seed.values:
        series = acc.sel(model=up, task=task, seed=seed).dropna("step")
        steps = series.step.values
        at.append(float(np.interp(target, steps, series.values)) if len(steps) and steps[0] <= target <= steps[-1] else np.nan)
    table = np.stack([data.final_by_seed("accuracy", base, task), np.array(at)], axis=1)
    est = contrast(table, [-1.0, 1.0], n)
    return (f"; at equal rare exposure (shares: {base} {s_base:.4f}, {up} {s_up:.4f}; {up} at step {target:.0f} of "
            f"{int(last[-1])}): up {np.nanmean(at):.3f} - base = {est.text()} (shown, not deciding)")


@finding("e", 50, figure="intervention")
def upsampling_closes_the_gap(data: RunData) -> Finding:
    claim = "(e) The upsampled small model closes the rare-task gap to the larger model"
    rare = data.rare_task
    # the smallest ladder model's intervention that shows the rare task most often (explicit ones, then sweep points)
    candidates = [m for m in data.interventions + data.sweep_points if data.intervention(m).upsample.get(rare, 1) > 1]
    small = [m for m in candidates if data.ladder and data.intervention(m).base == data.ladder[0]]
    chosen = sorted(small or candidates, key=lambda m: -data.intervention(m).upsample[rare])
    if data.metrics is None or not chosen or len(data.ladder) < 2:
        how = "add `[[ladder.interventions]]` with the rare task upsampled (the quickstart has one)"
        return Finding("e", claim, MISSING, f"needs a model trained with {rare} upsampled: {how}", E_RULE)
    up = chosen[0]
    base, large = data.intervention(up).base, data.ladder[-1]
    if base not in data.ladder:
        return Finding("e", claim, MISSING, f"the intervention's base model {base} is not in this run's ladder", E_RULE)
    table = _accuracy_table(data, [base, up, large], rare)
    n = max(data.eval_examples(rare), 1)
    closed = contrast(table, [-0.5, 1.0, -0.5], n)
    rescue = contrast(table, [-1.0, 1.0, 0.0], n)
    means = np.nanmean(table, axis=0)
    factor = data.intervention(up).upsample[rare]
    evidence = (f"{rare} final accuracy: {base} {means[0]:.3f}, {up} (x{factor:g}) {means[1]:.3f}, {large} {means[2]:.3f}; "
                f"up - (base + {large}) / 2 = {closed.text()}; rescue up - base = {rescue.text()}" + _equal_exposure(data, base, up, rare, n))
    f = Finding("e", claim, INCONCLUSIVE, evidence, E_RULE)
    _decide(f, closed, holds_above=True)
    return _with(f, closed, "paired contrast: " + T_TEST)
