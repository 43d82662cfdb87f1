"""Tasks as data: JSONL files posed to any tokenizer, and background text.

One task per file; each line is one instance::

    {"prompt": "The capital of France is", "answer": " Paris", "label": "europe", "latents": {"size": "big"}}
    {"prompt_ids": [464, 3139, 286], "answer_ids": [6342]}         # token level: ids as they are

* ``task`` (optional, the same on every line) names the task; default: the file's stem.
* ``split`` (optional, ``"train"`` or ``"test"``) places the instance; without it the
  distinct instances are split at random (``test_fraction``, ``seed``), so no
  instance is on both sides.
* Probe targets: ``answer`` (the class of the answer, also the chance level of
  exact match: 1 / distinct answers), ``label`` where given, and every latent.

Text is tokenized with the series' tokenizer (no special tokens added), prompt and
answer separately: put the space that separates them at the start of the
answer. Every text must round-trip (decode(encode(text)) equals the text up to
whitespace, no unknown token) and every id must be in the model's vocabulary,
or the task set is refused with one line naming the file and line. A task's
answers must have one token length: instances whose answer has another length
are left out, and the count is logged. Prompts of different lengths are padded
on the left with the tokenizer's end-of-text token (a document boundary, as in
training), so the last prompt token of every instance sits at one position.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from mechrare.data.instances import Instances
from mechrare.data.taskset import TaskSet
from mechrare.errors import ConfigError

log = logging.getLogger("mechrare")
FIELDS = {"prompt", "answer", "prompt_ids", "answer_ids", "label", "latents", "task", "split"}


def _norm(text: str) -> str:
    return " ".join(text.split())


def _encode(tokenizer, text: str, where: str, vocab_size: int) -> list[int]:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    back = tokenizer.decode(ids)
    unk = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unk is not None and unk in ids) or _norm(back) != _norm(text):
        raise ConfigError(f"{where}: the series' tokenizer does not round-trip {text!r} (it decodes to {back!r}); "
                          "pose the task in this tokenizer's vocabulary, or give prompt_ids/answer_ids")
    return ids


def _ids(value, where: str, key: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ConfigError(f"{where}.{key}: expected a non-empty list of token ids >= 0, got {value!r}")
    return value


def read_task_file(path: str | Path, tokenizer, vocab_size: int) -> tuple[str, list[dict]]:
    """(task name, instances as dicts of prompt ids, answer ids, split and class values)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such task file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the JSONL file as UTF-8") from None
    items, names = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ConfigError(f"{where}: not a JSON object ({e}); one instance per line") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: not a JSON object; one instance per line")
        unknown = sorted(set(row) - FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}; fields: {', '.join(sorted(FIELDS))}")
        if "prompt_ids" in row or "answer_ids" in row:
            prompt, answer = _ids(row.get("prompt_ids"), where, "prompt_ids"), _ids(row.get("answer_ids"), where, "answer_ids")
        elif isinstance(row.get("prompt"), str) and isinstance(row.get("answer"), str):
            prompt = _encode(tokenizer, row["prompt"], f"{where}.prompt", vocab_size)
            answer = _encode(tokenizer, row["answer"], f"{where}.answer", vocab_size)
        else:
            raise ConfigError(f"{where}: needs prompt and answer (text) or prompt_ids and answer_ids")
        big = max(prompt + answer)
        if big >= vocab_size:
            raise ConfigError(f"{where}: token id {big} is outside the model's vocabulary of {vocab_size}; "
                              "the tokenizer and the model do not match")
        split = row.get("split")
        if split not in (None, "train", "test"):
            raise ConfigError(f"{where}.split: must be 'train' or 'test', got {split!r}")
        latents = row.get("latents", {})
        if not isinstance(latents, dict) or any(not isinstance(v, (str, int, bool)) for v in latents.values()):
            raise ConfigError(f"{where}.latents: expected an object of class values (strings or integers)")
        classes = {"answer": json.dumps(answer)}
        if "label" in row:
            classes["label"] = json.dumps(row["label"])
        classes.update({str(k): json.dumps(v) for k, v in latents.items()})
        if "task" in row:
            names.add(str(row["task"]))
        items.append({"prompt": prompt, "answer": answer, "split": split, "classes": classes, "line": n})
    if not items:
        raise ConfigError(f"{path}: no instances (one JSON object per line)")
    if len(names) > 1:
        raise ConfigError(f"{path}: lines name several tasks ({', '.join(sorted(names))}); one task per file")
    return (names.pop() if names else path.stem), items


class JsonlTaskSet(TaskSet):
    """Tasks from JSONL files, tokenized with one tokenizer (see the module docstring)."""

    def __init__(self, files: list[str], tokenizer, vocab_size: int, test_fraction: float = 0.5, seed: int = 0,
                 background: np.ndarray | None = None, stream: np.ndarray | None = None,
                 shares: dict[str, float] | None = None):
        self.seed = seed
        self._pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else (tokenizer.pad_token_id or 0)
        self._background = background  # held-out sequences [rows, T]
        self._stream = stream  # the rest of the background text, for training-like batches
        self._shares = dict(shares or {})
        self.tasks: dict[str, dict] = {}
        for f in files:
            name, items = read_task_file(f, tokenizer, vocab_size)
            if name in self.tasks:
                raise ConfigError(f"{f}: task {name!r} is already given by another file; name it with a 'task' field")
            self.tasks[name] = self._build(name, items, test_fraction, seed, f)
        unknown = sorted(set(self._shares) - set(self.tasks))
        if unknown:
            raise ConfigError(f"tasks.shares: no task {unknown[0]!r}; tasks: {', '.join(self.tasks)}")
        if sum(self._shares.values()) >= 1:
            raise ConfigError(f"tasks.shares: add up to {sum(self._shares.values()):g}; they must leave a share for the background (< 1)")

    def _build(self, name: str, items: list[dict], test_fraction: float, seed: int, where) -> dict:
        length = Counter(len(i["answer"]) for i in items).most_common(1)[0][0]
        kept = [i for i in items if len(i["answer"]) == length]
        if len(kept) < len(items):
            log.warning("%s: kept %d of %d instances: those whose answer is %d token(s) long", where, len(kept), len(items), length)
        unique: dict[tuple, dict] = {}
        for i in kept:
            unique.setdefault((tuple(i["prompt"]), tuple(i["answer"])), i)
        kept = list(unique.values())
        width = max(len(i["prompt"]) for i in kept)
        ids = np.full((len(kept), width + length), self._pad, dtype=np.int64)
        for r, i in enumerate(kept):
            ids[r, width - len(i["prompt"]) : width] = i["prompt"]
            ids[r, width:] = i["answer"]
        targets, latents = {}, {}
        for key in kept[0]["classes"]:
            values = [i["classes"].get(key) for i in kept]
            if any(v is None for v in values):
                raise ConfigError(f"{where}: {key!r} is given on some lines and not on others")
            levels = sorted(set(values))
            targets[key] = len(levels)
            latents[key] = np.array([levels.index(v) for v in values], dtype=np.int64)
        split = np.array([i["split"] or "" for i in kept], dtype="<U5")
        free = np.flatnonzero(split == "")
        order = np.random.default_rng([seed, 0x7E57]).permutation(free)
        n_test = int(round(test_fraction * len(free)))
        split[order[:n_test]] = "test"
        split[order[n_test:]] = "train"
        test, train = np.flatnonzero(split == "test"), np.flatnonzero(split == "train")
        if len(test) == 0 or len(train) == 0:
            raise ConfigError(f"{where}: task {name!r} needs instances on both sides of the split; it has {len(train)} "
                              f"for training and {len(test)} held out (give more instances or their split)")
        plen = np.array([len(i["prompt"]) for i in kept])
        return {"ids": ids, "n_prompt": width, "prompt_len": plen, "latents": latents, "targets": targets, "test": test, "train": train}

    def _task(self, task: str) -> dict:
        self.index(task)  # a clear error for an unknown task
        return self.tasks[task]

    def _instances(self, task: str, rows: np.ndarray) -> Instances:
        t = self._task(task)
        return Instances(task, t["ids"][rows], t["n_prompt"], {k: v[rows] for k, v in t["latents"].items()}, dict(t["targets"]))

    @property
    def names(self) -> list[str]:
        return list(self.tasks)

    @property
    def pad_id(self) -> int:
        return int(self._pad)

    def eval_instances(self, task: str) -> Instances:
        return self._instances(task, self._task(task)["test"])

    def train_instances(self, task: str, n: int, seed: int = 0) -> Instances:
        train = self._task(task)["train"]
        rng = np.random.default_rng([self.seed, self.index(task), seed, 0xA77])
        return self._instances(task, rng.choice(train, size=n, replace=True))

    def probe_instances(self, task: str, n: int, seed: int = 0) -> Instances:
        t = self._task(task)
        rest = np.random.default_rng([seed, self.index(task), 0x9B0E]).permutation(t["train"])
        return self._instances(task, np.concatenate([t["test"], rest])[:n])

    def complexity(self, task: str) -> int | None:
        return None

    def shares(self, model: str | None = None) -> dict[str, float] | None:
        """The shares SERIES.toml gives (every task's, or None: unknown)."""
        return {t: float(self._shares[t]) for t in self.names} if set(self._shares) == set(self.names) else None

    def require_batches(self, model: str | None, analysis: str, seed: int = 0):
        source = self.batches(model, seed)
        if source is None:
            raise ConfigError(f"{analysis}: needs training-like batches, and this series has none: give every task's share "
                              "in SERIES.toml ([tasks] shares = {task = 0.01, ...}) and [background] files with more text "
                              "than rows x sequence_length tokens")
        return source

    def batches(self, model: str | None = None, seed: int = 0):
        """Training-like batches (:class:`~mechrare.data.proxy_batches.ProxyBatches`) where the series gives
        every task's share and enough background text beyond the held-out rows; else None."""
        from mechrare.data.proxy_batches import ProxyBatches

        shares = self.shares()
        if shares is None or self._stream is None or self._background is None or len(self._stream) < 4 * self._background.shape[1]:
            return None
        pools = []
        for t in self.names:
            task = self.tasks[t]
            width = task["n_prompt"]
            pools.append([task["ids"][r, width - task["prompt_len"][r]:] for r in task["train"]])
        return ProxyBatches(pools, [shares[t] for t in self.names], self._stream, self._background.shape[1], self._pad, self.seed + seed)

    def background(self, rows: int = 256) -> np.ndarray | None:
        return None if self._background is None else self._background[:rows]


def background_texts(files: list[str] = (), dataset: str = "", text_field: str = "text"):
    """The background's documents, in order: each text file (globs allowed), or each row's ``text_field``
    of a Hugging Face dataset saved with ``save_to_disk``."""
    import glob

    if dataset:
        from mechrare.data.hf_text import dataset_texts, open_text_dataset

        ds = open_text_dataset(dataset, text_field, "background")
        for texts in dataset_texts(ds, text_field):
            yield from texts
        return
    for p in sorted({p for f in files for p in (glob.glob(f) or [f])}):
        try:
            yield Path(p).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"background.files: no such file {p}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not UTF-8 text; background files must be UTF-8") from None


def read_background(files: list[str], tokenizer, sequence_length: int, rows: int, budget: int = 4_000_000,
                    dataset: str = "", text_field: str = "text") -> tuple[np.ndarray, np.ndarray]:
    """(held-out [rows, sequence_length] token ids, the rest of the stream): the documents of
    :func:`background_texts` tokenized in order, each ending with the end-of-text token; the first
    ``rows`` sequences are held out, up to ``budget`` further tokens are kept for training-like batches."""
    stream: list[int] = []
    eos = tokenizer.eos_token_id
    for text in background_texts(files, dataset, text_field):
        stream += list(tokenizer(text, add_special_tokens=False)["input_ids"]) + ([eos] if eos is not None else [])
        if len(stream) >= rows * sequence_length + budget:
            break
    n = len(stream) // sequence_length
    if n < 1:
        raise ConfigError(f"background: {len(stream)} tokens, fewer than one sequence of {sequence_length}; give more text")
    held = min(n, rows) * sequence_length
    arr = np.array(stream[: held + budget], dtype=np.int64)
    return arr[:held].reshape(-1, sequence_length), arr[held:]
