"""What is on disk for an external series, checked once and recorded: ``series.json``.

:func:`scan` reads every checkpoint of every model in step order, once:

* the sha256 of every file of the folder (loads are later verified against them);
* the architecture: every checkpoint of a model must have the same ``config.json``
  (bookkeeping keys aside) and the same tokenizer files, or the series is refused;
* n_params from the weights, the weights' L2 norm, and distances between
  neighbouring checkpoints.

**Suspect checkpoints** (flagged; left out where ``exclude_suspect = true``), by a
rule fixed before it was run on any series:

* *identical*: its weights' sha256 equals another step's (a hub branch that
  serves another step's weights). Every step of such a group is flagged: at most
  one of them holds its own step's weights, and the hashes cannot tell which;
* *out of place*: an interior checkpoint i whose two neighbours are closer to each
  other than half of its distance to the nearer one,
  ``|theta_{i+1} - theta_{i-1}| < 0.5 * min(|theta_i - theta_{i-1}|, |theta_{i+1} - theta_i|)``.
  Training moves away from where it was: with uncorrelated updates
  ``|theta_{i+1} - theta_{i-1}|^2 = d_prev^2 + d_next^2``, so the ratio is about
  1 or more; it falls below 0.5 only when the step from i-1 to i is nearly undone
  from i to i+1 (cosine below -0.875 for equal steps), as when a checkpoint from
  elsewhere in training sits under this step's name. Its false-positive rate on
  series trained here is measured in ``benchmarks/series_integrity.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mechrare.checkpoints.hf_folder import load_weights, weight_files
from mechrare.errors import ConfigError, RunFolderError

#: config.json keys that may differ between checkpoints of one model
VOLATILE = ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash", "use_cache")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt")
OUT_OF_PLACE = 0.5


def _config(folder: Path) -> dict:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise RunFolderError(f"{folder / 'config.json'}: unreadable or not JSON; re-download the checkpoint") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{folder / 'config.json'}: not a JSON object; re-download the checkpoint")
    return {k: v for k, v in data.items() if k not in VOLATILE}


def _distance(a: dict, b: dict) -> float:
    total = 0.0
    for name, x in a.items():
        y = b.get(name)
        if y is None or y.shape != x.shape:
            return math.nan
        total += float((x.double() - y.double()).pow(2).sum())
    return math.sqrt(total)


def _norm(w: dict) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in w.values()))


def scan_model(name: str, steps: dict[int, Path], tokens_per_step: int = 0, progress=None) -> dict:
    """The record of one model: its checkpoints' files and sha256, n_params, and suspect flags."""
    import hashlib

    from mechrare.atomic import sha256_file

    entries: dict[str, dict] = {}
    first_config, first_step, n_params = None, None, None
    tokenizer_sha: dict[str, str] | None = None
    window: list[tuple[int, dict]] = []  # the last two checkpoints' weights
    by_sha: dict[str, list[int]] = {}
    for step, folder in sorted(steps.items()):
        folder = Path(folder)
        config = _config(folder)
        if first_config is None:
            first_config, first_step = config, step
        elif config != first_config:
            key = next(k for k in sorted(set(config) | set(first_config)) if config.get(k) != first_config.get(k))
            raise ConfigError(f"{name}: step {step} ({folder}) has another architecture than step {first_step}: config.json "
                              f"{key} is {config.get(key)!r}, was {first_config.get(key)!r}; every checkpoint of a model must share it")
        names = sorted({"config.json", *weight_files(folder),
                        *(f for f in TOKENIZER_FILES + ("tokenizer_config.json", "special_tokens_map.json") if (folder / f).is_file())})
        files = {f: sha256_file(folder / f) for f in names}
        tok = {f: files[f] for f in TOKENIZER_FILES if f in files}
        if tokenizer_sha is None:
            tokenizer_sha = tok
        elif tok != tokenizer_sha:
            raise ConfigError(f"{name}: step {step} ({folder}) has other tokenizer files than step {first_step}; "
                              "every checkpoint of a model must share its vocabulary")
        weights_sha = hashlib.sha256("".join(files[f] for f in weight_files(folder)).encode()).hexdigest()
        weights = {k: v.float() for k, v in load_weights(folder).items()}
        count = sum(t.numel() for t in weights.values())
        n_params = count if n_params is None else n_params
        entry = {"path": str(folder), "files": files, "weights_sha256": weights_sha, "norm": _norm(weights)}
        by_sha.setdefault(weights_sha, []).append(step)
        if window:
            entry["distance_prev"] = _distance(weights, window[-1][1])
        if len(window) == 2:
            prev_step, prev = window[-1]
            skip = _distance(weights, window[0][1])
            p = entries[str(prev_step)]
            d_prev, d_next = p.get("distance_prev", math.nan), entry["distance_prev"]
            p["distance_skip"] = skip
            if "suspect" not in p and min(d_prev, d_next) > 0 and skip < OUT_OF_PLACE * min(d_prev, d_next):
                p["suspect"] = (f"out of place: steps {window[0][0]} and {step} are {skip:.4g} apart, nearer to each other "
                                f"than to it ({d_prev:.4g}, {d_next:.4g})")
        entries[str(step)] = entry
        window = (window + [(step, weights)])[-2:]
        if progress is not None:
            progress.update()
    for same in by_sha.values():  # at most one of them holds the weights of its step, and which one is unknown
        for step in same if len(same) > 1 else []:
            why = f"identical weights to step {', '.join(str(o) for o in same if o != step)}"
            e = entries[str(step)]
            e["suspect"] = f"{e['suspect']}; {why}" if e.get("suspect") else why
    vocab = first_config.get("vocab_size") if first_config else None
    return {"n_params": int(n_params or 0), "tokens_per_step": int(tokens_per_step), "architecture": (first_config or {}).get("architectures"),
            "model_type": (first_config or {}).get("model_type"), "vocab_size": vocab, "checkpoints": entries}


def scan(models: dict[str, tuple[dict[int, Path], int]], progress: bool = True) -> dict:
    """The series record: ``{"models": {name: scan_model(...)}}`` from ``{name: ({step: folder}, tokens_per_step)}``."""
    from tqdm.auto import tqdm

    total = sum(len(steps) for steps, _ in models.values())
    with tqdm(total=total, desc="checking checkpoints", unit="ckpt", disable=not progress) as bar:
        return {"models": {name: scan_model(name, steps, per, bar) for name, (steps, per) in models.items()}}
