"""Refuse, before anything is written, a ladder that cannot fit in the machine's memory.

The estimate is deliberately low (fp32 weights, gradients and two AdamW moments, 16 bytes per
parameter, plus the activations one step keeps for backward), so it only refuses what cannot fit;
a model that passes may still run out of memory, which the CLI reports in one line.
"""

from __future__ import annotations

import os

from mechrare.errors import ConfigError
from mechrare.models.ladder import ModelShape, olmo2_param_count
from mechrare.training.padding import largest

GiB = 2**30


def training_bytes(shape: ModelShape, vocab: int, batch: int, seq: int) -> int:
    """A lower estimate of the memory one training step of ``shape`` needs."""
    params = olmo2_param_count(shape, vocab)
    tokens = batch * seq
    per_token = shape.n_layers * (10 * shape.d_model + 3 * shape.d_mlp) + 2 * vocab
    scores = batch * shape.n_heads * seq * seq * shape.n_layers
    return 16 * params + 4 * (tokens * per_token + scores)


def machine_bytes(device) -> int | None:
    """The device's total memory (None where unknown)."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(shapes: list[ModelShape], vocab: int, batch: int, seq: int, device) -> None:
    have = machine_bytes(device)
    if have is None:
        return
    for shape in shapes:
        need = training_bytes(shape, vocab, batch, seq)
        if need > have:
            raise ConfigError(
                f"ladder.models: {shape.name} needs at least {need / GiB:,.1f} GiB to train ({batch} x {seq} tokens a step), "
                f"more than the {have / GiB:,.1f} GiB this {device.type} machine has; choose a smaller model, "
                "train.batch_size or mixture.sequence_length"
            )


def check_group_memory(groups: list[list[ModelShape]], vocab: int, batch: int, seq: int, device) -> None:
    """``train.together``: the models of a group are in memory at once, each the size of the group's largest
    (:mod:`mechrare.training.padding`); the estimate counts one model's logits (the loss is made a chunk at a
    time, one model after another)."""
    have = machine_bytes(device)
    if have is None:
        return
    for group in groups:
        if len(group) < 2:
            continue
        width, layers, heads, mlp = largest(group)
        big = ModelShape("largest", width, layers, heads, mlp)
        logits = 4 * batch * seq * 2 * vocab
        need = len(group) * (training_bytes(big, vocab, batch, seq) - logits) + logits
        if need > have:
            names = ", ".join(dict.fromkeys(s.name for s in group))
            raise ConfigError(
                f"train.together: {len(group)} models as one program ({names}) need at least {need / GiB:,.1f} GiB, more "
                f"than the {have / GiB:,.1f} GiB this {device.type} machine has; set train.together = false "
                "(or train.together_sizes = false), or train fewer ladder.seeds"
            )
