"""Sparse autoencoders over the checkpoint series: analyses/sae.nc.

For each chosen (model, residual depth, checkpoint), an SAE is trained with
sae-lens's ``SAETrainer`` on activations streamed from the run's own mixture
(fresh batches, beyond the training steps), through ``mechrare.activations``.
It is saved in sae-lens's format under ``analyses/sae/...`` (loadable with
``sae_lens.SAE.load_from_disk``) and scored on **held-out** tokens (another
stretch of the mixture than its training buffer):

* explained variance (held out; ``explained_variance_train`` on its own
  buffer), L0 and dead fraction;
* per feature, task specificity: the share of its activation mass on each
  task's tokens (task instance and its ``<eos>``) versus background tokens; a
  feature is *specific* to a task when that share is >= ``specificity``;
* a specific feature is a **task feature** (``n_task_features``) only if it also
  fires on >= ``min_instances`` distinct instances of the task (else it counts in
  ``n_few_instance_features``) and its activation is not told by the token id
  alone: the correlation ratio eta^2 of its activation on the token id, over
  every held-out token, is < ``max_token_r2`` (else ``n_token_features``: a
  feature for a task's marker or key tokens, which a random network has too);
* the dictionary size is ``d_sae`` when set (the same for every model size) or
  ``expansion`` x d_model;
* across consecutive analysed checkpoints, features are matched by decoder
  cosine with a Hungarian assignment (a match needs cosine >= ``match_threshold``):
  ``feature_retention(task)`` is the share of the task's features at step t that
  have a match at the next analysed step; ``n_born`` / ``n_died`` count alive
  features without a match backwards / forwards;
* the **seed baseline** (``baseline``): at the last analysed checkpoint a
  second SAE with another seed is trained on the same activations and matched
  the same way; ``seed_match_rate`` (alive features) and ``seed_match_task``
  (the task's features) are the match rates two SAEs of *one* checkpoint reach,
  the ceiling against which ``feature_retention`` reads (a retention at the
  baseline is what SAE training alone gives).

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
    task_features,
    task_specificity,
    train_sae,
)
from mechrare.atomic import atomic_dir
from mechrare.checkpoints.datasets import describe, series_coords
from mechrare.data.proxy_batches import PROXY
from mechrare.errors import ConfigError
from mechrare.names import inside

FRESH_DATA_OFFSET = 10**9  # mixture steps far beyond any training step
HELDOUT_OFFSET = FRESH_DATA_OFFSET + 5 * 10**8  # the held-out stretch the SAEs are scored on


@dataclass
class SAEConfig:
    architecture: str = "topk"
    expansion: int = 4
    d_sae: int = 0  # dictionary size for every model; 0 = expansion x d_model (larger models get more features)
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
    min_instances: int = 5  # a task feature fires on at least this many distinct instances of the task
    max_token_r2: float = 0.9  # ... and the token id explains less than this share of its activation variance
    baseline: bool = True  # a second SAE (seed + 1) at the last analysed checkpoint: the match rate of two seeds
    device: str = "auto"
    seed: int = 0

    def validate(self, path: str) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"{path}.architecture: must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        for key in ("expansion", "k", "train_steps", "batch_size", "max_checkpoints", "sequences", "min_instances"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{path}.{key}: must be >= 1, got {getattr(self, key)}")
        if self.d_sae < 0:
            raise ConfigError(f"{path}.d_sae: must be >= 0 (0: expansion x d_model), got {self.d_sae}")
        for key in ("specificity", "match_threshold", "max_token_r2"):
            if not 0 < getattr(self, key) <= 1:
                raise ConfigError(f"{path}.{key}: must be in (0, 1], got {getattr(self, key)}")

    def train_spec(self, d_in: int, seed_offset: int = 0) -> SAETrainSpec:
        """What one SAE of these settings trains with, on activations of width ``d_in``."""
        return SAETrainSpec(
            architecture=self.architecture,
            d_sae=self.d_sae or self.expansion * d_in,
            k=self.k,
            l1_coefficient=self.l1_coefficient,
            l0_coefficient=self.l0_coefficient,
            steps=self.train_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed + seed_offset,
        )


def chosen_steps(available: list[int], cfg: SAEConfig) -> list[int]:
    if cfg.steps:
        missing = sorted(set(cfg.steps) - set(available))
        if missing:
            raise ConfigError(f"sae.steps: no checkpoint at step {missing[0]}; available: {available}")
        return sorted(cfg.steps)
    idx = np.unique(np.round(np.linspace(0, len(available) - 1, min(cfg.max_checkpoints, len(available)))).astype(int))
    return [available[i] for i in idx]


def activation_buffer(bridge, batches, hook: str, cfg: SAEConfig, offset: int = FRESH_DATA_OFFSET):
    """Token activations ([N, d]) at ``hook`` on fresh training-distribution batches (mixture steps from
    ``offset``), with each token's task (-1: background), token id, and instance id (the same id for
    every token of one task instance, and for equal instances; -1 off task instances)."""
    from mechrare.activations import get_activations
    from mechrare.data.mixture import IGNORE

    rows, tasks, masks, labels = [], [], [], []
    step = 0
    while sum(len(r) for r in rows) < cfg.sequences:
        batch = batches.batch(offset + cfg.seed * 100_003 + step, 64)
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
    content = np.concatenate([row_task[:, None], np.where(mask, ids, -1)], 1)  # a row's task and its instance's tokens
    key = np.unique(content, axis=0, return_inverse=True)[1].reshape(-1)
    instance = np.where(mask, key[:, None], -1)
    return acts[keep], token_task[keep], ids[keep], instance[keep]


def train_one(bridge, batches, n_tasks: int, depth: int, cfg: SAEConfig, device, folder: Path, baseline: bool = False) -> dict:
    """Train one SAE at residual depth ``depth`` and score it on held-out tokens; save it (sae-lens format) to
    ``folder/sae``; with ``baseline`` also a second SAE (seed + 1) on the same activations, to ``folder/baseline``."""
    import torch

    hook = resid_hooks(bridge.cfg.n_layers)[depth]
    acts, token_task, _, _ = activation_buffer(bridge, batches, hook, cfg)
    held, held_task, held_tokens, held_instance = activation_buffer(bridge, batches, hook, cfg, HELDOUT_OFFSET)
    buffer = torch.as_tensor(acts, device=device)
    saes = {"sae": cfg.train_spec(acts.shape[1])}
    if baseline:
        saes["baseline"] = cfg.train_spec(acts.shape[1], seed_offset=1)
    trained = {name: train_sae(buffer_batches(buffer, cfg.batch_size, spec.seed), acts.shape[1], spec, str(device),
                               autocast=device.type == "cuda") for name, spec in saes.items()}
    sae = trained["sae"]
    stats = score_sae(sae, held, held_task, n_tasks, tokens=held_tokens, instance=held_instance)
    train_ev = score_sae(sae, acts, token_task, n_tasks)["explained_variance"]
    if folder.exists():  # left by an interrupted run whose part was never written: replace it
        shutil.rmtree(folder)
    with atomic_dir(folder) as tmp:
        for name, model in trained.items():
            model.save_inference_model(str(tmp / name))
        (tmp / "hook.json").write_text(json.dumps({"hook": hook, "depth": depth, "tokens": int(len(acts)), "heldout_tokens": int(len(held))}))
    out = {
        "decoder": decoder_directions(sae),
        "alive": stats["alive"],
        "mass": stats["mass"],
        "instances": stats["instances"],
        "token_r2": stats["token_r2"],
        "scalars": np.array([stats["explained_variance"], stats["l0"], stats["dead_fraction"], len(held), train_ev]),
    }
    if baseline:
        out["baseline_decoder"] = decoder_directions(trained["baseline"])
        out["baseline_alive"] = score_sae(trained["baseline"], held, held_task, n_tasks)["alive"]
    return out


VARIABLES = {
    "explained_variance": ("explained variance of the SAE's reconstruction on held-out activations", "1"),
    "explained_variance_train": ("explained variance of the SAE's reconstruction on its own training buffer", "1"),
    "l0": ("mean number of active features per held-out token", "1"),
    "dead_fraction": ("share of features that never fire on the held-out tokens", "1"),
    "n_alive": ("features that fire at least once on the held-out tokens", "1"),
    "n_born": ("alive features with no match at the previous analysed step", "1"),
    "n_died": ("alive features with no match at the next analysed step", "1"),
    "n_background_features": ("alive features with >= specificity of their mass on background tokens", "1"),
    "n_task_features": ("task features: >= specificity of their activation mass on the task's tokens, firing on >= "
                        "min_instances distinct instances, and not explained by the token id (eta^2 < max_token_r2)", "1"),
    "n_token_features": ("features specific to the task and on enough instances whose activation the token id explains "
                         "(eta^2 >= max_token_r2): token-identity features, not counted as task features", "1"),
    "n_few_instance_features": ("features specific to the task that fire on fewer than min_instances distinct instances", "1"),
    "feature_retention": ("share of the task's features matched (decoder cosine) at the next analysed step", "1"),
    "seed_match_rate": ("seed baseline: share of the SAE's alive features matched by an SAE of another seed on the same "
                        "checkpoint and activations (the last analysed step, seed_match_step)", "1"),
    "seed_match_task": ("seed baseline: share of the task's features matched by an SAE of another seed on the same "
                        "checkpoint", "1"),
    "seed_match_step": ("the checkpoint the seed baseline was measured at", "1"),
}


@register_analysis
class SAEs(PerCheckpoint):
    name = "sae"
    config_class = SAEConfig
    part_ignore = ("device", "steps", "max_checkpoints", "specificity", "match_threshold", "min_instances", "max_token_r2")
    part_version = 2  # held-out scoring, instances, token eta^2, the seed baseline

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
            folder = inside(ctx.folder, self.sae_root(ctx, cfg) / ckpt.model / f"seed_{ckpt.seed}" / f"layer_{depth}" / f"step_{ckpt.step}")
            last = cfg.baseline and ckpt.step == steps[-1]
            for key, value in train_one(bridge, batches, len(ctx.tasks.names), depth, cfg, device, folder, last).items():
                out[f"d{depth}_{key}"] = value
        return out

    def assemble(self, ctx, cfg: SAEConfig, state, parts):
        import xarray as xr

        tasks = ctx.tasks.names
        T = len(tasks)
        models = list(parts)
        depths = sorted({int(d) for per in parts.values() for p in per.values() for d in p["depths"]})
        steps = sorted({s for per in parts.values() for s in per})
        shape3 = (len(models), len(steps), len(depths))
        out = {k: np.full(shape3, np.nan) for k in ("explained_variance", "explained_variance_train", "l0", "dead_fraction", "n_alive",
                                                     "n_born", "n_died", "n_background_features")}
        per_task = {k: np.full(shape3 + (T,), np.nan) for k in ("n_task_features", "n_token_features", "n_few_instance_features",
                                                                "feature_retention")}
        match_rate = np.full((len(models), len(depths)), np.nan)
        match_task = np.full((len(models), len(depths), T), np.nan)
        match_step = np.full(len(models), np.nan)
        keys = ("decoder", "alive", "mass", "scalars", "instances", "token_r2", "baseline_decoder", "baseline_alive")
        for mi, model in enumerate(models):
            for li, depth in enumerate(depths):
                items = [(s, {k: p[f"d{depth}_{k}"] for k in keys if f"d{depth}_{k}" in p})
                         for s, p in sorted(parts[model].items()) if depth in p["depths"]]
                for i, (step, st) in enumerate(items):
                    si = steps.index(step)
                    ev, l0, dead, _, ev_train = st["scalars"]
                    for name, value in (("explained_variance", ev), ("explained_variance_train", ev_train), ("l0", l0), ("dead_fraction", dead)):
                        out[name][mi, si, li] = value
                    alive = st["alive"].astype(bool)
                    feats = task_features(st["mass"], alive, st["instances"], st["token_r2"], cfg.specificity, cfg.min_instances, cfg.max_token_r2)
                    task = feats["task"]
                    per_task["n_task_features"][mi, si, li] = task.sum(0)
                    per_task["n_token_features"][mi, si, li] = feats["token"].sum(0)
                    per_task["n_few_instance_features"][mi, si, li] = feats["few"].sum(0)
                    out["n_background_features"][mi, si, li] = ((task_specificity(st["mass"])[:, T] >= cfg.specificity) & alive).sum()
                    out["n_alive"][mi, si, li] = alive.sum()
                    if i + 1 < len(items):
                        nxt = items[i + 1][1]
                        survived = self._matched(st["decoder"], alive, nxt["decoder"], nxt["alive"], cfg.match_threshold)
                        for t in range(T):
                            if task[:, t].any():
                                per_task["feature_retention"][mi, si, li, t] = survived[task[:, t]].mean()
                        out["n_died"][mi, si, li] = int((~survived[alive]).sum())
                    if i > 0:
                        prev = items[i - 1][1]
                        back = self._matched(st["decoder"], alive, prev["decoder"], prev["alive"], cfg.match_threshold)
                        out["n_born"][mi, si, li] = int((~back[alive]).sum())
                    if "baseline_decoder" in st:  # the latest checkpoint with a seed baseline
                        same = self._matched(st["decoder"], alive, st["baseline_decoder"], st["baseline_alive"], cfg.match_threshold)
                        match_rate[mi, li] = same[alive].mean() if alive.any() else np.nan
                        match_task[mi, li] = [same[task[:, t]].mean() if task[:, t].any() else np.nan for t in range(T)]
                        match_step[mi] = step
        dims = ("model", "step", "layer")
        data_vars = {k: (dims, v) for k, v in out.items()}
        data_vars.update({k: (dims + ("task",), v) for k, v in per_task.items()})
        data_vars["seed_match_rate"] = (("model", "layer"), match_rate)
        data_vars["seed_match_task"] = (("model", "layer", "task"), match_task)
        data_vars["seed_match_step"] = (("model",), match_step)
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
            attrs={"sae_folder": os.path.relpath(self.sae_root(ctx, cfg), Path(ctx.folder)),
                   "batches": PROXY if ctx.kind == "series" else "the run's own mixture, at steps beyond training"},
        )
        return describe(ds, VARIABLES)

    @staticmethod
    def _matched(decoder, alive, other_decoder, other_alive, threshold: float) -> np.ndarray:
        """[d_sae] bool: the alive features of ``decoder`` with a match among ``other_decoder``'s alive ones."""
        alive, other_alive = np.asarray(alive, dtype=bool), np.asarray(other_alive, dtype=bool)
        got = match_features(decoder[alive], other_decoder[other_alive], threshold)
        out = np.zeros(len(alive), dtype=bool)
        out[np.flatnonzero(alive)] = got >= 0
        return out


def run_sae(run, cfg: SAEConfig | None = None, models: list[str] | None = None, steps: list[int] | None = None, progress: bool = True):
    """Train and score SAEs over the chosen checkpoints of ``run`` (a path, Run or Context), resuming; writes analyses/sae.nc."""
    return SAEs().run(as_context(run), cfg or SAEConfig(), models=models, steps=steps, progress=progress)
