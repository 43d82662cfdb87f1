"""Three seeds of one size: one after another, stacked in one program (torch.func.vmap), or in worker processes.

Each variant does the same work: ``--steps`` AdamW updates (forward, backward,
per-seed gradient clipping) of 3 independently initialised OLMo-2 models of
one size, batch 64 x 24. Printed: seconds per update of all 3 seeds, and each
variant's speed-up over one after another. Run it alone on the machine.

    python benchmarks/seeds_grouped_training.py --sizes d16-l2 d32-l2 d64-l2
"""

from __future__ import annotations

import argparse
import copy
import time

SEEDS, BATCH, LENGTH, VOCAB = 3, 64, 24, 311


def models(size: str):
    from mechrare.models.ladder import build_model, olmo2_config, resolve_model

    cfg = olmo2_config(resolve_model(size, "size"), VOCAB, LENGTH, 0, 1, 0.02)
    return [build_model(cfg, s) for s in range(SEEDS)]


def per_update(step, steps: int) -> float:
    """Seconds per call of ``step`` after 3 warm-up calls."""
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def sequential(size: str, steps: int, seeds: int = SEEDS) -> float:
    import torch

    ms = models(size)[:seeds]
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in ms]
    ids = torch.randint(2, VOCAB, (seeds, BATCH, LENGTH))

    def step():
        for m, o, x in zip(ms, opts, ids):
            m(input_ids=x, labels=x).loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            o.step()
            o.zero_grad(set_to_none=True)

    return per_update(step, steps)


def stacked(size: str, steps: int) -> float:
    import torch
    from torch.func import functional_call, stack_module_state, vmap

    ms = models(size)
    params, buffers = stack_module_state(ms)
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    base = copy.deepcopy(ms[0]).to("meta")
    opt = torch.optim.AdamW(params.values(), lr=1e-3)  # elementwise: the same as one AdamW per seed
    ids = torch.randint(2, VOCAB, (SEEDS, BATCH, LENGTH))
    loss = vmap(lambda p, b, x: functional_call(base, (p, b), (x,), {"labels": x}).loss)

    def step():
        loss(params, buffers, ids).sum().backward()
        norm = sum(p.grad.pow(2).flatten(1).sum(1) for p in params.values()).sqrt()
        coef = (1.0 / (norm + 1e-6)).clamp(max=1.0)
        for p in params.values():
            p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)))
        opt.step()
        opt.zero_grad(set_to_none=True)

    return per_update(step, steps)


def _one_seed(job):
    size, steps = job
    return sequential(size, steps, seeds=1)


def processes(size: str, steps: int) -> tuple[float, float, int]:
    """3 seeds over as many workers as cores (mechrare.workers), one thread each.

    Returns (steady-state wall time per update of all 3 seeds, wall time per update including starting
    the workers and building the models, workers). Steady state: each worker times its own updates
    after warm-up while the others run beside it; the seeds run in rounds of ``workers``, so the wall
    time per update is the sum over rounds of the round's slowest worker."""
    from mechrare.workers import resolve_jobs, run_jobs

    jobs = resolve_jobs(0, "cpu", SEEDS)
    t0 = time.perf_counter()
    each = [t for _, t in run_jobs(_one_seed, [(size, steps)] * SEEDS, jobs, threads=1)]
    total = (time.perf_counter() - t0) / steps
    steady = sum(max(each[r : r + jobs]) for r in range(0, SEEDS, jobs))
    return steady, total, jobs


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["d16-l2", "d32-l2", "d64-l2"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the one-program variants")
    ap.add_argument("--no-processes", action="store_true", help="skip the worker-process variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"3 seeds, batch {BATCH} x {LENGTH}, {args.steps} updates, CPU, {args.threads} thread(s) in one program, one per worker process")
    print("| size | one after another (ms/update) | vmap, one program | speed-up | worker processes, steady | speed-up | with start-up |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        seq = sequential(size, args.steps)
        vm = stacked(size, args.steps)
        if args.no_processes:
            print(f"| {size} | {seq * 1e3:.1f} | {vm * 1e3:.1f} | {seq / vm:.2f}x (vmap / one after another = {vm / seq:.2f}) | - | - | - |")
            continue
        proc, total, jobs = processes(size, args.steps)
        print(f"| {size} | {seq * 1e3:.1f} | {vm * 1e3:.1f} | {seq / vm:.2f}x | {proc * 1e3:.1f} ({jobs} workers) | {seq / proc:.2f}x "
              f"| {total * 1e3:.1f} ms ({seq / total:.2f}x) |")


if __name__ == "__main__":
    main()
