"""Training step time with batches built in the training thread vs ahead in a thread.

Side by side in one process, on one model: (a) ``Trainer.fit`` with
``train.prefetch = false`` (each batch built in the training thread), (b) with
``prefetch = true`` (built ahead by :class:`mechrare.training.prefetch.Prefetcher`),
and (c) the same steps on one pre-built batch, the floor with no data time at all.
Each variant runs ``--repeats`` times in turn (a, b, c, a, b, c, ...); the median
seconds per step are printed with the ratios b/a and b/c. The background is the
Markov chain or, with ``--text``, Python's help topics with a BPE tokenizer.

    python benchmarks/prefetch.py --model d64-l2 --batch 64 --seq 128 --steps 60 [--text] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    import torch

    from mechrare.config import load_config
    from mechrare.data.mixture import Mixture
    from mechrare.models.ladder import build_model, resolve_model
    from mechrare.training.trainer import Trainer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="d64-l2")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--text", action="store_true")
    args = p.parse_args()
    sets = [f"mixture.sequence_length={args.seq}", f"train.batch_size={args.batch}", f"train.steps={args.steps}"]
    if args.text:
        from mechrare.examples.corpus import write_corpus

        folder = tempfile.mkdtemp()
        write_corpus(folder)
        sets.append(f'mixture.background={{kind="text", files=["{folder}/*.txt"], tokenizer="bpe:2048"}}')
    cfg = load_config("quickstart", sets)[1]
    mixture = Mixture(cfg.mixture, cfg.seed)
    device = torch.device(args.device)
    shape = resolve_model(args.model, "model")
    fixed = mixture.batch(0, args.batch)
    fixed = torch.as_tensor(fixed.input_ids), torch.as_tensor(fixed.labels)

    def run(variant: str) -> float:
        import dataclasses

        train = dataclasses.replace(cfg.train, prefetch=variant == "prefetch", steps=args.steps)
        from mechrare.models.ladder import olmo2_config

        model_cfg = olmo2_config(shape, len(mixture.vocab), args.seq, mixture.vocab.pad_id, mixture.vocab.eos_id)
        from transformers import Olmo2ForCausalLM

        torch.manual_seed(0)
        model = Olmo2ForCausalLM(model_cfg).to(device)
        trainer = Trainer(model, mixture, train, device, schedule=[])
        for step in range(3):  # warm-up
            trainer.train_step(step, fixed)
        trainer.step = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if variant == "fixed":
            for step in range(args.steps):
                trainer.train_step(step, fixed)
        else:
            trainer.fit()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / args.steps

    times = {v: [] for v in ("inline", "prefetch", "fixed")}
    for _ in range(args.repeats):
        for v in times:
            times[v].append(run(v))
    med = {v: statistics.median(t) for v, t in times.items()}
    t_build = statistics.median(timeit(mixture, args.batch) for _ in range(5))
    print(f"{args.model}, batch {args.batch} x {args.seq}, {args.steps} steps, {args.device}, "
          f"{'text' if args.text else 'markov'} background, torch threads {torch.get_num_threads()}")
    print(f"building one batch: {t_build * 1e3:.2f} ms")
    for v, t in med.items():
        print(f"  {v:9s} {t * 1e3:8.2f} ms/step   (runs: {', '.join(f'{x * 1e3:.2f}' for x in times[v])})")
    print(f"prefetch / inline = {med['prefetch'] / med['inline']:.3f}; prefetch / pre-built batch = {med['prefetch'] / med['fixed']:.3f}; "
          f"inline / pre-built batch = {med['inline'] / med['fixed']:.3f}")


def timeit(mixture, batch: int) -> float:
    start = time.perf_counter()
    for step in range(10):
        mixture.batch(step, batch)
    return (time.perf_counter() - start) / 10


if __name__ == "__main__":
    main()
