"""CheckpointStore: list, verify and load the checkpoints of a run by (model, step)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

from mechrare.checkpoints.atomic import sha256_file
from mechrare.checkpoints.run import RunFolder
from mechrare.errors import ChecksumError, RunFolderError


@dataclass(frozen=True)
class Checkpoint:
    model: str
    step: int
    tokens: int
    path: Path


class CheckpointStore:
    """Read access to a run folder's checkpoint series.

    >>> store = CheckpointStore("runs/quickstart")          # doctest: +SKIP
    >>> store.models(), store.steps("d16-l2")[:4]           # doctest: +SKIP
    (['d16-l2', 'd32-l2', 'd64-l2'], [0, 1, 2, 4])
    >>> model = store.load("d16-l2", 512)                   # doctest: +SKIP
    """

    def __init__(self, run: str | Path | RunFolder):
        self.run = run if isinstance(run, RunFolder) else RunFolder(run)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return self.run.read_manifest()

    def models(self) -> list[str]:
        return list(self.manifest["models"])

    def _check_model(self, model: str) -> None:
        if model not in self.manifest["models"]:
            raise RunFolderError(f"{self.run.path}: no model {model!r}; models: {', '.join(self.models())}")

    def steps(self, model: str) -> list[int]:
        """Steps with a whole checkpoint on disk, ascending."""
        self._check_model(model)
        return self.run.complete_steps(model)

    def path(self, model: str, step: int) -> Path:
        self._check_model(model)
        folder = self.run.step_dir(model, step)
        if not (folder / "mechrare.json").is_file():
            have = self.steps(model)
            raise RunFolderError(
                f"{folder}: no checkpoint of {model} at step {step}; available steps: "
                f"{', '.join(map(str, have)) if have else 'none'}"
            )
        return folder

    def info(self, model: str, step: int) -> dict[str, Any]:
        """The checkpoint's mechrare.json (step, tokens, sha256, eval metrics)."""
        return json.loads((self.path(model, step) / "mechrare.json").read_text())

    def verify(self, model: str, step: int) -> None:
        """Recompute every recorded sha256; raise ChecksumError on a mismatch."""
        folder = self.path(model, step)
        for name, expected in self.info(model, step)["sha256"].items():
            target = folder / name
            if not target.is_file():
                raise ChecksumError(f"{target}: file recorded in mechrare.json is missing")
            actual = sha256_file(target)
            if actual != expected:
                raise ChecksumError(
                    f"{target}: sha256 {actual[:12]}... does not match the recorded {expected[:12]}...; "
                    "the checkpoint is damaged: retrain it (delete the folder and rerun `mechrare train`)"
                )

    def iter_checkpoints(self, models: list[str] | None = None) -> Iterator[Checkpoint]:
        per_step = self.manifest["tokens_per_step"]
        for model in models or self.models():
            for step in self.steps(model):
                yield Checkpoint(model, step, step * per_step, self.run.step_dir(model, step))

    def load(self, model: str, step: int, *, device: str = "cpu", dtype=None, verify: bool = True):
        """The checkpoint as a ``transformers`` ``Olmo2ForCausalLM`` in eval mode."""
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        if verify:
            self.verify(model, step)
        hf_logging.disable_progress_bar()
        kwargs = {"dtype": dtype} if dtype is not None else {}
        hf = AutoModelForCausalLM.from_pretrained(self.path(model, step), **kwargs)
        return hf.to(device).eval()

    def tokenizer(self, model: str | None = None, step: int | None = None):
        from transformers import AutoTokenizer

        model = model or self.models()[0]
        step = self.steps(model)[0] if step is None else step
        return AutoTokenizer.from_pretrained(self.path(model, step))

    def load_bridge(self, model: str, step: int, *, device: str = "cpu", verify: bool = True):
        """The checkpoint wrapped in a transformer_lens ``TransformerBridge`` (offline)."""
        from transformer_lens.model_bridge import TransformerBridge

        hf = self.load(model, step, device=device, verify=verify)
        return TransformerBridge.boot_transformers(str(self.path(model, step)), hf_model=hf, device=device)
