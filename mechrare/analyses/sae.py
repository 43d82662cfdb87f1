"""Sparse autoencoders over the checkpoint series: analyses/sae.nc.

For each chosen (model, residual depth, checkpoint), an SAE is trained with
sae-lens's ``SAETrainer`` on activations streamed from the run's own mixture
(fresh batches, beyond the training steps), through ``mechrare.activations``.
It is saved in sae-lens's format under ``analyses/sae/...`` (loadable with
``sae_lens.SAE.load_from_disk``) and scored on the same tokens:

* explained variance, L0 and dead fraction;
* per feature, task specificity: the share of its activation mass on each
  task's tokens (task instance and its ``<eos>``) versus background tokens; a
  feature is *specific* to a task when that share is >= ``specificity``;
* across consecutive analysed checkpoints, features are matched by decoder
  cosine with a Hungarian assignment (a match needs cosine >= ``match_threshold``):
  ``feature_retention(task)`` is the share of the task's specific features at
  step t that have a match at the next analysed step; ``n_born`` / ``n_died``
  count alive features without a match backwards / forwards.

Every model's SAEs see the same tokens: batches of the run's own mixture
(``batches()`` of the task set) at steps far beyond training.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mechrare.activations import resid_hooks
from mechrare.analyses.driver import PerCheckpoint, digest
from mechrare.analyses.registry import as_context, register_analysis
from mechrare.analyses.sae_training import (
    ARCHITECTURES,
    SAETrainSpec,
    buffer_batches,
    decoder_directions,
    match_features,
    score_sae,
    task_specificity,
    train_sae,
)
from mechrare.checkpoints.atomic import atomic_dir
from mechrare.checkpoints.datasets import describe, series_coords
from mechrare.errors import ConfigError

FRESH_DATA_OFFSET = 10**9  # mixture steps far beyond any training step


@dataclass
class SAEConfig:
    architecture: str = "topk"
    expansion: int = 4
    k: int = 8
    l1_coefficient: float = 1.0
    l0_coefficient: float = 1.0
    train_steps: int = 800
    batch_size: int = 512
    lr: float = 3e-3
    layers: list[int] = field(default_factory=lambda: [-1])
    steps: list[int] = field(default_factory=list)
    max_checkpoints: int = 6
    sequences: int = 1024
    specificity: float = 0.8
    match_threshold: float = 0.7
    device: str = "auto"
    seed: int = 0

    def validate(self, path: str) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"{path}.architecture: must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        for key in ("expansion", "k", "train_steps", "batch_size", "max_checkpoints", "sequences"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{path}.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("specificity", "match_threshold"):
            if not 0 < getattr(self, key) <= 1:
                raise ConfigError(f"{path}.{key}: must be in (0, 1], got {getattr(self, key)}")

    def train_spec(self, d_in: int) -> SAETrainSpec:
        """What one SAE of these settings trains with, on activations of width ``d_in``."""
        return SAETrainSpec(
            architecture=self.architecture,
            d_sae=self.expansion * d_in,
            k=self.k,
            l1_coefficient=self.l1_coefficient,
            l0_coefficient=self.l0_coefficient,
            steps=self.train_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
        )


def chosen_steps(available: list[int], cfg: SAEConfig) -> list[int]:
    if cfg.steps:
        missing = sorted(set(cfg.steps) - set(available))
        if missing:
            raise ConfigError(f"sae.steps: no checkpoint at step {missing[0]}; available: {available}")
        return sorted(cfg.steps)
    idx = np.unique(np.round(np.linspace(0, len(available) - 1, min(cfg.max_checkpoints, len(available)))).astype(int))
    return [available[i] for i in idx]


def activation_buffer(bridge, batches, hook: str, cfg: SAEConfig):
    """Token activations ([N, d]) at ``hook`` on fresh training-distribution batches, and each token's task (-1: background)."""
    from mechrare.activations import get_activations
    from mechrare.data.mixture import IGNORE

    rows, tasks, masks, labels = [], [], [], []
    step = 0
    while sum(len(r) for r in rows) < cfg.sequences:
        batch = batches.batch(FRESH_DATA_OFFSET + cfg.seed * 100_003 + step, 64)
        rows.append(batch.input_ids)
        tasks.append(batch.task)
        masks.append(batch.task_mask)
        labels.append(batch.labels)
        step += 1
    ids = np.concatenate(rows)[: cfg.sequences]
    row_task = np.concatenate(tasks)[: cfg.sequences]
    mask = np.concatenate(masks)[: cfg.sequences]
    keep = np.concatenate(labels)[: cfg.sequences] != IGNORE
    acts = get_activations(bridge, ids, [hook])[hook]
    token_task = np.where(mask, row_task[:, None], -1)
    return acts[keep], token_task[keep]


def train_one(bridge, batches, n_tasks: int, depth: int, cfg: SAEConfig, device, folder: Path) -> dict:
    """Train and score one SAE at residual depth ``depth``; save it (sae-lens format) to ``folder/sae``."""
    import torch

    hook = resid_hooks(bridge.cfg.n_layers)[depth]
    acts, token_task = activation_buffer(bridge, batches, hook, cfg)
    buffer = torch.as_tensor(acts, device=device)
    spec = cfg.train_spec(acts.shape[1])
    sae = train_sae(buffer_batches(buffer, cfg.batch_size, cfg.seed), acts.shape[1], spec, str(device), autocast=device.type == "cuda")
    stats = score_sae(sae, acts, token_task, n_tasks)
    if folder.exists():  # left by an interrupted run whose part was never written: replace it
        shutil.rmtree(folder)
    with atomic_dir(folder) as tmp:
        sae.save_inference_model(str(tmp / "sae"))
        (tmp / "hook.json").write_text(json.dumps({"hook": hook, "depth": depth, "tokens": int(len(acts))}))
    return {
        "decoder": decoder_directions(sae),
        "alive": stats["alive"],
        "mass": stats["mass"],
        "scalars": np.array([stats["explained_variance"], stats["l0"], stats["dead_fraction"], len(acts)]),
    }


VARIABLES = {
    "explained_variance": ("explained variance of the SAE's reconstruction on its activation buffer", "1"),
    "l0": ("mean number of active features per token", "1"),
    "dead_fraction": ("share of features that never fire on the buffer", "1"),
    "n_alive": ("features that fire at least once", "1"),
    "n_born": ("alive features with no match at the previous analysed step", "1"),
    "n_died": ("alive features with no match at the next analysed step", "1"),
    "n_background_features": ("alive features with >= specificity of their mass on background tokens", "1"),
    "n_task_features": ("alive features with >= specificity of their activation mass on the task's tokens", "1"),
    "feature_retention": ("share of the task's specific features matched (decoder cosine) at the next analysed step", "1"),
}


@register_analysis
class SAEs(PerCheckpoint):
    name = "sae"
    config_class = SAEConfig
    part_ignore = ("device", "steps", "max_checkpoints")

    def select_steps(self, ctx, cfg: SAEConfig, model: str, steps: list[int]) -> list[int]:
        return chosen_steps(steps, cfg)

    def sae_root(self, ctx, cfg: SAEConfig) -> Path:
        """``analyses/sae/<settings>``: the saved SAEs, ``<model>/seed_<s>/layer_<depth>/step_<N>/sae``."""
        return Path(ctx.folder) / "analyses" / "sae" / digest(self.part_settings(cfg))

    def compute(self, ctx, cfg: SAEConfig, state, ckpt, device, steps):
        bridge = ctx.series.load_bridge(ckpt.model, ckpt.step, seed=ckpt.seed, device=str(device))
        batches = ctx.tasks.require_batches(None, self.name)
        depths = sorted({d % (bridge.cfg.n_layers + 1) for d in cfg.layers})
        out = {"depths": np.array(depths)}
        for depth in depths:
            folder = self.sae_root(ctx, cfg) / ckpt.model / f"seed_{ckpt.seed}" / f"layer_{depth}" / f"step_{ckpt.step}"
            for key, value in train_one(bridge, batches, len(ctx.tasks.names), depth, cfg, device, folder).items():
                out[f"d{depth}_{key}"] = value
        return out

    def assemble(self, ctx, cfg: SAEConfig, state, parts):
        import xarray as xr

        tasks = ctx.tasks.names
        models = list(parts)
        depths = sorted({int(d) for per in parts.values() for p in per.values() for d in p["depths"]})
        steps = sorted({s for per in parts.values() for s in per})
        shape3 = (len(models), len(steps), len(depths))
        out = {k: np.full(shape3, np.nan) for k in ("explained_variance", "l0", "dead_fraction", "n_alive", "n_born", "n_died", "n_background_features")}
        n_task = np.full(shape3 + (len(tasks),), np.nan)
        retention = np.full(shape3 + (len(tasks),), np.nan)
        for mi, model in enumerate(models):
            for li, depth in enumerate(depths):
                items = [(s, {k: p[f"d{depth}_{k}"] for k in ("decoder", "alive", "mass", "scalars")})
                         for s, p in sorted(parts[model].items()) if depth in p["depths"]]
                for i, (step, st) in enumerate(items):
                    si = steps.index(step)
                    ev, l0, dead, _ = st["scalars"]
                    out["explained_variance"][mi, si, li], out["l0"][mi, si, li], out["dead_fraction"][mi, si, li] = ev, l0, dead
                    alive = st["alive"].astype(bool)
                    spec = task_specificity(st["mass"])
                    specific = (spec >= cfg.specificity) & alive[:, None]
                    n_task[mi, si, li] = specific[:, : len(tasks)].sum(0)
                    out["n_background_features"][mi, si, li] = specific[:, len(tasks)].sum()
                    out["n_alive"][mi, si, li] = alive.sum()
                    if i + 1 < len(items):
                        nxt = items[i + 1][1]
                        fwd = match_features(st["decoder"][alive], nxt["decoder"][nxt["alive"].astype(bool)], cfg.match_threshold)
                        survived = np.zeros(len(alive), dtype=bool)
                        survived[np.flatnonzero(alive)] = fwd >= 0
                        for t in range(len(tasks)):
                            if specific[:, t].any():
                                retention[mi, si, li, t] = survived[specific[:, t]].mean()
                        out["n_died"][mi, si, li] = int((fwd < 0).sum())
                    if i > 0:
                        prev = items[i - 1][1]
                        back = match_features(st["decoder"][alive], prev["decoder"][prev["alive"].astype(bool)], cfg.match_threshold)
                        out["n_born"][mi, si, li] = int((back < 0).sum())
        dims = ("model", "step", "layer")
        data_vars = {k: (dims, v) for k, v in out.items()}
        data_vars["n_task_features"] = (dims + ("task",), n_task)
        data_vars["feature_retention"] = (dims + ("task",), retention)
        shares = ctx.tasks.shares() or {}
        ds = xr.Dataset(
            data_vars,
            coords={
                **series_coords(ctx.series, models, steps),
                "layer": depths,
                "task": tasks,
                "share": ("task", [shares.get(t, np.nan) for t in tasks]),
                "complexity": ("task", [ctx.tasks.complexity(t) for t in tasks]),
            },
            attrs={"sae_folder": os.path.relpath(self.sae_root(ctx, cfg), Path(ctx.folder))},
        )
        return describe(ds, VARIABLES)


def run_sae(run, cfg: SAEConfig | None = None, models: list[str] | None = None, steps: list[int] | None = None, progress: bool = True):
    """Train and score SAEs over the chosen checkpoints of ``run`` (a path, Run or Context), resuming; writes analyses/sae.nc."""
    return SAEs().run(as_context(run), cfg or SAEConfig(), models=models, steps=steps, progress=progress)
