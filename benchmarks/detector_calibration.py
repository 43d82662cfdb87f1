"""False-positive rate and power of retention's calibrated accuracy tests, by simulation.

Null series (no event) and planted ones (learn, then drop by 4 binomial s.e.),
at several eval sizes and checkpoint-grid lengths, each run through
``mechrare.analyses.binomial.detect_binomial`` with its defaults (window 3,
alpha 0.05). Prints one row per setting: the share of series flagged
"learned" and "overwritten".

    python benchmarks/detector_calibration.py [--series 1000] [--null 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def rates(curve: np.ndarray, n: int, chance: float, series: int, n_null: int, seed: int = 0) -> tuple[float, float]:
    from mechrare.analyses.binomial import detect_binomial

    rng = np.random.default_rng(seed)
    steps = np.arange(len(curve))
    learned = overwritten = 0
    for s in range(series):
        e = detect_binomial(steps, rng.binomial(n, curve) / n, n, chance, n_null=n_null, seed=[seed, s])
        learned += e.learned
        overwritten += e.overwritten
    return learned / series, overwritten / series


def settings():
    """(name, curve, n, chance, what is measured)."""
    out = []
    for T in (16, 26):
        for n in (6, 28, 256):
            for chance in (0.5, 1 / 16):
                out.append((f"at chance {chance:g}", np.full(T, chance), n, chance, "FPR"))
        out.append(("flat 0.5, chance 1/16", np.full(T, 0.5), 256, 1 / 16, "FPR (overwrite)"))
        for n in (28, 256):
            rise = 1 / 16 + (0.8 - 1 / 16) / (1 + np.exp(-(np.arange(T) - T / 2)))
            out.append(("monotone rise to 0.8", rise, n, 1 / 16, "FPR (overwrite)"))
        for n in (28, 256):
            hi = 0.6
            drop = 4 * np.sqrt(hi * (1 - hi) / n)
            for plateau in (4, T // 3):
                curve = np.r_[np.full(T - 2 * plateau, 1 / 16), np.full(plateau, hi), np.full(plateau, hi - drop)]
                out.append((f"learn, drop 4 s.e. ({plateau}+{plateau} ckpts)", curve, n, 1 / 16, "power"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--null", type=int, default=200, help="simulated null series per test")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print("| series | checkpoints | eval items | chance | measured | learned | overwritten |")
    print("|---|---|---|---|---|---|---|")
    for name, curve, n, chance, what in settings():
        series = args.series if what != "power" else max(200, args.series // 5)
        learned, over = rates(curve, n, chance, series, args.null)
        print(f"| {name} | {len(curve)} | {n} | {chance:.4g} | {what} over {series} | {learned:.3f} | {over:.3f} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
