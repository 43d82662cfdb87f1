"""A tokenized corpus as flat token arrays: training windows and a held-out tail.

The arrays are memory-mapped, never read whole: a ``.npy`` file (with its header) or
a raw flat file of ``uint16``/``uint32`` ids, as OLMo-core and Dolma ship them. A
window is ``length`` consecutive tokens of one file (windows never cross files).
The last ``held_out`` share of the last file is kept out of training; the held-out
background sample is drawn from it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mechrare.errors import ConfigError

NPY_MAGIC = b"\x93NUMPY"


def open_tokens(path: str | Path, dtype: str, where: str) -> np.ndarray:
    """A read-only 1-D memmap of ``path``: a .npy file (its own dtype) or raw ``dtype`` ids."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(6)
        if head == NPY_MAGIC:
            arr = np.load(path, mmap_mode="r")
        else:
            size = path.stat().st_size
            width = np.dtype(dtype).itemsize
            if size % width:
                raise ConfigError(f"{where}: {path} has {size} bytes, not a whole number of {dtype} ids; give its dtype")
            arr = np.memmap(path, dtype=dtype, mode="r")
    except OSError as e:
        raise ConfigError(f"{where}: cannot read {path} ({e.strerror or e})") from None
    except ValueError as e:
        raise ConfigError(f"{where}: {path} is not a readable .npy file ({e})") from None
    if arr.ndim != 1 or arr.dtype.kind not in "ui":
        raise ConfigError(f"{where}: {path} holds a {arr.ndim}-d {arr.dtype} array; flat integer token ids expected")
    return arr


class TokenCorpus:
    """Windows of ``length`` tokens over flat token arrays (``segments``), vocabulary ``vocab_size``."""

    def __init__(self, segments: list[np.ndarray], length: int, vocab_size: int, held_out: float, where: str):
        self.segments = segments
        self.length = length
        self.vocab_size = vocab_size
        last = len(segments[-1])
        self.held_out_tokens = max(2 * length, math.ceil(held_out * sum(len(s) for s in segments)))
        if last < self.held_out_tokens + length:
            raise ConfigError(f"{where}: the corpus has {sum(len(s) for s in segments)} tokens ({last} in its last file), too few "
                              f"for windows of {length} and a held-out tail of {self.held_out_tokens}; add text or lower sequence_length")
        self.train_ends = [len(s) for s in segments[:-1]] + [last - self.held_out_tokens]
        starts = np.array([max(0, e - length + 1) for e in self.train_ends], dtype=np.float64)
        self._file_p = starts / starts.sum()
        self._starts = starts.astype(np.int64)

    @property
    def n_tokens(self) -> int:
        return sum(len(s) for s in self.segments)

    def _gather(self, seg: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The windows at ``starts``, in one indexing of ``seg`` (a memmap reads only the pages it needs)."""
        index = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(self.length, dtype=np.int64)
        return np.asarray(seg[index]).astype(np.int64)

    def _check(self, ids: np.ndarray) -> np.ndarray:
        if ids.size and int(ids.max()) >= self.vocab_size:
            raise ConfigError(f"mixture.background.files: token id {int(ids.max())} is outside the tokenizer's vocabulary of "
                              f"{self.vocab_size}; give the tokenizer these ids came from (and their dtype)")
        return ids

    def sample(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        """[rows, length] training windows (a file by its number of windows, then a start in it)."""
        which = rng.choice(len(self.segments), size=rows, p=self._file_p) if len(self.segments) > 1 else np.zeros(rows, np.int64)
        starts = (rng.random(rows) * self._starts[which]).astype(np.int64)
        out = np.empty((rows, self.length), dtype=np.int64)
        for k in np.unique(which):
            sel = np.flatnonzero(which == k)
            out[sel] = self._gather(self.segments[k], starts[sel])
        return self._check(out)

    def held_out_sample(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        """[rows, length] windows of the held-out tail of the last file."""
        seg = self.segments[-1]
        first = self.train_ends[-1]
        starts = first + (rng.random(rows) * (len(seg) - first - self.length + 1)).astype(np.int64)
        return self._check(self._gather(seg, starts))
