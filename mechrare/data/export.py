"""The built-in task families posed to any tokenizer: JSONL task files (token level).

The paper poses its tasks (comparison, modular addition) to OLMo "over 100 random
vocabulary tokens". :func:`export_tasks` does that for every task of a mechrare
mixture: each word the tasks use (their markers and symbols, e.g. ``<compare:8>``,
``v3``) is mapped, one to one, onto a random token of the target tokenizer
(special tokens excluded; seeded), and each instance is written as
``{"prompt_ids": ..., "answer_ids": ..., "latents": ..., "split": ...}``, one file
per task, ready for a SERIES.toml's ``[tasks] files``. A held-out task keeps its
split (its eval set ``"test"``, training draws ``"train"``); a recall task (eval
on its training instances by design) is written without a split, so the series'
``test_fraction`` splits it. ``mapping.json`` records the word -> token id map.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mechrare.errors import ConfigError


def token_map(words: list[str], tokenizer, seed: int = 0) -> dict[str, int]:
    """Each of ``words`` -> a distinct random non-special token id of ``tokenizer`` (seeded)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pool = np.array([i for i in range(len(tokenizer)) if i not in special])
    if len(pool) < len(words):
        raise ConfigError(f"tokenizer: {len(pool)} ordinary tokens, fewer than the {len(words)} words the tasks use; "
                          "use a larger vocabulary or fewer / smaller tasks")
    chosen = np.random.default_rng([seed, 0xE7]).choice(pool, size=len(words), replace=False)
    return {w: int(i) for w, i in zip(words, chosen)}


def export_tasks(mixture, tokenizer, out: str | Path, train_examples: int = 512, seed: int = 0) -> list[Path]:
    """Write one JSONL file per task of ``mixture`` (a :class:`~mechrare.data.mixture.Mixture`) in
    ``tokenizer``'s ids, and ``mapping.json``; returns the task files."""
    from mechrare.data.taskset import MixtureTaskSet

    tasks = MixtureTaskSet(mixture)
    used: set[int] = set()
    for name in tasks.names:
        for inst in (tasks.eval_instances(name), tasks.train_instances(name, train_examples, seed)):
            used |= set(np.unique(inst.input_ids).tolist())
    words = [mixture.vocab.tokens[i] for i in sorted(used)]
    mapping = token_map(words, tokenizer, seed)
    lookup = np.full(len(mixture.vocab), -1, dtype=np.int64)
    for w, i in mapping.items():
        lookup[mixture.vocab.id(w)] = i
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for k, name in enumerate(tasks.names):
        held_out = mixture.tasks[k].split != "all"
        rows, seen = [], set()
        for inst, split in ((tasks.eval_instances(name), "test"), (tasks.train_instances(name, train_examples, seed), "train")):
            for r in range(len(inst)):
                key = tuple(inst.input_ids[r])
                if key in seen:
                    continue
                seen.add(key)
                ids = lookup[inst.input_ids[r]]
                row = {"task": name, "prompt_ids": ids[: inst.n_prompt].tolist(), "answer_ids": ids[inst.n_prompt :].tolist(),
                       "latents": {t: int(v[r]) for t, v in inst.latents.items() if t != "answer"}}
                if held_out:
                    row["split"] = split
                rows.append(row)
        path = out / f"{name.replace(':', '-')}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        files.append(path)
    (out / "mapping.json").write_text(json.dumps(mapping, indent=1) + "\n", encoding="utf-8")
    return files
