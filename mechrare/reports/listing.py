"""``mechrare ls``: a run folder as text: models, checkpoints, final accuracy table."""

from __future__ import annotations

from pathlib import Path

from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.store import CheckpointStore
from mechrare.errors import RunFolderError
from mechrare.reports.data import FINAL_LAST, FINAL_WORDS


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def final_accuracy_rows(store: CheckpointStore) -> tuple[list[str], list[list[str]]]:
    """One row per (model, seed) with checkpoints: the steps of its final window and the mean eval accuracy
    per task over them (the report's "final": :data:`mechrare.reports.data.FINAL_LAST` checkpoints).
    A recall task's column says so: its eval set is its training set."""
    tasks = store.manifest.task_names
    recall = {t.name for t in store.manifest.tasks if t.split == "all"}
    seeds = store.seeds()
    rows = []
    for model in store.models():
        have = store.seeds(model)
        if not have:
            rows.append([model, "-", "-"] + ["-"] * len(tasks))
        for seed in have:
            window = store.steps(model, seed)[-FINAL_LAST:]
            evals = [store.info(model, s, seed).get("eval", {}) for s in window]
            cells = []
            for t in tasks:
                acc = [e[t]["accuracy"] for e in evals if t in e]
                cells.append(f"{sum(acc) / len(acc):.3f}" if acc else "-")
            steps = f"{window[0]}..{window[-1]}" if len(window) > 1 else str(window[0])
            rows.append([model, str(seed), steps] + cells)
    header = [f"{t} (recall)" if t in recall else t for t in tasks]
    if len(seeds) == 1:
        return ["model", "steps"] + header, [r[:1] + r[2:] for r in rows]
    return ["model", "seed", "steps"] + header, rows


def describe_series(name: str, record: dict, folder: Path | None = None, list_steps: bool = False,
                    exclude_suspect: bool = False) -> str:
    """An external series (its ``series.json`` record): models, checkpoints, suspect checkpoints,
    final held-out accuracy (mean of the last checkpoints, as in the report) where ``folder`` holds analyses/evaluation.nc."""
    models = record["models"]
    out = [f"series {name}" + (f"  (analyses in {folder})" if folder else "  (not recorded yet: mechrare analyze SERIES.toml --out DIR)"), ""]
    rows, suspects = [], []
    for model, m in models.items():
        steps = sorted(int(s) for s in m["checkpoints"])
        flagged = {int(s): e["suspect"] for s, e in m["checkpoints"].items() if e.get("suspect")}
        suspects += [f"  {model} step {s}: {why}" for s, why in sorted(flagged.items())]
        arch = ", ".join(m.get("architecture") or [m.get("model_type") or "?"])
        rows.append([model, f"{m['n_params']:,}", arch, f"{m.get('vocab_size')}", len(steps), f"{steps[0]}..{steps[-1]}",
                     len(flagged), m.get("tokens_per_step") or "-"])
    out.append(_table(["model", "params", "architecture", "vocab", "checkpoints", "steps", "suspect", "tokens/step"], rows))
    out += ["", f"suspect checkpoints ({'left out: exclude_suspect = true' if exclude_suspect else 'analysed; exclude_suspect = true leaves them out'}):"
            if suspects else "suspect checkpoints: none (no identical weights, none out of place)"]
    out += suspects
    if folder is not None:
        eval_path = Path(folder) / "analyses" / "evaluation.nc"
        if eval_path.is_file():
            from mechrare.checkpoints.datasets import open_dataset

            acc = open_dataset(eval_path).accuracy
            acc = acc.isel(seed=0) if "seed" in acc.dims else acc
            tasks = [str(t) for t in acc.task.values]
            rows = []
            for model in acc.model.values:
                series = acc.sel(model=model).dropna("step", how="all")
                if series.sizes["step"]:
                    window = series.isel(step=slice(-FINAL_LAST, None))
                    steps = [int(x) for x in window.step.values]
                    rows.append([str(model), f"{steps[0]}..{steps[-1]}" if len(steps) > 1 else str(steps[0])]
                                + [f"{float(window.sel(task=t).mean()):.3f}" for t in tasks])
            out += ["", f"final held-out accuracy ({FINAL_WORDS}, as in the report):", _table(["model", "steps"] + tasks, rows)]
        done = sorted(p.stem for p in (Path(folder) / "analyses").glob("*.nc"))
        out += ["", f"analyses: {', '.join(done) if done else f'none yet (mechrare analyze {folder})'}"]
    if list_steps:
        out += [""] + [f"{model}: {' '.join(sorted(m['checkpoints'], key=int))}" for model, m in models.items()]
    return "\n".join(out)


def describe_run(path: str | Path, list_steps: bool = False) -> str:
    store = CheckpointStore(RunFolder(path))
    m = store.manifest
    if m.kind == "series":
        from mechrare.checkpoints.folders import read_record

        return describe_series(m.name, read_record(store.run.path), store.run.path, list_steps, m.config.get("exclude_suspect", False))
    if m.kind != "ladder":
        raise RunFolderError(f"{store.run.path}: a {m.kind} run has no checkpoints to list; open its report (`mechrare report {store.run.path}`)")
    out = [
        f"run {store.run.path}  ({m.name}, mechrare {m.mechrare_version}, seed {m.seed}, "
        f"{len(m.seeds)} training seed{'s' if len(m.seeds) > 1 else ''}: {', '.join(map(str, m.seeds))})",
        f"  {m.batch_size} x {m.sequence_length} tokens/step, {m.config['train']['steps']} steps, "
        f"vocab {m.vocab_size}, {len(m.checkpoint_steps)} scheduled checkpoints, "
        + (f"background loss floor {m.background_entropy:.3f} nats" if m.background_entropy is not None
           else f"background: {m.config['mixture'].get('background', {}).get('kind', 'markov')} (loss floor unknown)"),
        "",
        _table(
            ["task", "share", "placement", "schedule", "eval", "split"],
            [
                [
                    t.name,
                    f"{t.share:.4f}",
                    t.placement,
                    f"every {t.schedule['every']}" if t.schedule else "iid",
                    t.eval_examples,
                    t.split,
                ]
                for t in m.tasks
            ],
        ),
        "",
    ]
    rows = []
    for name, info in m.models.items():
        counts = [len(store.steps(name, seed)) for seed in m.seeds]
        lasts = [store.steps(name, seed)[-1] for seed in m.seeds if store.steps(name, seed)]
        done = len(info.seeds_done) if info.seeds_done else (len(m.seeds) if info.status == "done" else 0)
        rows.append([name, f"{info.n_params:,}", info.status, f"{done}/{len(m.seeds)}",
                     "/".join(map(str, sorted(set(counts)))), max(lasts) if lasts else "-"])
    out += [_table(["model", "params", "status", "seeds done", "checkpoints", "last"], rows), ""]
    header, acc_rows = final_accuracy_rows(store)
    out += [f"final accuracy ({FINAL_WORDS}, as in the report; held-out except recall tasks, "
            "whose eval set is their training set):", _table(header, acc_rows)]
    done = sorted(p.stem for p in (store.run.path / "analyses").glob("*.nc"))
    out += ["", f"analyses: {', '.join(done) if done else 'none yet (mechrare analyze ' + str(store.run.path) + ')'}"]
    if list_steps:
        out += [""] + [
            f"{name}{'' if len(m.seeds) == 1 else f' seed {seed}'}: {' '.join(map(str, store.steps(name, seed)))}"
            for name in m.models for seed in m.seeds
        ]
    return "\n".join(out)
