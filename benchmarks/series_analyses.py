"""Analyses on a series trained elsewhere: wall time per checkpoint per analysis, peak memory, and the
suspect-checkpoint rule's false positives and detections.

Builds a GPT-NeoX (Pythia architecture) series of three sizes (about 1M, 5M and 20M parameters, 10
checkpoints each, ``step{N}/`` folders) with ``mechrare.examples.series``, then runs every analysis on
each size in its own process (``jobs=1``) and prints seconds per checkpoint (the libraries are imported
before the clock starts; reopening the series and tokenizing its tasks are inside) and the process's peak RSS.
Run it alone: two torch jobs on one small machine slow each other.

    python benchmarks/series_analyses.py [--out /tmp/series-bench] [--steps 0,5,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SIZES = (("neox-1m", 128, 5), ("neox-5m", 256, 6), ("neox-20m", 512, 6))
ANALYSES = ("evaluation", "probes", "neurons", "interference", "sae")
CHILD = r"""
import json, resource, sys, time
import mechrare
import torch, transformers, transformer_lens.model_bridge, sae_lens  # imports before the clock (one-off)
import mechrare.analyses
toml, out, model, name = sys.argv[1:5]
t = time.perf_counter()
ds = mechrare.analyze(toml, out=out, only=[name], models=[model], progress=False, jobs=1)[name]
wall = time.perf_counter() - t
steps = int(ds.sizes.get("step", 0)) if "step" in ds.dims else 0
print(json.dumps({"wall": wall, "steps": steps, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(toml: Path, out: Path, model: str, name: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, "-c", CHILD, str(toml), str(out), model, name], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{name} on {model} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def suspects(toml: Path, plant: bool, swap: bool = False) -> tuple[int, int, list[str]]:
    """(flagged, interior checkpoints, flags) of the series, with a duplicate and a misplaced final model planted
    (``plant``), or with two checkpoints' weights swapped (``swap``: misplaced, nothing identical)."""
    from mechrare.checkpoints.folders import discover
    from mechrare.checkpoints.series_integrity import scan_model
    from mechrare.checkpoints.series_spec import read_series_spec

    spec = read_series_spec(toml)
    flagged, interior, flags = 0, 0, []
    for m in spec.models:
        steps = discover(m)
        if plant:
            order = sorted(steps)
            shutil.copy(steps[order[-1]] / "model.safetensors", steps[order[4]] / "model.safetensors")  # final under a mid step
            dup = steps[order[2]].parent / f"step{order[2] + 1}"
            shutil.copytree(steps[order[2]], dup)  # a branch serving another step's weights
            steps[order[2] + 1] = dup
        if swap:
            order = sorted(steps)
            a, b = steps[order[3]] / "model.safetensors", steps[order[7]] / "model.safetensors"
            tmp = a.with_suffix(".tmp")
            a.rename(tmp)
            b.rename(a)
            tmp.rename(b)
        rec = scan_model(m.name, steps)
        interior += len(rec["checkpoints"]) - 2
        for s, e in rec["checkpoints"].items():
            if e.get("suspect"):
                flagged += 1
                flags.append(f"{m.name} step {s}: {e['suspect']}")
    return flagged, interior, flags


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/mechrare-series-bench")
    p.add_argument("--steps", default="0,5,10,15,20,25,30,35,40,45")
    p.add_argument("--suspects-only", action="store_true", help="the suspect-checkpoint rule only (no timings)")
    args = p.parse_args()
    from mechrare.examples.series import make_example_series

    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    toml = make_example_series(root / "series", "gpt_neox", sizes=SIZES, steps=[int(s) for s in args.steps.split(",")])
    print(f"built the series in {time.perf_counter() - t:.0f} s")
    flagged, interior, flags = suspects(toml, plant=False)
    print(f"suspect rule on the trained series: {flagged} flagged of {interior} interior checkpoints" + "".join(f"\n  {f}" for f in flags))
    if args.suspects_only:
        plant_and_scan(root)
        return 0
    from mechrare.checkpoints.folders import discover
    from mechrare.checkpoints.series_spec import read_series_spec

    n_params = {}
    import mechrare

    run = mechrare.open_series(toml, out=root / "out", progress=False)
    for m, *_ in SIZES:
        n_params[m] = run.series.n_params(m)
    print("\n| analysis | " + " | ".join(f"{m} ({n_params[m] / 1e6:.1f}M)" for m, *_ in SIZES) + " |")
    print("|---|" + "---:|" * len(SIZES))
    for name in ANALYSES:
        cells = []
        for m, *_ in SIZES:
            r = run_child(toml, root / "out", m, name)
            cells.append(f"{r['wall'] / max(r['steps'], 1):.2f} s/ckpt ({r['steps']} ckpts, peak {r['rss_mb']:.0f} MB)")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    plant_and_scan(root)
    return 0


def plant_and_scan(root: Path) -> None:
    planted_root = root / "planted"
    shutil.copytree(root / "series", planted_root)
    flagged, interior, flags = suspects(planted_root / "SERIES.toml", plant=True)
    print(f"\nplanted (per model: the final weights under a mid step, one step duplicated): {flagged} flagged" + "".join(f"\n  {f}" for f in flags))
    swapped_root = root / "swapped"
    shutil.copytree(root / "series", swapped_root)
    flagged, interior, flags = suspects(swapped_root / "SERIES.toml", plant=False, swap=True)
    print(f"\nswapped (per model: the weights of the 4th and 8th checkpoints exchanged): {flagged} flagged" + "".join(f"\n  {f}" for f in flags))


if __name__ == "__main__":
    raise SystemExit(main())
