"""metrics.nc: eval loss and accuracy per (model, step, task), and train loss.

Built from the ``mechrare.json`` of every checkpoint on disk, so it is a pure
function of the run folder: rebuilding it after a resume gives the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mechrare.checkpoints.atomic import atomic_file
from mechrare.checkpoints.run import RunFolder, mechrare_version
from mechrare.checkpoints.store import CheckpointStore


def model_step_coords(manifest: dict, models: list[str], steps: list[int]) -> dict:
    """The coordinates every run-level Dataset shares: model (+ n_params), step (+ tokens)."""
    return {
        "model": models,
        "n_params": ("model", [manifest["models"][m]["n_params"] for m in models]),
        "step": steps,
        "tokens": ("step", np.array(steps, dtype=np.int64) * manifest["tokens_per_step"]),
    }


def build_metrics(run: str | Path | RunFolder):
    import xarray as xr

    store = CheckpointStore(run)
    manifest = store.manifest
    models = store.models()
    tasks = manifest["tasks"]
    task_names = [t["name"] for t in tasks]
    steps = sorted({s for m in models for s in store.steps(m)} | set(manifest["checkpoint_steps"]))
    shape = (len(models), len(steps), len(task_names))
    loss = np.full(shape, np.nan)
    acc = np.full(shape, np.nan)
    train_loss = np.full(shape[:2], np.nan)
    bg_loss = np.full(shape[:2], np.nan)
    step_index = {s: i for i, s in enumerate(steps)}
    for mi, model in enumerate(models):
        for step in store.steps(model):
            info = store.info(model, step)
            si = step_index[step]
            for ti, name in enumerate(task_names):
                if name in info.get("eval", {}):
                    loss[mi, si, ti] = info["eval"][name]["loss"]
                    acc[mi, si, ti] = info["eval"][name]["accuracy"]
            train_loss[mi, si] = _nan(info.get("train_loss"))
            bg_loss[mi, si] = _nan(info.get("background_loss"))
    coords = {
        **model_step_coords(manifest, models, steps),
        "task": task_names,
        "frequency": ("task", [t["share"] for t in tasks]),
        "complexity": ("task", [t["complexity"] for t in tasks]),
        "family": ("task", [t["family"] for t in tasks]),
    }
    ds = xr.Dataset(
        {
            "loss": (("model", "step", "task"), loss, {"long_name": "held-out task loss (answer tokens)"}),
            "accuracy": (("model", "step", "task"), acc, {"long_name": "held-out exact-match accuracy"}),
            "train_loss": (("model", "step"), train_loss, {"long_name": "mean training loss since previous checkpoint"}),
            "background_loss": (("model", "step"), bg_loss, {"long_name": "held-out background next-token loss"}),
        },
        coords=coords,
        attrs={"mechrare_version": mechrare_version(), "run": str(store.run.path), "analysis": "metrics"},
    )
    return ds


def _nan(value) -> float:
    return np.nan if value is None else float(value)


def write_dataset(ds, path: str | Path) -> None:
    """Write an xarray Dataset as compressed netCDF4, atomically."""
    encoding = {name: {"zlib": True, "complevel": 4} for name in ds.data_vars}
    with atomic_file(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)


def write_metrics(run: str | Path | RunFolder) -> Path:
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    write_dataset(build_metrics(run), run.metrics_path)
    return run.metrics_path


def open_dataset(path: str | Path):
    import xarray as xr

    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()
