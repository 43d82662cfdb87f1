"""`mechrare train` of a family of quickstart sizes (one head width; 3 seeds x (model + 2 sweep points) = 9
models per size) one after another vs together by shape (train.together: one program per size) vs together
by family (train.together_sizes: one program, each model padded with zeros to the largest), through the
real path (evaluation, checkpoints, resume states included). 2 threads in every variant; wall seconds of
each, run in turn, and the ratios. Run it alone on the machine.

    python benchmarks/together_sizes.py --sizes d16-l2 d32-l2 --steps 300
"""

from __future__ import annotations

import argparse

from together_training import timed  # the same real-path timing as the by-shape benchmark


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["d16-l2", "d32-l2"], help="sizes with one head width (d_model / n_heads)")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    from mechrare.models.ladder import LADDER
    from mechrare.training.padding import head_width

    widths = {head_width(LADDER[s]) for s in args.sizes}
    if len(widths) != 1:
        raise SystemExit(f"--sizes: one family has one head width; these have {sorted(widths)}")
    variants = {
        "one after another": ["train.jobs=1"],
        "together by shape": ["train.together=true"],
        "together by family": ["train.together=true", "train.together_sizes=true"],
    }
    models = "[" + ", ".join(f'"{s}"' for s in args.sizes) + "]"
    base = [f"ladder.models={models}", f"train.steps={args.steps}", "train.threads=2"]
    print(f"quickstart, {args.steps} steps, sizes {' '.join(args.sizes)} (head width {widths.pop()}), "
          f"9 models each, CPU, 2 threads")
    t = {name: timed(base + extra) for name, extra in variants.items()}
    print("| " + " | ".join(variants) + " | by shape / one after another | by family / one after another | by family / by shape |")
    print("|" + "---:|" * (len(variants) + 3))
    first, shape, family = t.values()
    print("| " + " | ".join(f"{v:.1f} s" for v in t.values())
          + f" | {shape / first:.2f} | {family / first:.2f} | {family / shape:.2f} |", flush=True)


if __name__ == "__main__":
    main()
