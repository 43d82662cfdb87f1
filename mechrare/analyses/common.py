"""Helpers every analysis shares: the run's mixture, devices, provenance attrs."""

from __future__ import annotations

import json

from mechrare.checkpoints.run import mechrare_version
from mechrare.checkpoints.store import CheckpointStore
from mechrare.config import RunConfig
from mechrare.data.mixture import Mixture


BACKGROUND = "background"  # the non-task component, after the tasks in gradient and neuron datasets


def run_mixture(store: CheckpointStore, model: str | None = None) -> Mixture:
    """The run's task mixture, rebuilt from its manifest (same seed, same tasks);
    with ``model``, the mixture that model was trained on (an intervention's
    upsampled one)."""
    config = RunConfig.from_dict(store.manifest["config"])
    mixture = Mixture(config.mixture, config.seed)
    upsample = store.manifest["models"].get(model, {}).get("intervention", {}).get("upsample") if model else None
    return mixture.with_upsample(upsample) if upsample else mixture


def components(store: CheckpointStore, task_names: list[str], model: str | None = None) -> tuple[list[str], list[float]]:
    """The run's tasks plus ``background``, with their mixture shares (summing to 1);
    with ``model``, the shares that model was trained on."""
    shares = {t["name"]: t["share"] for t in store.manifest["tasks"]}
    if model is not None:
        shares = store.manifest["models"][model].get("shares", shares)
    return task_names + [BACKGROUND], [shares[t] for t in task_names] + [1.0 - sum(shares.values())]


def resolve_torch_device(name: str):
    from mechrare.training.runner import resolve_device

    return resolve_device(name)


def analysis_attrs(store: CheckpointStore, analysis: str, config: dict, **extra) -> dict:
    return {
        "mechrare_version": mechrare_version(),
        "run": str(store.run.path),
        "analysis": analysis,
        "analysis_config": json.dumps(config, sort_keys=True),
        **extra,
    }


def parts_dir(store: CheckpointStore, analysis: str, config: dict, ignore: tuple[str, ...] = ("device",)):
    """Where an analysis keeps one finished file per checkpoint, keyed by its settings,
    so that a rerun with the same settings resumes and other settings start afresh."""
    import hashlib

    key = json.dumps({k: v for k, v in config.items() if k not in ignore}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return store.run.path / "analyses" / f"{analysis}.parts" / digest


def save_part(path, arrays: dict) -> None:
    """Write one checkpoint's arrays (npz) atomically."""
    import numpy as np

    from mechrare.checkpoints.atomic import atomic_file

    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_part(path) -> dict:
    import numpy as np

    with np.load(path) as data:
        return {k: data[k] for k in data.files}
