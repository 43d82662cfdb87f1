"""Small models on one GPU: one model alone vs K of them together (train.together), combined MFU.

The `paper` preset's batch (256 x 256 tokens, bf16, its text background) on one size (default 4M):
one model's update alone (eager and compiled, as `mechrare train` runs it), then K seeds of that size
as one program (:class:`mechrare.training.grouped.GroupTrainer`, eager and compiled), for each K asked. Combined
MFU = K x (6 N + 12 L d T) x tokens per update / seconds per update / peak bf16.

    python -m mechrare.examples.corpus corpus
    python benchmarks/together_gpu.py --size 4M --k 8 32
    python benchmarks/together_gpu.py --size 14M --family 20M --k 4   # K seeds of each size, one program

With ``--family``, the sizes named there join ``--size`` (they must share its head width): K seeds of each
are trained as one program (train.together_sizes: each padded with zeros to the largest), and the combined
MFU counts each model's own FLOPs, not the padding's. On CUDA, compiled together is refused by mechrare
(its compiled vmap of SDPA failed: benchmarks/RESULTS.md), so those rows are left out there; instead an
experiment row compiles the vmap with HF's eager attention (not what `mechrare train` runs).
"""

from __future__ import annotations

import argparse
import time

from gpu_throughput import PEAK_BF16, matmul_params  # the same peaks and FLOP count as the MFU table


def per_update(step, steps: int, warmup: int, sync) -> float:
    for s in range(warmup):
        step(s)
    sync()
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        step(s)
    sync()
    return (time.perf_counter() - t0) / steps


def compiled_eager_attention(group):
    """``group``'s vmap of the decoders compiled with HF's eager attention (matmul + softmax) instead of SDPA,
    whose compiled vmap failed on CUDA; its members keep SDPA for their evaluation."""
    import torch

    group._base.set_attn_implementation("eager")
    group._states = torch.compile(group._states)
    return group


def main() -> None:
    import torch

    from mechrare.checkpoints.run import RunFolder
    from mechrare.config import load_config
    from mechrare.devices import resolve_device
    from mechrare.training.grouped import GroupTrainer
    from mechrare.training.members import make_trainer
    from mechrare.training.runner import Plan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4M")
    ap.add_argument("--k", nargs="+", type=int, default=[8, 32])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--family", nargs="*", default=[], help="more sizes of --size's head width, trained with it")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    seeds = max(args.k)
    sizes = ", ".join(f'"{s}"' for s in [args.size, *args.family])
    _, cfg = load_config("paper", [f"ladder.models=[{sizes}]", f'ladder.sweep.models=["{args.size}"]', "ladder.sweep.factors=[1]",
                                   f"ladder.seeds={seeds}", "train.prefetch=false", *args.overrides])
    plan = Plan(cfg)
    device = resolve_device(cfg.train.device, "train.device")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    peak = next((v for k, v in PEAK_BF16.items() if device.type == "cuda" and k in torch.cuda.get_device_name()), None)
    shape = plan.shapes[0]
    run = RunFolder("unused")
    tokens = plan.tokens_per_step

    family = [s for s in plan.shapes if s.name in [args.size, *args.family]]

    def flops_per_update(model) -> float:
        n = matmul_params(model)
        c = model.config
        return (6 * n + 12 * c.num_hidden_layers * c.hidden_size * cfg.mixture.sequence_length) * tokens

    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"# {gpu}, torch {torch.__version__}, {' + '.join(s.name for s in family)}, {tokens:,} tokens per model per update, bf16 autocast")
    print("| variant | models | ms/update | model-updates/s | combined TFLOP/s | combined MFU |")
    print("|---|---:|---:|---:|---:|---:|")

    def row(name, k, dt, flops):
        mfu = f"{flops / dt / peak:.1%}" if peak else "-"
        print(f"| {name} | {k} | {dt * 1e3:.1f} | {k / dt:,.1f} | {flops / dt / 1e12:.1f} | {mfu} |", flush=True)

    import dataclasses

    for compiled in (False, True):
        plan.config = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=compiled))
        t = make_trainer(run, plan, shape, device, 0, [])
        dt = per_update(t.train_step, args.steps, 3 if not compiled else 5, sync)
        row(f"alone{' (compiled)' if compiled else ''}", 1, dt, flops_per_update(t.model))
        del t
    for k in args.k:
        for compiled in (False,) if device.type == "cuda" else (False, True):
            plan.config = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=compiled))
            members = [make_trainer(run, plan, s, device, seed, []) for s in family for seed in range(k)]
            group = GroupTrainer(members, plan.resume_every)
            dt = per_update(group.train_step, args.steps, 3 if not compiled else 5, sync)
            row(f"together (vmap{', compiled' if compiled else ''})", len(members), dt,
                sum(flops_per_update(m.model) for m in members))
            del group, members
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if device.type == "cuda":  # an experiment mechrare refuses: compiled vmap with eager attention
            members = [make_trainer(run, plan, s, device, seed, []) for s in family for seed in range(k)]
            try:
                dt = per_update(compiled_eager_attention(GroupTrainer(members, plan.resume_every)).train_step,
                                args.steps, 5, sync)
                row("together (vmap, compiled, eager attention; experiment)", len(members), dt,
                    sum(flops_per_update(m.model) for m in members))
            except Exception as exc:  # noqa: BLE001 (the row says what failed)
                print(f"| together (vmap, compiled, eager attention; experiment) | {len(members)} | failed: "
                      f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''} | | | |", flush=True)
            del members
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
