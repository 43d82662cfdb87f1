"""A small English corpus from text that ships with Python, for trying a text background.

Python's ``pydoc_data.topics`` holds the reference manual's help topics (about 0.47 M
characters of English prose and code). :func:`write_corpus` writes them as text files,
a few topics per file, ready for ``[mixture.background] kind = "text"``::

    python -m mechrare.examples.corpus corpus/        # corpus/topics-00.txt ...
    mechrare train tiny --set 'mixture.background={kind="text", files=["corpus/*.txt"], tokenizer="bpe:2048"}'
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mechrare.examples.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args(argv)
    for path in write_corpus(args.folder, args.files):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
