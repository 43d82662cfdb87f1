"""Documents from a Hugging Face dataset saved with ``Dataset.save_to_disk``: one per row, its text column.

Used by a training run's text background (``[mixture.background] dataset``) and by a series' background
(``[background] dataset`` of a SERIES.toml). A ``DatasetDict`` gives its first split. Rows whose text is
missing (None) are left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from mechrare.errors import ConfigError


def open_text_dataset(path: str, text_field: str, where: str):
    """The saved dataset at ``path`` (its first split), checked to have a ``text_field`` column of strings."""
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(Path(path).expanduser()))
    except (FileNotFoundError, ValueError, OSError) as e:
        raise ConfigError(f"{where}.dataset: cannot load a saved dataset from {path} ({str(e).splitlines()[0][:120]}); "
                          "give a folder written by Dataset.save_to_disk") from None
    if isinstance(ds, DatasetDict):  # its first split (a DatasetDict has column_names too: one list per split)
        if not ds:
            raise ConfigError(f"{where}.dataset: {path} is a DatasetDict without splits; save a Dataset")
        ds = ds[next(iter(ds.keys()))]
    if text_field not in ds.column_names:
        raise ConfigError(f"{where}.text_field: {path} has no column {text_field!r}; columns: {', '.join(ds.column_names)}")
    dtype = getattr(ds.features[text_field], "dtype", None)
    if dtype not in ("string", "large_string"):
        raise ConfigError(f"{where}.text_field: column {text_field!r} of {path} holds {ds.features[text_field]}, not text; "
                          "name the column of strings")
    return ds


def dataset_texts(ds, text_field: str, batch_rows: int = 1000) -> Iterator[list[str]]:
    """The rows' texts in order, a list of up to ``batch_rows`` at a time (missing texts left out)."""
    for start in range(0, len(ds), batch_rows):
        texts = ds[start:start + batch_rows][text_field]
        yield [t for t in texts if isinstance(t, str)]


def source_files(ds) -> list[Path]:
    """The files that hold the dataset's rows (its Arrow files), to notice a dataset changed since it was read."""
    return [Path(f["filename"]) for f in getattr(ds, "cache_files", []) if f.get("filename")]
