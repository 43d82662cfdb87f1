"""How long the `paper` preset's training takes on this GPU: measured per model, projected to the whole run.

For each model of the preset (interventions share their base model's cost) it builds the trainer
exactly as ``mechrare train`` does (``make_trainer``: compile, bf16 autocast, prefetch) and measures
(1) the seconds to the first update (torch.compile included), (2) the steady seconds per update over
``--steps`` updates, (3) the seconds of one checkpoint (held-out evaluation of every task and the
Hugging Face folder written with its sha256s, the real callbacks) and (4) of one resume-state write; beside (2), the same updates on one pre-built batch (no data
time at all: the issue's "data time hidden" check), and ``fit()`` on that one batch (the real loop, its
prefetch thread and pinning, with no build: separates the batch's cost from the loop's), interleaved,
the faster of two rounds each.
MFU = (6 N + 12 L d T) tokens per second / peak bf16 (N: matmul parameters, head included).

The projection is  sum over (model, seed) of  first + steps * update + checkpoints * checkpoint
+ resume writes * resume; the analyses and the report are not included.

    python -m mechrare.examples.corpus corpus
    python benchmarks/paper_preset_time.py --steps 30
"""

from __future__ import annotations

import argparse
import tempfile
import time

from gpu_throughput import PEAK_BF16, matmul_params  # the same peaks and FLOP count as the MFU table


def seconds(fn, sync) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def main() -> None:
    import torch

    from mechrare.checkpoints.train_state import save_state
    from mechrare.config import load_config
    from mechrare.devices import resolve_device
    from mechrare.training.callbacks import CheckpointCallback, EvalCallback
    from mechrare.training.runner import Plan, make_trainer, open_or_create

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="paper")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--steps", type=int, default=30, help="timed updates per model [30]")
    p.add_argument("--warmup", type=int, default=5, help="updates before timing (compile happens here) [5]")
    args = p.parse_args()
    name, cfg = load_config(args.config, args.overrides)
    device = resolve_device(cfg.train.device, "train.device")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    peak = next((v for k, v in PEAK_BF16.items() if device.type == "cuda" and k in torch.cuda.get_device_name()), None)
    out = tempfile.mkdtemp(prefix="paper-time-")
    plan = Plan(cfg, out)
    run = open_or_create(out, plan, name)
    plan.mixture.background.install(run.path / "data")
    tokens = plan.tokens_per_step
    steps, n_ckpt = cfg.train.steps, len(plan.schedule)
    n_resume = len(set(range(plan.resume_every, steps + 1, plan.resume_every)) | {steps})
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"# {name}: {gpu}, torch {torch.__version__}, {tokens:,} tokens/update, {steps} updates, "
          f"{n_ckpt} checkpoints, {n_resume} resume writes, seeds {plan.seeds}, compile {cfg.train.compile}", flush=True)
    print("| model | params | first update s (compile) | ms/update | tokens/s | MFU | pre-built batch ms/update | real / pre-built | "
          "fit() on a pre-built batch ms/update | real / fit() pre-built | checkpoint s | resume write s | projected s per seed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    measured: dict[str, float] = {}
    total = 0.0
    for shape in plan.shapes:
        base = plan.interventions.get(shape.name, {}).get("base", shape.name)
        if base in measured:
            total += measured[base] * len(plan.seeds)
            print(f"| {shape.name} | as {base} | | | | | | | | | | | {measured[base]:,.0f} |", flush=True)
            continue
        tok = plan.mixtures[shape.name].vocab.to_hf_tokenizer()
        trainer = make_trainer(run, plan, shape, device, 0, [])
        first = seconds(lambda: trainer.fit(until=1), sync)
        trainer.fit(until=1 + args.warmup)
        batch = plan.mixtures[shape.name].batch(0, cfg.train.batch_size)
        fixed = torch.as_tensor(batch.input_ids), torch.as_tensor(batch.labels)

        def prebuilt():
            for s in range(args.steps):
                trainer.train_step(trainer.step, fixed)

        real_mixture = trainer.mixture

        def fit_prebuilt():  # the same loop as the real pipeline (fit, prefetch thread, pinning), one batch
            trainer.mixture = _Fixed(batch, real_mixture)
            try:
                trainer.fit(until=trainer.step + args.steps)
            finally:
                trainer.mixture = real_mixture

        runs, floor, loop = [], [], []
        for _ in range(2):  # interleaved: the real pipeline (prefetch), one pre-built batch, fit() on it
            runs.append(seconds(lambda: trainer.fit(until=trainer.step + args.steps), sync) / args.steps)
            floor.append(seconds(prebuilt, sync) / args.steps)
            loop.append(seconds(fit_prebuilt, sync) / args.steps)
        per, per_fixed, per_loop = min(runs), min(floor), min(loop)
        trainer.callbacks = [EvalCallback(), CheckpointCallback(run, shape.name, tok, 0)]
        ckpt = []
        for _ in range(2):  # a second at another step: the first one's folder exists and would be skipped
            trainer.fit(until=trainer.step + 1)
            ckpt.append(seconds(trainer.checkpoint, sync))
        state = seconds(lambda: save_state(run.resume_dir(shape.name, 0), trainer.state_dict(), trainer.step), sync)
        model = trainer.model
        n = matmul_params(model)
        flops = (6 * n + 12 * shape.n_layers * shape.d_model * cfg.mixture.sequence_length) * tokens / per
        mfu = f"{flops / peak:.1%}" if peak else "-"
        projected = first + steps * per + n_ckpt * min(ckpt) + n_resume * state
        measured[shape.name] = projected
        total += projected * len(plan.seeds)
        params = sum(q.numel() for q in model.parameters())
        print(f"| {shape.name} | {params / 1e6:.1f}M | {first:.1f} | {per * 1e3:.1f} | {tokens / per:,.0f} | {mfu} | "
              f"{per_fixed * 1e3:.1f} | {per / per_fixed:.3f} | {per_loop * 1e3:.1f} | {per / per_loop:.3f} | {min(ckpt):.2f} | {state:.2f} | {projected:,.0f} |", flush=True)
        del trainer, model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"\nprojected training time, every model and seed: {total:,.0f} s ({total / 3600:.2f} h)")


class _Fixed:
    """A mixture stand-in for the benchmark: every step's batch is ``batch``; the rest is ``mixture``'s."""

    def __init__(self, batch, mixture):
        self._batch, self._mixture = batch, mixture

    def batch(self, step: int, batch_size: int):
        return self._batch

    def __getattr__(self, name):
        return getattr(self._mixture, name)


if __name__ == "__main__":
    from mechrare.checkpoints.series import quiet_transformers

    with quiet_transformers():
        main()
