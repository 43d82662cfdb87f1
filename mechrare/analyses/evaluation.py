"""Held-out loss and exact-match accuracy at every checkpoint: analyses/evaluation.nc.

What training writes to metrics.nc for a run trained here, computed from the
checkpoints for a series trained elsewhere (:mod:`mechrare.series`), with the
same variables and the same definition (:func:`mechrare.models.evaluate.evaluate_sets`):
``loss`` and ``accuracy`` per (model, seed, step, task) on the task set's held-out
instances, and ``background_loss`` on its background text (NaN without one).
It is the ``metrics`` dataset of an external series: the learned-task test,
neuron ownership, retention and the report read it there. It runs by default
on external series only; name it (``--only evaluation``) to run it on a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechrare.analyses.driver import PerCheckpoint
from mechrare.analyses.registry import register_analysis
from mechrare.checkpoints.datasets import describe, series_coords
from mechrare.errors import ConfigError

VARIABLES = {
    "loss": ("held-out task loss on the answer tokens (nats per token)", "1"),
    "accuracy": ("held-out exact-match accuracy", "1"),
    "background_loss": ("held-out background next-token loss (nats per token)", "1"),
}


@dataclass
class EvaluationConfig:
    batch_size: int = 256
    device: str = "auto"

    def validate(self, path: str) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"{path}.batch_size: must be >= 1, got {self.batch_size}")


@register_analysis
class Evaluation(PerCheckpoint):
    name = "evaluation"
    config_class = EvaluationConfig
    kinds = ("series",)
    part_ignore = ("device", "batch_size")

    def compute(self, ctx, cfg: EvaluationConfig, state, ckpt, device, steps):
        model = ctx.series.load(ckpt.model, ckpt.step, seed=ckpt.seed, device=str(device))
        tasks = ctx.tasks
        out = _evaluate(model, tasks, device, cfg.batch_size)
        return out

    def assemble(self, ctx, cfg: EvaluationConfig, state, parts):
        import xarray as xr

        tasks = ctx.tasks.names
        models = list(parts)
        steps = sorted({s for per in parts.values() for s in per})
        loss = np.full((len(models), len(steps), len(tasks)), np.nan)
        acc = np.full_like(loss, np.nan)
        bg = np.full(loss.shape[:2], np.nan)
        for mi, m in enumerate(models):
            for s, p in parts[m].items():
                si = steps.index(s)
                loss[mi, si], acc[mi, si], bg[mi, si] = p["loss"], p["accuracy"], p["background_loss"]
        dims = ("model", "step", "task")
        ds = xr.Dataset(
            {"loss": (dims, loss), "accuracy": (dims, acc), "background_loss": (dims[:2], bg)},
            coords={**series_coords(ctx.series, models, steps), "task": tasks,
                    "eval_examples": ("task", [len(ctx.tasks.eval_instances(t)) for t in tasks])},
        )
        return describe(ds, VARIABLES)


def _evaluate(model, tasks, device, batch_size: int) -> dict:
    from mechrare.models.evaluate import evaluate_sets

    res = evaluate_sets(model, [tasks.eval_instances(t) for t in tasks.names], tasks.background(), device, batch_size)
    return {
        "loss": np.array([res["eval"][t]["loss"] for t in tasks.names]),
        "accuracy": np.array([res["eval"][t]["accuracy"] for t in tasks.names]),
        "background_loss": np.array(res["background_loss"]),
    }
