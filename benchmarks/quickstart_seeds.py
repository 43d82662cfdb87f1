"""Wall time of `mechrare run` (train, every analysis, report) on the quickstart with 1 and with N seeds.

Run it alone on the machine (two torch jobs slow each other several times over):

    python benchmarks/quickstart_seeds.py --seeds 3 --out /tmp/qs-bench

Prints each run's stage times (from its output) and total, and the ratio of N
seeds to 1. ``--jobs 1`` measures the one-process path (models and parts one
after another) for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def timed_run(out: Path, seeds: int, jobs: int | None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "mechrare", "run", "quickstart", "--out", str(out), "--no-progress",
           "--set", f"ladder.seeds={seeds}"]
    if jobs is not None:
        cmd += ["--set", f"train.jobs={jobs}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=None, help="train.jobs (default: the preset's, auto)")
    ap.add_argument("--out", default="/tmp/qs-bench")
    args = ap.parse_args()
    base = Path(args.out)
    one = timed_run(base / "one", 1, args.jobs)
    many = timed_run(base / "many", args.seeds, args.jobs)
    print(f"machine: {os.cpu_count()} CPUs; train.jobs = {args.jobs if args.jobs is not None else 'auto'}")
    print(f"| seeds | mechrare run (s) |\n|---|---|\n| 1 | {one:.0f} |\n| {args.seeds} | {many:.0f} |")
    print(f"{args.seeds} seeds / 1 seed: {many / one:.2f}x the time for {args.seeds}x the models")


if __name__ == "__main__":
    main()
