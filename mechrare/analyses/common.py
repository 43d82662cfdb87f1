"""Helpers every analysis shares: the run's mixture, devices, provenance attrs."""

from __future__ import annotations

import json

from mechrare.checkpoints.run import mechrare_version
from mechrare.checkpoints.store import CheckpointStore
from mechrare.config import RunConfig
from mechrare.data.mixture import Mixture


def run_mixture(store: CheckpointStore) -> Mixture:
    """The run's task mixture, rebuilt from its manifest (same seed, same tasks)."""
    config = RunConfig.from_dict(store.manifest["config"])
    return Mixture(config.mixture, config.seed)


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
