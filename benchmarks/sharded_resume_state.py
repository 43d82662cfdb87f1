"""The resume state under torchrun: gathered whole on rank 0 (how mechrare saved it before) vs sharded
(each process writes its own shards: mechrare.checkpoints.sharded_state). Per rank: the memory the save
adds (peak RSS during the save, sampled every 2 ms, minus the RSS before it), the save's time, and the
load's time. Each variant runs as its own torchrun job (gloo, CPU), side by side in one invocation. Run
it alone on the machine.

    python benchmarks/sharded_resume_state.py --model 60M --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from together_memory import rss_mb  # the same RSS reading as benchmarks/together_memory.py


class PeakRss:
    """The highest RSS seen while the block runs."""

    def __enter__(self):
        self.peak, self._stop = rss_mb(), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def gathered_save(trainer, folder: Path, step: int) -> None:
    """The save before sharding: the whole state gathered on rank 0's CPU, which alone writes it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    from mechrare.checkpoints.train_state import save_state
    from mechrare.training.distributed import _names, by_position

    model_sd, optim_sd = get_state_dict(trainer.model, trainer.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if trainer.dist.main:
        state = {**trainer.state_dict_plain(), "model": model_sd, "optimizer": by_position(optim_sd, _names(trainer.model, trainer.optimizer))}
        save_state(folder, state, step)


def job(variant: str, model: str, folder: Path) -> None:
    """One torchrun process: a sharded model, two updates, then the save and the load, measured."""
    import gc

    import torch
    import torch.distributed as td

    from mechrare.checkpoints.train_state import load_state, save_state
    from mechrare.models.ladder import build_model, olmo2_config, resolve_model
    from mechrare.ranks import from_env
    from mechrare.training.distributed import load_train_state, shard, sharded_train_state

    dist = from_env()
    td.init_process_group("gloo")
    shape = resolve_model(model)
    net = shard(build_model(olmo2_config(shape, 8192, 256, 0, 1), seed=0), dist, torch.device("cpu"))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    for _ in range(2):
        net(torch.randint(0, 8192, (2, 64))).logits.float().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    class T:  # the few trainer attributes the gathered save reads
        pass

    trainer = T()
    trainer.model, trainer.optimizer, trainer.dist = net, opt, dist
    trainer.state_dict_plain = lambda: {"step": 2, "torch_rng": torch.get_rng_state()}
    gc.collect()
    td.barrier()
    before = rss_mb()
    t0 = time.perf_counter()
    with PeakRss() as peak:
        if variant == "gathered":
            gathered_save(trainer, folder, 2)
        else:
            model_sd, optim_sd = sharded_train_state(net, opt)
            save_state(folder, {"step": 2, "torch_rng": torch.get_rng_state(), "model": model_sd, "optimizer": optim_sd}, 2, dist)
        td.barrier()
    save_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    like = None if variant == "gathered" else (lambda: dict(zip(("model", "optimizer"), sharded_train_state(net, opt))))
    state = load_state(folder, "cpu", like, dist)
    load_train_state(net, opt, state["model"], state["optimizer"])
    td.barrier()
    load_s = time.perf_counter() - t0
    row = {"variant": variant, "rank": dist.rank, "save_added_mb": peak.peak - before, "save_s": save_s, "load_s": load_s,
           "bytes_on_disk": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())}
    (folder.parent / f"row-{dist.rank}.json").write_text(json.dumps(row))  # stdout interleaves the ranks' lines
    state = trainer = like = net = opt = None  # freed before the group goes (gloo can abort at exit otherwise)
    gc.collect()
    td.barrier()
    td.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="60M")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--job", nargs=2, metavar=("VARIANT", "FOLDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        job(args.job[0], args.model, Path(args.job[1]))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    rows = []
    for variant in ("gathered", "sharded"):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.processes),
                   __file__, "--model", args.model, "--job", variant, str(Path(tmp) / "state")]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{variant}: the job failed\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
            rows += [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("row-*.json"))]
    print(f"{args.model} on {args.processes} gloo processes (CPU); memory added by the save (MB), save and load time (s)")
    print(f"{'variant':<9} {'rank':>4} {'added MB':>9} {'save s':>7} {'load s':>7} {'on disk MB':>10}")
    for r in sorted(rows, key=lambda r: (r["variant"], r["rank"])):
        print(f"{r['variant']:<9} {r['rank']:>4} {r['save_added_mb']:>9.0f} {r['save_s']:>7.2f} {r['load_s']:>7.2f} {r['bytes_on_disk'] / 2**20:>10.0f}")
    peak = {v: max(r["save_added_mb"] for r in rows if r["variant"] == v) for v in ("gathered", "sharded")}
    print(f"ratio sharded / gathered, the largest memory any rank adds: {peak['sharded'] / max(peak['gathered'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
