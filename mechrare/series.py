"""Checkpoint series mechrare did not train (Pythia's revisions, OLMo's, your own ``step_*/``).

:func:`open_series` reads a SERIES.toml (:mod:`mechrare.checkpoints.series_spec`),
finds every checkpoint, checks the series and its tasks, and records it in an
output folder that then reads like a run folder (``mechrare.open_run``,
``mechrare analyze DIR``, ``mechrare report DIR``)::

    DIR/
      manifest.json     kind "series": the spec (paths absolute), tasks, models with n_params
      series.json       every checkpoint's folder, the sha256 of each of its files, suspect flags
      analyses/<analysis>.nc, analyses/evaluation.nc (held-out loss and accuracy), report/

Checks, each one line and nothing written on failure: the step list is strictly
increasing; all checkpoints of a model share architecture and tokenizer; all
models share one tokenizer (one task set is posed to all of them); every task
text round-trips through the tokenizer and every token is in each model's
vocabulary.

>>> import mechrare                                                       # doctest: +SKIP
>>> run = mechrare.open_series("SERIES.toml", out="runs/pythia")
>>> mechrare.analyze(run, only=["evaluation", "probes"])
"""

from __future__ import annotations

from pathlib import Path

from mechrare.atomic import atomic_write_json, sealed
from mechrare.checkpoints.folders import RECORD, FolderSeries, discover, read_record
from mechrare.checkpoints.manifest import ModelRecord, TaskRecord, new_manifest
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.series_integrity import TOKENIZER_FILES, scan
from mechrare.checkpoints.series_spec import SeriesSpec, read_series_spec, spec_from_dict
from mechrare.config import drop_none
from mechrare.errors import ConfigError



def is_series_file(path: str | Path) -> bool:
    """Whether ``path`` names a SERIES.toml (rather than a run folder)."""
    return str(path).endswith(".toml") and Path(path).is_file()


def series_checkpoints(folder: Path, config: dict) -> FolderSeries:
    spec = spec_from_dict(config)
    return FolderSeries(read_record(folder), spec.exclude_suspect)


def series_task_set(config: dict, series: FolderSeries):
    """The series' task set (and background), tokenized with the tokenizer of its first checkpoint."""
    from mechrare.data.jsonl_tasks import JsonlTaskSet, read_background

    spec = spec_from_dict(config)
    model = series.models()[0]
    tokenizer = series.tokenizer(model, series.steps(model)[0])
    vocab = min(int(series.record["models"][m].get("vocab_size") or 2**62) for m in series.models())
    background = stream = None
    if spec.background is not None:
        bg = spec.background
        background, stream = read_background(bg.files, tokenizer, bg.sequence_length, bg.rows, dataset=bg.dataset, text_field=bg.text_field)
        big = int(max(background.max(), stream.max() if len(stream) else 0))
        if big >= vocab:
            raise ConfigError(f"background.files: token id {big} is outside the vocabulary of {vocab}; "
                              "the tokenizer and the model do not match")
    return JsonlTaskSet(spec.tasks.files, tokenizer, vocab, spec.tasks.test_fraction, spec.tasks.seed, background,
                        stream, spec.tasks.shares)


def _check_tokenizers(record: dict) -> None:
    seen = None
    for name, m in record["models"].items():
        first = m["checkpoints"][min(m["checkpoints"], key=int)]
        tok = {f: first["files"][f] for f in TOKENIZER_FILES if f in first["files"]}
        if not tok:
            raise ConfigError(f"{name}: no tokenizer files in {first['path']} (tokenizer.json, vocab.json ...); "
                              "save the tokenizer with each checkpoint")
        if seen is None:
            seen = (name, tok)
        elif tok != seen[1]:
            raise ConfigError(f"{name}: another tokenizer than {seen[0]}; one series poses one task set, so its models must "
                              "share a tokenizer: put them in separate series files")


def _manifest(spec: SeriesSpec, record: dict, tasks) -> object:
    per = {int(m.get("tokens_per_step") or 0) for m in record["models"].values()}
    task_records = []
    for name in tasks.names:
        inst = tasks.eval_instances(name)
        task_records.append(TaskRecord(name=name, share=float((tasks.shares() or {}).get(name, 0.0)), family="jsonl", split="held-out",
                                       eval_examples=len(inst), targets=dict(inst.targets)))
    models = {name: ModelRecord(n_params=m["n_params"], status="done", seeds_done=[0],
                                final_step=max(int(s) for s in m["checkpoints"]))
              for name, m in record["models"].items()}
    return new_manifest(spec.name, spec.to_dict(), kind="series", tokens_per_step=per.pop() if len(per) == 1 else 0,
                        checkpoint_steps=sorted({int(s) for m in record["models"].values() for s in m["checkpoints"]}),
                        tasks=task_records, models=models, vocab_size=min(int(m.get("vocab_size") or 0) for m in record["models"].values()) or None)


def _prior(spec: SeriesSpec, folder: RunFolder, source) -> dict | None:
    """The record already in ``folder`` (None: a new folder); refuses a folder of another kind or spec."""
    if not folder.exists():
        return None
    manifest = folder.read_manifest()
    if manifest.kind != "series":
        raise ConfigError(f"--out: {folder.path} is a mechrare {manifest.kind} run folder; give another folder for the series")
    if manifest.config != drop_none(spec.to_dict()):
        raise ConfigError(f"--out: {folder.path} holds another series (its spec differs from {source}); "
                          "give another --out folder, or delete that one")
    return read_record(folder.path) if (folder.path / RECORD).is_file() else None


def inspect_series(source: str | Path, out: str | Path | None = None, *, progress: bool = True) -> tuple[SeriesSpec, dict]:
    """(spec, record) of a SERIES.toml: every checkpoint found, hashed and checked; nothing is written.
    The record in ``out`` is reused where it lists the same checkpoint folders."""
    spec = read_series_spec(source)
    folder = RunFolder(Path(out) if out is not None else Path("runs") / spec.name)
    if folder.path.exists() and not folder.path.is_dir():
        raise ConfigError(f"--out: {folder.path} is a file; give a folder for the series' analyses")
    found = {m.name: (discover(m, f"models[{i}]"), m.tokens_per_step) for i, m in enumerate(spec.models)}
    old = _prior(spec, folder, source)
    same = old is not None and set(old["models"]) == set(found) and all(
        set(old["models"][n]["checkpoints"]) == {str(s) for s in steps}
        and all(old["models"][n]["checkpoints"][str(s)]["path"] == str(p) for s, p in steps.items())
        for n, (steps, _) in found.items())
    record = old if same else scan(found, progress=progress)
    _check_tokenizers(record)
    return spec, record


def record_series(source: str | Path, out: str | Path | None = None, *, progress: bool = True):
    """Check the series of ``source`` (a SERIES.toml) and record it in ``out`` (default ``runs/<name>``);
    returns (the folder, its task set), which then opens as a run (:func:`mechrare.runs.open_series`). Reopening with the
    same spec reuses the record; a changed spec is refused; nothing is written when a check fails."""
    spec, record = inspect_series(source, out, progress=progress)
    folder = RunFolder(Path(out) if out is not None else Path("runs") / spec.name)
    tasks = series_task_set(spec.to_dict(), FolderSeries(record, spec.exclude_suspect))  # every task check, before writing
    folder.path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder.path / RECORD, sealed(record))
    folder.write_manifest(_manifest(spec, record, tasks))
    return folder.path, tasks
