"""Training throughput and MFU of ladder sizes on a CUDA GPU.

Runs mechrare's own Trainer.train_step (seeded mixture batch -> bf16 autocast
forward with SDPA attention -> backward -> clip -> fused AdamW) and, side by
side in the same process, the same step in fp32 (no autocast), so the printed
bf16/fp32 ratio is measured on one machine in one run.

MFU = achieved model FLOP/s / peak dense bf16 FLOP/s, with model FLOPs per
token = 6 * N + 12 * n_layers * d_model * seq_len (PaLM appendix B), where N
counts every matmul parameter (blocks and output head; the embedding lookup
has no FLOPs).

    python benchmarks/gpu_throughput.py --sizes 60M 300M 1B --batch 32 16 8 --seq 1024
"""

from __future__ import annotations

import argparse
import gc
import time

PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def peak_flops(name: str) -> float:
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    raise SystemExit(f"unknown GPU {name!r}: add its dense bf16 peak to PEAK_BF16")


def matmul_params(model) -> int:
    embed = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters() if p.ndim >= 2) - embed


def measure(size: str, batch: int, seq: int, steps: int, bf16: bool, compile_model: bool) -> dict:
    import torch

    from mechrare.config import load_config
    from mechrare.models import build_model, olmo2_config, resolve_model
    from mechrare.training import Plan, Trainer

    _, cfg = load_config(
        "quickstart",
        [
            f"mixture.sequence_length={seq}",
            f"train.batch_size={batch}",
            "train.steps=1000000",
            "train.lr=3e-4",
            f"train.compile={'true' if compile_model else 'false'}",
        ],
    )
    plan = Plan(cfg)
    vocab = plan.mixture.vocab
    shape = resolve_model(size)
    device = torch.device("cuda")
    model = build_model(olmo2_config(shape, len(vocab), seq, vocab.pad_id, vocab.eos_id), 0, "sdpa").to(device)
    trainer = Trainer(model, plan.mixture, cfg.train, device, [], autocast_dtype=torch.bfloat16 if bf16 else None)
    for s in range(3):
        trainer.train_step(s)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for s in range(3, 3 + steps):
        loss = trainer.train_step(s)
    loss.item()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    t1 = time.perf_counter()
    for s in range(steps):
        plan.mixture.batch(s, batch)
    data_dt = (time.perf_counter() - t1) / steps
    n = matmul_params(model)
    tokens = batch * seq
    flops = (6 * n + 12 * shape.n_layers * shape.d_model * seq) * tokens
    out = {
        "size": size,
        "params": sum(p.numel() for p in model.parameters()),
        "tokens_s": tokens / dt,
        "step_ms": dt * 1e3,
        "data_ms": data_dt * 1e3,
        "tflops": flops / dt / 1e12,
        "mem_gb": torch.cuda.max_memory_allocated() / 1e9,
        "loss": float(loss),
    }
    del trainer, model
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return out


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["60M", "300M", "1B"])
    ap.add_argument("--batch", nargs="+", type=int, default=[32, 16, 8])
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--no-fp32", action="store_true", help="skip the fp32 side-by-side run")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    if len(args.batch) == 1:
        args.batch = args.batch * len(args.sizes)
    gpu = torch.cuda.get_device_name()
    peak = peak_flops(gpu)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"# {gpu}, torch {torch.__version__}, seq {args.seq}, peak bf16 {peak / 1e12:.0f} TFLOP/s")
    print("| size | params | batch | bf16 tokens/s | step ms | data ms | TFLOP/s | MFU | fp32(tf32) tokens/s | bf16/fp32 | peak mem GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size, batch in zip(args.sizes, args.batch):
        r = measure(size, batch, args.seq, args.steps, True, args.compile)
        f = None if args.no_fp32 else measure(size, batch, args.seq, max(3, args.steps // 2), False, args.compile)
        fp32 = f"{f['tokens_s']:,.0f}" if f else "-"
        ratio = f"{r['tokens_s'] / f['tokens_s']:.2f}x" if f else "-"
        print(
            f"| {size} | {r['params'] / 1e6:.1f}M | {batch} | {r['tokens_s']:,.0f} | {r['step_ms']:.1f} | "
            f"{r['data_ms']:.1f} | {r['tflops']:.0f} | {r['tflops'] * 1e12 / peak:.1%} | {fp32} | {ratio} | {r['mem_gb']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
