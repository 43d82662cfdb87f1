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
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

from mechrare.activations import resid_hooks
from mechrare.analyses.common import analysis_attrs, resolve_torch_device, run_mixture
from mechrare.analyses.registry import ANALYSES, Analysis
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
from mechrare.checkpoints.metrics import model_step_coords, write_dataset
from mechrare.checkpoints.store import CheckpointStore
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


def activation_buffer(bridge, mixture, hook: str, cfg: SAEConfig):
    """Token activations ([N, d]) at ``hook`` on fresh mixture batches, and each token's task (-1: background)."""
    from mechrare.activations import get_activations
    from mechrare.data.mixture import IGNORE

    rows, tasks, masks, labels = [], [], [], []
    step = 0
    while sum(len(r) for r in rows) < cfg.sequences:
        batch = mixture.batch(FRESH_DATA_OFFSET + cfg.seed * 100_003 + step, 64)
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


def _settings_dir(store: CheckpointStore, cfg: SAEConfig):
    key = json.dumps({k: v for k, v in asdict(cfg).items() if k not in ("device", "steps", "max_checkpoints")}, sort_keys=True)
    return store.run.path / "analyses" / "sae" / hashlib.sha256(key.encode()).hexdigest()[:12]


def train_checkpoint(store, mixture, model: str, step: int, depth: int, cfg: SAEConfig, device, folder) -> None:
    import torch

    bridge = store.load_bridge(model, step, device=str(device))
    hook = resid_hooks(bridge.cfg.n_layers)[depth]
    acts, token_task = activation_buffer(bridge, mixture, hook, cfg)
    buffer = torch.as_tensor(acts, device=device)
    spec = cfg.train_spec(acts.shape[1])
    sae = train_sae(buffer_batches(buffer, cfg.batch_size, cfg.seed), acts.shape[1], spec, str(device), autocast=device.type == "cuda")
    stats = score_sae(sae, acts, token_task, len(mixture.tasks))
    with atomic_dir(folder) as tmp:
        sae.save_inference_model(str(tmp / "sae"))
        np.savez(
            tmp / "stats.npz",
            decoder=decoder_directions(sae),
            alive=stats["alive"],
            mass=stats["mass"],
            scalars=np.array([stats["explained_variance"], stats["l0"], stats["dead_fraction"], len(acts)]),
        )
        (tmp / "hook.json").write_text(json.dumps({"hook": hook, "depth": depth, "tokens": int(len(acts))}))


def run_sae(run, cfg: SAEConfig | None = None, models: list[str] | None = None, progress: bool = True):
    """Train and score SAEs over the chosen checkpoints (resuming); write analyses/sae.nc."""
    from tqdm.auto import tqdm

    cfg = cfg or SAEConfig()
    store = CheckpointStore(run)
    mixture = run_mixture(store)
    device = resolve_torch_device(cfg.device)
    base = _settings_dir(store, cfg)
    models = models or store.models()
    jobs = []
    for model in models:
        n_layers = store.manifest["models"][model]["shape"]["n_layers"]
        depths = sorted({d % (n_layers + 1) for d in cfg.layers})
        for depth in depths:
            for step in chosen_steps(store.steps(model), cfg):
                jobs.append((model, depth, step, base / model / f"layer_{depth}" / f"step_{step}"))
    todo = [j for j in jobs if not (j[3] / "stats.npz").is_file()]
    for model, depth, step, folder in tqdm(todo, desc="sae", unit="sae", disable=not progress):
        train_checkpoint(store, mixture, model, step, depth, cfg, device, folder)
    ds = assemble(store, mixture.task_names, jobs, cfg)
    write_dataset(ds, store.run.analysis_path("sae"))
    return ds


def assemble(store: CheckpointStore, tasks: list[str], jobs, cfg: SAEConfig):
    import xarray as xr

    models = list(dict.fromkeys(j[0] for j in jobs))
    depths = sorted({j[1] for j in jobs})
    steps = sorted({j[2] for j in jobs})
    shape3 = (len(models), len(steps), len(depths))
    out = {k: np.full(shape3, np.nan) for k in ("explained_variance", "l0", "dead_fraction", "n_alive", "n_born", "n_died", "n_background_features")}
    n_task = np.full(shape3 + (len(tasks),), np.nan)
    retention = np.full(shape3 + (len(tasks),), np.nan)
    series: dict[tuple, list] = {}
    for model, depth, step, folder in jobs:
        series.setdefault((model, depth), []).append((step, np.load(folder / "stats.npz")))
    for (model, depth), items in series.items():
        items.sort(key=lambda x: x[0])
        mi, li = models.index(model), depths.index(depth)
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
    manifest = store.manifest
    data_vars = {k: (dims, v) for k, v in out.items()}
    data_vars["n_task_features"] = (dims + ("task",), n_task, {"long_name": f"alive features with >= {cfg.specificity} of their mass on the task"})
    data_vars["feature_retention"] = (dims + ("task",), retention, {"long_name": "share of the task's features matched at the next analysed step"})
    task_rows = {t["name"]: t for t in manifest["tasks"]}
    ds = xr.Dataset(
        data_vars,
        coords={
            **model_step_coords(manifest, models, steps),
            "layer": depths,
            "task": tasks,
            "frequency": ("task", [task_rows[t]["share"] for t in tasks]),
            "complexity": ("task", [task_rows[t]["complexity"] for t in tasks]),
        },
        attrs=analysis_attrs(store, "sae", asdict(cfg), sae_folder=str(_settings_dir(store, cfg))),
    )
    ds["n_died"].attrs["long_name"] = "alive features with no match at the next analysed step"
    ds["n_born"].attrs["long_name"] = "alive features with no match at the previous analysed step"
    return ds


ANALYSES.add("sae", Analysis("sae", SAEConfig, run_sae))
