"""Verify a run folder byte by byte: every checkpoint against its recorded sha256, every resume state
against its own checksums, every dataset and analysis part against theirs.

Used by ``mechrare ls --verify`` (which names every bad file) and by ``mechrare train`` (which
regenerates the missing or damaged checkpoints of finished models, see
:mod:`mechrare.training.repair`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mechrare.atomic import RECORD_SHA, first_mismatch, seal_ok, sha256_file
from mechrare.checkpoints.run import STEP_RE, RunFolder
from mechrare.errors import ChecksumError, RunFolderError
from mechrare.workers import usable_cores


@dataclass(frozen=True)
class Problem:
    path: Path
    what: str  # what is wrong and what to do

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


RETRAIN = "rerun `mechrare train` with the run's config to regenerate it"


def check_checkpoint(folder: Path) -> str | None:
    """What is wrong with the checkpoint folder (None: every file recorded in its mechrare.json is there
    and matches its sha256)."""
    record_path = folder / "mechrare.json"
    if not record_path.is_file():
        return f"no mechrare.json (a checkpoint never finished or lost its record); {RETRAIN}"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        recorded = dict(record["sha256"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return f"damaged mechrare.json ({type(exc).__name__}); {RETRAIN}"
    if seal_ok(record) is False:
        return f"damaged mechrare.json (its content does not match its {RECORD_SHA}); {RETRAIN}"
    if not recorded:
        return f"mechrare.json records no sha256; {RETRAIN}"
    bad = first_mismatch(folder, recorded)
    if bad is None:
        return None
    target, actual, _ = bad
    return f"{target.name} {'is missing' if actual is None else 'does not match its recorded sha256 (damaged)'}; {RETRAIN}"


def side_by_side(check, items: list) -> list:
    """``check`` of every item, in order, side by side in one thread per usable core (reading a file and
    hashing it release the GIL)."""
    workers = min(len(items), usable_cores())
    if workers <= 1:
        return [check(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="mechrare-verify") as pool:
        return list(pool.map(check, items))


def check_checkpoints(folders: list[Path]) -> list[str | None]:
    """:func:`check_checkpoint` of every folder, in order, side by side (:func:`side_by_side`)."""
    return side_by_side(check_checkpoint, folders)


def expected_steps(run: RunFolder, model: str, seed: int) -> list[int]:
    """The checkpoint steps a finished (model, seed) must have: the scheduled ones up to its final step."""
    manifest = run.read_manifest()
    record = manifest.model(model)
    if seed not in record.finished_seeds():
        return []
    last = record.final_step if record.final_step is not None else manifest.config["train"]["steps"]
    return [s for s in manifest.checkpoint_steps if s <= last]


def checkpoint_problems(run: RunFolder, model: str, seed: int) -> dict[int, str]:
    """step -> what is wrong, for every checkpoint of (model, seed) that is damaged, half-written or, for
    a finished seed, missing."""
    bad: dict[int, str] = {}
    folder = run.seed_dir(model, seed)
    on_disk = {}
    if folder.is_dir():
        for child in folder.iterdir():
            m = STEP_RE.match(child.name)
            if m and child.is_dir():
                on_disk[int(m.group(1))] = child
    steps = sorted(on_disk)
    for step, problem in zip(steps, check_checkpoints([on_disk[s] for s in steps])):
        if problem:
            bad[step] = problem
    for step in expected_steps(run, model, seed):
        if step not in on_disk:
            bad[step] = f"missing; {RETRAIN}"
    return dict(sorted(bad.items()))


def resume_problem(run: RunFolder, model: str, seed: int) -> Problem | None:
    from mechrare.checkpoints.train_state import LEGACY_STATE, STATE_JSON, verify_state

    folder = run.resume_dir(model, seed)
    if (folder / STATE_JSON).is_file():
        try:
            verify_state(folder)
        except RunFolderError as exc:
            return Problem(folder / STATE_JSON, str(exc).split(": ", 1)[-1])
    elif (folder / LEGACY_STATE).is_file():
        return Problem(folder / LEGACY_STATE, "a training state from before checksums (pickle format, read with "
                                              "weights_only=True); it is replaced at the next save")
    return None


def series_problems(record: dict) -> tuple[list[Problem], int]:
    """Every checkpoint file of an external series (its ``series.json`` record) that is missing or differs
    from its recorded sha256, and how many checkpoints were checked (side by side: :func:`side_by_side`)."""
    from mechrare.checkpoints.folders import FolderSeries

    series = FolderSeries(record)
    pairs = [(model, step) for model in series.models() for step in series.steps(model)]

    def problem(pair: tuple[str, int]) -> Problem | None:
        try:
            series.verify(*pair)
        except ChecksumError as exc:
            target, what = str(exc).split(": ", 1)
            return Problem(Path(target), what)
        return None

    return [p for p in side_by_side(problem, pairs) if p is not None], len(pairs)


def background_problems(meta_file: Path) -> list[Problem]:
    """The prepared background's files against the sha256 in its meta.json."""
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [Problem(meta_file, "damaged (not JSON)")]
    out = []
    for name, key in (("tokenizer.json", "tokenizer_sha256"), ("tokens.npy", "tokens_sha256")):
        target = meta_file.parent / name
        if key not in meta:
            continue
        if not target.is_file():
            out.append(Problem(target, "missing"))
        elif sha256_file(target) != meta[key]:
            out.append(Problem(target, "sha256 differs from the one recorded when the background was prepared"))
    return out


def verify_run(path: str | Path, progress: bool = False) -> tuple[list[Problem], dict[str, int]]:
    """Every bad file of the run folder (an external series' output folder: its checkpoints wherever they
    are), and how many files of each kind were checked."""
    from tqdm.auto import tqdm

    from mechrare.checkpoints.parts import load_part
    from mechrare.checkpoints.datasets import check_dataset

    run = RunFolder(path)
    manifest = run.read_manifest()
    problems: list[Problem] = []
    counts = {"checkpoints": 0, "resume states": 0, "datasets": 0, "analysis parts": 0}
    if manifest.kind == "series":  # checkpoints trained elsewhere, against the sha256 recorded when first opened
        from mechrare.checkpoints.folders import read_record

        problems, counts["checkpoints"] = series_problems(read_record(run.path))
        del counts["resume states"]
    pairs = [(m, s) for m in manifest.models for s in manifest.seeds] if manifest.kind == "ladder" else []
    for model, seed in tqdm(pairs, desc="verify", unit="model", disable=not progress):
        for step, what in checkpoint_problems(run, model, seed).items():
            problems.append(Problem(run.step_dir(model, step, seed), what))
        counts["checkpoints"] += len(set(run.complete_steps(model, seed)) | set(expected_steps(run, model, seed)))
        if run.resume_dir(model, seed).is_dir():
            counts["resume states"] += 1
            problem = resume_problem(run, model, seed)
            if problem:
                problems.append(problem)
    datasets = sorted([run.metrics_path] if run.metrics_path.is_file() else []) + sorted((run.path / "analyses").glob("*.nc"))
    for nc in datasets:
        counts["datasets"] += 1
        what = check_dataset(nc)
        if what:
            problems.append(Problem(nc, what.split(": ", 1)[-1]))
    for meta in sorted((run.path / "data").glob("background-*/meta.json")):  # a text background's tokenizer and tokens
        counts["background files"] = counts.get("background files", 0) + 1
        problems += background_problems(meta)
    for part in sorted((run.path / "analyses").glob("*.parts/**/*.npz")):
        counts["analysis parts"] += 1
        try:
            load_part(part)
        except RunFolderError as exc:
            problems.append(Problem(part, str(exc).split(": ", 1)[-1]))
    return problems, counts


def verify(run, *, progress: bool = True) -> list[Problem]:
    """Every bad file of a run folder (empty: everything matches its checksum).

    >>> problems = mechrare.verify("runs/quickstart")          # doctest: +SKIP
    >>> [str(p) for p in problems]                               # doctest: +SKIP
    ['runs/quickstart/models/d16-l2/seed_0/step_40: model.safetensors does not match its recorded sha256 ...']
    """
    path = getattr(run, "path", run)
    return verify_run(path, progress=progress)[0]
