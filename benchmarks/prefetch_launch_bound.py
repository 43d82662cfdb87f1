"""Batches built ahead while the training step is Python-bound: a thread vs DataLoader worker processes.

On a GPU a small model's update is bound by Python launching its kernels, not by arithmetic, and a
prefetch thread needs the same GIL for the batch's Python work. This script stands such an update in on
the CPU: ``--ops`` tiny in-place torch ops on one thread (each enters and leaves the dispatcher as a
kernel launch does), with no arithmetic to speak of. Beside it the `paper` preset's batches (256 x 256
tokens of its text background) are built: not at all (the floor), inline before each step, ahead in a
thread (:class:`mechrare.training.prefetch.Prefetcher`, what ``mechrare train`` does), or ahead in one
``torch.utils.data.DataLoader`` worker process (the alternative the issue names; built here only), one
batch per transfer or 8 stacked. Variants interleaved, ``--repeats`` rounds, means of the per-step times
after the first 8 (a chunked transfer's cost falls on one step in 8, so a median would hide it). Run it
alone on the machine.

    python -m mechrare.examples.corpus corpus
    python benchmarks/prefetch_launch_bound.py --corpus corpus
"""

from __future__ import annotations

import argparse
import statistics
import time

from prefetch import timeit  # the same one-batch build time as benchmarks/prefetch.py


def main() -> None:
    import torch
    from torch.utils.data import DataLoader

    from mechrare.config import load_config
    from mechrare.data.mixture import Mixture
    from mechrare.training.prefetch import Prefetcher

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="corpus", help="the folder of .txt files [corpus]")
    ap.add_argument("--ops", type=int, default=1500, help="tiny ops per simulated update [1500]")
    ap.add_argument("--steps", type=int, default=104)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, cfg = load_config("paper", [f'mixture.background.files=["{args.corpus}/*.txt"]'])
    mixture = Mixture(cfg.mixture, cfg.seed)
    batch = cfg.train.batch_size
    x = torch.zeros(16)

    def update():
        for _ in range(args.ops):
            x.add_(1)

    def timed(get) -> float:
        times = []
        for s in range(args.steps):
            t0 = time.perf_counter()
            get(s)
            update()
            times.append(time.perf_counter() - t0)
        return statistics.mean(times[8:])

    def thread():
        with Prefetcher(mixture, batch, 0, args.steps) as p:
            return timed(p.get)

    def worker(per_item: int):
        def run():
            loader = DataLoader(_Chunks(mixture, batch, per_item), batch_size=None, num_workers=1, prefetch_factor=2)
            it, buffer = iter(loader), []

            def get(s):
                if not buffer:
                    ids, labels = next(it)
                    buffer.extend(zip(ids.unbind(0), labels.unbind(0)))
                return buffer.pop(0)

            return timed(get)  # the workers stop when the iterator is collected
        return run

    variants = {
        "no batches (the floor)": lambda: timed(lambda s: None),
        "inline, before each update": lambda: timed(lambda s: mixture.batch(s, batch)),
        "ahead, a thread (mechrare train)": thread,
        "ahead, 1 DataLoader worker, 1 batch per transfer": worker(1),
        "ahead, 1 DataLoader worker, 8 batches per transfer": worker(8),
    }
    runs = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            runs[name].append(run())
    build = statistics.median(timeit(mixture, batch) for _ in range(5))
    floor = statistics.median(runs["no batches (the floor)"])
    print(f"# CPU, 1 torch thread; {args.ops} tiny ops per update; the paper preset's batch ({batch} x "
          f"{cfg.mixture.sequence_length}): {build * 1e3:.2f} ms to build inline; {args.steps} updates x {args.repeats} rounds (median of the rounds)")
    print("| variant | ms/update (mean) | / the floor |")
    print("|---|---:|---:|")
    for name, ts in runs.items():
        t = statistics.median(ts)  # the median of the rounds' means
        print(f"| {name} | {t * 1e3:.2f} | {t / floor:.3f} |")


class _Chunks:
    """Map-style dataset: item i is the batches of steps i*k .. i*k + k - 1, stacked."""

    def __init__(self, mixture, batch: int, k: int):
        self.mixture, self.batch, self.k = mixture, batch, k

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, i: int):
        import numpy as np
        import torch

        parts = [self.mixture.batch(i * self.k + j, self.batch) for j in range(self.k)]
        return torch.as_tensor(np.stack([p.input_ids for p in parts])), torch.as_tensor(np.stack([p.labels for p in parts]))


if __name__ == "__main__":
    main()
