"""Coverage and power of the findings' intervals (mechrare.stats), by simulation.

A ladder of three models is measured on n eval items under k seeds: each
seed's true accuracy is drawn around the model's (seed-to-seed sd 0.03), then
measured as Binomial(n, p) / n. For each (k, n) this prints

* coverage: how often the 95% interval of the slope (accuracy on log10 params)
  contains the true slope, under a flat ladder and under a rising one;
* false "holds": how often a flat ladder's interval lies wholly above 0;
* power: how often a rise of 0.15 per decade lies wholly above 0;
* for comparison, the coverage of a percentile bootstrap over seeds.

    python benchmarks/finding_intervals.py --sims 2000
"""

from __future__ import annotations

import argparse

import numpy as np

from mechrare.stats import contrast, slope_weights

X = np.log10([1e4, 3e4, 1e5])  # half a decade per step


def ladder(rng, k, p, n, seed_sd):
    true = np.clip(np.asarray(p)[None, :] + rng.normal(0, seed_sd, (k, len(p))), 0.001, 0.999)
    return rng.binomial(n, true) / n, true


def bootstrap_covers(rng, per_seed, truth, reps=1000):
    boot = rng.choice(per_seed, (reps, len(per_seed))).mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return lo <= truth <= hi


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=2000)
    ap.add_argument("--seed-sd", type=float, default=0.03)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    w = slope_weights(X)
    flat, rise = [0.2, 0.2, 0.2], [0.2 - 0.075, 0.2, 0.2 + 0.075]  # 0 and 0.15 per decade
    print(f"{args.sims} simulated ladders per row, seed-to-seed sd {args.seed_sd}, 3 models half a decade apart")
    print("| seeds | eval items | coverage (flat) | coverage (rise) | false holds (flat) | power (0.15/decade) | bootstrap coverage (flat) |")
    print("|---|---|---|---|---|---|---|")
    for k in (2, 3, 5, 10):
        for n in (64, 256, 1024):
            cov_f = cov_r = false_h = power = boot = 0
            for _ in range(args.sims):
                obs, true = ladder(rng, k, flat, n, args.seed_sd)
                est = contrast(obs, w, n)
                cov_f += est.low <= 0 <= est.high
                false_h += est.above(0)
                boot += bootstrap_covers(rng, obs @ w, 0.0)
                obs, true = ladder(rng, k, rise, n, args.seed_sd)
                est = contrast(obs, w, n)
                cov_r += est.low <= 0.15 <= est.high
                power += est.above(0)
            s = args.sims
            print(f"| {k} | {n} | {cov_f / s:.3f} | {cov_r / s:.3f} | {false_h / s:.3f} | {power / s:.3f} | {boot / s:.3f} |")


if __name__ == "__main__":
    main()
