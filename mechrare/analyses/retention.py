"""When is a task's signal learned, when does it peak, and is it overwritten: analyses/retention.nc.

Signals per (model, seed, task), each a series over the checkpoints, read from
the datasets present in the run folder (one series per training seed):

* ``accuracy``: held-out exact match (metrics.nc);
* ``retained_signal``: the toy model's s_k(U) (metrics.nc of a ``mechrare toy`` run);
* ``probe``: the best layer's held-out probe accuracy on the task's ``answer``
  target (probes.nc);
* ``neurons``: MLP neurons the task owns, all layers (neurons.nc);
* ``sae``: SAE features specific to the task, all analysed layers (sae.nc; only
  the analysed checkpoints).

**Events are tests, not thresholds**, each holding its false-positive rate at
``alpha`` (0.05) per (model, seed, task, signal) series under a null that matches
the signal's noise:

* ``accuracy`` (:mod:`mechrare.analyses.binomial`): *learned* when its held-out
  accuracy rises above the task's chance level (the answer set's, not the
  vocabulary's) by more than binomial noise on its eval items allows;
  *overwritten* when it then falls by more than that noise allows under
  "accuracy never falls" (measured: tests/analyses/test_binomial.py);
* ``probe``, ``neurons`` (learned = *claimed*), ``sae``
  (:mod:`mechrare.analyses.jitter`): a rise over the series' first checkpoints,
  and a later fall, each against the same statistic on random orderings of the
  series' own checkpoint-to-checkpoint jitter (a checkpoint-order permutation
  null; measured: tests/analyses/test_jitter.py). ``min_rise[signal]`` is an
  extra floor on the rise and the fall. Series shorter than 16 checkpoints (the
  SAE signal's few analysed checkpoints, often) are not tested.

``p_learned`` and ``p_overwrite`` are the tests' p-values, and ``calibrated``
says, per series, that its events come from these tests. Series that are not
tested (too short, ``retained_signal``: the toy model's noiseless s_k(U), or a
task set that does not say the task's chance level) use thresholds: the series
is smoothed with a running median over 3 checkpoints. With b the first smoothed
value and P its maximum, the signal is *learned* if P - b >= ``min_rise[signal]``;
``learned_step`` is the first step at which it reaches b + (P - b) / 2 and
``peak_step`` the step of P. An *overwrite event* is a peak of the smoothed series
with prominence >= ``min_rise[signal]`` (scipy.signal.find_peaks), at or above
the learned level b + (P - b) / 2, that the series later leaves: the event's
overwrite step is the first checkpoint after the peak at which the value has
fallen by half the peak's prominence. ``overwrite_step`` is the first event's
(NaN if none), ``n_overwrites`` counts them, and ``retained`` says that the task
was learned and not overwritten (tests) or ends at or above b + (P - b) / 2
(thresholds). Read uncalibrated events as descriptions, never as findings.

``interference_at_overwrite`` is the mean of interference.nc's ``cos_nontask_ref``
(the paper's cos(g_nt, g_r) on the task neurons) over the checkpoints in
(peak, overwrite]; ``loss_change_at_overwrite`` sums the other components'
``loss_change`` on the task over the same window (positive: they raised its loss),
counting only values beyond t(0.975, batches - 1) of their standard errors
(``loss_change_se``; the others count as 0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mechrare.analyses.binomial import detect_binomial
from mechrare.analyses.jitter import detect_jitter
from mechrare.analyses.learned import binomial_inputs, rng_key
from mechrare.analyses.registry import Analysis, as_context, register_analysis
from mechrare.checkpoints.datasets import describe, open_dataset, provenance, write_dataset
from mechrare.errors import ConfigError
from mechrare.runs import Context

SIGNALS = ("accuracy", "retained_signal", "probe", "neurons", "sae")
CALIBRATED = ("accuracy",)  # tested against binomial noise on the eval items (needs the task's chance level)
PERMUTED = ("probe", "neurons", "sae")  # tested against a permutation of their own jitter (jitter.py)
DEFAULT_MIN_RISE = {"accuracy": 0.05, "retained_signal": 0.1, "probe": 0.05, "neurons": 3.0, "sae": 2.0}


@dataclass
class RetentionConfig:
    min_rise: dict[str, float] = field(default_factory=dict)  # per signal; unset ones use DEFAULT_MIN_RISE
    smooth: int = 3
    alpha: float = 0.05  # false-positive rate of each test, per (model, seed, task, signal) series
    window: int = 3  # checkpoints pooled by the tests
    n_null: int = 1000  # simulated null series (accuracy) or permutations (probe, neurons, sae) per test
    seed: int = 0

    def validate(self, path: str) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{path}.alpha: must be in (0, 1), got {self.alpha}")
        for key in ("window", "n_null"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{path}.{key}: must be >= 1, got {getattr(self, key)}")
        unknown = set(self.min_rise) - set(SIGNALS)
        if unknown:
            raise ConfigError(f"{path}.min_rise: unknown signal {sorted(unknown)[0]!r}; signals: {', '.join(SIGNALS)}")
        if self.smooth < 1 or self.smooth % 2 == 0:
            raise ConfigError(f"{path}.smooth: must be an odd number >= 1, got {self.smooth}")


@dataclass
class Detection:
    learned_step: float = np.nan
    peak_step: float = np.nan
    peak_value: float = np.nan
    final_value: float = np.nan
    retained: bool = False
    events: list = field(default_factory=list)  # (peak_step, overwrite_step, drop)
    p_learned: float = np.nan  # tested series only
    p_overwrite: float = np.nan
    calibrated: bool = False  # events are tests with false-positive rate alpha


def smooth(values: np.ndarray, width: int) -> np.ndarray:
    from scipy.ndimage import median_filter

    if width <= 1 or len(values) < width:
        return values.astype(float)
    return median_filter(values.astype(float), size=width, mode="nearest")


def detect(steps: np.ndarray, values: np.ndarray, min_rise: float, width: int = 3) -> Detection:
    """Learned / peak / overwrite detection on one series (NaNs dropped)."""
    from scipy.signal import find_peaks

    ok = ~np.isnan(values)
    steps, values = np.asarray(steps)[ok], values[ok]
    out = Detection()
    if len(values) < 2:
        return out
    x = smooth(values, width)
    b, top = x[0], int(np.argmax(x))
    out.final_value = float(x[-1])
    if x[top] - b < min_rise:
        return out
    half = b + (x[top] - b) / 2
    out.learned_step = float(steps[np.argmax(x >= half)])
    out.peak_step, out.peak_value = float(steps[top]), float(x[top])
    out.retained = bool(x[-1] >= half)
    peaks, props = find_peaks(x, prominence=min_rise, plateau_size=1)
    for left, right, prom in zip(props["left_edges"], props["right_edges"], props["prominences"]):
        if x[left] < half:  # a peak must be a learned state, not a blip at chance
            continue
        below = np.flatnonzero(x[right + 1 :] <= x[left] - prom / 2)
        if len(below):
            o = right + 1 + below[0]
            out.events.append((float(steps[left]), float(steps[o]), float(x[left] - x[o])))
    return out


# -- signals -------------------------------------------------------------------------------------
def _open(ctx: Context, name: str):
    path = ctx.dataset_path(name)
    return open_dataset(path) if path.is_file() else None


def load_signals(ctx: Context, models: list[str], tasks: list[str]) -> dict:
    """{signal: DataArray(model, seed, step, task)} for every signal whose dataset exists
    (a dataset without seeds, e.g. a toy run's, reads as seed 0)."""
    import xarray as xr

    out = {}
    metrics = _open(ctx, "metrics")
    if metrics is not None:
        for var in ("accuracy", "retained_signal"):  # retained_signal: the toy model's s_k(U)
            if var in metrics:
                out[var] = metrics[var].sel(model=models, task=tasks)
    probes = _open(ctx, "probes")
    if probes is not None:
        targets = [f"{t}/answer" for t in tasks]
        have = [t for t in targets if t in probes.target.values]
        if have:
            depth = "layer" if "layer" in probes.probe_score.dims else "block"
            best = probes.probe_score.sel(model=[m for m in models if m in probes.model.values], target=have).max(depth)
            best = best.assign_coords(target=[t.rsplit("/", 1)[0] for t in have]).rename(target="task")
            out["probe"] = best.reindex(task=tasks)
    neurons = _open(ctx, "neurons")
    if neurons is not None and "n_claimed" in neurons:  # the paper's task neurons (absent without interference.nc)
        out["neurons"] = neurons.n_claimed.sum("block").sel(task=tasks).astype(float)
    sae = _open(ctx, "sae")
    if sae is not None:
        counts = sae.n_task_features.sum("layer", min_count=1)
        out["sae"] = counts.reindex(task=tasks)
    out = {k: v if "seed" in v.dims else v.expand_dims(seed=[0]) for k, v in out.items()}
    return {k: v.reindex(model=models) if isinstance(v, xr.DataArray) else v for k, v in out.items()}


def significant_loss_change(interference):
    """loss_change where it is beyond t(0.975, batches - 1) standard errors of 0; 0 where it is not;
    NaN where it or its s.e. is unknown (one batch). Files without ``loss_change_se`` keep every value."""
    import json

    from mechrare.stats import t_quantile

    lc = interference.loss_change
    if "loss_change_se" not in interference:
        return lc
    batches = int(json.loads(interference.attrs.get("analysis_config", "{}")).get("batches", 4))
    se = interference.loss_change_se
    crit = t_quantile(batches) if batches > 1 else np.inf
    kept = lc.where(np.abs(lc) > crit * se, 0.0).where(lc.notnull())
    return kept.where(se.notnull())


def _window_stats(interference, model: str, seed: int, task: str, peak: float, over: float) -> tuple[float, float]:
    if interference is None or model not in interference.model.values or seed not in interference.seed.values:
        return np.nan, np.nan
    steps = interference.step.values
    sel = (steps > peak) & (steps <= over)
    if not sel.any():
        return np.nan, np.nan
    here = interference.sel(model=model, seed=seed, task=task)
    cos = here.cos_nontask_ref.values[sel]
    lc = here.loss_change_significant.drop_sel(other_task=task).sum("other_task", min_count=1).values[sel]
    return float(np.nanmean(cos)) if np.isfinite(cos).any() else np.nan, float(np.nansum(lc)) if np.isfinite(lc).any() else np.nan


VARIABLES = {
    "learned_step": ("first step at which the smoothed signal reaches halfway from its start to its peak (learned signals only)", "1"),
    "peak_step": ("step of the smoothed signal's maximum (learned signals only)", "1"),
    "peak_value": ("maximum of the smoothed signal (learned signals only)", "1"),
    "final_value": ("last value of the smoothed signal", "1"),
    "overwrite_step": ("overwrite step of the first overwrite event (NaN: none)", "1"),
    "interference_at_overwrite": ("mean cos(g_nt, g_r) of the task over the first event's window (peak, overwrite]", "1"),
    "loss_change_at_overwrite": ("summed significant loss_change (beyond t x its s.e.) of the task from the other components over the first event's window", "1"),
    "retained": ("learned, and the final smoothed value is at least halfway from start to peak", "1"),
    "n_overwrites": ("overwrite events", "1"),
    "event_model": ("model of the event", None),
    "event_seed": ("training seed of the event", "1"),
    "event_task": ("task of the event", None),
    "event_signal": ("signal of the event", None),
    "event_peak_step": ("step of the event's peak", "1"),
    "event_overwrite_step": ("step at which the signal had fallen by half the peak's prominence", "1"),
    "event_drop": ("fall of the smoothed signal from peak to overwrite step", "1"),
    "event_interference": ("mean cos(g_nt, g_r) over the event's window (peak, overwrite]", "1"),
    "event_loss_change": ("summed significant loss_change from the other components over the event's window", "1"),
    "event_p_value": ("p-value of the overwrite test (NaN: a thresholded series)", "1"),
    "event_calibrated": ("the event comes from a test with false-positive rate alpha per series (else thresholds)", "1"),
    "p_learned": ("p-value of 'learned' (accuracy: above chance under binomial noise; probe, neurons, sae: a rise over the first "
                  "checkpoints under a permutation of the series' own jitter); NaN: not tested", "1"),
    "p_overwrite": ("p-value of 'fell after its peak' (accuracy: under non-decreasing accuracy with binomial noise; probe, neurons, "
                    "sae: under a permutation of the series' own jitter); NaN: not tested", "1"),
    "calibrated": ("the series' events are tests with false-positive rate alpha; else thresholds", "1"),
    "chance": ("chance level of the task's answer: 1 / the answers it can have", "1"),
    "eval_items": ("held-out items the task's accuracy is measured on", "1"),
}


def _rng_key(cfg: RetentionConfig, model: str, task: str, training_seed: int, signal: str = "") -> list[int]:
    return rng_key(cfg.seed, model, task, training_seed, signal)


def _as_detection(e) -> Detection:
    """A test's findings (binomial or permutation) as a Detection (at most one event)."""
    d = Detection(e.learned_step, e.peak_step if e.learned else np.nan, e.peak_value if e.learned else np.nan, e.final_value,
                  e.retained, p_learned=e.p_learned, p_overwrite=e.p_overwrite, calibrated=e.tested)
    if e.overwritten:
        d.events.append((e.peak_step, e.overwrite_step, e.drop))
    return d


def tested(da, n: int, chance: float, cfg: RetentionConfig, model: str, training_seed: int = 0) -> Detection:
    """The binomial tests on one accuracy series, as a Detection."""
    seed = _rng_key(cfg, model, str(da.task.item()), training_seed)
    return _as_detection(detect_binomial(da.step.values, da.values, n, chance, cfg.window, cfg.alpha, cfg.n_null, seed))


def permuted(da, signal: str, cfg: RetentionConfig, model: str, training_seed: int = 0) -> Detection:
    """The permutation tests on one probe / neurons / SAE series, as a Detection (not calibrated when the
    series is too short to test)."""
    seed = _rng_key(cfg, model, str(da.task.item()), training_seed, signal)
    floor = {**DEFAULT_MIN_RISE, **cfg.min_rise}[signal]
    return _as_detection(detect_jitter(da.step.values, da.values.astype(float), cfg.window, cfg.alpha, cfg.n_null, seed,
                                       min_effect=floor))


def detect_series(da, signal: str, cfg: RetentionConfig, model: str, training_seed: int, binomial: dict) -> Detection:
    """One (model, seed, task, signal) series: its calibrated tests where it has them, else thresholds."""
    task = str(da.task.item())
    d = None
    if signal in CALIBRATED and task in binomial:
        d = tested(da, *binomial[task], cfg, model, training_seed)
    elif signal in PERMUTED:
        d = permuted(da, signal, cfg, model, training_seed)
    if d is None or not d.calibrated:
        d = detect(da.step.values, da.values.astype(float), {**DEFAULT_MIN_RISE, **cfg.min_rise}[signal], cfg.smooth)
    return d


@register_analysis
class Retention(Analysis):
    name = "retention"
    config_class = RetentionConfig
    after = ("evaluation", "probes", "sae", "neurons", "interference")

    def run(self, ctx: Context, cfg: RetentionConfig, *, models=None, steps=None, progress: bool = True, jobs: int = 1):
        """Detect learned / peak / overwrite steps for every (model, seed, task, signal); writes analyses/retention.nc.

        Run-level and quick: it reads the datasets present (``steps`` and ``jobs`` are not used)."""
        import xarray as xr

        from mechrare.analyses.driver import select_models

        models = select_models(ctx, models)
        metrics = _open(ctx, "metrics")
        if ctx.tasks is not None:
            tasks = list(ctx.tasks.names)
        elif metrics is not None:
            tasks = [str(t) for t in metrics.task.values]
        else:
            raise ConfigError(f"{ctx.folder}: no metrics.nc or task set to read; train the run first")
        signals = load_signals(ctx, models, tasks)
        if not signals:
            raise ConfigError(f"{ctx.folder}: no metrics.nc or analyses to read; train the run first")
        interference = _open(ctx, "interference")
        if interference is not None and "seed" not in interference.dims:  # a toy run's: one seed
            interference = interference.expand_dims(seed=[0])
        if interference is not None:
            interference = interference.assign(loss_change_significant=significant_loss_change(interference))
        names = [s for s in SIGNALS if s in signals]
        binomial = binomial_inputs(ctx, tasks)
        seeds = sorted({int(k) for v in signals.values() for k in v.seed.values})
        shape = (len(models), len(seeds), len(tasks), len(names))
        var = {k: np.full(shape, np.nan) for k in ("learned_step", "peak_step", "peak_value", "final_value", "overwrite_step",
                                                   "interference_at_overwrite", "loss_change_at_overwrite", "p_learned", "p_overwrite")}
        retained = np.zeros(shape, dtype=bool)
        calibrated = np.zeros(shape, dtype=bool)
        n_over = np.zeros(shape, dtype=np.int32)
        events = []
        for mi, m in enumerate(models):
            for ki, seed in enumerate(seeds):
                for ti, t in enumerate(tasks):
                    for si, sig in enumerate(names):
                        if seed not in signals[sig].seed.values:
                            continue
                        d = detect_series(signals[sig].sel(model=m, seed=seed, task=t), sig, cfg, m, seed, binomial)
                        at = (mi, ki, ti, si)
                        calibrated[at] = d.calibrated
                        for key in ("learned_step", "peak_step", "peak_value", "final_value", "p_learned", "p_overwrite"):
                            var[key][at] = getattr(d, key)
                        retained[at] = d.retained
                        n_over[at] = len(d.events)
                        p = var["p_overwrite"][at]
                        for k, (peak, over, drop) in enumerate(d.events):
                            cos, lc = _window_stats(interference, m, seed, t, peak, over)
                            events.append((m, seed, t, sig, peak, over, drop, cos, lc, p if d.calibrated else np.nan, d.calibrated))
                            if k == 0:
                                var["overwrite_step"][at] = over
                                var["interference_at_overwrite"][at] = cos
                                var["loss_change_at_overwrite"][at] = lc
        dims = ("model", "seed", "task", "signal")
        ev = list(zip(*events)) if events else [[] for _ in range(11)]
        ds = xr.Dataset(
            {
                **{k: (dims, v) for k, v in var.items()},
                "retained": (dims, retained),
                "n_overwrites": (dims, n_over),
                "event_model": (("event",), np.array(ev[0], dtype=str)),
                "event_seed": (("event",), np.array(ev[1], dtype=np.int64)),
                "event_task": (("event",), np.array(ev[2], dtype=str)),
                "event_signal": (("event",), np.array(ev[3], dtype=str)),
                "event_peak_step": (("event",), np.array(ev[4], dtype=float)),
                "event_overwrite_step": (("event",), np.array(ev[5], dtype=float)),
                "event_drop": (("event",), np.array(ev[6], dtype=float)),
                "event_interference": (("event",), np.array(ev[7], dtype=float)),
                "event_loss_change": (("event",), np.array(ev[8], dtype=float)),
                "event_p_value": (("event",), np.array(ev[9], dtype=float)),
                "event_calibrated": (("event",), np.array(ev[10], dtype=bool)),
                "calibrated": (dims, calibrated),
            },
            coords={
                "model": models,
                "n_params": ("model", [ctx.series.n_params(m) for m in models]),
                "seed": np.array(seeds, dtype=np.int64),
                "task": tasks,
                "signal": names,
                "chance": ("task", [binomial.get(t, (0, np.nan))[1] for t in tasks]),
                "eval_items": ("task", [binomial.get(t, (0, np.nan))[0] for t in tasks]),
            },
            attrs=provenance("retention", asdict(cfg), has_interference=int(interference is not None)),
        )
        if ctx.tasks is not None and metrics is not None:  # bursty tasks: learn-then-forget cycles (bursts.py)
            from mechrare.analyses.bursts import cycles_dataset

            per_model = {m: ctx.tasks.bursts(ctx.series.tokens_per_step(), m) for m in models}
            cycles = cycles_dataset(metrics, per_model, models, tasks, seeds)
            if cycles is not None:
                ds = ds.merge(cycles)
        describe(ds, VARIABLES)
        write_dataset(ds, ctx.analysis_path("retention"), root=ctx.folder)
        return ds


def run_retention(run, cfg: RetentionConfig | None = None, models: list[str] | None = None, progress: bool = True):
    """Retention for ``run`` (a path, Run or Context); writes analyses/retention.nc."""
    return Retention().run(as_context(run), cfg or RetentionConfig(), models=models, progress=progress)
