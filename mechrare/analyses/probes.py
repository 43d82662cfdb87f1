"""Probe every checkpoint of a run: analyses/probes.nc.

For each (model, step) the residual stream (or MLP activations) at every
depth is read at the last prompt position of each probe instance, then every
(layer, target) probe and its control-task twin is fitted on the training
split and scored (accuracy) on the held-out split. ``logistic`` and ``ridge``
fit all of a checkpoint's probes in one batched torch program; any other
registered probe (or scikit-learn classifier) is fitted one by one.
Each checkpoint's result is written as it finishes, so a rerun resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mechrare.activations import mlp_hooks, resid_hooks
from mechrare.analyses.common import analysis_attrs, parts_dir, resolve_torch_device, run_mixture, save_part
from mechrare.analyses.registry import ANALYSES, Analysis
from mechrare.checkpoints.metrics import model_step_coords, write_dataset
from mechrare.checkpoints.store import CheckpointStore
from mechrare.errors import ConfigError
from mechrare.probes.base import PROBES, get_probe
from mechrare.probes.solvers import SOLVERS
from mechrare.probes.targets import ProbeData, build_probe_data

SITES = {"resid": resid_hooks, "mlp": mlp_hooks}


@dataclass
class ProbesConfig:
    probe: str = "logistic"
    params: dict[str, Any] = field(default_factory=dict)
    site: str = "resid"
    examples_per_task: int = 512
    train_fraction: float = 0.6
    standardize: bool = True
    device: str = "auto"
    seed: int = 0

    def validate(self, path: str) -> None:
        if self.probe not in PROBES:
            raise ConfigError(f"{path}.probe: unknown probe {self.probe!r}; known: {', '.join(PROBES.names())}")
        if self.site not in SITES:
            raise ConfigError(f"{path}.site: must be one of {', '.join(SITES)}, got {self.site!r}")
        if not 0 < self.train_fraction < 1:
            raise ConfigError(f"{path}.train_fraction: must be in (0, 1), got {self.train_fraction}")
        if self.examples_per_task < 4:
            raise ConfigError(f"{path}.examples_per_task: must be >= 4, got {self.examples_per_task}")


def _standardize(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """z-score features with the training split's statistics."""
    return (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)


def _padded_problems(data: ProbeData, acts: list[np.ndarray], standardize: bool, targets: list[int] | None = None):
    """Stack every (layer, target, real|control) problem into padded arrays."""
    targets = list(range(len(data.targets))) if targets is None else targets
    specs = [(l, t, kind) for l in range(len(acts)) for t in targets for kind in (0, 1)]
    n = max(len(data.targets[t].rows) for t in targets)
    k = max(data.targets[t].n_classes for t in targets)
    d = acts[0].shape[1]
    X = np.zeros((len(specs), n, d), dtype=np.float32)
    y = np.zeros((len(specs), n), dtype=np.int64)
    train = np.zeros((len(specs), n), dtype=bool)
    test = np.zeros((len(specs), n), dtype=bool)
    mask = np.zeros((len(specs), k), dtype=bool)
    for p, (l, t, kind) in enumerate(specs):
        tgt = data.targets[t]
        m = len(tgt.rows)
        x = acts[l][tgt.rows]
        if standardize:
            x = _standardize(x, tgt.train)
        labels = tgt.control if kind else tgt.labels
        X[p, :m], y[p, :m] = x, labels
        train[p, :m], test[p, :m] = tgt.train, ~tgt.train
        mask[p, np.unique(labels[tgt.train])] = True
    return specs, X, y, train, test, mask


def _class_groups(data: ProbeData) -> list[list[int]]:
    """Targets grouped by class count, so that no problem is padded to another's classes."""
    groups: dict[int, list[int]] = {}
    for t, tgt in enumerate(data.targets):
        groups.setdefault(tgt.n_classes, []).append(t)
    return list(groups.values())


def _fit_batched(data: ProbeData, acts, cfg: ProbesConfig, device, targets: list[int], out: dict) -> None:
    import torch

    specs, X, y, train, test, mask = _padded_problems(data, acts, cfg.standardize, targets)
    budget = max(1, int(4e8 // max(1, X.shape[1] * X.shape[2] * 4)))  # ~400 MB of features per call
    for lo in range(0, len(specs), budget):
        sl = slice(lo, lo + budget)
        Xt = torch.as_tensor(X[sl], device=device)
        yt = torch.as_tensor(y[sl], device=device)
        w = torch.as_tensor(train[sl], device=device)
        models = SOLVERS[cfg.probe](Xt, yt, w=w, class_mask=torch.as_tensor(mask[sl], device=device), **cfg.params)
        correct = (models.predict(Xt) == yt).cpu().numpy()
        for j, (l, t, kind) in enumerate(specs[sl]):
            out["control_score" if kind else "probe_score"][l, t] = correct[j][test[lo + j]].mean()
            if not kind:
                out["train_score"][l, t] = correct[j][train[lo + j]].mean()


def fit_checkpoint(data: ProbeData, acts: list[np.ndarray], cfg: ProbesConfig, device) -> dict[str, np.ndarray]:
    """Scores [layer, target] for one checkpoint: probe, control and train accuracy."""
    shape = (len(acts), len(data.targets))
    out = {k: np.full(shape, np.nan) for k in ("probe_score", "control_score", "train_score")}
    if cfg.probe in SOLVERS:
        for group in _class_groups(data):
            _fit_batched(data, acts, cfg, device, group, out)
        return out
    from sklearn.base import clone

    template = get_probe(cfg.probe, **cfg.params)
    for l, x_all in enumerate(acts):
        for t, tgt in enumerate(data.targets):
            x = x_all[tgt.rows]
            if cfg.standardize:
                x = _standardize(x, tgt.train)
            for kind, labels in ((0, tgt.labels), (1, tgt.control)):
                est = clone(template).fit(x[tgt.train], labels[tgt.train])
                out["control_score" if kind else "probe_score"][l, t] = est.score(x[~tgt.train], labels[~tgt.train])
                if not kind:
                    out["train_score"][l, t] = est.score(x[tgt.train], labels[tgt.train])
    return out


def _parts_dir(store: CheckpointStore, cfg: ProbesConfig):
    return parts_dir(store, "probes", asdict(cfg))


def run_probes(run, cfg: ProbesConfig | None = None, models: list[str] | None = None, progress: bool = True):
    """Probe every checkpoint (resuming from finished ones); write analyses/probes.nc."""
    from tqdm.auto import tqdm

    from mechrare.activations import get_activations

    cfg = cfg or ProbesConfig()
    store = CheckpointStore(run)
    mixture = run_mixture(store)
    data = build_probe_data(mixture, cfg.examples_per_task, cfg.train_fraction, cfg.seed)
    if not data.targets:
        raise ConfigError(f"probes: no target has enough examples ({data.skipped}); raise probes.examples_per_task")
    device = resolve_torch_device(cfg.device)
    parts = _parts_dir(store, cfg)
    todo = [c for c in store.iter_checkpoints(models) if not (parts / c.model / f"step_{c.step}.npz").is_file()]
    for ckpt in tqdm(todo, desc="probes", unit="ckpt", disable=not progress):
        bridge = store.load_bridge(ckpt.model, ckpt.step, device=str(device))
        hooks = SITES[cfg.site](bridge.cfg.n_layers)
        acts = get_activations(bridge, data.ids, hooks, positions=data.positions)
        scores = fit_checkpoint(data, [acts[h] for h in hooks], cfg, device)
        save_part(parts / ckpt.model / f"step_{ckpt.step}.npz", scores)
        del bridge
    ds = assemble(store, data, cfg, parts, models)
    write_dataset(ds, store.run.analysis_path("probes"))
    return ds


def assemble(store: CheckpointStore, data: ProbeData, cfg: ProbesConfig, parts, models=None):
    import xarray as xr

    models = models or store.models()
    steps = sorted({s for m in models for s in store.steps(m)})
    found = {(m, s): np.load(parts / m / f"step_{s}.npz") for m in models for s in store.steps(m)}
    n_layers = max(v["probe_score"].shape[0] for v in found.values())
    names = [t.name for t in data.targets]
    arrays = {k: np.full((len(models), len(steps), n_layers, len(names)), np.nan) for k in ("probe_score", "control_score", "train_score")}
    for (m, s), scores in found.items():
        mi, si = models.index(m), steps.index(s)
        for key in arrays:
            arrays[key][mi, si, : scores[key].shape[0]] = scores[key]
    dims = ("model", "step", "layer", "target")
    ds = xr.Dataset(
        {
            "probe_score": (dims, arrays["probe_score"], {"long_name": "held-out probe accuracy"}),
            "control_score": (dims, arrays["control_score"], {"long_name": "held-out control-task accuracy"}),
            "selectivity": (dims, arrays["probe_score"] - arrays["control_score"]),
            "train_score": (dims, arrays["train_score"], {"long_name": "probe accuracy on its training split"}),
        },
        coords={
            **model_step_coords(store.manifest, models, steps),
            "layer": np.arange(n_layers),
            "target": names,
            "target_task": ("target", [t.task for t in data.targets]),
            "n_classes": ("target", [t.n_classes for t in data.targets]),
            "n_train": ("target", [t.n_train for t in data.targets]),
            "n_test": ("target", [t.n_test for t in data.targets]),
        },
        attrs=analysis_attrs(store, "probes", asdict(cfg), skipped_targets=json.dumps(data.skipped)),
    )
    ds.layer.attrs["long_name"] = "depth: 0 = embeddings, l + 1 = after block l" if cfg.site == "resid" else "MLP layer"
    return ds


ANALYSES.add("probes", Analysis("probes", ProbesConfig, run_probes))
