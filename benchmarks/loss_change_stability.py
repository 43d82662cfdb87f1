"""Is interference.nc's loss_change stable when other training batches are sampled?

Runs the interference analysis on one model of a run three times: evenly spaced batches
(``batch_seed`` 0) and two random draws (``batch_seed`` 1 and 2), for each ``--batches``. For the
entries beyond 2 (and beyond t(0.975, batches - 1)) standard errors of 0 it prints how often a
redraw gives the same sign, and the distribution of the jackknife s.e. relative to |value|.

    python benchmarks/loss_change_stability.py RUN [--model d16-l2] [--batches 4 8]

The tiny preset's run (``mechrare train tiny --out runs/tiny``) takes about a minute per setting.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import numpy as np

    from mechrare.analyses.interference import InterferenceConfig, run_interference
    from mechrare.stats import t_quantile

    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--model", default="d16-l2")
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8])
    args = ap.parse_args()
    print("| batches | pair | criterion | entries | sign agreement |")
    print("|---|---|---|---|---|")
    spread = []
    for b in args.batches:
        runs = [run_interference(args.run, InterferenceConfig(batches=b, batch_seed=s), models=[args.model], progress=False)
                .sel(model=args.model, seed=0) for s in (0, 1, 2)]
        for name, x, y in (("even vs draw 1", runs[0], runs[1]), ("draw 1 vs draw 2", runs[1], runs[2])):
            for label, crit in (("2 s.e.", 2.0), (f"t(0.975, {b - 1}) s.e.", t_quantile(b))):
                big = (np.abs(x.loss_change) > crit * x.loss_change_se).values
                agree = (np.sign(x.loss_change.values) == np.sign(y.loss_change.values))[big]
                print(f"| {b} | {name} | {label} | {int(big.sum())} | {agree.mean():.3f} |")
        rel = (runs[0].loss_change_se / np.abs(runs[0].loss_change)).values
        rel = rel[np.isfinite(rel)]
        q = np.quantile(rel, [0.1, 0.25, 0.5, 0.75, 0.9])
        spread.append(f"| {b} | {len(rel)} | " + " | ".join(f"{v:.2f}" for v in q) + " |")
    print("\ns.e. / |loss_change| (evenly spaced batches):\n")
    print("| batches | entries | p10 | p25 | median | p75 | p90 |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(spread))


if __name__ == "__main__":
    main()
