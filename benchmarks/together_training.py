"""`mechrare train` of one quickstart size (3 seeds, and its sweep's 2 interventions: 9 models of one shape),
one after another vs together (train.together: stacked weights, one vmap program), through the real path
(evaluation, checkpoints, resume states included). Wall seconds of each variant, run in turn, and the
ratios. Run it alone on the machine.

    python benchmarks/together_training.py --sizes d16-l2 d32-l2 d64-l2 --steps 300
"""

from __future__ import annotations

import argparse
import tempfile
import time


def timed(overrides: list[str]) -> float:
    from mechrare.config import load_config
    from mechrare.training import train_run

    _, cfg = load_config("quickstart", overrides)
    out = tempfile.mkdtemp(prefix="together-")
    t0 = time.perf_counter()
    train_run(cfg, out, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["d16-l2", "d32-l2", "d64-l2"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--compile", action="store_true", help="train.compile = true in every variant")
    args = ap.parse_args()
    variants = {
        "one after another, 1 thread": ["train.jobs=1", "train.threads=1"],
        "one after another, 2 threads": ["train.jobs=1", "train.threads=2"],
        "worker processes (2), 1 thread each": ["train.jobs=2", "train.threads=1"],
        "together, 1 thread": ["train.together=true", "train.threads=1"],
        "together, 2 threads": ["train.together=true", "train.threads=2"],
    }
    print(f"quickstart, {args.steps} steps, 3 seeds x (model + 2 sweep points) = 9 models per size, CPU"
          + (", torch.compile" if args.compile else ""))
    print("| size | " + " | ".join(variants) + " | together (faster) / one after another (faster) |")
    print("|---|" + "---:|" * (len(variants) + 1))
    for size in args.sizes:
        base = [f'ladder.models=["{size}"]', f"train.steps={args.steps}", f"train.compile={str(args.compile).lower()}"]
        t = {name: timed(base + extra) for name, extra in variants.items()}
        alone = min(t["one after another, 1 thread"], t["one after another, 2 threads"])
        together = min(t["together, 1 thread"], t["together, 2 threads"])
        print(f"| {size} | " + " | ".join(f"{v:.1f} s" for v in t.values()) + f" | {together / alone:.2f} |", flush=True)


if __name__ == "__main__":
    main()
