"""Learn-then-forget cycles of bursty tasks (the paper's matched-frequency experiment).

A task with ``schedule = {every = N, offset = o}`` is trained only in bursts: the
batches of steps o + kN (and the next ones while the burst fills more than one
batch, ``n_steps``). The run checkpoints just before each burst (step b_k = o + kN,
the weights before its first batch) and just after it (a_k = b_k + n_steps), see
:func:`mechrare.checkpoints.schedule.burst_checkpoints`. On the task's held-out loss L:

* ``cycle_gain`` = L(b_k) - L(a_k): what the burst taught;
* ``cycle_forgetting`` = L(b_{k+1}) - L(a_k): what the gap to the next burst undid;
* ``forgetting_fraction`` = sum of forgetting / sum of gain over the second half of
  the cycles: near 1, each burst is learned and then forgotten (a small model, in the
  paper); near 0, bursts accumulate (a large one). NaN where the bursts taught nothing
  (sum of gain <= 0);
* ``before_burst_slope``: the least-squares slope of L(b_k) per cycle over the same
  half: negative when the loss the task comes back to keeps falling (accumulation).

These are descriptions of one series (the held-out loss carries no per-item error in
metrics.nc); their spread over training seeds is their uncertainty.
"""

from __future__ import annotations

import numpy as np

from mechrare.checkpoints.datasets import describe


def burst_cycles(steps, loss, every: int, offset: int, n_steps: int) -> dict[str, np.ndarray]:
    """Per cycle k (a burst with a checkpoint before it, after it, and before the next burst):
    burst_step, before, after, next_before, gain, forgetting; cycles lacking a checkpoint are left out."""
    at = {int(s): float(v) for s, v in zip(steps, loss) if np.isfinite(v)}
    rows = []
    for b in range(offset, max(at, default=0) + 1, every):
        a, nxt = b + n_steps, b + every
        if b in at and a in at and nxt in at:
            rows.append((b, at[b], at[a], at[nxt]))
    arr = np.array(rows, dtype=float).reshape(-1, 4)
    return {
        "burst_step": arr[:, 0],
        "before": arr[:, 1],
        "after": arr[:, 2],
        "next_before": arr[:, 3],
        "gain": arr[:, 1] - arr[:, 2],
        "forgetting": arr[:, 3] - arr[:, 2],
    }


def summarize(cycles: dict[str, np.ndarray]) -> tuple[float, float]:
    """(forgetting_fraction, before_burst_slope) over the second half of the cycles (NaN with < 2)."""
    n = len(cycles["gain"])
    if n < 2:
        return np.nan, np.nan
    late = slice(n // 2, n)
    gain = cycles["gain"][late].sum()
    fraction = float(cycles["forgetting"][late].sum() / gain) if gain > 0 else np.nan
    before = cycles["before"][late]
    slope = float(np.polyfit(np.arange(len(before)), before, 1)[0]) if len(before) >= 2 else np.nan
    return fraction, slope


VARIABLES = {
    "cycle_burst_step": ("step of the burst's first batch (the checkpoint just before it)", "1"),
    "cycle_loss_before": ("held-out loss of the task just before the burst", "nats"),
    "cycle_loss_after": ("held-out loss of the task just after the burst", "nats"),
    "cycle_gain": ("loss before the burst minus loss after it: what the burst taught", "nats"),
    "cycle_forgetting": ("loss just before the next burst minus loss just after this one: what the gap undid", "nats"),
    "forgetting_fraction": ("sum of cycle_forgetting / sum of cycle_gain over the second half of the cycles "
                            "(1: each burst forgotten; 0: bursts accumulate)", "1"),
    "burst_every": ("steps from one burst to the next (0: not bursty)", "1"),
    "burst_length": ("training steps one burst fills", "1"),
    "before_burst_slope": ("slope of the loss just before each burst per cycle, over the second half of the cycles "
                           "(negative: accumulation)", "nats"),
}


def cycles_dataset(metrics, bursts: dict[str, dict[str, tuple[int, int, int]]], models: list[str], tasks: list[str], seeds: list[int]):
    """The cycle variables over (model, seed, task[, cycle]) from metrics.nc's ``loss``, for the bursty
    tasks of ``bursts`` (model -> task -> (every, offset, n_steps)), NaN for the others; None without one."""
    import xarray as xr

    if metrics is None or "loss" not in metrics or not any(t in bursts.get(m, {}) for m in models for t in tasks):
        return None
    loss = metrics.loss if "seed" in metrics.loss.dims else metrics.loss.expand_dims(seed=[0])
    per = {}
    for mi, m in enumerate(models):
        for ki, seed in enumerate(seeds):
            for ti, t in enumerate(tasks):
                mine = bursts.get(m, {})
                if m not in loss.model.values or seed not in loss.seed.values or t not in mine or t not in loss.task.values:
                    continue
                series = loss.sel(model=m, seed=seed, task=t)
                per[mi, ki, ti] = burst_cycles(series.step.values, series.values, *mine[t])
    C = max((len(c["gain"]) for c in per.values()), default=0)
    length = np.zeros((len(models), len(tasks)), dtype=np.int64)
    every = np.zeros((len(models), len(tasks)), dtype=np.int64)
    for mi, m in enumerate(models):
        for ti, t in enumerate(tasks):
            every[mi, ti], _, length[mi, ti] = bursts.get(m, {}).get(t, (0, 0, 0))
    shape = (len(models), len(seeds), len(tasks), C)
    names = {"burst_step": "cycle_burst_step", "before": "cycle_loss_before", "after": "cycle_loss_after",
             "gain": "cycle_gain", "forgetting": "cycle_forgetting"}
    arrays = {v: np.full(shape, np.nan) for v in names.values()}
    fraction = np.full(shape[:3], np.nan)
    slope = np.full(shape[:3], np.nan)
    for (mi, ki, ti), c in per.items():
        n = len(c["gain"])
        for key, var in names.items():
            arrays[var][mi, ki, ti, :n] = c[key]
        fraction[mi, ki, ti], slope[mi, ki, ti] = summarize(c)
    dims = ("model", "seed", "task")
    ds = xr.Dataset(
        {**{v: (dims + ("cycle",), a) for v, a in arrays.items()},
         "forgetting_fraction": (dims, fraction), "before_burst_slope": (dims, slope),
         "burst_every": (("model", "task"), every), "burst_length": (("model", "task"), length)},
        coords={"model": models, "seed": seeds, "task": tasks, "cycle": np.arange(C)},
    )
    return describe(ds, VARIABLES)
