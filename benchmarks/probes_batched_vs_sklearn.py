"""The probes analysis's default fit vs scikit-learn one by one, on the same probes, in one process.

Collects the activations of every checkpoint of a run (default: trains the
`tiny` preset into a temporary folder), then for each checkpoint fits every
(layer, target, real|control) probe (1) with the analysis's own default path,
``mechrare.analyses.probes.fit_checkpoint`` (``logistic``: batched L-BFGS,
finished problems dropped from the batch), and (2) one by one with
scikit-learn's ``LogisticRegression`` (lbfgs, same C, same standardised
features and splits). Prints both times, their ratio and the largest
held-out-accuracy difference.

    python benchmarks/probes_batched_vs_sklearn.py [RUN] [--device cuda]
    python benchmarks/probes_batched_vs_sklearn.py RUN --save problems.pkl   # collect here
    python benchmarks/probes_batched_vs_sklearn.py problems.pkl --device cuda  # fit elsewhere

Time it with nothing else running: two torch jobs on a 2-core machine slow each other ~7x.
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
    from mechrare.probes.targets import build_probe_data
    from mechrare.runs import open_run

    opened = open_run(run)
    store = opened.series
    data = build_probe_data(opened.tasks)
    per_ckpt = []
    for ckpt in store.iter_checkpoints():
        bridge = store.load_bridge(ckpt.model, ckpt.step, seed=ckpt.seed)
        hooks = resid_hooks(bridge.cfg.n_layers)
        acts = get_activations(bridge, data.ids, hooks, positions=data.positions)
        per_ckpt.append([acts[h] for h in hooks])
    return data, per_ckpt


def sklearn_one_by_one(data, acts, C: float) -> dict[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    from mechrare.analyses.probes import _standardize

    out = {k: np.full((len(acts), len(data.targets)), np.nan) for k in ("probe_score", "control_score")}
    for l, x_all in enumerate(acts):
        for t, tgt in enumerate(data.targets):
            x = _standardize(x_all[tgt.rows], tgt.train)
            for key, labels in (("probe_score", tgt.labels), ("control_score", tgt.control)):
                est = LogisticRegression(C=C, max_iter=2000).fit(x[tgt.train], labels[tgt.train])
                out[key][l, t] = est.score(x[~tgt.train], labels[~tgt.train])
    return out


def main() -> None:
    import torch

    from mechrare.analyses.probes import ProbesConfig, fit_checkpoint

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
    device = torch.device(args.device)
    paths = {
        "default (solver auto)": ProbesConfig(params={"C": args.C}),
        "batched torch L-BFGS": ProbesConfig(params={"C": args.C, "solver": "batched"}),
    }
    if device.type == "cpu":
        paths["scipy one by one"] = ProbesConfig(params={"C": args.C, "solver": "scipy"})
    for cfg in paths.values():
        fit_checkpoint(data, per_ckpt[0], cfg, device)  # warm up (CUDA context, kernels) outside the timing
    t_sk, times, worst = 0.0, dict.fromkeys(paths, 0.0), dict.fromkeys(paths, 0.0)
    for acts in per_ckpt:  # alternate the contenders checkpoint by checkpoint: the same machine state for each
        t0 = time.perf_counter()
        ref = sklearn_one_by_one(data, acts, args.C)
        t_sk += time.perf_counter() - t0
        for name, cfg in paths.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            ours = fit_checkpoint(data, acts, cfg, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name] += time.perf_counter() - t0
            for key in ref:
                worst[name] = max(worst[name], float(np.nanmax(np.abs(ours[key] - ref[key]))))
    n = len(per_ckpt) * len(per_ckpt[0]) * len(data.targets) * 2
    print(f"{n} probes ({len(per_ckpt)} checkpoints), device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'sklearn LogisticRegression one by one':40s} {t_sk:7.2f} s")
    for name in paths:
        print(f"{'mechrare ' + name:40s} {times[name]:7.2f} s   sklearn/this {t_sk / times[name]:.2f}x   "
              f"max |held-out accuracy difference| {worst[name]:.4f}")


if __name__ == "__main__":
    main()
