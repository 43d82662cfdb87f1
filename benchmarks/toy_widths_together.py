"""The toy model at every width in one tensor program vs one width at a time, same process.

The critical-width test trains a grid of settings at widths 1..16 together;
this measures what training them together buys, on the default toy setting
(or a grid). The two ways draw different initial weights (the draws depend on
the set of widths), so their final signals differ by training noise; the
benchmark reports how often they agree on the critical-width criterion s_r >= 0.5.

    python benchmarks/toy_widths_together.py [--steps 1500] [--grid]

Time it with nothing else running: two torch jobs on a 2-core machine slow each other ~7x.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np


def settings(grid: bool):
    from mechrare.toy.config import ToyConfig

    if not grid:
        return [ToyConfig()]
    return [ToyConfig(rare_frequency=p, rare_scale=s, alpha=a) for p, s, a in itertools.product([0.03, 0.05, 0.08], [0.5, 1.0, 2.0], [1.5, 2.0, 3.0])]


def main() -> None:
    import torch

    from mechrare.toy.model import ToyModel, ToySetting, auto_lr, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--grid", action="store_true", help="the 27-setting grid of the critical-width test")
    args = ap.parse_args()
    cfgs = settings(args.grid)
    widths = list(range(1, 17))
    pi = np.stack([c.frequencies() for c in cfgs])
    lam = np.stack([c.spectra() for c in cfgs])
    lr = auto_lr(pi, lam)

    def run(ws):
        model = ToyModel(ToySetting(pi, lam, gap=0, batch_size=256, seed=0), ws, init_scale=1e-2, seed=0)
        train(model, args.steps, lr)
        return model.retained_signal(model.capture())[:, :, -1]  # [S, W] rare-task signal

    run([1])  # warm up
    t0 = time.perf_counter()
    together = run(widths)
    t_together = time.perf_counter() - t0
    t0 = time.perf_counter()
    apart = np.concatenate([run([w]) for w in widths], axis=1)
    t_apart = time.perf_counter() - t0
    print(f"{len(cfgs)} setting(s) x {len(widths)} widths, {args.steps} steps, torch threads {torch.get_num_threads()}")
    print(f"one program, every width: {t_together:.2f} s")
    print(f"one width at a time:      {t_apart:.2f} s")
    agree = ((together >= 0.5) == (apart >= 0.5)).mean()
    print(f"speed-up {t_apart / t_together:.1f}x; s_r >= 0.5 agrees in {agree:.1%} of (setting, width) cells")


if __name__ == "__main__":
    main()
