"""train.together's loss: HF's loss inside the vmap (the whole logits of K models at once) vs the chunked
loss (mechrare.training.chunked_loss). Peak memory added by training and time per update, each variant in
a fresh process. Run it alone on the machine.

    python benchmarks/together_memory.py --size 4M --k 4 --batch 8 --vocab 8192
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def hf_loss_inside_vmap(group):
    """The train step before the chunked loss: the model's own forward with labels (HF's loss) under vmap."""
    import torch
    from torch.func import functional_call

    loss = torch.func.vmap(lambda p, b, ids, labels: functional_call(group._base, (p, b), (ids,), {"labels": labels}).loss)

    def step(s: int):  # GroupTrainer.train_step as it was, HF's loss in place of the chunked one
        batch = group_batch(group, s)
        losses = loss(group.params, group.buffers, *batch)
        losses.sum().backward()
        if group.cfg.grad_clip > 0:
            group._clip(group.cfg.grad_clip)
        group.optimizer.step()
        group.scheduler.step()
        group.optimizer.zero_grad(set_to_none=True)
        return losses

    return step


def group_batch(group, s: int):
    import torch

    from mechrare.training.grouped import _Stacked

    b = _Stacked([m.mixture for m in group.members]).batch(s, group.cfg.batch_size)
    return torch.as_tensor(b.input_ids), torch.as_tensor(b.labels)


def measure(args) -> dict:
    import torch

    from mechrare.checkpoints.run import RunFolder
    from mechrare.config import load_config
    from mechrare.training.grouped import GroupTrainer
    from mechrare.training.members import make_trainer
    from mechrare.training.plan import Plan

    torch.set_num_threads(args.threads)
    _, cfg = load_config("quickstart", [
        f'ladder.models=["{args.size}"]', f"ladder.seeds={args.k}", f"train.batch_size={args.batch}",
        f"mixture.sequence_length={args.length}", f"mixture.background.vocab_size={args.vocab}",
        f"train.loss_chunk={args.chunk}", "train.prefetch=false"])
    plan = Plan(cfg)
    device = torch.device("cpu")
    members = [make_trainer(RunFolder("unused"), plan, plan.shapes[0], device, seed, []) for seed in range(args.k)]
    group = GroupTrainer(members, sync_every=10**9)
    step = hf_loss_inside_vmap(group) if args.variant == "hf" else group.train_step
    step(0)  # the first update allocates the optimizer state
    before = rss_mb()
    t0 = time.perf_counter()
    for s in range(1, args.steps + 1):
        step(s)
    dt = (time.perf_counter() - t0) / args.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": dt * 1e3, "peak_added_mb": peak - before, "peak_mb": peak, "vocab": len(plan.mixture.vocab)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4M")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", choices=["hf", "chunked"])
    ap.add_argument("--chunk", type=int, default=8192)
    args = ap.parse_args()
    if args.variant:  # one measurement, in this (fresh) process
        print(json.dumps(measure(args)))
        return
    rows_per_model = args.batch * (args.length - 1)
    variants = [("HF loss inside the vmap (before)", "hf", 8192),
                ("chunked, loss_chunk = 8192 (the default)", "chunked", 8192),
                ("chunked, loss_chunk = 1024", "chunked", 1024),
                (f"chunked, one chunk per model ({rows_per_model})", "chunked", rows_per_model)]
    print(f"# CPU, {args.threads} threads; {args.k} x {args.size} together, batch {args.batch} x {args.length}, "
          f"background vocabulary {args.vocab} (plus the task symbols), {args.steps} timed updates after one")
    print("| variant | ms/update | peak memory added by the updates (MB) | peak RSS (MB) |")
    print("|---|---:|---:|---:|")
    common = [f"--{k}={v}" for k, v in vars(args).items() if k in ("size", "k", "batch", "length", "vocab", "steps", "threads")]
    for name, variant, chunk in variants:
        out = subprocess.run([sys.executable, __file__, *common, f"--variant={variant}", f"--chunk={chunk}"],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {name} | {r['ms']:.0f} | {r['peak_added_mb']:.0f} | {r['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
