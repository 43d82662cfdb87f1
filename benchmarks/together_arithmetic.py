"""Why small models together are no faster on this CPU from d32 up: the matrix arithmetic of one update.

For one quickstart size, the 9 models `mechrare train` trains (3 seeds x the model and its 2 sweep points)
are built through the real path (`make_trainer`), then timed side by side in this process: one update
of all 9 together (`GroupTrainer.train_step`: stacked weights, one vmap program) and one update of each,
one after another (`Trainer.train_step`). The matrix products' FLOPs of the together update are counted
by torch's own `FlopCounterMode` (forward and backward), and the machine's matrix-product rate is measured
in the same run on the batched product of the models' MLP (9 x [batch*length, d] @ [d, 4d]). Printed per
size: both times, their ratio, the arithmetic floor (FLOPs / measured rate) and the share of the together
update it accounts for, and from torch.profiler the operators' own times split into matrix products and
the rest, together and one after another. Evaluation, checkpoints and resume states are not included (see together_training.py).
Run it alone on the machine.

    python benchmarks/together_arithmetic.py --sizes d16-l2 d32-l2 d64-l2 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def rate_gflops(k: int, rows: int, d: int, rounds: int = 30) -> float:
    """GFLOP/s of torch.bmm on [k, rows, d] @ [k, d, 4d] (the models' MLP input projection) on this machine."""
    import torch

    x, w = torch.randn(k, rows, d), torch.randn(k, d, 4 * d)
    for _ in range(5):
        torch.bmm(x, w)
    t0 = time.perf_counter()
    for _ in range(rounds):
        torch.bmm(x, w)
    return 2 * k * rows * d * 4 * d * rounds / (time.perf_counter() - t0) / 1e9


def median_ms(fn, updates: int, rounds: int = 3) -> float:
    fn(0)  # warm-up
    times = []
    for r in range(rounds):
        t0 = time.perf_counter()
        for s in range(updates):
            fn(1 + r * updates + s)
        times.append((time.perf_counter() - t0) / updates * 1e3)
    return statistics.median(times)


MATMULS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"}


def split_ms(fn, updates: int = 5) -> tuple[float, float]:
    """ms per update in matrix products and in every other operator (torch.profiler's self CPU times)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for s in range(updates):
            fn(100 + s)
    events = prof.key_averages()
    mat = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / 1e3 / updates
    return mat, sum(e.self_cpu_time_total for e in events) / 1e3 / updates - mat


def members(size: str):
    import torch

    from mechrare.checkpoints import RunFolder
    from mechrare.config import load_config
    from mechrare.training.members import make_trainer
    from mechrare.training.plan import Plan

    cfg = load_config("quickstart", [f'ladder.models=["{size}"]'])[1]
    out = tempfile.mkdtemp(prefix="together-arith-")
    plan = Plan(cfg, out)
    run = RunFolder(out)
    cpu = torch.device("cpu")
    trainers = []
    for shape in plan.shapes:
        for seed in plan.seeds:
            trainer = make_trainer(run, plan, shape, cpu, seed, callbacks=[])
            trainer.pin_rng()
            trainers.append(trainer)
    return cfg, trainers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["d16-l2", "d32-l2", "d64-l2"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--updates", type=int, default=20)
    args = ap.parse_args()
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mechrare.training.grouped import GroupTrainer

    torch.set_num_threads(args.threads)
    print(f"quickstart sizes, 9 models each (3 seeds x model + 2 sweep points), CPU, {args.threads} threads; ms per update of all 9")
    print("| size | together | one after another | together / one after another | matrix products: together, one after another "
          "| other operators: together, one after another | matrix GFLOP per update | measured bmm GFLOP/s | arithmetic floor "
          "| floor / together |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        cfg, trainers = members(size)
        group = GroupTrainer(trainers, sync_every=10**9)
        with FlopCounterMode(display=False) as counter:
            group.train_step(0)
        gflop = counter.get_total_flops() / 1e9
        together = median_ms(group.train_step, args.updates)
        alone = median_ms(lambda s: [t.train_step(s) for t in trainers], args.updates)
        (mat_t, other_t), (mat_a, other_a) = split_ms(group.train_step), split_ms(lambda s: [t.train_step(s) for t in trainers])
        rows = cfg.train.batch_size * cfg.mixture.sequence_length
        rate = rate_gflops(len(trainers), rows, trainers[0].model.config.hidden_size)
        floor = gflop / rate * 1e3
        print(f"| {size} | {together:.1f} | {alone:.1f} | {together / alone:.2f} | {mat_t:.1f}, {mat_a:.1f} "
              f"| {other_t:.1f}, {other_a:.1f} | {gflop:.2f} | {rate:.0f} | {floor:.1f} ms "
              f"| {floor / together:.2f} |", flush=True)


if __name__ == "__main__":
    main()
