"""CheckpointStore: a run folder's checkpoint series (list, verify and load by (model, step))."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from mechrare.atomic import RECORD_SHA, first_mismatch, seal_ok
from mechrare.checkpoints.manifest import Manifest
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.series import WEIGHTS, Checkpoint, CheckpointSeries
from mechrare.errors import ChecksumError, RunFolderError

__all__ = ["Checkpoint", "CheckpointStore"]


class CheckpointStore(CheckpointSeries):
    """Read access to a run folder's checkpoint series.

    >>> store = CheckpointStore("runs/quickstart")          # doctest: +SKIP
    >>> store.models(), store.steps("d16-l2")[:4]           # doctest: +SKIP
    (['d16-l2', 'd32-l2', 'd64-l2', 'd16-l2-up10'], [0, 1, 2, 4])
    >>> model = store.load("d16-l2", 512)                   # doctest: +SKIP
    """

    def __init__(self, run: str | Path | RunFolder):
        self.run = run if isinstance(run, RunFolder) else RunFolder(run)

    @cached_property
    def manifest(self) -> Manifest:
        return self.run.read_manifest()

    def models(self) -> list[str]:
        return list(self.manifest.models)

    def analysed_models(self) -> list[str]:
        return [m for m, r in self.manifest.models.items() if not (r.intervention and r.intervention.sweep)]

    def _check_model(self, model: str) -> None:
        if model not in self.manifest.models:
            raise RunFolderError(f"{self.run.path}: no model {model!r}; models: {', '.join(self.models())}")

    def seeds(self, model: str | None = None) -> list[int]:
        """The run's training seeds (those of ``model`` that have a checkpoint on disk, when given)."""
        if model is None:
            return list(self.manifest.seeds)
        self._check_model(model)
        return [s for s in self.manifest.seeds if self.run.complete_steps(model, s)]

    def finished(self, model: str, seed: int = 0) -> bool:
        return seed in self.manifest.model(model).finished_seeds()

    def _check_seed(self, seed: int) -> None:
        if seed not in self.manifest.seeds:
            raise RunFolderError(f"{self.run.path}: no seed {seed}; seeds: {', '.join(map(str, self.manifest.seeds))}")

    def steps(self, model: str, seed: int = 0) -> list[int]:
        """Steps with a whole checkpoint on disk, ascending."""
        self._check_model(model)
        self._check_seed(seed)
        return self.run.complete_steps(model, seed)

    def n_params(self, model: str) -> int:
        self._check_model(model)
        return self.manifest.models[model].n_params

    def tokens_per_step(self) -> int:
        return self.manifest.tokens_per_step

    def path(self, model: str, step: int, seed: int = 0) -> Path:
        self._check_model(model)
        self._check_seed(seed)
        folder = self.run.step_dir(model, step, seed)
        if not (folder / "mechrare.json").is_file():
            have = self.steps(model, seed)
            raise RunFolderError(
                f"{folder}: no checkpoint of {model}{'' if self.manifest.seeds == [0] else f' (seed {seed})'} at step {step}; available steps: "
                f"{', '.join(map(str, have)) if have else 'none'}"
            )
        return folder

    def info(self, model: str, step: int, seed: int = 0) -> dict[str, Any]:
        """The checkpoint's mechrare.json (step, tokens, sha256, eval metrics)."""
        path = self.path(model, step, seed) / "mechrare.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            record, why = None, str(exc)
        else:
            why = "not a JSON object with a sha256 table"
        if isinstance(record, dict) and seal_ok(record) is False:
            why = f"its content does not match its {RECORD_SHA}"
        elif isinstance(record, dict) and isinstance(record.get("sha256", {}), dict):
            return {k: v for k, v in record.items() if k != RECORD_SHA}
        raise RunFolderError(f"{path}: damaged checkpoint record ({why}); rerun `mechrare train` with the run's config to regenerate it")

    def fingerprint(self, model: str, step: int, seed: int = 0) -> str:
        record = self.info(model, step, seed).get("sha256", {})
        if WEIGHTS not in record:
            raise RunFolderError(f"{self.path(model, step, seed)}/mechrare.json: no sha256 recorded for {WEIGHTS}")
        return str(record[WEIGHTS])

    def verify(self, model: str, step: int, seed: int = 0) -> None:
        """Recompute every recorded sha256; raise ChecksumError on a mismatch."""
        bad = first_mismatch(self.path(model, step, seed), self.info(model, step, seed)["sha256"])
        if bad is None:
            return
        target, actual, expected = bad
        if actual is None:
            raise ChecksumError(f"{target}: file recorded in mechrare.json is missing")
        raise ChecksumError(
            f"{target}: sha256 {actual[:12]}... does not match the recorded {expected[:12]}...; "
            "the checkpoint is damaged: rerun `mechrare train` with the run's config to regenerate it"
        )
