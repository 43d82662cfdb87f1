"""Probe every checkpoint: analyses/probes.nc.

For each (model, step) the residual stream (or MLP activations) at every
depth is read at the last prompt position of each probe instance, then every
(layer, target) probe and its control-task twin is fitted on the training
split and scored (accuracy) on the held-out split. A probe type with a
batched ``fit_many`` (``logistic``, ``ridge``) fits all of a checkpoint's
probes in one tensor program; any other registered probe (or scikit-learn
classifier) is fitted one by one. Each checkpoint's result is a resume part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mechrare.activations import mlp_hooks, resid_hooks
from mechrare.analyses.driver import PerCheckpoint
from mechrare.analyses.registry import as_context, register_analysis
from mechrare.checkpoints.datasets import describe, series_coords
from mechrare.errors import ConfigError
from mechrare.probes.base import validated_probe
from mechrare.probes.targets import ProbeData, build_probe_data

#: site -> (hook names for a number of blocks, name of the dataset's depth dimension)
SITES = {"resid": (resid_hooks, "layer"), "mlp": (mlp_hooks, "block")}
SCORES = ("probe_score", "control_score", "train_score")


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
        path = path or "probes"
        validated_probe(self.probe, self.params, path)  # unknown names, bad keys and bad values: one line now
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


def _fit_batched(template, data: ProbeData, acts, standardize: bool, device, targets: list[int], out: dict) -> None:
    import torch

    specs, X, y, train, test, mask = _padded_problems(data, acts, standardize, targets)
    budget = max(1, int(4e8 // max(1, X.shape[1] * X.shape[2] * 4)))  # ~400 MB of features per call
    for lo in range(0, len(specs), budget):
        sl = slice(lo, lo + budget)
        Xt = torch.as_tensor(X[sl], device=device)
        yt = torch.as_tensor(y[sl], device=device)
        w = torch.as_tensor(train[sl], device=device)
        models = template.fit_many(Xt, yt, w=w, class_mask=torch.as_tensor(mask[sl], device=device))
        correct = (models.predict(Xt) == yt).cpu().numpy()
        for j, (l, t, kind) in enumerate(specs[sl]):
            out["control_score" if kind else "probe_score"][l, t] = correct[j][test[lo + j]].mean()
            if not kind:
                out["train_score"][l, t] = correct[j][train[lo + j]].mean()


def fit_target(template, x: np.ndarray, tgt, standardize: bool):
    """One probe (a clone of ``template``) for one target on its rows' activations ``x``
    ([len(tgt.rows), d]), and its control twin: (fitted probe, held-out, control held-out, train score)."""
    from sklearn.base import clone

    if standardize:
        x = _standardize(x, tgt.train)
    est = clone(template).fit(x[tgt.train], tgt.labels[tgt.train])
    control = clone(template).fit(x[tgt.train], tgt.control[tgt.train])
    return (est, est.score(x[~tgt.train], tgt.labels[~tgt.train]), control.score(x[~tgt.train], tgt.control[~tgt.train]),
            est.score(x[tgt.train], tgt.labels[tgt.train]))


def fit_checkpoint(data: ProbeData, acts: list[np.ndarray], cfg: ProbesConfig, device) -> dict[str, np.ndarray]:
    """Scores [layer, target] for one checkpoint: probe, control and train accuracy."""
    shape = (len(acts), len(data.targets))
    out = {k: np.full(shape, np.nan) for k in SCORES}
    template = validated_probe(cfg.probe, cfg.params)
    if hasattr(template, "fit_many"):  # one batch: a class mask pads each problem to the largest class count
        _fit_batched(template, data, acts, cfg.standardize, device, list(range(len(data.targets))), out)
        return out
    for l, x_all in enumerate(acts):
        for t, tgt in enumerate(data.targets):
            _, out["probe_score"][l, t], out["control_score"][l, t], out["train_score"][l, t] = fit_target(template, x_all[tgt.rows], tgt, cfg.standardize)
    return out


VARIABLES = {
    "probe_score": ("held-out probe accuracy", "1"),
    "control_score": ("held-out accuracy of the same probe on the control task (random label per input token)", "1"),
    "selectivity": ("probe_score - control_score", "1"),
    "train_score": ("probe accuracy on its training split", "1"),
    "n_classes": ("classes of the target", "1"),
    "n_train": ("probe training examples", "1"),
    "n_test": ("probe held-out examples", "1"),
}


@register_analysis
class Probes(PerCheckpoint):
    name = "probes"
    config_class = ProbesConfig

    def prepare(self, ctx, cfg: ProbesConfig) -> ProbeData:
        data = build_probe_data(ctx.tasks, cfg.examples_per_task, cfg.train_fraction, cfg.seed)
        if not data.targets:
            raise ConfigError(f"probes: no target has enough examples ({data.skipped}); raise probes.examples_per_task")
        return data

    def compute(self, ctx, cfg: ProbesConfig, data: ProbeData, ckpt, device, steps):
        from mechrare.activations import get_activations

        bridge = ctx.series.load_bridge(ckpt.model, ckpt.step, seed=ckpt.seed, device=str(device))
        hooks = SITES[cfg.site][0](bridge.cfg.n_layers)
        acts = get_activations(bridge, data.ids, hooks, positions=data.positions)
        return fit_checkpoint(data, [acts[h] for h in hooks], cfg, device)

    def assemble(self, ctx, cfg: ProbesConfig, data: ProbeData, parts):
        import xarray as xr

        models = list(parts)
        steps = sorted({s for per in parts.values() for s in per})
        depth = SITES[cfg.site][1]
        n_depth = max(a["probe_score"].shape[0] for per in parts.values() for a in per.values())
        names = [t.name for t in data.targets]
        arrays = {k: np.full((len(models), len(steps), n_depth, len(names)), np.nan) for k in SCORES}
        for mi, m in enumerate(models):
            for s, scores in parts[m].items():
                si = steps.index(s)
                for key in arrays:
                    arrays[key][mi, si, : scores[key].shape[0]] = scores[key]
        dims = ("model", "step", depth, "target")
        ds = xr.Dataset(
            {
                "probe_score": (dims, arrays["probe_score"]),
                "control_score": (dims, arrays["control_score"]),
                "selectivity": (dims, arrays["probe_score"] - arrays["control_score"]),
                "train_score": (dims, arrays["train_score"]),
            },
            coords={
                **series_coords(ctx.series, models, steps),
                depth: np.arange(n_depth),
                "target": names,
                "target_task": ("target", [t.task for t in data.targets]),
                "n_classes": ("target", [t.n_classes for t in data.targets]),
                "n_train": ("target", [t.n_train for t in data.targets]),
                "n_test": ("target", [t.n_test for t in data.targets]),
            },
            attrs={"skipped_targets": json.dumps(data.skipped)},
        )
        ds["target_task"].attrs["long_name"] = "task whose instances the target uses (all: every task)"
        return describe(ds, VARIABLES)


def run_probes(run, cfg: ProbesConfig | None = None, models: list[str] | None = None, steps: list[int] | None = None, progress: bool = True):
    """Probe every checkpoint of ``run`` (a path, Run or Context), resuming from finished ones;
    writes analyses/probes.nc."""
    return Probes().run(as_context(run), cfg or ProbesConfig(), models=models, steps=steps, progress=progress)
