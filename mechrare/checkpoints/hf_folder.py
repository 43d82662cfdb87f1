"""A Hugging Face model folder's weight files, read without running code (safetensors, or a
pytorch ``.bin`` with ``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path

from mechrare.errors import RunFolderError

#: files that hold weights, by preference; a checkpoint folder has one of these sets
SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
TORCH_BIN, TORCH_BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"


def weight_files(folder: Path) -> list[str]:
    """The names of ``folder``'s weight files (one file, or the shards its index names)."""
    import json

    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (TORCH_BIN, TORCH_BIN_INDEX)):
        if (folder / single).is_file():
            return [single]
        if (folder / index).is_file():
            try:
                shards = sorted(set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise RunFolderError(f"{folder / index}: not a valid weight index (no weight_map); re-download the checkpoint") from None
            return [index] + shards
    raise RunFolderError(f"{folder}: no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or {TORCH_BIN}); is it a Hugging Face model folder?")


def load_weights(folder: Path) -> dict:
    """{name: tensor} of a checkpoint folder (safetensors shards, or a pytorch .bin read with weights_only=True)."""
    import torch
    from safetensors.torch import load_file

    out = {}
    for name in weight_files(Path(folder)):
        if name.endswith(".json"):
            continue
        path = Path(folder) / name
        try:
            out.update(load_file(str(path)) if name.endswith(".safetensors") else torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:  # a damaged file: safetensors and torch raise several types
            raise RunFolderError(f"{path}: cannot read the weights ({type(e).__name__}); re-download the checkpoint") from None
    return out
