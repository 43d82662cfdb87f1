"""False-positive rate and power of retention's permutation tests (probe, neurons, SAE), by simulation.

Each series goes through ``mechrare.analyses.jitter.detect_jitter`` with its
defaults (window 3, alpha 0.05, 1000 permutations, no ``min_effect`` floor, so
the rates are those of the tests alone). Noise models stand in for the signals:
Gaussian; Poisson counts at mean 0.3, 1 and 5 (owned neurons, SAE features);
binomial accuracy on 64 items (a probe's held-out score); Student t with 3
degrees of freedom (heavy tails). Nulls are flat series and a monotone rise (no
event); AR(1) rows show what the null does not cover (jitter correlated between
checkpoints). Power: learn by 4 noise s.d., hold, and fall back by 4 s.d.

    python benchmarks/jitter_calibration.py [--series 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

NOISE = {
    "gaussian": lambda rng, T: rng.standard_normal(T),
    "poisson 0.3": lambda rng, T: rng.poisson(0.3, T).astype(float),
    "poisson 1": lambda rng, T: rng.poisson(1.0, T).astype(float),
    "poisson 5": lambda rng, T: rng.poisson(5.0, T).astype(float),
    "binomial 64 at 0.5": lambda rng, T: rng.binomial(64, 0.5, T) / 64,
    "student t3": lambda rng, T: rng.standard_t(3, T),
}


def ar1(rho: float):
    def draw(rng, T):
        e = rng.standard_normal(T)
        out = np.empty(T)
        out[0] = e[0]
        for t in range(1, T):
            out[t] = rho * out[t - 1] + np.sqrt(1 - rho**2) * e[t]
        return out
    return draw


def rates(draw, T: int, series: int, seed: int) -> tuple[float, float, float]:
    """(learned, fell (the overwrite test alone), learned and overwritten) shares."""
    from mechrare.analyses.jitter import detect_jitter

    rng = np.random.default_rng(seed)
    steps = np.arange(T)
    learned = fell = over = 0
    for s in range(series):
        e = detect_jitter(steps, draw(rng, T), seed=[seed, s])
        learned += e.learned
        fell += e.p_overwrite <= 0.05
        over += e.overwritten
    return learned / series, fell / series, over / series


def settings(grids=(16, 26, 50)):
    """(series name, T, draw, what is measured)."""
    out = []
    for T in grids:
        for name, draw in NOISE.items():
            out.append((f"flat, {name}", T, draw, "FPR"))
        for rho in (0.3, 0.6):
            out.append((f"flat, AR(1) rho {rho} (not covered)", T, ar1(rho), "FPR"))
        rise = 6 / (1 + np.exp(-(np.arange(T) - T / 2)))
        out.append(("monotone rise of 6 s.d., gaussian", T, lambda rng, T, c=rise: c + rng.standard_normal(T), "FPR (overwrite)"))
        a, b = T // 3, 2 * T // 3
        shapes = {
            "learn 4 s.d., hold T/3, fall 4": np.r_[np.zeros(a), np.full(b - a, 4.0), np.zeros(T - b)],
            "learn 4 s.d., hold 4, fall 4": np.r_[np.zeros(T - 8), np.full(4, 4.0), np.zeros(4)],
            "learn 8 s.d., hold 4, fall 4": np.r_[np.zeros(T - 8), np.full(4, 8.0), np.full(4, 4.0)],
        }
        for name, c in shapes.items():
            out.append((f"{name}, gaussian", T, lambda rng, T, c=c: c + rng.standard_normal(T), "power"))
        counts = np.r_[np.full(T - 8, 2.0), np.full(4, 20.0), np.full(4, 2.0)]  # the fall, 18, is 4 s.d. at the peak (sqrt 20)
        out.append(("counts 2 -> 20 -> 2, hold 4, Poisson", T, lambda rng, T, c=counts: rng.poisson(c).astype(float), "power"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--grids", type=int, nargs="+", default=[16, 26, 50])
    args = ap.parse_args()
    t0 = time.perf_counter()
    print("| series | checkpoints | measured | learned | fell (test alone) | learned and overwritten |")
    print("|---|---|---|---|---|---|")
    for k, (name, T, draw, what) in enumerate(settings(args.grids)):
        series = args.series if what != "power" else max(200, args.series // 2)
        learned, fell, over = rates(draw, T, series, seed=k)
        print(f"| {name} | {T} | {what} over {series} | {learned:.3f} | {fell:.3f} | {over:.3f} |", flush=True)
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
