"""Is neuron ownership causal? For every model and task of a run (default: the
final checkpoint), zero the MLP neurons the task owns (analyses/neurons.nc) and,
side by side, as many random neurons in the same blocks (mean and max of N
draws, not owned by the task); print the task's loss increase for both and their ratio.
The same measurement runs with the other analyses as ``mechrare analyze RUN --only ablation``
(analyses/ablation.nc, report finding (f)); this script reads one checkpoint directly.

    python benchmarks/ownership_ablation.py runs/quickstart [--step 1500] [--draws 20] [--seed 0] [--measure attribution]

``--measure``: ``task_neurons`` (the paper's, neurons.nc's ``owner``; default) or
``attribution`` (``owner_attribution``).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import numpy as np

    from mechrare.analyses.ablation import ablate_task
    from mechrare.analyses.neurons import task_inputs
    from mechrare.runs import open_run

    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--step", type=int, default=None)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--min-owned", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--measure", choices=("task_neurons", "attribution"), default="task_neurons")
    args = ap.parse_args()
    run = open_run(args.run)
    store, tasks = run.series, run.tasks
    ds = run.dataset("neurons")
    var = "owner" if args.measure == "task_neurons" else "owner_attribution"
    if var not in ds:
        raise SystemExit(f"neurons.nc has no {var}: {ds.attrs.get('task_neurons', '')}")
    print(f"measure: {args.measure}, seed {args.seed}")
    print(f"{'model':8} {'step':>5} {'task':10} {'owned':>5} {'base loss':>9} {'zero owned':>10} {'zero random':>11} {'random max':>10} {'ratio':>7}")
    ok = True
    for model in store.models():
        step = args.step if args.step is not None else store.steps(model)[-1]
        bridge = store.load_bridge(model, step, seed=args.seed)
        owner = ds[var].sel(model=model, step=step, seed=args.seed).values
        for t, name in enumerate(tasks.names):
            ids, answer = task_inputs(tasks, name)
            r = ablate_task(bridge, ids, answer, owner, t, args.draws, np.random.default_rng([args.seed, t]))
            r["random_max"], r["random"] = float(r["random"].max()), float(r["random"].mean())
            ratio = r["owned"] / r["random"] if r["random"] > 0 else float("inf")
            flag = "" if r["n_owned"] < args.min_owned else ("  ok" if r["owned"] > r["random"] else "  FAIL")
            ok &= not flag.strip() == "FAIL"
            print(f"{model:8} {step:5d} {name:10} {r['n_owned']:5d} {r['base']:9.4f} {r['owned']:+10.4f} {r['random']:+11.4f} {r['random_max']:+10.4f} {ratio:7.1f}{flag}")
    print("every task owning >= %d neurons: zeroing them hurts more than random: %s" % (args.min_owned, "yes" if ok else "NO"))


if __name__ == "__main__":
    main()
