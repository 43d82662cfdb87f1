"""Built-in callbacks: evaluation, checkpoint folders, resume state, progress bars."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from typing import Any

from mechrare.atomic import atomic_dir, sealed, sha256_file
from mechrare.checkpoints.run import RunFolder, mechrare_version
from mechrare.training.evaluate import evaluate
from mechrare.checkpoints.train_state import STATE_JSON, save_state
from mechrare.training.trainer import Callback, Trainer

RESUME_FILE = STATE_JSON  # the file that names a resume folder's state (see mechrare.checkpoints.train_state)


class EvalCallback(Callback):
    """Adds held-out per-task loss / accuracy and background loss to ``info`` (under torchrun, each
    process evaluates its share of the rows and the sums are added up over the job)."""

    def on_checkpoint(self, trainer: Trainer, info: dict[str, Any]) -> None:
        info.update(
            evaluate(
                trainer.model,
                trainer.mixture,
                trainer.device,
                batch_size=trainer.cfg.eval_batch_size,
                autocast_dtype=trainer.autocast_dtype,
                dist=trainer.dist,
            )
        )


class CheckpointCallback(Callback):
    """Writes ``models/<model>/step_<N>/``: a Hugging Face folder with the tokenizer
    and mechrare.json, renamed into place only once whole. An existing whole
    checkpoint (from before an interruption) is kept: the rerun is deterministic.
    Under torchrun the weights are gathered whole and rank 0 writes the folder."""

    def __init__(self, run: RunFolder, model_name: str, tokenizer, seed: int = 0):
        self.run = run
        self.model_name = model_name
        self.tokenizer = tokenizer
        self.seed = seed

    def on_checkpoint(self, trainer: Trainer, info: dict[str, Any]) -> None:
        folder = self.run.step_dir(self.model_name, info["step"], self.seed)
        if trainer.dist.agree((folder / "mechrare.json").is_file()):
            return
        weights = trainer.model_weights()  # under torchrun: gathered whole on rank 0 (every process takes part)
        if not trainer.dist.main:
            return
        with atomic_dir(folder) as tmp:
            trainer.model.save_pretrained(tmp, **({} if weights is None else {"state_dict": weights}))
            self.tokenizer.save_pretrained(str(tmp))
            files = sorted(p.name for p in tmp.iterdir() if p.is_file())
            record = {
                "model": self.model_name,
                "seed": self.seed,
                **info,
                # every file of the folder, the weights first (their sha256 is the checkpoint's fingerprint)
                "sha256": {name: sha256_file(tmp / name) for name in sorted(files, key=lambda n: n != "model.safetensors")},
                "mechrare_version": mechrare_version(),
            }
            (tmp / "mechrare.json").write_text(json.dumps(sealed(record), indent=2) + "\n")


class ResumeCallback(Callback):
    """Saves the full training state (safetensors + JSON, no pickle) every ``every`` steps and at the end;
    under torchrun, sharded: every process writes its own shards."""

    def __init__(self, run: RunFolder, model_name: str, every: int, seed: int = 0):
        self.folder = run.resume_dir(model_name, seed)
        self.every = every

    def on_step_end(self, trainer: Trainer, loss) -> None:
        if trainer.step % self.every == 0 or trainer.step == trainer.cfg.steps:
            trainer.check_finite()  # a diverged run keeps its last good state
            state = trainer.state_dict()  # under torchrun: each process's shards, which each writes
            save_state(self.folder, state, trainer.step, trainer.dist)


class ProgressCallback(Callback):
    """A tqdm bar per model with loss and tokens/s."""

    def __init__(self, desc: str, enabled: bool = True, refresh_every: int = 10):
        self.desc = desc
        self.enabled = enabled
        self.refresh_every = refresh_every
        self.bar = None

    def on_train_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.cfg.steps,
            initial=trainer.step,
            desc=self.desc,
            unit="step",
            disable=not self.enabled,
            dynamic_ncols=True,
            leave=True,
        )
        self._t0, self._s0 = time.perf_counter(), trainer.step

    def on_step_end(self, trainer: Trainer, loss) -> None:
        self.bar.update(1)
        if trainer.step % self.refresh_every == 0 or trainer.step == trainer.cfg.steps:
            dt = max(time.perf_counter() - self._t0, 1e-9)
            tok_s = (trainer.step - self._s0) * trainer.tokens_per_step / dt
            # under torchrun, ``loss`` is this process's share of the batch's loss: scaled up, its rows' mean
            shown = loss.item() * trainer.dist.world
            self.bar.set_postfix(loss=f"{shown:.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)

    def on_train_end(self, trainer: Trainer) -> None:
        self.bar.close()


class QueueProgress(Callback):
    """Progress of a model trained in a worker process: step counts sent to the parent's bar
    (:func:`shared_progress`), every ``every`` steps."""

    def __init__(self, queue, every: int = 10):
        self.queue = queue
        self.every = every
        self._sent = 0

    def on_train_start(self, trainer: Trainer) -> None:
        self._sent = trainer.step
        if self.queue is not None and trainer.step:
            self.queue.put(trainer.step)  # steps done before a resume

    def on_step_end(self, trainer: Trainer, loss) -> None:
        if self.queue is not None and (trainer.step - self._sent >= self.every or trainer.step == trainer.cfg.steps):
            self.queue.put(trainer.step - self._sent)
            self._sent = trainer.step


@contextmanager
def shared_progress(total: int, desc: str, enabled: bool = True):
    """One tqdm bar fed by worker processes: yields the queue to hand them (None when disabled)."""
    if not enabled:
        yield None
        return
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    manager = get_context("spawn").Manager()
    queue = manager.Queue()
    bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)

    def drain() -> None:
        while (n := queue.get()) is not None:
            bar.update(n)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield queue
    finally:
        queue.put(None)
        reader.join(timeout=5)
        bar.close()
        manager.shutdown()
