"""What a report reads from a run folder: the manifest and every dataset present.

A run need not hold every analysis: the report draws what it finds and says
what is missing (and which command makes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mechrare.checkpoints.run import RunFolder

DATASETS = ("probes", "sae", "neurons", "interference", "retention", "toy")


@dataclass
class RunData:
    run: RunFolder
    manifest: dict
    metrics: object | None  # xarray.Dataset
    analyses: dict = field(default_factory=dict)  # name -> xarray.Dataset

    @classmethod
    def load(cls, path: str | Path) -> "RunData":
        from mechrare.checkpoints.metrics import open_dataset

        run = RunFolder(path)
        manifest = run.read_manifest()  # a clear error for a missing or foreign folder
        metrics = open_dataset(run.metrics_path) if run.metrics_path.is_file() else None
        analyses = {}
        for name in DATASETS:
            p = run.analysis_path(name)
            if p.is_file():
                analyses[name] = open_dataset(p)
        return cls(run, manifest, metrics, analyses)

    def get(self, name: str):
        return self.metrics if name == "metrics" else self.analyses.get(name)

    # -- the run's cast -------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``ladder`` (an OLMo-2 run) or ``toy`` (the Section 3 model)."""
        return self.manifest.get("kind", "ladder")

    @cached_property
    def tasks(self) -> list[str]:
        return [t["name"] for t in self.manifest["tasks"]]

    @cached_property
    def shares(self) -> dict[str, float]:
        return {t["name"]: float(t["share"]) for t in self.manifest["tasks"]}

    @cached_property
    def rare_task(self) -> str:
        """The least frequent task (ties: the more complex one)."""
        rows = self.manifest["tasks"]
        return min(rows, key=lambda t: (t["share"], -t.get("complexity", 0)))["name"]

    @cached_property
    def common_task(self) -> str:
        """The most frequent task (ties: the simpler one)."""
        rows = self.manifest["tasks"]
        return max(rows, key=lambda t: (t["share"], -t.get("complexity", 0)))["name"]

    def n_params(self, model: str) -> int:
        return int(self.manifest["models"][model]["n_params"])

    def intervention(self, model: str) -> dict | None:
        return self.manifest["models"][model].get("intervention")

    @cached_property
    def ladder(self) -> list[str]:
        """The ladder's models (interventions excluded) with checkpoints, smallest first."""
        models = [m for m in self.models if self.intervention(m) is None]
        return sorted(models, key=self.n_params)

    @cached_property
    def interventions(self) -> list[str]:
        return [m for m in self.models if self.intervention(m) is not None]

    @cached_property
    def models(self) -> list[str]:
        if self.metrics is not None:
            return [str(m) for m in self.metrics.model.values]
        return list(self.manifest["models"])

    @property
    def x_label(self) -> str:
        return "step" if self.kind == "toy" else "training tokens"

    # -- common reads -------------------------------------------------------------------
    def final(self, var: str, model: str, task: str, last: int = 3) -> float:
        """Mean of ``metrics[var]`` over the model's last ``last`` checkpoints (less noisy
        than the single final value)."""
        series = self.metrics[var].sel(model=model, task=task).dropna("step")
        if series.sizes["step"] == 0:
            return float("nan")
        return float(series.isel(step=slice(-last, None)).mean())

    def eval_examples(self, task: str) -> int:
        for t in self.manifest["tasks"]:
            if t["name"] == task:
                return int(t.get("eval_examples") or 0)
        return 0


def steps_of(ds, model: str, var: str) -> tuple[np.ndarray, object]:
    """(steps, values) of ``ds[var]`` for ``model`` where the model has values."""
    da = ds[var].sel(model=model)
    keep = ~np.isnan(da.values.reshape(da.sizes["step"], -1)).all(axis=1)
    da = da.isel(step=np.flatnonzero(keep))
    return da.step.values, da
