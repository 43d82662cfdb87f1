"""SERIES.toml: a checkpoint series mechrare did not train, with the tasks to pose to it.

::

    name = "pythia"                          # optional: the series' name (default: the file's)
    exclude_suspect = false                  # leave out checkpoints flagged as suspect (see series_integrity)

    [[models]]
    name = "pythia-160m"
    path = "ckpts/pythia-160m/step{step}"    # a folder pattern; or a folder holding step{N}/, step_{N}/ or global_step{N}/
    steps = [0, 1000, 2000]                  # optional with a local pattern: discovered when absent
    # paths = ["a/first", "a/second"]        # or one folder per entry of steps
    # repo = "EleutherAI/pythia-160m"        # or a Hugging Face repo id ...
    # revision = "step{step}"                # ... and its revisions (steps required)
    tokens_per_step = 2097152                # optional: training tokens per step, where known

    [tasks]
    files = ["tasks/capitals.jsonl"]         # one task per file (see mechrare.data.jsonl_tasks)
    test_fraction = 0.5                      # share of each task's instances held out for evaluation
    seed = 0                                 # the split and the probe draws
    shares = { capitals = 0.001 }            # optional: each task's share of training sequences (interference, SAEs)

    [background]                             # optional: non-task text (next-token baselines, neuron attribution)
    files = ["text/*.txt"]                   # or dataset = "saved/dataset" (save_to_disk), text_field = "text"
    sequence_length = 64
    rows = 256

Relative paths are relative to the TOML file's folder. Every key is checked as
the run config's are (:func:`mechrare.config.from_dict`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mechrare.config import from_dict, require
from mechrare.errors import ConfigError
from mechrare.names import RULE, is_safe_name

STEP_FIELD = "{step}"
#: the checkpoint folder names discovered under a folder without ``{step}``
FOLDER_STYLES = ("step{step}", "step_{step}", "global_step{step}")


@dataclass
class SeriesModelSpec:
    name: str
    path: str = ""
    steps: list[int] | None = None
    paths: list[str] = field(default_factory=list)
    repo: str = ""
    revision: str = "step{step}"
    tokens_per_step: int = 0  # 0: unknown

    def validate(self, path: str) -> None:
        require(is_safe_name(self.name), f"{path}.name", f"{self.name!r} is not a plain name: names must be {RULE}")
        sources = [bool(self.path), bool(self.paths), bool(self.repo)]
        require(sum(sources) == 1, path, "give exactly one of path (a folder pattern), paths (with steps) or repo (with revision and steps)")
        require(self.tokens_per_step >= 0, f"{path}.tokens_per_step", f"must be >= 0, got {self.tokens_per_step}")
        if self.steps is not None:
            require(all(s >= 0 for s in self.steps), f"{path}.steps", "must be steps >= 0")
            bad = next((i for i in range(1, len(self.steps)) if self.steps[i] <= self.steps[i - 1]), None)
            require(bad is None, f"{path}.steps", f"must be strictly increasing; step {self.steps[bad] if bad else ''} "
                    f"follows {self.steps[bad - 1] if bad else ''}")
            require(len(self.steps) >= 1, f"{path}.steps", "must name at least one step")
        if self.paths:
            require(self.steps is not None and len(self.steps) == len(self.paths), f"{path}.paths",
                    "needs steps of the same length (the step of each path)")
        if self.repo:
            require(self.steps is not None, f"{path}.steps", "a repo needs its steps (the revisions are not listed offline)")
            require(STEP_FIELD in self.revision, f"{path}.revision", f"must contain {STEP_FIELD}, got {self.revision!r}")
            require(re.fullmatch(r"[\w.-]+/[\w.-]+", self.repo) is not None, f"{path}.repo",
                    f"must be a Hugging Face repo id like 'EleutherAI/pythia-160m', got {self.repo!r}")


@dataclass
class SeriesTasksSpec:
    files: list[str]
    test_fraction: float = 0.5
    seed: int = 0
    #: task -> share of training sequences that carried it, where known (all tasks or none): the
    #: training-like batches of interference and SAEs need them
    shares: dict[str, float] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        require(len(self.files) >= 1, f"{path}.files", "must name at least one JSONL file")
        bad = next((k for k, v in self.shares.items() if not 0 < v < 1), None)
        require(bad is None, f"{path}.shares.{bad}", f"must be in (0, 1), got {self.shares.get(bad)}")
        require(0 < self.test_fraction < 1, f"{path}.test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        require(self.seed >= 0, f"{path}.seed", f"must be >= 0, got {self.seed}")


@dataclass
class SeriesBackgroundSpec:
    files: list[str] = field(default_factory=list)
    dataset: str = ""  # a Hugging Face dataset saved with save_to_disk (a folder), instead of files
    text_field: str = "text"  # the dataset's column of text
    sequence_length: int = 64
    rows: int = 256

    def validate(self, path: str) -> None:
        require(bool(self.files) != bool(self.dataset), path, "give files (text files) or dataset (a saved Hugging Face dataset), one of them")
        require(2 <= self.sequence_length <= 65536, f"{path}.sequence_length", f"must be in [2, 65536], got {self.sequence_length}")
        require(self.rows >= 1, f"{path}.rows", f"must be >= 1, got {self.rows}")


@dataclass
class SeriesSpec:
    models: list[SeriesModelSpec]
    tasks: SeriesTasksSpec
    background: SeriesBackgroundSpec | None = None
    name: str = ""
    exclude_suspect: bool = False

    def validate(self, path: str) -> None:
        require(len(self.models) >= 1, f"{path}models", "must list at least one [[models]] entry")
        names = [m.name for m in self.models]
        dup = next((n for n in names if names.count(n) > 1), None)
        require(dup is None, f"{path}models", f"model {dup!r} appears twice")
        require(self.name == "" or is_safe_name(self.name), f"{path}name", f"{self.name!r} is not a plain name: names must be {RULE}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resolve(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def read_series_spec(path: str | Path) -> SeriesSpec:
    """The validated spec of a SERIES.toml, its relative paths resolved against the file's folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such series file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the series TOML as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    spec = from_dict(SeriesSpec, data, "")
    base = path.resolve().parent
    for m in spec.models:
        if m.path:
            m.path = _resolve(base, m.path)
        m.paths = [_resolve(base, p) for p in m.paths]
    spec.tasks.files = [_resolve(base, f) for f in spec.tasks.files]
    if spec.background is not None:
        spec.background.files = [_resolve(base, f) for f in spec.background.files]
        if spec.background.dataset:
            spec.background.dataset = _resolve(base, spec.background.dataset)
    spec.name = spec.name or (path.stem if is_safe_name(path.stem) else "series")
    return spec


def spec_from_dict(data: dict[str, Any]) -> SeriesSpec:
    """A spec recorded in a series folder's manifest (paths already absolute)."""
    return from_dict(SeriesSpec, data, "series.")
