"""The run folder: paths, the manifest, and the config-compatibility check.

::

    RUN/
      manifest.json                 schema, resolved config, version, seed, models + status, checkpoint steps
      metrics.nc                    eval loss / accuracy per (model, seed, step, task); train loss
      models/<model>/seed_<s>/step_<N>/   a Hugging Face folder (+ tokenizer, mechrare.json)
      models/<model>/seed_<s>/resume/     latest full training state, for exact resume
      analyses/<analysis>.nc
      report/

A run folder written before seeds existed (manifest ``layout`` 1) keeps its
checkpoints at ``models/<model>/step_<N>/`` and reads as seed 0.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from mechrare._version import __version__
from mechrare.atomic import RECORD_SHA, atomic_write_json, seal_ok, sealed
from mechrare.checkpoints.manifest import Manifest
from mechrare.errors import ConfigError, RunFolderError
from mechrare.names import RULE, inside, is_safe_name

MANIFEST = "manifest.json"
STEP_RE = re.compile(r"^step_(\d+)$")


def mechrare_version() -> str:
    return __version__


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._layout: int | None = None

    # -- paths ---------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.nc"

    def model_dir(self, model: str) -> Path:
        if not is_safe_name(model):
            raise RunFolderError(f"{self.path}: model name {model!r} is not a plain folder name: names must be {RULE}")
        return inside(self.path, self.path / "models" / model)

    @property
    def layout(self) -> int:
        """The manifest's checkpoint layout (fixed when the folder is created)."""
        if self._layout is None:
            self._layout = self.read_manifest().layout
        return self._layout

    def seed_dir(self, model: str, seed: int = 0) -> Path:
        """Where one training seed of ``model`` keeps its checkpoints and resume state."""
        if self.layout == 1:
            if seed != 0:
                raise RunFolderError(f"{self.path}: this run folder predates seeds and holds seed 0 only, not seed {seed}")
            return self.model_dir(model)
        return self.model_dir(model) / f"seed_{seed}"

    def step_dir(self, model: str, step: int, seed: int = 0) -> Path:
        return self.seed_dir(model, seed) / f"step_{step}"

    def resume_dir(self, model: str, seed: int = 0) -> Path:
        return self.seed_dir(model, seed) / "resume"

    def analysis_path(self, name: str) -> Path:
        return inside(self.path, self.path / "analyses" / f"{name}.nc")

    # -- manifest -------------------------------------------------------------
    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> Manifest:
        """The typed manifest; a missing, damaged or malformed one is one clear line (RunFolderError)."""
        if not self.path.exists():
            raise RunFolderError(f"{self.path}: no such run folder; train one with `mechrare train PRESET --out {self.path}`")
        if not self.exists():
            raise RunFolderError(f"{self.path}: not a mechrare run folder (no {MANIFEST})")
        try:
            raw = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"{self.manifest_path}: damaged manifest ({exc})") from None
        if isinstance(raw, dict):
            if seal_ok(raw) is False:
                raise RunFolderError(f"{self.manifest_path}: damaged or edited manifest (its content does not match its "
                                     f"{RECORD_SHA}); restore it, or delete the {RECORD_SHA} line to accept an edit made on purpose")
            raw = {k: v for k, v in raw.items() if k != RECORD_SHA}
        try:
            return Manifest.from_dict(raw)
        except ConfigError as exc:
            raise RunFolderError(f"{self.manifest_path}: malformed manifest: {exc}") from None

    def write_manifest(self, manifest: Manifest) -> None:
        """The one writer of manifest.json (atomic)."""
        manifest.validate("")
        atomic_write_json(self.manifest_path, sealed(manifest.to_dict()))

    def update_model(self, model: str, **fields: Any) -> Manifest:
        manifest = self.read_manifest()
        manifest.models[model] = dataclasses.replace(manifest.model(model), **fields)
        self.write_manifest(manifest)
        return manifest

    # -- checkpoints on disk ----------------------------------------------------
    def complete_steps(self, model: str, seed: int = 0) -> list[int]:
        """Steps whose folder is whole (renamed into place, with mechrare.json)."""
        folder = self.seed_dir(model, seed)
        if not folder.is_dir():
            return []
        steps = []
        for child in folder.iterdir():
            m = STEP_RE.match(child.name)
            if m and (child / "mechrare.json").is_file():
                steps.append(int(m.group(1)))
        return sorted(steps)


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two JSON-like values first differ, as ``key.path: a != b``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                return f"{sub}: {a.get(key, '<unset>')!r} != {b.get(key, '<unset>')!r}"
            diff = first_difference(a[key], b[key], sub)
            if diff:
                return diff
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} entries != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"
