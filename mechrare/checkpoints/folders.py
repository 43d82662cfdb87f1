"""Checkpoints of a series mechrare did not train: where they are, and a CheckpointSeries over them.

:func:`discover` turns one ``[[models]]`` entry of SERIES.toml into ``{step: folder}``:
a folder pattern with ``{step}``, a folder holding ``step{N}/``, ``step_{N}/`` or
``global_step{N}/`` children, explicit paths, or a Hugging Face repo's revisions
(resolved by ``huggingface_hub``: online when allowed, from the local cache when
``HF_HUB_OFFLINE=1``). :class:`FolderSeries` reads the series' record
(``series.json``, :mod:`mechrare.checkpoints.series_integrity`): the sha256 of every
file of every checkpoint, taken when the series was first opened, against which
every load is verified.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

from mechrare.atomic import first_mismatch, seal_ok
from mechrare.checkpoints.hf_folder import load_weights
from mechrare.checkpoints.series import CheckpointSeries
from mechrare.checkpoints.series_spec import FOLDER_STYLES, STEP_FIELD, SeriesModelSpec
from mechrare.errors import ChecksumError, ConfigError, RunFolderError

def _pattern_regex(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(re.escape(STEP_FIELD), r"(\d+)") + "$")


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def _from_pattern(spec: SeriesModelSpec, where: str) -> dict[int, Path]:
    pattern = spec.path
    if STEP_FIELD not in pattern:
        folder = Path(pattern)
        if not folder.is_dir():
            raise ConfigError(f"{where}.path: no folder {folder}")
        found = {}
        for style in FOLDER_STYLES:
            rx = _pattern_regex(style)
            hits = {int(m.group(1)): folder / child.name for child in folder.iterdir()
                    if child.is_dir() and (m := rx.match(child.name)) and _is_checkpoint(child)}
            if hits:
                found[style] = hits
        if not found:
            raise ConfigError(f"{where}.path: {folder} holds no checkpoint folders named "
                              f"{', '.join(s.replace(STEP_FIELD, 'N') for s in FOLDER_STYLES)}; give a pattern with {STEP_FIELD}")
        if len(found) > 1:
            raise ConfigError(f"{where}.path: {folder} holds checkpoints named in several styles ({', '.join(found)}); "
                              f"give a pattern with {STEP_FIELD} to pick one")
        pattern = str(folder / next(iter(found))) if spec.steps is not None else None
        if pattern is None:
            return dict(sorted(next(iter(found.values())).items()))
    if spec.steps is not None:
        out = {s: Path(pattern.replace(STEP_FIELD, str(s))) for s in spec.steps}
        missing = [p for p in out.values() if not _is_checkpoint(p)]
        if missing:
            raise ConfigError(f"{where}.steps: no checkpoint at {missing[0]} (no config.json); "
                              "fix the step list or the path pattern")
        return out
    rx = _pattern_regex(pattern)
    out = {}
    for hit in glob.glob(glob.escape(pattern).replace(glob.escape(STEP_FIELD), "*")):
        m = rx.match(hit)
        if m and _is_checkpoint(Path(hit)):
            step = int(m.group(1))
            if step in out:
                raise ConfigError(f"{where}.path: step {step} matches both {out[step]} and {hit}; give the steps")
            out[step] = Path(hit)
    if not out:
        raise ConfigError(f"{where}.path: no checkpoint folder matches {pattern} (with config.json)")
    return dict(sorted(out.items()))


def _from_repo(spec: SeriesModelSpec, where: str) -> dict[int, Path]:
    from huggingface_hub import snapshot_download

    out = {}
    for step in spec.steps:
        revision = spec.revision.replace(STEP_FIELD, str(step))
        try:
            folder = snapshot_download(spec.repo, revision=revision,
                                       allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.bin"])
        except Exception as e:  # hub errors are many types; each becomes one line
            raise ConfigError(f"{where}: cannot get {spec.repo}@{revision} ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                              "offline, it must be in the local Hugging Face cache") from None
        out[step] = Path(folder)
    return out


def discover(spec: SeriesModelSpec, where: str = "models") -> dict[int, Path]:
    """``{step: checkpoint folder}`` of one model of a SERIES.toml, steps ascending."""
    if spec.repo:
        return _from_repo(spec, where)
    if spec.paths:
        out = {s: Path(p) for s, p in zip(spec.steps, spec.paths)}
        missing = [p for p in out.values() if not _is_checkpoint(p)]
        if missing:
            raise ConfigError(f"{where}.paths: no checkpoint at {missing[0]} (no config.json)")
        return out
    return _from_pattern(spec, where)


#: the record of a series in its output folder (see mechrare.checkpoints.series_integrity)
RECORD = "series.json"


def read_record(folder: Path) -> dict:
    path = Path(folder) / RECORD
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"{path}: missing; reopen the series with `mechrare analyze SERIES.toml --out {folder}`") from None
    except (ValueError, UnicodeDecodeError):
        raise RunFolderError(f"{path}: damaged (not JSON); delete it and reopen the series with `mechrare analyze SERIES.toml --out {folder}`") from None
    if not isinstance(raw, dict) or seal_ok(raw) is not True or not isinstance(raw.get("models"), dict):
        raise RunFolderError(f"{path}: damaged or edited (its content does not match its record_sha256); delete it and "
                             f"reopen the series with `mechrare analyze SERIES.toml --out {folder}`")
    return raw



class FolderSeries(CheckpointSeries):
    """Checkpoints in Hugging Face folders anywhere, verified against the series record.

    ``record``: what :func:`mechrare.checkpoints.series_integrity.scan` wrote to ``series.json``;
    ``exclude_suspect``: leave out the checkpoints it flagged."""

    def __init__(self, record: dict, exclude_suspect: bool = False):
        self.record = record
        self.exclude_suspect = exclude_suspect

    def _model(self, model: str) -> dict:
        try:
            return self.record["models"][model]
        except KeyError:
            raise RunFolderError(f"no model {model!r} in this series; models: {', '.join(self.models())}") from None

    def _entry(self, model: str, step: int, seed: int = 0) -> dict:
        if seed != 0:
            raise RunFolderError(f"{model}: an external series has one training seed, 0; got seed {seed}")
        try:
            return self._model(model)["checkpoints"][str(step)]
        except KeyError:
            raise RunFolderError(f"{model}: no checkpoint at step {step}; steps: {self.steps(model)}") from None

    def models(self) -> list[str]:
        return list(self.record["models"])

    def steps(self, model: str, seed: int = 0) -> list[int]:
        entries = self._model(model)["checkpoints"]
        return sorted(int(s) for s, e in entries.items() if not (self.exclude_suspect and e.get("suspect")))

    def suspects(self, model: str) -> dict[int, str]:
        """step -> why the checkpoint is suspect (identical to another step, out of place)."""
        return {int(s): e["suspect"] for s, e in self._model(model)["checkpoints"].items() if e.get("suspect")}

    def n_params(self, model: str) -> int:
        return int(self._model(model)["n_params"])

    def tokens_per_step(self) -> int | None:
        per = {int(m.get("tokens_per_step") or 0) for m in self.record["models"].values()}
        return per.pop() if len(per) == 1 and 0 not in per else None

    def path(self, model: str, step: int, seed: int = 0) -> Path:
        return Path(self._entry(model, step, seed)["path"])

    def fingerprint(self, model: str, step: int, seed: int = 0) -> str:
        return self._entry(model, step, seed)["weights_sha256"]

    def verify(self, model: str, step: int, seed: int = 0) -> None:
        entry = self._entry(model, step, seed)
        bad = first_mismatch(Path(entry["path"]), entry["files"])
        if bad is not None:
            target, actual, _ = bad
            what = "is missing" if actual is None else "changed since the series was first opened (sha256 differs)"
            raise ChecksumError(f"{target}: {what}; restore it, or analyse into a new --out folder to record the series afresh")

    def state_dict(self, model: str, step: int, *, seed: int = 0, verify: bool = True) -> dict:
        if verify:
            self.verify(model, step, seed)
        return load_weights(self.path(model, step, seed))
