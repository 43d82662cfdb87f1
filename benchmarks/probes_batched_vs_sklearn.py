"""Batched torch probes vs scikit-learn one by one, on the same probes.

Collects the activations of every checkpoint of a run (default: trains the
`tiny` preset into a temporary folder), builds every (checkpoint, layer,
target, real|control) probe problem, then fits them (1) one by one with
scikit-learn's ``LogisticRegression`` (lbfgs, same C) and (2) all at once with
``mechrare.probes.fit_logistic_many``. Prints both times, their ratio and the
largest test-accuracy difference, from one run.

    python benchmarks/probes_batched_vs_sklearn.py [RUN] [--device cuda]
    python benchmarks/probes_batched_vs_sklearn.py RUN --save problems.pkl   # collect here
    python benchmarks/probes_batched_vs_sklearn.py problems.pkl --device cuda  # fit elsewhere
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
import warnings

import numpy as np


def collect(run: str):
    """(probe data, [per-checkpoint list of per-layer activations])."""
    from mechrare.activations import get_activations, resid_hooks
    from mechrare.analyses.common import run_mixture
    from mechrare.checkpoints import CheckpointStore
    from mechrare.probes.targets import build_probe_data

    store = CheckpointStore(run)
    data = build_probe_data(run_mixture(store))
    per_ckpt = []
    for ckpt in store.iter_checkpoints():
        bridge = store.load_bridge(ckpt.model, ckpt.step)
        hooks = resid_hooks(bridge.cfg.n_layers)
        acts = get_activations(bridge, data.ids, hooks, positions=data.positions)
        per_ckpt.append([acts[h] for h in hooks])
    return data, per_ckpt


def problems(data, per_ckpt):
    """Every (checkpoint, layer, target, real|control) problem, padded, grouped by width."""
    from mechrare.analyses.probes import _padded_problems

    groups = {}
    for acts in per_ckpt:
        _, X, y, train, test, mask = _padded_problems(data, acts, True)
        groups.setdefault(X.shape[2], []).append((X, y, train, test, mask))
    return {d: [np.concatenate(a) for a in zip(*g)] for d, g in groups.items()}


def main() -> None:
    import torch
    from sklearn.linear_model import LogisticRegression

    from mechrare.probes import fit_logistic_many

    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--save", help="save the collected activations and targets here, and stop")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    run = args.run
    if run and run.endswith(".pkl"):
        with open(run, "rb") as fh:
            data, per_ckpt = pickle.load(fh)
    else:
        if run is None:
            from mechrare.config import load_config
            from mechrare.training import train_run

            run = os.path.join(tempfile.mkdtemp(), "tiny")
            train_run(load_config("tiny")[1], run, name="tiny", progress=False)
        data, per_ckpt = collect(run)
    if args.save:
        with open(args.save, "wb") as fh:
            pickle.dump((data, per_ckpt), fh)
        print(f"saved {len(per_ckpt)} checkpoints' activations to {args.save}")
        return
    groups = problems(data, per_ckpt)
    device = torch.device(args.device)
    # warm up (CUDA context, kernels) outside the timed region
    fit_logistic_many(torch.randn(2, 8, 3, device=device), torch.randint(0, 2, (2, 8), device=device))
    n_total = sum(len(g[0]) for g in groups.values())
    t_sk = t_ours = 0.0
    worst = 0.0
    for d, (X, y, train, test, mask) in groups.items():
        t0 = time.perf_counter()
        ref = np.array(
            [
                LogisticRegression(C=args.C, max_iter=2000).fit(X[p][train[p]], y[p][train[p]]).score(X[p][test[p]], y[p][test[p]])
                for p in range(len(X))
            ]
        )
        t_sk += time.perf_counter() - t0
        tensors = [torch.as_tensor(a, device=device) for a in (X, y, train, mask)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        models = fit_logistic_many(tensors[0], tensors[1], w=tensors[2], class_mask=tensors[3], C=args.C)
        pred = models.predict(tensors[0]).cpu().numpy()
        t_ours += time.perf_counter() - t0
        ours = np.array([(pred[p] == y[p])[test[p]].mean() for p in range(len(X))])
        worst = max(worst, float(np.abs(ours - ref).max()))
    print(f"{n_total} probes ({len(groups)} model widths), device {device}")
    print(f"sklearn LogisticRegression one by one: {t_sk:.2f} s")
    print(f"mechrare fit_logistic_many, batched:   {t_ours:.2f} s")
    print(f"speed-up: {t_sk / t_ours:.1f}x; max |test accuracy difference| = {worst:.4f}")


if __name__ == "__main__":
    main()
