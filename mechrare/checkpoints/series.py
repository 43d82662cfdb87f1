"""The checkpoint-series interface that every analysis reads.

A *checkpoint series* is a set of models, each trained under one or more
seeds, each with checkpoints at some training steps. For each (model, step,
seed) it gives a path, a fingerprint (the
sha256 of the weights as recorded when they were written), a verified load as
a Hugging Face model or a transformer_lens ``TransformerBridge``, the raw
weights, and the tokenizer. A mechrare run folder is one provider
(:class:`~mechrare.checkpoints.store.CheckpointStore`); others only need to
implement the abstract methods. A series with one training run per model
has one seed, 0 (the default of every ``seed`` argument).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    model: str
    step: int
    tokens: int | None  # training tokens seen, where known
    path: Path
    fingerprint: str  # sha256 of the weights, as recorded when written
    seed: int = 0  # the training seed


@contextmanager
def quiet_transformers():
    """Silence transformers' load/save progress bars for the block, then restore the caller's setting."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


class CheckpointSeries(ABC):
    """Models x seeds x steps of checkpoints, loaded and verified by (model, step, seed)."""

    @abstractmethod
    def models(self) -> list[str]:
        """Model names, in the series' order."""

    def analysed_models(self) -> list[str]:
        """The models analyses take when none are named (a run's frequency-sweep points are left out:
        the report reads their accuracy; name them with ``--models`` to analyse them)."""
        return self.models()

    def seeds(self, model: str | None = None) -> list[int]:
        """The training seeds of ``model`` (of the series when None) that have checkpoints."""
        return [0]

    def finished(self, model: str, seed: int = 0) -> bool:
        """Whether (model, seed) has all its checkpoints (a run still training, or stopped before its end,
        has not: analyses skip it and say so)."""
        return True

    @abstractmethod
    def steps(self, model: str, seed: int = 0) -> list[int]:
        """Steps with a whole checkpoint, ascending."""

    @abstractmethod
    def n_params(self, model: str) -> int:
        ...

    @abstractmethod
    def tokens_per_step(self) -> int | None:
        """Training tokens per step (None where unknown)."""

    @abstractmethod
    def path(self, model: str, step: int, seed: int = 0) -> Path:
        """The checkpoint's folder (a Hugging Face model folder with its tokenizer)."""

    @abstractmethod
    def fingerprint(self, model: str, step: int, seed: int = 0) -> str:
        """The recorded sha256 of the checkpoint's weights."""

    @abstractmethod
    def verify(self, model: str, step: int, seed: int = 0) -> None:
        """Raise ChecksumError if the files on disk are not the ones recorded."""

    # -- built on the above ------------------------------------------------------------
    def checkpoint(self, model: str, step: int, seed: int = 0) -> Checkpoint:
        per = self.tokens_per_step()
        tokens = None if per is None else step * per
        return Checkpoint(model, step, tokens, self.path(model, step, seed), self.fingerprint(model, step, seed), seed)

    def iter_checkpoints(self, models: list[str] | None = None, steps: list[int] | None = None,
                         seeds: list[int] | None = None) -> Iterator[Checkpoint]:
        """Every checkpoint of ``models`` (all) and ``seeds`` (all), restricted to ``steps`` where given."""
        wanted = None if steps is None else set(steps)
        for model in models or self.models():
            for seed in self.seeds(model) if seeds is None else [s for s in seeds if s in self.seeds(model)]:
                for step in self.steps(model, seed):
                    if wanted is None or step in wanted:
                        yield self.checkpoint(model, step, seed)

    def load(self, model: str, step: int, *, seed: int = 0, device: str = "cpu", dtype=None, verify: bool = True):
        """The checkpoint as a ``transformers`` causal LM in eval mode (weights verified first)."""
        from transformers import AutoModelForCausalLM

        if verify:
            self.verify(model, step, seed)
        kwargs = {"dtype": dtype} if dtype is not None else {}
        with quiet_transformers():
            hf = AutoModelForCausalLM.from_pretrained(self.path(model, step, seed), **kwargs)
        return hf.to(device).eval()

    def load_bridge(self, model: str, step: int, *, seed: int = 0, device: str = "cpu", verify: bool = True):
        """The checkpoint in a transformer_lens ``TransformerBridge`` (offline; tokenizer from the folder)."""
        from transformer_lens.model_bridge import TransformerBridge

        hf = self.load(model, step, seed=seed, device=device, verify=verify)
        with quiet_transformers():
            return TransformerBridge.boot_transformers(str(self.path(model, step, seed)), hf_model=hf, device=device)

    def state_dict(self, model: str, step: int, *, seed: int = 0, verify: bool = True) -> dict:
        """The checkpoint's weights as {name: tensor} (CPU), verified first."""
        from safetensors.torch import load_file

        if verify:
            self.verify(model, step, seed)
        return load_file(str(self.path(model, step, seed) / WEIGHTS))

    def tokenizer(self, model: str | None = None, step: int | None = None, seed: int | None = None):
        from transformers import AutoTokenizer

        model = model or self.models()[0]
        seed = self.seeds(model)[0] if seed is None else seed
        step = self.steps(model, seed)[0] if step is None else step
        return AutoTokenizer.from_pretrained(self.path(model, step, seed))
