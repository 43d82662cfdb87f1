"""The toy run's datasets, under the names of the ladder run's (see :mod:`mechrare.toy.run`)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from mechrare.checkpoints.datasets import describe, provenance, series_coords, write_dataset
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.store import CheckpointStore
from mechrare.toy import theory
from mechrare.toy.config import ToyConfig
from mechrare.toy.train import top_units

LEARNED = 0.5  # a direction is learned when its gain (V U^T)_jj first reaches this


def _stack(rows: list[dict], key: str) -> np.ndarray:
    """[W, S, ...] from per-checkpoint arrays [W, ...]."""
    return np.stack([r[key] for r in rows], 1)


def _attrs(analysis: str, cfg: ToyConfig, **extra) -> dict:
    return provenance(analysis, asdict(cfg), kind="toy", **extra)


VARIABLES = {
    "retained_signal": ("s_k(U) = Tr(P_U C_k) / Tr(C_k): share of the task's input variance the encoder keeps", "1"),
    "loss": ("population loss of the task", "1"),
    "rare_seen": ("rare-task samples seen so far", "1"),
    "grad_norm": ("norm of the task's population loss gradient", "1"),
    "grad_cosine": ("cosine between population loss gradients", "1"),
    "loss_change": ("first-order change of task's loss from other_task's part of the updates since the previous checkpoint", "1"),
    "loss_change_total": ("first-order change of the task's loss from all updates since the previous checkpoint", "1"),
    "loss_change_actual": ("measured change of the task's population loss since the previous checkpoint", "1"),
    "task_loss": ("population loss of the task", "1"),
    "cos_nontask_ref": ("cos(g_nt, g_task) on the task's top encoder units", "1"),
    "cos_batch_ref": ("cos(g, g_task) on the task's top encoder units", "1"),
    "top_k": ("encoder units per task in the protocol (a quarter of the width, at least 1)", "1"),
    "allocation": ("u^T C_k u * ||P_k v||^2 per encoder unit", "1"),
    "owner": ("index into task of the task owning the unit", "1"),
    "n_claimed": ("units the task owns", "1"),
    "claim_step": ("first step with >= 1 owned unit, held 2 more checkpoints", "1"),
    "gain": ("(V U^T)_jj: how much of direction j is reconstructed", "1"),
    "learned_step": (f"first step with gain >= {LEARNED} (interpolated)", "1"),
    "utility": ("pi_k lambda_kj", "1"),
    "predicted_signal": ("s_k of the top-N eigenspace of M", "1"),
    "final_signal": ("measured s_k at the last step", "1"),
}


def crossing_step(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """First step where ``values`` reaches ``level``, linearly interpolated between checkpoints; NaN if never."""
    hit = np.flatnonzero(values >= level)
    if not len(hit):
        return np.nan
    i = hit[0]
    if i == 0:
        return float(steps[0])
    x0, x1, y0, y1 = steps[i - 1], steps[i], values[i - 1], values[i]
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)


def measured_critical_width(widths: list[int], final_rare: np.ndarray, level: float = 0.5) -> float:
    """Smallest width from which on every wider model keeps s_r >= ``level``; NaN if none."""
    ok = final_rare >= level
    for i in range(len(widths)):
        if ok[i:].all():
            return float(widths[i])
    return np.nan


def write_datasets(run: RunFolder, cfg: ToyConfig, rows: list[dict], progress: bool = True) -> None:
    import xarray as xr

    from mechrare.analyses.neurons import claim_step, ownership
    from mechrare.analyses.retention import RetentionConfig, run_retention

    models = [f"w{w}" for w in cfg.widths]
    tasks = cfg.task_names()
    steps = [r["step"] for r in rows]
    coords = {**series_coords(CheckpointStore(run), models, steps), "task": tasks}
    pi, lam = cfg.frequencies(), cfg.spectra()
    share = ("task", pi)

    # -- metrics.nc ----------------------------------------------------------------------
    signal, loss = _stack(rows, "retained_signal"), _stack(rows, "loss")
    metrics = xr.Dataset(
        {
            "retained_signal": (("model", "step", "task"), signal),
            "loss": (("model", "step", "task"), loss),
            "rare_seen": (("step",), np.array([r["rare_seen"] for r in rows])),
        },
        coords={**coords, "share": share, "complexity": ("task", [cfg.block] * len(tasks))},
        attrs=_attrs("metrics", cfg),
    )
    write_dataset(describe(metrics, VARIABLES), run.metrics_path, root=run.path)

    # -- interference.nc ---------------------------------------------------------------------
    gram = _stack(rows, "gram")  # [W, S, K, K]
    norm = np.sqrt(np.einsum("wskk->wsk", gram))
    lc = _stack(rows, "loss_change")
    lc[:, 0] = np.nan  # nothing happened before step 0
    actual = np.concatenate([np.full_like(loss[:, :1], np.nan), np.diff(loss, axis=1)], 1)
    dims, dims2 = ("model", "step", "task"), ("model", "step", "task", "other_task")
    with np.errstate(invalid="ignore", divide="ignore"):  # a task with zero gradient has no cosine (NaN)
        cosine = gram / (norm[..., :, None] * norm[..., None, :])
    interference = xr.Dataset(
        {
            "grad_norm": (dims, norm),
            "grad_cosine": (dims2, cosine),
            "loss_change": (dims2, lc),
            "loss_change_total": (dims, lc.sum(-1)),
            "loss_change_actual": (dims, actual),
            "task_loss": (dims, loss),
            "cos_nontask_ref": (dims, _stack(rows, "cos_nontask_ref")),
            "cos_batch_ref": (dims, _stack(rows, "cos_batch_ref")),
            "top_k": (("model",), np.array([top_units(w) for w in cfg.widths])),
        },
        coords={**coords, "other_task": tasks, "share": share},
        attrs=_attrs("interference", cfg),
    )
    write_dataset(describe(interference, VARIABLES), run.analysis_path("interference"), root=run.path)

    # -- neurons.nc (encoder units) -------------------------------------------------------------
    alloc = _stack(rows, "allocation")  # [W, S, n, K]
    W, S, N, K = alloc.shape
    owner = np.full((W, S, 1, N), -1, dtype=np.int16)
    n_claimed = np.zeros((W, S, 1, K), dtype=np.int32)
    claim = np.full((W, K), np.nan)
    for wi, width in enumerate(cfg.widths):
        floor = alloc[wi, 0, None, :width].max(axis=1)  # [1, K]: the largest allocation at initialisation
        for si in range(S):
            o = ownership(alloc[wi, si, None, :width], floor, min_share=2.0, selectivity=2.0)
            owner[wi, si, :, :width] = o
            n_claimed[wi, si, 0] = [(o == k).sum() for k in range(K)]
        for k in range(K):
            claim[wi, k] = claim_step(steps, n_claimed[wi, :, 0, k], 1, 2)
    neurons = xr.Dataset(
        {
            "allocation": (("model", "step", "block", "neuron", "task"), alloc[:, :, None]),
            "owner": (("model", "step", "block", "neuron"), owner),
            "n_claimed": (("model", "step", "block", "task"), n_claimed),
            "claim_step": (("model", "task"), claim),
        },
        coords={**coords, "block": [0], "neuron": np.arange(N), "share": share},
        attrs=_attrs("neurons", cfg),
    )
    describe(neurons, VARIABLES)
    neurons["owner"].attrs.update(flag_values=np.int16(-1), flag_meanings="unowned")
    write_dataset(neurons, run.analysis_path("neurons"), root=run.path)

    # -- toy.nc: theory beside measurement ----------------------------------------------------
    gain = _stack(rows, "gain")  # [W, S, K, m]
    learned = np.full((W, K, cfg.block), np.nan)
    for wi in range(W):
        for k in range(K):
            for j in range(cfg.block):
                learned[wi, k, j] = crossing_step(np.array(steps), gain[wi, :, k, j], LEARNED)
    final_rare = signal[:, -1, -1]
    predicted = np.stack([theory.predicted_signal(pi, lam, w) for w in cfg.widths])
    toy = xr.Dataset(
        {
            "gain": (("model", "step", "task", "direction"), gain),
            "learned_step": (("model", "task", "direction"), learned),
            "utility": (("task", "direction"), theory.utilities(pi, lam)),
            "predicted_signal": (("model", "task"), predicted),
            "final_signal": (("model", "task"), signal[:, -1]),
        },
        coords={**{k: v for k, v in coords.items() if k != "task"}, "task": tasks, "direction": np.arange(cfg.block), "width": ("model", cfg.widths)},
        attrs=_attrs(
            "toy", cfg,
            critical_width=theory.critical_width(pi, lam),
            measured_critical_width=measured_critical_width(cfg.widths, final_rare),
            half_signal_width=theory.half_signal_width(pi, lam),
        ),
    )
    write_dataset(describe(toy, VARIABLES), run.analysis_path("toy"), root=run.path)

    # -- retention.nc: the LM analysis itself, on s_k and the unit claims ------------------------
    # s_k is a closed-form population quantity (no eval noise): no smoothing; widths are small: one unit counts
    run_retention(run.path, RetentionConfig(smooth=1, min_rise={"neurons": 1.0}), progress=progress)
