"""The run model: ``manifest.json`` as typed records, with one writer and a validating reader.

A manifest describes a run folder: the resolved config, the tasks (with the
mixture share each was trained at), and the models (size, parameter count,
status, the shares *that* model was trained on, and for an intervention its
base model and upsampling). :meth:`Manifest.from_dict` checks every key and
type and names the bad one (``models.d16-l2.n_params: expected an integer``);
:meth:`RunFolder.read_manifest <mechrare.checkpoints.run.RunFolder.read_manifest>`
turns that into one line naming the file. Toy runs (``kind = "toy"``) use the
same records with fewer fields filled.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from mechrare._version import __version__
from mechrare.config import drop_none, from_dict, require
from mechrare.errors import RunFolderError
from mechrare.names import RULE as NAME_RULE
from mechrare.names import is_safe_name

SCHEMA_VERSION = 1
KINDS = ("ladder", "toy", "series")  # series: checkpoints trained elsewhere (mechrare.series)
STATUSES = ("pending", "training", "done")
#: checkpoint folder layout: 1 = ``models/<model>/step_<N>`` (one seed, runs from before seeds);
#: 2 = ``models/<model>/seed_<s>/step_<N>`` (what mechrare writes now)
LAYOUTS = (1, 2)
LAYOUT = 2


@dataclass
class TaskRecord:
    """One task of the run. ``share`` is the fraction of training sequences that carry it."""

    name: str
    share: float
    family: str | None = None
    complexity: int | None = None
    frequency: float | None = None
    placement: str | None = None
    schedule: dict[str, Any] | None = None
    split: str | None = None
    eval_examples: int = 0
    targets: dict[str, int] = field(default_factory=dict)

    def validate(self, path: str) -> None:
        require(0 <= self.share <= 1, f"{path}.share", f"must be in [0, 1], got {self.share}")
        require(self.eval_examples >= 0, f"{path}.eval_examples", f"must be >= 0, got {self.eval_examples}")


@dataclass
class ShapeRecord:
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int


@dataclass
class InterventionRecord:
    """An extra model trained on a changed mixture: the size ``base`` (which need not be in
    the run's ladder) with ``upsample`` = {task: factor}."""

    base: str
    upsample: dict[str, float]
    sweep: bool = False  # a point of [ladder.sweep]: trained and evaluated; analysed only when asked for


@dataclass
class ModelRecord:
    n_params: int
    status: str = "pending"
    shape: ShapeRecord | None = None
    reference_params: int | None = None
    #: task -> share of training sequences this model saw (an intervention's differ from the run's)
    shares: dict[str, float] = field(default_factory=dict)
    intervention: InterventionRecord | None = None
    device: str | None = None
    final_step: int | None = None
    width: int | None = None  # toy runs: encoder width
    #: the training seeds whose run finished (``status`` is ``done`` once every seed of the run is)
    seeds_done: list[int] = field(default_factory=list)

    def finished_seeds(self) -> set[int]:
        """The training seeds that finished (a folder from before seeds records only its status)."""
        return set(self.seeds_done) or ({0} if self.status == "done" else set())

    def validate(self, path: str) -> None:
        require(self.n_params >= 0, f"{path}.n_params", f"must be >= 0, got {self.n_params}")
        require(self.status in STATUSES, f"{path}.status", f"must be one of {', '.join(STATUSES)}, got {self.status!r}")


@dataclass
class Manifest:
    name: str
    seed: int
    config: dict[str, Any]
    tokens_per_step: int
    checkpoint_steps: list[int]
    tasks: list[TaskRecord]
    models: dict[str, ModelRecord]
    schema: int = SCHEMA_VERSION
    kind: str = "ladder"
    mechrare_version: str = __version__
    created: str = ""
    vocab_size: int | None = None
    sequence_length: int | None = None
    batch_size: int | None = None
    background_entropy: float | None = None
    #: the training seeds (a manifest from before seeds has one: [0])
    seeds: list[int] = field(default_factory=lambda: [0])
    #: checkpoint folder layout (see LAYOUTS); a manifest without it is from before seeds (1)
    layout: int = 1

    def validate(self, path: str) -> None:
        require(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds) and min(self.seeds) >= 0,
                f"{path}seeds", f"must be distinct seeds >= 0, got {self.seeds}")
        require(self.layout in LAYOUTS, f"{path}layout", f"must be one of {LAYOUTS}, got {self.layout}")
        require(self.layout == 2 or self.seeds == [0], f"{path}seeds", "a layout-1 run folder holds seed 0 only")
        require(self.schema == SCHEMA_VERSION, f"{path}schema", f"is {self.schema}, this mechrare reads {SCHEMA_VERSION}")
        require(self.kind in KINDS, f"{path}kind", f"must be one of {', '.join(KINDS)}, got {self.kind!r}")
        require(self.tokens_per_step >= 1 or (self.kind == "series" and self.tokens_per_step == 0), f"{path}tokens_per_step",
                f"must be >= 1 (0: unknown, in an external series), got {self.tokens_per_step}")
        names = [t.name for t in self.tasks]
        require(len(set(names)) == len(names), f"{path}tasks", "a task appears twice")
        for model, record in self.models.items():
            require(is_safe_name(model), f"{path}models.{model}", "is not a plain folder name: names must be " + NAME_RULE)
            unknown = sorted(set(record.shares) - set(names))
            require(not unknown, f"{path}models.{model}.shares", f"unknown task {unknown[0] if unknown else ''!r}")

    # -- reading --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> "Manifest":
        """Build and validate; raises ConfigError naming the bad key."""
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            # model names are keys: validate them as such before building records
            data = {**data, "models": {str(k): v for k, v in data["models"].items()}}
        return from_dict(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        return drop_none(dataclasses.asdict(self))

    # -- common questions -------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskRecord:
        for t in self.tasks:
            if t.name == name:
                return t
        raise RunFolderError(f"no task {name!r} in this run; tasks: {', '.join(self.task_names)}")

    def model(self, name: str) -> ModelRecord:
        if name not in self.models:
            raise RunFolderError(f"no model {name!r} in this run; models: {', '.join(self.models)}")
        return self.models[name]

    def shares(self, model: str | None = None) -> dict[str, float]:
        """Task -> share of training sequences: the run's, or the one ``model`` was trained on."""
        run = {t.name: float(t.share) for t in self.tasks}
        if model is None:
            return run
        return {**run, **self.model(model).shares}


def new_manifest(name: str, config: dict[str, Any], **fields: Any) -> Manifest:
    """A fresh manifest (schema, version and creation time filled in)."""
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    fields.setdefault("layout", LAYOUT)
    return Manifest(name=name, seed=int(config.get("seed", 0)), config=config, created=created, **fields)
