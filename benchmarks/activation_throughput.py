"""Activation extraction throughput vs a plain forward, side by side.

Times ``mechrare.activations.get_activations`` (TransformerBridge, only the
hooks asked for) against a plain ``model(input_ids)`` forward of the same
Hugging Face checkpoint on the same tokens and batch size, alternating the
two over several repeats, and prints tokens/s and their ratio.

    python benchmarks/activation_throughput.py [--size d64-l2] [--rows 4096] [--hooks resid|mlp|one]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def main() -> None:
    import torch

    from mechrare.activations import get_activations, mlp_hooks, resid_hooks
    from mechrare.checkpoints import CheckpointStore
    from mechrare.config import load_config
    from mechrare.training import train_run

    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="d64-l2")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=24)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--hooks", default="resid", choices=["resid", "mlp", "one"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    run = os.path.join(tempfile.mkdtemp(), "bench")
    overrides = [f'ladder.models=["{args.size}"]', "train.steps=1", f"mixture.sequence_length={args.seq}"]
    train_run(load_config("quickstart", overrides)[1], run, name="bench", progress=False)
    store = CheckpointStore(run)
    bridge = store.load_bridge(args.size, 1, device=args.device)
    model = store.load(args.size, 1, device=args.device)
    n = bridge.cfg.n_layers
    hooks = {"resid": resid_hooks(n), "mlp": mlp_hooks(n), "one": [f"blocks.{n - 1}.hook_resid_post"]}[args.hooks]
    ids = np.random.default_rng(0).integers(3, model.config.vocab_size, (args.rows, args.seq))
    tensor = torch.as_tensor(ids, device=args.device)

    def plain():
        with torch.no_grad():
            for i in range(0, args.rows, args.batch):
                model(input_ids=tensor[i : i + args.batch])

    def ours():
        get_activations(bridge, ids, hooks, batch_size=args.batch)

    plain(), ours()  # warm up
    times = {"plain": [], "ours": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("ours", ours)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    tokens = args.rows * args.seq
    tp = {k: tokens / min(v) for k, v in times.items()}
    print(f"{args.size}, {args.rows} x {args.seq} tokens, batch {args.batch}, hooks: {len(hooks)} ({args.hooks}), {args.device}, torch threads {torch.get_num_threads()}")
    print(f"plain HF forward:           {tp['plain']:,.0f} tokens/s")
    print(f"get_activations (bridge):   {tp['ours']:,.0f} tokens/s")
    print(f"ratio ours / plain: {tp['ours'] / tp['plain']:.2f}")


if __name__ == "__main__":
    main()
