"""A small English corpus from text that ships with Python, for trying a text background.

Python's ``pydoc_data.topics`` holds the reference manual's help topics (about 0.47 M
characters of English prose and code). :func:`write_corpus` writes them as text files,
a few topics per file, ready for ``[mixture.background] kind = "text"``::

    python -m mechrare.examples.corpus corpus/        # corpus/topics-00.txt ...
    mechrare train tiny --set 'mixture.background={kind="text", files=["corpus/*.txt"], tokenizer="bpe:2048"}'

:func:`write_dataset` writes the same topics as a Hugging Face dataset saved with ``save_to_disk``, one
topic a row (columns ``title`` and ``text``), for ``[mixture.background] dataset = ...``::

    python -m mechrare.examples.corpus topics-ds --dataset
    mechrare train tiny --set 'mixture.background={kind="text", dataset="topics-ds", tokenizer="bpe:2048"}'
"""

from __future__ import annotations

import argparse
from pathlib import Path


def write_corpus(folder: str | Path, n_files: int = 8) -> list[Path]:
    """Write Python's help topics into ``n_files`` text files in ``folder``; returns them."""
    from pydoc_data.topics import topics

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(topics)
    out = []
    for k in range(n_files):
        path = folder / f"topics-{k:02d}.txt"
        path.write_text("\n\n".join(topics[n].strip() for n in names[k::n_files]) + "\n", encoding="utf-8")
        out.append(path)
    return out


def write_dataset(folder: str | Path) -> Path:
    """Write Python's help topics as a saved Hugging Face dataset in ``folder`` (one topic a row, columns
    ``title`` and ``text``, in name order); returns the folder."""
    from datasets import Dataset
    from pydoc_data.topics import topics

    names = sorted(topics)
    Dataset.from_dict({"title": names, "text": [topics[n].strip() for n in names]}).save_to_disk(str(folder))
    return Path(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mechrare.examples.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--dataset", action="store_true", help="write a saved Hugging Face dataset (one topic a row) instead")
    args = parser.parse_args(argv)
    if args.dataset:
        print(write_dataset(args.folder))
        return 0
    for path in write_corpus(args.folder, args.files):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
