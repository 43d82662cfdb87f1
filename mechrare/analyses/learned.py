"""When is a task learned: the binomial accuracy test, shared by retention and neuron ownership.

A task is *learned* from the ``learned_step`` of :func:`mechrare.analyses.binomial.detect_binomial`
on its held-out accuracy (metrics.nc): above the task's chance level by more than binomial
noise on its eval items allows, false-positive rate ``alpha`` per series. The draws of the
test's null are keyed by (model, task, training seed), so retention and ownership find the
same step.
"""

from __future__ import annotations

import zlib

import numpy as np

from mechrare.analyses.binomial import detect_binomial
from mechrare.runs import Context


def rng_key(rng_seed: int, model: str, task: str, training_seed: int, signal: str = "") -> list[int]:
    """The null's draws for one series: the same whatever else is analysed."""
    key = f"{model}/{task}" + (f"/seed{training_seed}" if training_seed else "") + (f"/{signal}" if signal else "")
    return [rng_seed, zlib.crc32(key.encode())]


def binomial_inputs(ctx: Context, tasks: list[str]) -> dict[str, tuple[int, float]]:
    """task -> (eval items, chance level) where the task set knows them."""
    if ctx.tasks is None:
        return {}
    out = {}
    for t in tasks:
        inst = ctx.tasks.eval_instances(t)
        if inst.targets.get("answer", 0) >= 2:
            out[t] = (len(inst), 1.0 / inst.targets["answer"])
    return out


def owns_from(ctx: Context, model: str, training_seed: int, tasks: list[str], alpha: float = 0.05,
              window: int = 3, n_null: int = 1000, rng_seed: int = 0) -> dict[str, float]:
    """task -> the first step at which it counts as learned: its tested ``learned_step``, +inf if the
    test never finds it learned, and 0 (no gate) where it cannot be tested (no metrics.nc accuracy for
    this model and seed, or a task set that does not give the task's chance level)."""
    from mechrare.checkpoints.datasets import open_dataset

    path = ctx.dataset_path("metrics")
    out = {t: 0.0 for t in tasks}
    if not path.is_file():
        return out
    acc = open_dataset(path).accuracy
    if model not in acc.model.values or ("seed" in acc.dims and training_seed not in acc.seed.values):
        return out
    here = acc.sel(model=model)
    here = here.sel(seed=training_seed) if "seed" in here.dims else here
    for t, (n, chance) in binomial_inputs(ctx, tasks).items():
        series = here.sel(task=t)
        e = detect_binomial(series.step.values, series.values, n, chance, window, alpha, n_null,
                            rng_key(rng_seed, model, t, training_seed))
        if e.tested:
            out[t] = e.learned_step if e.learned else np.inf
    return out
