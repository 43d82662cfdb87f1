"""metrics.nc: eval loss and accuracy per (model, seed, step, task), and train loss.

Built from the ``mechrare.json`` of every checkpoint on disk, so it is a pure
function of the run folder: rebuilding it after a resume gives the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mechrare.checkpoints.datasets import describe, open_dataset, provenance, series_coords, write_dataset
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.store import CheckpointStore

__all__ = ["build_metrics", "open_dataset", "write_dataset", "write_metrics"]

VARIABLES = {
    "loss": ("held-out task loss on the answer tokens (nats per token)", "1"),
    "accuracy": ("held-out exact-match accuracy", "1"),
    "train_loss": ("mean training loss since the previous checkpoint (nats per token)", "1"),
    "background_loss": ("held-out background next-token loss (nats per token)", "1"),
}


def build_metrics(run: str | Path | RunFolder):
    import xarray as xr

    store = CheckpointStore(run)
    manifest = store.manifest
    models = store.models()
    tasks = manifest.tasks
    task_names = [t.name for t in tasks]
    seeds = store.seeds()
    steps = sorted({s for m in models for seed in store.seeds(m) for s in store.steps(m, seed)} | set(manifest.checkpoint_steps))
    shape = (len(models), len(seeds), len(steps), len(task_names))
    loss = np.full(shape, np.nan)
    acc = np.full(shape, np.nan)
    train_loss = np.full(shape[:3], np.nan)
    bg_loss = np.full(shape[:3], np.nan)
    step_index = {s: i for i, s in enumerate(steps)}
    for mi, model in enumerate(models):
        for ki, seed in enumerate(seeds):
            for step in store.steps(model, seed):
                info = store.info(model, step, seed)
                si = step_index[step]
                for ti, name in enumerate(task_names):
                    if name in info.get("eval", {}):
                        loss[mi, ki, si, ti] = info["eval"][name]["loss"]
                        acc[mi, ki, si, ti] = info["eval"][name]["accuracy"]
                train_loss[mi, ki, si] = _nan(info.get("train_loss"))
                bg_loss[mi, ki, si] = _nan(info.get("background_loss"))
    coords = {
        **series_coords(store, models, steps, seeds),
        "task": task_names,
        "share": ("task", [t.share for t in tasks]),
        "complexity": ("task", [t.complexity for t in tasks]),
        "family": ("task", [t.family for t in tasks]),
    }
    ds = xr.Dataset(
        {
            "loss": (("model", "seed", "step", "task"), loss),
            "accuracy": (("model", "seed", "step", "task"), acc),
            "train_loss": (("model", "seed", "step"), train_loss),
            "background_loss": (("model", "seed", "step"), bg_loss),
        },
        coords=coords,
        attrs=provenance("metrics"),
    )
    return describe(ds, VARIABLES)


def _nan(value) -> float:
    return np.nan if value is None else float(value)


def write_metrics(run: str | Path | RunFolder) -> Path:
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    write_dataset(build_metrics(run), run.metrics_path, root=run.path)
    return run.metrics_path
