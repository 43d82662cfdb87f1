"""Held-out evaluation under torchrun: every process evaluating every row (mechrare before 2026-12-05)
vs each process its share of the rows, the sums added up over the job (mechrare.models.evaluate). One
torchrun job (gloo, CPU, 1 thread per process), both variants on the same FSDP2-sharded model in
alternating rounds; the median wall time of a checkpoint's evaluation, the ratio, and the largest
difference between the variants' metrics. Run it alone on the machine.

    python benchmarks/eval_under_torchrun.py --preset quickstart --model d256-l4 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def job(preset: str, model: str, rounds: int) -> None:
    import gc

    import torch

    from mechrare.config import load_config
    from mechrare.data.mixture import Mixture
    from mechrare.models.ladder import build_model, olmo2_config, resolve_model
    from mechrare.ranks import SINGLE, from_env, process_group
    from mechrare.training.distributed import shard
    from mechrare.training.evaluate import evaluate

    torch.set_num_threads(1)
    dist, cpu = from_env(), torch.device("cpu")
    cfg = load_config(preset)[1]
    mixture = Mixture(cfg.mixture, cfg.seed)
    config = olmo2_config(resolve_model(model), len(mixture.vocab), cfg.mixture.sequence_length, mixture.vocab.pad_id,
                          mixture.vocab.eos_id)
    with process_group(dist):
        net = shard(build_model(config, 0), dist, cpu)
        times: dict[str, list[float]] = {"every row on every process": [], "each process its share": []}
        results = {}
        for _ in range(rounds):
            for name, d in zip(times, (SINGLE, dist)):
                torch.distributed.barrier()
                t0 = time.perf_counter()
                results[name] = evaluate(net, mixture, cpu, batch_size=cfg.train.eval_batch_size, dist=d)
                torch.distributed.barrier()
                times[name].append(time.perf_counter() - t0)
        if dist.main:
            a, b = results.values()
            loss = max(abs(a["eval"][t]["loss"] - b["eval"][t]["loss"]) / a["eval"][t]["loss"] for t in a["eval"])
            acc = max(abs(a["eval"][t]["accuracy"] - b["eval"][t]["accuracy"]) for t in a["eval"])
            print(json.dumps({"median_s": {k: statistics.median(v) for k, v in times.items()}, "loss_rel": loss,
                              "accuracy_abs": acc, "sets": {t: len(s.input_ids) for t, s in zip(mixture.task_names, mixture.eval_sets)}}))
        net = None
        gc.collect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="quickstart")
    ap.add_argument("--model", default="d256-l4")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        job(args.preset, args.model, args.rounds)
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes), __file__,
           "--preset", args.preset, "--model", args.model, "--rounds", str(args.rounds), "--job"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"the job failed\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    row = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    (every, share), ratio = row["median_s"].values(), row["median_s"]["each process its share"] / row["median_s"]["every row on every process"]
    print(f"{args.preset} eval sets {row['sets']} + background; {args.model} sharded over {args.processes} gloo processes (CPU, 1 thread each)")
    print(f"median of {args.rounds} rounds: every row on every process {every:.3f} s, each process its share {share:.3f} s; ratio {ratio:.2f}")
    print(f"largest difference between the variants: loss {row['loss_rel']:.1e} (relative), accuracy {row['accuracy_abs']:.4f}")


if __name__ == "__main__":
    main()
