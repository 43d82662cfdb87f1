"""A text or token-file background, prepared once: its tokenizer and its token ids.

``prepare(cfg)`` returns a :class:`Prepared` folder ``background-<key>/`` holding
``tokenizer.json``, ``meta.json`` and, for ``kind = "text"``, ``tokens.npy`` (the
files, or the rows of a saved Hugging Face dataset, tokenized, each followed by the
end-of-text token). The key is a hash
of the background's settings (kind, file patterns, tokenizer, dtype), so a run
folder's own copy (``<run>/data/``, written when training starts) is found again
from its manifest without the corpus. It is looked for in the given folders
first, then in the user cache (``$MECHRARE_CACHE``, else ``~/.cache/mechrare``),
and built there when absent. ``kind = "tokens"`` keeps the token files where
they are: the folder records their paths and sizes.

On open, the tokenizer's sha256, the token file sizes and, where the source files
are at hand, their sizes are checked against ``meta.json``: a corpus changed since
it was prepared is refused with one line.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mechrare.atomic import atomic_dir, sha256_file
from mechrare.config import BackgroundConfig
from mechrare.data.corpus import open_tokens
from mechrare.data.vocab import EOS, PAD, SPECIALS, UNK
from mechrare.errors import ConfigError

FORMAT = 1
EOS_NAMES = (EOS, "<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")
PAD_NAMES = (PAD, "<|padding|>", "[PAD]", "<|pad|>")


def cache_root() -> Path:
    return Path(os.environ.get("MECHRARE_CACHE") or Path.home() / ".cache" / "mechrare")


def background_key(cfg: BackgroundConfig) -> str:
    spec = {"kind": cfg.kind, "files": list(cfg.files), "tokenizer": cfg.tokenizer, "dtype": cfg.dtype, "format": FORMAT}
    if cfg.dataset:  # only then: the keys of file backgrounds prepared before datasets were read stay theirs
        spec.update(dataset=cfg.dataset, text_field=cfg.text_field)
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def expand(patterns: list[str], where: str) -> list[Path]:
    """The files the patterns match (each pattern sorted, in the order given); one that matches nothing is refused."""
    out: list[Path] = []
    for k, pattern in enumerate(patterns):
        hits = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file())
        if not hits:
            raise ConfigError(f"{where}.files[{k}]: {pattern!r} matches no file (relative to {Path.cwd()}); point it at your "
                              "corpus, or write the example one with `python -m mechrare.examples.corpus corpus`")
        out += [h for h in hits if h not in out]
    return out


def _special(tok, folder: Path | None, key: str, names: tuple[str, ...]) -> int | None:
    if folder is not None and (folder / "tokenizer_config.json").is_file():
        value = json.loads((folder / "tokenizer_config.json").read_text()).get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str) and tok.token_to_id(value) is not None:
            return tok.token_to_id(value)
    return next((tok.token_to_id(n) for n in names if tok.token_to_id(n) is not None), None)


def load_tokenizer(spec: str, where: str):
    """(tokenizers.Tokenizer, eos id, pad id or None) of a tokenizer.json or a folder holding one."""
    from tokenizers import Tokenizer

    path = Path(os.path.expanduser(spec))
    folder = path if path.is_dir() else None
    file = path / "tokenizer.json" if folder is not None else path
    if not file.is_file():
        raise ConfigError(f"{where}.tokenizer: {spec!r} is not a tokenizer.json or a folder with one "
                          "(save a fast tokenizer with save_pretrained)")
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception on a malformed file
        raise ConfigError(f"{where}.tokenizer: {file} is not a tokenizer.json ({str(e).splitlines()[0][:100]})") from None
    eos = _special(tok, folder, "eos_token", EOS_NAMES)
    if eos is None:
        raise ConfigError(f"{where}.tokenizer: {file} has no end-of-text token (looked for {', '.join(EOS_NAMES)}); "
                          "the injection needs one after each task instance")
    return tok, eos, _special(tok, folder, "pad_token", PAD_NAMES)


def train_bpe(texts, vocab_size: int):
    """A byte-level BPE of ``vocab_size`` trained on ``texts`` (deterministic), specials first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def _read(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}.files: {path} is not UTF-8 text (byte {e.start}); convert it or leave it out") from None


def _chunks(text: str, size: int = 1 << 20):
    """Pieces of about ``size`` characters, cut at paragraph breaks where there are any."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n\n", start, end)
            end = cut + 2 if cut > start else end
        yield text[start:end]
        start = end


def _file_records(files: list[Path], hashes: bool) -> list[dict]:
    return [{"path": str(f.resolve()), "bytes": f.stat().st_size, **({"sha256": sha256_file(f)} if hashes else {})} for f in files]


@dataclass
class Prepared:
    folder: Path
    meta: dict

    @property
    def tokenizer_file(self) -> Path:
        return self.folder / "tokenizer.json"

    def tokenizer(self):
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(self.tokenizer_file))

    def segments(self, where: str) -> list[np.ndarray]:
        if self.meta["kind"] == "text":
            return [open_tokens(self.folder / "tokens.npy", "uint32", where)]
        return [open_tokens(f["path"], self.meta["dtype"], where) for f in self.meta["files"]]

    def install(self, data_dir: Path) -> None:
        """Copy this folder into ``data_dir`` (a run folder's ``data/``), unless it is there already."""
        target = Path(data_dir) / self.folder.name
        if target.resolve() == self.folder.resolve() or (target / "meta.json").is_file():
            return
        with atomic_dir(target) as tmp:
            for item in self.folder.iterdir():
                shutil.copy2(item, tmp / item.name)


def _check(prepared: Prepared, cfg: BackgroundConfig, where: str) -> Prepared:
    meta, folder = prepared.meta, prepared.folder
    if sha256_file(prepared.tokenizer_file) != meta["tokenizer_sha256"]:
        raise ConfigError(f"{where}: {prepared.tokenizer_file} changed since it was prepared; delete {folder} to prepare it again")
    if meta["kind"] == "text":
        size = (folder / "tokens.npy").stat().st_size if (folder / "tokens.npy").is_file() else -1
        if size != meta["tokens_bytes"]:
            raise ConfigError(f"{where}: {folder / 'tokens.npy'} is damaged or missing; delete {folder} to prepare it again")
    for f in meta["files"]:  # the sources, where they are at hand
        p = Path(f["path"])
        if p.is_file() and p.stat().st_size != f["bytes"]:
            key = "dataset" if meta.get("dataset") else "files"
            raise ConfigError(f"{where}.{key}: {p} changed since the background was prepared in {folder}; "
                              f"restore it, or delete {folder} to prepare it again")
        if meta["kind"] == "tokens" and not p.is_file():
            raise ConfigError(f"{where}.files: {p} is missing (a tokens background reads its files in place); restore it")
    return prepared


class _Documents:
    """The text background's documents in order, as many times as asked: each text file, or each row of a
    saved dataset."""

    def __init__(self, cfg: BackgroundConfig, where: str):
        self.where, self.field, self.source = where, cfg.text_field, cfg.dataset
        if cfg.dataset:
            from mechrare.data.hf_text import open_text_dataset, source_files

            self.dataset = open_text_dataset(cfg.dataset, cfg.text_field, where)
            self.files = source_files(self.dataset)
        else:
            self.dataset, self.files = None, expand(cfg.files, where)
        self._texts = None

    def keep(self) -> None:
        """Hold the files' texts in memory (read once for a tokenizer trained on them, and reused)."""
        if self.dataset is None:
            self._texts = [_read(f, self.where) for f in self.files]

    def texts(self):
        """Each document's whole text (what a tokenizer is trained on)."""
        if self.dataset is not None:
            from mechrare.data.hf_text import dataset_texts

            for texts in dataset_texts(self.dataset, self.field):
                yield from texts
            return
        for k, f in enumerate(self.files):
            yield self._texts[k] if self._texts is not None else _read(f, self.where)

    def token_ids(self, tok, eos: int) -> np.ndarray:
        """Every document's token ids, each followed by ``eos`` (a file encoded in pieces cut at paragraph
        breaks, a dataset's rows a thousand at a time)."""
        end = np.array([eos], dtype=np.uint32)
        pieces = []
        if self.dataset is not None:
            from mechrare.data.hf_text import dataset_texts

            for texts in dataset_texts(self.dataset, self.field):
                for enc in tok.encode_batch(texts, add_special_tokens=False):
                    pieces += [np.asarray(enc.ids, dtype=np.uint32), end]
        else:
            for text in self.texts():
                pieces += [np.asarray(enc.ids, dtype=np.uint32) for enc in tok.encode_batch(list(_chunks(text)), add_special_tokens=False)]
                pieces.append(end)
        if not pieces:
            raise ConfigError(f"{self.where}.dataset: {self.source} has no rows with text in column {self.field!r}")
        return np.concatenate(pieces)


def _build(cfg: BackgroundConfig, target: Path, where: str) -> None:
    docs = _Documents(cfg, where) if cfg.kind == "text" else None
    files = docs.files if docs is not None else expand(cfg.files, where)
    if cfg.tokenizer.startswith("bpe:"):
        docs.keep()
        tok = train_bpe(docs.texts(), int(cfg.tokenizer[4:]))
        eos, pad = tok.token_to_id(EOS), tok.token_to_id(PAD)
        tok_source = cfg.tokenizer
    else:
        tok, eos, pad = load_tokenizer(cfg.tokenizer, where)
        tok_source = str(Path(os.path.expanduser(cfg.tokenizer)).resolve())
    meta = {"format": FORMAT, "key": background_key(cfg), "kind": cfg.kind, "dtype": cfg.dtype, "tokenizer_source": tok_source,
            "vocab_size": tok.get_vocab_size(with_added_tokens=True), "eos_id": eos, "pad_id": pad,
            "unk_id": tok.token_to_id(UNK)}
    with atomic_dir(target) as tmp:
        tok.save(str(tmp / "tokenizer.json"))
        meta["tokenizer_sha256"] = sha256_file(tmp / "tokenizer.json")
        if cfg.kind == "text":
            ids = docs.token_ids(tok, eos)
            np.save(tmp / "tokens.npy", ids)
            if cfg.dataset:
                meta.update(dataset=str(Path(os.path.expanduser(cfg.dataset)).resolve()), text_field=cfg.text_field,
                            documents=len(docs.dataset))
            meta.update(n_tokens=int(len(ids)), tokens_bytes=(tmp / "tokens.npy").stat().st_size,
                        tokens_sha256=sha256_file(tmp / "tokens.npy"), files=_file_records(files, hashes=True))
        else:
            segs = [open_tokens(f, cfg.dtype, where) for f in files]
            meta.update(n_tokens=int(sum(len(s) for s in segs)), files=_file_records(files, hashes=False))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def prepare(cfg: BackgroundConfig, data_dirs: list[Path] | None = None, where: str = "mixture.background") -> Prepared:
    """The prepared background of ``cfg``: found in ``data_dirs`` or the user cache, else built in the cache."""
    name = f"background-{background_key(cfg)}"
    for d in list(data_dirs or []) + [cache_root()]:
        meta_file = Path(d) / name / "meta.json"
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                raise ConfigError(f"{where}: {meta_file} is damaged; delete {meta_file.parent} to prepare it again") from None
            return _check(Prepared(meta_file.parent, meta), cfg, where)
    target = cache_root() / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{where}: cannot write the background cache {target.parent} ({e.strerror}); "
                          "set MECHRARE_CACHE to a writable folder") from None
    try:
        _build(cfg, target, where)
    except OSError:
        if not (target / "meta.json").is_file():  # another process built it first: use theirs
            raise
    return _check(Prepared(target, json.loads((target / "meta.json").read_text(encoding="utf-8"))), cfg, where)
