"""A run folder opened: its typed manifest, checkpoint series, task set and datasets.

:func:`open_run` is the entry point (``mechrare.open_run``). A :class:`Run` is
also what the analyses read, through :meth:`Run.context`: a checkpoint series,
a task set and the folder the datasets go to (:class:`Context`), never the
manifest or the mixture themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from mechrare.checkpoints.datasets import open_dataset
from mechrare.checkpoints.manifest import Manifest
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.series import CheckpointSeries
from mechrare.checkpoints.store import CheckpointStore
from mechrare.data.taskset import MixtureTaskSet, TaskSet
from mechrare.errors import ConfigError, RunFolderError
from mechrare.names import inside

DATASETS = ("metrics", "evaluation", "probes", "sae", "neurons", "interference", "retention", "ablation", "toy")


@dataclass
class Context:
    """What analyses read and where they write: ``folder/analyses/<name>.nc``."""

    series: CheckpointSeries
    tasks: TaskSet | None
    folder: Path
    #: ``ladder`` (trained here: metrics.nc from training), ``series`` (trained elsewhere), ``toy``
    kind: str = "ladder"

    def analysis_path(self, name: str) -> Path:
        return inside(self.folder, Path(self.folder) / "analyses" / f"{name}.nc")

    def dataset_path(self, name: str) -> Path:
        """``metrics`` (the run's metrics.nc; an external series' analyses/evaluation.nc, its held-out
        loss and accuracy per checkpoint) or an analysis's dataset."""
        if name == "metrics":
            return self.analysis_path("evaluation") if self.kind == "series" else Path(self.folder) / "metrics.nc"
        return self.analysis_path(name)

    def require_tasks(self, analysis: str) -> TaskSet:
        if self.tasks is None:
            raise ConfigError(f"{analysis}: needs a task set (task instances as token ids), and this series has none")
        return self.tasks


def run_task_set(manifest: Manifest, folder: Path | None = None) -> MixtureTaskSet | None:
    """The task set of a mechrare run, rebuilt from its manifest (same seed, same tasks);
    each intervention model gets the upsampled mixture it was trained on. None for a toy run."""
    from mechrare.config import RunConfig
    from mechrare.data.mixture import Mixture

    if manifest.kind != "ladder":
        return None
    config = RunConfig.from_dict(manifest.config)
    mixture = Mixture(config.mixture, config.seed, data_dirs=[folder / "data"] if folder is not None else None)
    per_model = {
        name: mixture.with_upsample(record.intervention.upsample)
        for name, record in manifest.models.items()
        if record.intervention is not None
    }
    return MixtureTaskSet(mixture, per_model)


class Run:
    """A mechrare run folder, opened.

    >>> run = open_run("runs/quickstart")                   # doctest: +SKIP
    >>> run.models, run.steps("d16-l2")[:3]                 # doctest: +SKIP
    (['d16-l2', 'd32-l2', 'd64-l2', 'd16-l2-up10'], [0, 1, 2])
    >>> run.dataset("metrics").accuracy.sel(task="facts:256")   # doctest: +SKIP
    """

    def __init__(self, path: str | Path, tasks: TaskSet | None = None):
        self.folder = RunFolder(path)
        self.manifest: Manifest = self.folder.read_manifest()
        if tasks is not None:  # already built by whoever wrote the folder (open_series): not tokenized twice
            self.__dict__["tasks"] = tasks

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}: {len(self.models)} models, tasks {', '.join(self.manifest.task_names)})"

    @property
    def path(self) -> Path:
        return self.folder.path

    @cached_property
    def series(self) -> CheckpointSeries:
        if self.manifest.kind == "series":
            from mechrare.series import series_checkpoints

            return series_checkpoints(self.path, self.manifest.config)
        store = CheckpointStore(self.folder)
        store.manifest = self.manifest  # already read and validated
        return store

    @cached_property
    def tasks(self) -> TaskSet | None:
        if self.manifest.kind == "series":
            from mechrare.series import series_task_set

            return series_task_set(self.manifest.config, self.series)
        return run_task_set(self.manifest, self.folder.path)

    @property
    def models(self) -> list[str]:
        return list(self.manifest.models)

    @property
    def seeds(self) -> list[int]:
        """The run's training seeds."""
        return list(self.manifest.seeds)

    def steps(self, model: str, seed: int = 0) -> list[int]:
        return self.series.steps(model, seed)

    def context(self) -> Context:
        return Context(self.series, self.tasks, self.path, self.manifest.kind)

    # -- checkpoints ----------------------------------------------------------------------
    def load(self, model: str, step: int, **kwargs):
        """A checkpoint as a Hugging Face model (sha256 verified); ``seed=`` picks a training seed."""
        return self.series.load(model, step, **kwargs)

    def bridge(self, model: str, step: int, **kwargs):
        """A checkpoint in a transformer_lens ``TransformerBridge`` (offline)."""
        return self.series.load_bridge(model, step, **kwargs)

    # -- datasets ---------------------------------------------------------------------------
    def dataset_path(self, name: str) -> Path:
        if name not in DATASETS:
            raise ConfigError(f"no dataset {name!r}; datasets: {', '.join(DATASETS)}")
        return Context(None, None, self.path, self.manifest.kind).dataset_path(name)  # no task set needed

    def dataset(self, name: str):
        """``metrics`` or an analysis's dataset, as an in-memory xarray Dataset."""
        path = self.dataset_path(name)
        if not path.is_file():
            if name == "metrics" and self.manifest.kind == "series":
                name = "evaluation"
            how = "mechrare train" if name == "metrics" else f"mechrare analyze {self.path} --only {name}"
            raise RunFolderError(f"{path}: not written yet; make it with `{how}`")
        return open_dataset(path)

    @property
    def datasets(self) -> dict:
        """Every dataset the folder holds now, by name."""
        names = [n for n in DATASETS if not (n == "evaluation" and self.manifest.kind == "series")]  # it is "metrics" there
        return {name: self.dataset(name) for name in names if self.dataset_path(name).is_file()}


def open_run(path: str | Path) -> Run:
    """Open a run folder (``mechrare train`` or ``mechrare toy`` wrote it)."""
    return Run(path)


def open_series(source: str | Path, out: str | Path | None = None, *, progress: bool = True) -> Run:
    """Open a series trained elsewhere: ``source`` is a SERIES.toml (:mod:`mechrare.checkpoints.series_spec`);
    its checkpoints are found, hashed and checked, and recorded in ``out`` (default ``runs/<name>``), which
    holds its analyses and report. Returns a :class:`Run`, so ``mechrare.analyze`` and ``mechrare.report``
    take it as they take a run."""
    from mechrare.series import record_series

    return Run(*record_series(source, out, progress=progress))
