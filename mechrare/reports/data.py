"""What a report reads from a run folder: the manifest and every dataset present.

A run need not hold every analysis: the report draws what it finds and says
what is missing (and which command makes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mechrare.checkpoints.manifest import InterventionRecord, Manifest
from mechrare.checkpoints.run import RunFolder
from mechrare.runs import Run


#: "final" everywhere (report, findings, ``mechrare ls``): the mean over a model's last FINAL_LAST checkpoints
FINAL_LAST = 3
FINAL_WORDS = f"mean of the last {FINAL_LAST} checkpoints"


@dataclass
class RunData:
    run: RunFolder
    manifest: Manifest
    metrics: object | None  # xarray.Dataset
    analyses: dict = field(default_factory=dict)  # name -> xarray.Dataset

    @classmethod
    def load(cls, path: str | Path | Run) -> "RunData":
        run = path if isinstance(path, Run) else Run(path)  # a clear error for a missing or foreign folder
        datasets = run.datasets
        metrics = datasets.pop("metrics", None)
        return cls(run.folder, run.manifest, metrics, datasets)

    def get(self, name: str):
        return self.metrics if name == "metrics" else self.analyses.get(name)

    def concrete(self, text: str) -> str:
        """``text`` with its generic commands made this folder's: ``mechrare analyze RUN`` names the
        folder (a series: ``SERIES.toml --out DIR``), and on a series ``mechrare train`` (the metrics)
        and ``set ladder.seeds`` say what a series has instead."""
        if self.kind != "series":
            return text.replace("mechrare analyze RUN", f"mechrare analyze {self.run.path}")
        text = text.replace("mechrare analyze RUN", f"mechrare analyze SERIES.toml --out {self.run.path}")
        text = text.replace("`mechrare train`", f"`mechrare analyze SERIES.toml --out {self.run.path} --only evaluation`")
        text = text.replace("mechrare train", f"mechrare analyze SERIES.toml --out {self.run.path} --only evaluation")
        return text.replace("(set ladder.seeds)", "(a series trained elsewhere has one seed per model)")

    # -- the run's cast -------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``ladder`` (an OLMo-2 run) or ``toy`` (the Section 3 model)."""
        return self.manifest.kind

    @cached_property
    def tasks(self) -> list[str]:
        return self.manifest.task_names

    @cached_property
    def shares(self) -> dict[str, float]:
        return self.manifest.shares()

    @cached_property
    def rare_task(self) -> str:
        """The least frequent task (ties: the more complex one)."""
        return min(self.manifest.tasks, key=lambda t: (t.share, -(t.complexity or 0))).name

    @cached_property
    def common_task(self) -> str:
        """The most frequent task (ties: the simpler one)."""
        return max(self.manifest.tasks, key=lambda t: (t.share, -(t.complexity or 0))).name

    def n_params(self, model: str) -> int:
        return int(self.manifest.model(model).n_params)

    def intervention(self, model: str) -> InterventionRecord | None:
        return self.manifest.model(model).intervention

    @cached_property
    def ladder(self) -> list[str]:
        """The ladder's models (interventions excluded) with checkpoints, smallest first."""
        models = [m for m in self.models if self.intervention(m) is None]
        return sorted(models, key=self.n_params)

    @cached_property
    def interventions(self) -> list[str]:
        """Models trained on a changed mixture, frequency-sweep points left out (:attr:`sweep_points`)."""
        return [m for m in self.models if self.intervention(m) is not None and not self.intervention(m).sweep]

    @cached_property
    def sweep_points(self) -> list[str]:
        """The models of ``[ladder.sweep]``: a ladder size at another frequency of one task."""
        return [m for m in self.models if self.intervention(m) is not None and self.intervention(m).sweep]

    @cached_property
    def models(self) -> list[str]:
        if self.metrics is not None:
            return [str(m) for m in self.metrics.model.values]
        return list(self.manifest.models)

    @property
    def x_label(self) -> str:
        return "step" if self.kind == "toy" else "training tokens"

    # -- common reads -------------------------------------------------------------------
    def final(self, var: str, model: str, task: str, last: int = FINAL_LAST) -> float:
        """Mean of ``metrics[var]`` over the model's last ``last`` checkpoints (less noisy
        than the single final value), averaged over training seeds."""
        values = self.final_by_seed(var, model, task, last)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    @cached_property
    def seeds(self) -> list[int]:
        """The training seeds with metrics (a dataset without seeds reads as [0])."""
        if self.metrics is not None and "seed" in self.metrics.dims:
            return [int(s) for s in self.metrics.seed.values]
        return [0]

    def final_by_seed(self, var: str, model: str, task: str, last: int = FINAL_LAST) -> np.ndarray:
        """:meth:`final` for each training seed ([seed]; NaN where a seed has no values)."""
        da = self.metrics[var].sel(model=model, task=task)
        if "seed" not in da.dims:
            da = da.expand_dims(seed=[0])
        out = []
        for seed in da.seed.values:
            series = da.sel(seed=seed).dropna("step")
            out.append(float(series.isel(step=slice(-last, None)).mean()) if series.sizes["step"] else np.nan)
        return np.array(out)

    def eval_examples(self, task: str) -> int:
        return int(self.manifest.task(task).eval_examples)


def steps_of(ds, model: str, var: str) -> tuple[np.ndarray, object]:
    """(steps, values) of ``ds[var]`` for ``model`` where the model has values."""
    da = ds[var].sel(model=model)
    keep = ~np.isnan(da.transpose("step", ...).values.reshape(da.sizes["step"], -1)).all(axis=1)  # step first, whatever the order
    da = da.isel(step=np.flatnonzero(keep))
    return da.step.values, da


def retention_events(ds) -> list[dict]:
    if "event" not in ds.dims or ds.sizes["event"] == 0:
        return []
    keys = ("model", "seed", "task", "signal", "peak_step", "overwrite_step", "drop", "interference", "loss_change", "calibrated")
    cols = {k: ds[f"event_{k}"].values for k in keys if f"event_{k}" in ds}
    kind = {"U": str, "S": str, "b": bool}
    return [{k: kind.get(v.dtype.kind, float)(v[i]) for k, v in cols.items()} for i in range(ds.sizes["event"])]
