"""Neuron ownership over a checkpoint series, by either of two measures.

* :func:`gradient_owners`: the paper's task neurons (:mod:`mechrare.analyses.task_neurons`),
  from interference.nc's ``neuron_grad``; what ``owner``, ``n_claimed``, ``claim_step``,
  ``turnover`` and ``rare_to_common`` in neurons.nc mean.
* :func:`attribution_owners`: the attribution-patching rule on neurons.nc's ``allocation``
  (the ``*_attribution`` variables), a second, named measure.

:func:`owner_series` turns either owner array into the counts the analyses read.
"""

from __future__ import annotations

import numpy as np

from mechrare.analyses.task_neurons import gradient_owner, init_floor


def claim_step(steps: list[int], counts: np.ndarray, k: int, stable: int) -> float:
    """First step with counts >= k that holds for the next ``stable`` checkpoints."""
    good = counts >= k
    for i in range(len(steps)):
        if good[i : i + stable + 1].all():
            return float(steps[i])
    return np.nan


def ownership(allocation: np.ndarray, floor: np.ndarray | None, min_share: float, selectivity: float) -> np.ndarray:
    """The attribution rule: owner [L, n] (task index or -1) from allocation [L, n, T] and the init floor [L, T]."""
    totals = allocation.sum(axis=1, keepdims=True)
    shares = np.divide(allocation, totals, out=np.zeros_like(allocation), where=totals > 0)
    n = allocation.shape[1]
    eligible = shares if floor is None else np.where(allocation > floor[:, None, :], shares, 0.0)
    owner = eligible.argmax(-1)
    best = np.take_along_axis(shares, owner[..., None], -1)[..., 0]
    others = shares.copy()
    np.put_along_axis(others, owner[..., None], -np.inf, -1)
    second = others.max(-1) if shares.shape[-1] > 1 else np.zeros_like(best)
    ok = (eligible.max(-1) > 0) & (best >= min_share / n) & (best >= selectivity * second)
    return np.where(ok, owner, -1)


def model_extent(values: np.ndarray) -> tuple[list[int], int, int]:
    """(indices of steps with numbers, blocks, neurons) of one model's NaN-padded [S, L, N, T] array."""
    have = [si for si in range(values.shape[0]) if np.isfinite(values[si]).any()]
    if not have:
        return [], 0, 0
    size = np.isfinite(values[have[0]]).any(-1)
    return have, int(size.any(1).sum()), int(size.any(0).sum())


def attribution_owners(alloc: np.ndarray, steps: list[int], gate: np.ndarray, floor: float, min_share: float, selectivity: float) -> np.ndarray:
    """owner [S, L, N] of one (model, seed) from its allocation [S, L, N, T]; ``gate`` [T]: the step from
    which each task may own; ``floor`` x the largest step-0 allocation per (block, task) (none without step 0)."""
    S, L, N, _ = alloc.shape
    owner = np.full((S, L, N), -1, dtype=np.int16)
    have, Lm, Nm = model_extent(alloc)
    if not have:
        return owner
    first = np.nan_to_num(alloc[have[0], :Lm, :Nm])
    fl = floor * first.max(axis=1) if steps[have[0]] == 0 else None
    for si in have:
        a = np.nan_to_num(alloc[si, :Lm, :Nm])  # a task set without background text: NaN -> 0
        a = np.where(steps[si] >= gate, a, 0.0)  # tasks not yet learned take no part
        owner[si, :Lm, :Nm] = ownership(a, fl, min_share, selectivity)
    return owner


def interference_energy(interference, model: str, seeds: list[int], steps: list[int]):
    """(energy [K, S, L, N, T], top_k, neuron_layer) of ``model`` from interference.nc on neurons.nc's
    seeds and steps, or a reason why not (str) when it does not hold every one of them."""
    if interference is None or "neuron_grad" not in interference:
        return "interference.nc has no neuron_grad (run `mechrare analyze RUN --only interference,neurons`)"
    if model not in interference.model.values:
        return f"interference.nc has no model {model!r}"
    here = interference.sel(model=model)
    have_seeds = [int(s) for s in here.seed.values] if "seed" in here.dims else [0]
    missing = [s for s in seeds if s not in have_seeds] or [s for s in steps if s not in here.step.values]
    if missing:
        return f"interference.nc lacks {model}'s seeds or steps {missing[:4]}"
    grad = here.neuron_grad.sel(step=steps)
    grad = grad.sel(seed=seeds) if "seed" in grad.dims else grad.expand_dims(seed=seeds)
    energy = grad.transpose("seed", "step", "block", "neuron", "task").values
    return energy, int(here.top_k.max()), int(here.neuron_layer.max())


def gradient_owners(energy: np.ndarray, steps: list[int], gates: np.ndarray, k: int, blocks: np.ndarray | None,
                    floor: float) -> tuple[np.ndarray, np.ndarray | None]:
    """owner [K, S, L, N] of one model's seeds from energy [K, S, L, N, T] and gates [K, T]; with the
    null floor [L, n, T] by rank (``floor`` x the r-th step-0 share, largest over the seeds; None without step 0 or floor 0)."""
    K, S, L, N, _ = energy.shape
    owner = np.full((K, S, L, N), -1, dtype=np.int16)
    have, Lm, Nm = model_extent(energy[0])
    if not have:
        return owner, None
    fl = floor * init_floor(np.nan_to_num(energy[:, have[0], :Lm, :Nm])) if steps[have[0]] == 0 and floor > 0 else None
    use = None if blocks is None else blocks[:Lm]
    for ki in range(K):
        for si in have:
            learned = steps[si] >= gates[ki]
            owner[ki, si, :Lm, :Nm] = gradient_owner(np.nan_to_num(energy[ki, si, :Lm, :Nm]), k, fl, learned, use)
    return owner, fl


def owner_series(owner: np.ndarray, steps: list[int], have: list[int], share: np.ndarray, n_tasks: int,
                 claim_neurons: int, claim_stable: int) -> dict:
    """From one (model, seed)'s owner [S, L, N]: n_claimed [S, L, T], turnover [S, T, T],
    rare_to_common [S] (moves from a task to a task with a larger share; background, the last
    component, is not a task) and claim_step [T]."""
    S, L, _ = owner.shape
    T = n_tasks
    n_claimed = np.zeros((S, L, T), dtype=np.int32)
    turnover = np.zeros((S, T, T), dtype=np.int32)
    r2c = np.zeros(S, dtype=np.int32)
    prev = None
    for si in have:
        o = owner[si]
        for t in range(T):
            n_claimed[si, :, t] = (o == t).sum(axis=1)
        if prev is not None:
            moved = (prev != o) & (prev >= 0) & (o >= 0)
            np.add.at(turnover[si], (prev[moved], o[moved]), 1)
            tasks_only = moved & (prev < T - 1) & (o < T - 1)
            r2c[si] = int((share[prev[tasks_only]] < share[o[tasks_only]]).sum())
        prev = o
    mine = [steps[si] for si in have]
    claim = np.array([claim_step(mine, n_claimed[have, :, t].sum(-1), claim_neurons, claim_stable) for t in range(T)])
    return {"n_claimed": n_claimed, "turnover": turnover, "rare_to_common": r2c, "claim_step": claim}
