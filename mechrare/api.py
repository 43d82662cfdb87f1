"""The public Python API: what ``mechrare`` exports, and what the CLI calls.

>>> import mechrare                                                        # doctest: +SKIP
>>> run = mechrare.train("tiny", out="runs/tiny")                         # or mechrare.open_run(...)
>>> ds = mechrare.analyze(run, only=["probes"], models=["d16-l2"], probes={"probe": "ridge"})["probes"]
>>> fit = mechrare.fit_probe(run, "d16-l2", 300, "compare:4/rank_a", probe="logistic", C=0.5)
>>> report = mechrare.report(run)                                          # report.findings: Finding objects

Every entry point validates its arguments first: a bad one raises
:class:`~mechrare.errors.ConfigError` naming it, and nothing is written.
"""

from __future__ import annotations

from contextlib import nullcontext

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mechrare.errors import ConfigError
from mechrare.names import RULE, is_safe_name
from mechrare.runs import Run, open_run

__all__ = ["ProbeFit", "analyze", "export_tasks", "fit_probe", "gradient_interference", "open_run", "report", "run", "train"]


def _as_run(run, out: str | Path | None = None, progress: bool = True) -> Run:
    """A Run from a Run, a run folder's path, or a SERIES.toml (recorded in ``out``)."""
    from mechrare.runs import open_series
    from mechrare.series import is_series_file

    if isinstance(run, Run):
        return run
    if isinstance(run, (str, Path)):
        if is_series_file(run):
            return open_series(run, out, progress=progress)
        return open_run(run)
    raise ConfigError(f"run: expected a run folder's path, a SERIES.toml or a Run (mechrare.open_run / open_series), got {type(run).__name__}")


def _names(value, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{what}: expected a list of names or a comma-separated string, got {value!r}")
    return list(value)


# -- train ------------------------------------------------------------------------------------
def load_run_config(config, overrides: list[str] | tuple[str, ...] = ()):
    """(name, RunConfig) from a preset name, a TOML path, a dict or a RunConfig, with ``a.b=v`` overrides.

    Overrides of a registered analysis (``probes.probe=ridge``) go to ``analyses.<name>``."""
    import copy

    from mechrare.analyses import ANALYSES, resolve_settings
    from mechrare.config import RunConfig, apply_overrides, from_dict, read_source

    if isinstance(config, RunConfig):
        name, data = "run", config.to_dict()
    elif isinstance(config, dict):
        name, data = "run", copy.deepcopy(config)
    elif isinstance(config, (str, Path)):
        name, data = read_source(str(config))
    else:
        raise ConfigError(f"config: expected a preset name, a TOML path, a dict or a RunConfig, got {type(config).__name__}")
    routed = [f"analyses.{o}" if o.split(".", 1)[0] in ANALYSES else o for o in overrides]
    cfg = from_dict(RunConfig, apply_overrides(data, routed), "")
    resolve_settings(list(cfg.analyses), base=cfg.analyses)  # every [analyses.*] table checked now
    return name, cfg


def train(config="quickstart", out: str | Path | None = None, *, overrides=(), name: str | None = None,
          progress: bool = True, echo: Callable[[str], None] = lambda s: None) -> Run:
    """Train every model of ``config`` into ``out`` (default ``runs/<name>``); a rerun resumes.

    ``config``: a preset name, a TOML path, a dict or a RunConfig; ``name`` defaults to
    the preset's or file's name ("run" for a dict or RunConfig)."""
    from mechrare.training.runner import train_run

    found, cfg = load_run_config(config, list(overrides))
    name = name or found
    if not is_safe_name(name):
        raise ConfigError(f"name: {name!r} is not a plain run name: names must be {RULE}")
    folder = train_run(cfg, Path(out) if out else Path("runs") / name, name=name, progress=progress, echo=echo)
    return open_run(folder.path)


# -- analyze ----------------------------------------------------------------------------------
def analyze(run, only=None, models=None, steps=None, *, out: str | Path | None = None, progress: bool = True,
            jobs: int = 0, keep_parts: bool = False, echo: Callable[[str], None] = lambda s: None, **settings: Any) -> dict:
    """Run analyses over ``run`` (a run folder's path, a SERIES.toml or a Run) and return their xarray
    Datasets by name; each is written to ``analyses/<name>.nc`` and resumes where it stopped.
    ``out``: where a SERIES.toml's series is recorded and analysed (default ``runs/<name>``).

    ``only``: analysis names (default: all, each after the ones it reads); ``models`` /
    ``steps``: restrict to these; ``jobs``: worker processes on CPU (0: one per core, 1: none);
    ``keep_parts``: keep ``analyses/<name>.parts/`` (the per-checkpoint parts) after an analysis
    completes; by default they are removed then, and a rerun with the same inputs reuses the dataset
    (an interrupted analysis keeps its parts and resumes from them);
    ``settings``: per analysis, a dict or config object that overrides the run's
    ``[analyses.<name>]`` tables, e.g. ``probes={"probe": "ridge"}``."""
    from mechrare.ranks import from_env, process_group

    job = from_env()
    with process_group(job):  # under torchrun: the processes share out each analysis's checkpoints
        return _analyze(job, run, only, models, steps, out=out, progress=progress and job.main, jobs=jobs,
                        keep_parts=keep_parts, echo=echo if job.main else (lambda s: None), **settings)


def _analyze(job, run, only, models, steps, *, out, progress: bool, jobs: int, keep_parts: bool, echo, **settings) -> dict:
    from mechrare.analyses import ANALYSES, default_names, ordered, resolve_settings
    from mechrare.analyses.driver import PerCheckpoint, select_models, unfinished
    from mechrare.checkpoints.datasets import open_dataset

    if not job.main:  # a SERIES.toml is recorded once, by rank 0
        job.barrier()
    run = _as_run(run, out, progress)
    if job.main:
        job.barrier()
    names = _names(only, "only") or default_names(run.manifest.kind) or ANALYSES.names()
    for name in names:
        ANALYSES.get(name)  # a clear error for an unknown name, before any work
    names = ordered(names)
    configs = resolve_settings(names, base=run.manifest.config.get("analyses"), overrides=settings)
    ctx = run.context()
    models = select_models(ctx, _names(models, "models"))
    if steps is not None:
        try:
            steps = sorted({int(s) for s in steps})
        except (TypeError, ValueError):
            raise ConfigError(f"steps: expected a list of checkpoint steps, got {steps!r}") from None
        have = {s for m in models for seed in ctx.series.seeds(m) for s in ctx.series.steps(m, seed)}
        absent = [s for s in steps if s not in have]
        if absent:
            raise ConfigError(f"steps: no checkpoint at step {absent[0]} in {', '.join(models)}; steps: {sorted(have)}")
    left = unfinished(ctx.series, models)
    if left:
        import logging

        logging.getLogger("mechrare").warning(
            "analysing finished models only: %s not finished (still training, or stopped before the end: finish "
            "with `mechrare train`)", ", ".join(left))
    from mechrare.checkpoints.lock import run_lock

    out = {}
    with run_lock(ctx.folder, "mechrare analyze") if job.main else nullcontext():
        for name in names:
            analysis = ANALYSES.get(name)
            current = analysis.current(ctx, configs[name], models, steps)
            if current is not None:
                out[name] = current
                echo(f"{name}: up to date ({ctx.analysis_path(name)})")
            elif job.active and not isinstance(analysis, PerCheckpoint):  # not shared out: rank 0 runs it
                if job.main:
                    out[name] = analysis.run(ctx, configs[name], models=models, steps=steps, progress=progress, jobs=1)
                job.barrier()
                out[name] = out[name] if job.main else open_dataset(ctx.analysis_path(name))
                echo(f"{name}: wrote {ctx.analysis_path(name)}")
            else:
                out[name] = analysis.run(ctx, configs[name], models=models, steps=steps, progress=progress, jobs=jobs)
                echo(f"{name}: wrote {ctx.analysis_path(name)}")
            job.barrier()  # every process is done with the parts
            if not keep_parts and job.main:
                _remove_parts(ctx, name)
    return out


def _remove_parts(ctx, name: str) -> None:
    """Remove ``analyses/<name>.parts`` once its dataset is written (only that folder, inside the run)."""
    import shutil

    from mechrare.names import inside

    folder = inside(ctx.folder, Path(ctx.folder) / "analyses" / f"{name}.parts")
    if folder.is_dir():
        shutil.rmtree(folder)


# -- report -----------------------------------------------------------------------------------
def report(run, *, progress: bool = True):
    """Write ``report/`` (index.html, summary.md, figures) and return the
    :class:`~mechrare.reports.build.Report` with its findings."""
    from mechrare.reports.build import build_report

    return build_report(_as_run(run), progress=progress)


def run(config="quickstart", out: str | Path | None = None, *, overrides=(), progress: bool = True,
        jobs: int = 0, echo: Callable[[str], None] = lambda s: None):
    """Train, run every analysis (with the config's ``[analyses]`` settings), then write the report.
    ``jobs``: the analyses' worker processes (training's are ``train.jobs``)."""
    name, cfg = load_run_config(config, list(overrides))
    trained = train(cfg, out, name=name, progress=progress, echo=echo)
    analyze(trained, progress=progress, jobs=jobs, echo=echo, **cfg.analyses)
    return report(trained, progress=progress)


# -- one probe on one checkpoint ----------------------------------------------------------------
@dataclass
class ProbeFit:
    """A probe fitted on one checkpoint and target, at every depth asked for."""

    target: str
    layers: list[int]
    probe_score: np.ndarray  # held-out accuracy per layer
    control_score: np.ndarray
    train_score: np.ndarray
    estimators: dict[int, Any] = field(default_factory=dict)  # layer -> the fitted probe

    @property
    def best_layer(self) -> int:
        return int(self.layers[int(np.nanargmax(self.probe_score))])


def fit_probe(run, model: str, step: int, target: str, *, layer: int | None = None, probe="logistic",
              site: str = "resid", examples_per_task: int = 512, train_fraction: float = 0.6, seed: int = 0,
              standardize: bool = True, device: str = "cpu", training_seed: int = 0, **params: Any) -> ProbeFit:
    """Fit ``probe`` (a registered name with ``params``, or any scikit-learn classifier instance)
    for ``target`` (e.g. ``"compare:8/rank_a"``) on one checkpoint, on the same data, split and
    control task as ``mechrare analyze --only probes``; every depth, or ``layer`` only.
    ``seed`` draws the probe data and split; ``training_seed`` picks the model's training seed."""
    from mechrare.activations import get_activations
    from mechrare.analyses.probes import SITES, fit_target
    from mechrare.probes.base import validated_probe
    from mechrare.probes.targets import build_probe_data

    run = _as_run(run)
    if isinstance(probe, str):
        template = validated_probe(probe, params, "fit_probe")
    elif params:
        raise ConfigError("fit_probe: params are for a registered probe name; set them on the estimator you pass")
    else:
        template = probe
    if site not in SITES:
        raise ConfigError(f"site: must be one of {', '.join(SITES)}, got {site!r}")
    data = build_probe_data(run.context().require_tasks("fit_probe"), examples_per_task, train_fraction, seed)
    targets = {t.name: t for t in data.targets}
    if target not in targets:
        raise ConfigError(f"target: no probe target {target!r}; targets: {', '.join(targets)}")
    tgt = targets[target]
    bridge = run.bridge(model, step, seed=training_seed, device=device)
    hooks = SITES[site][0](bridge.cfg.n_layers)
    layers = list(range(len(hooks))) if layer is None else [layer]
    if any(not 0 <= l < len(hooks) for l in layers):
        raise ConfigError(f"layer: must be in 0..{len(hooks) - 1} for {model}, got {layer}")
    acts = get_activations(bridge, data.ids[tgt.rows], [hooks[l] for l in layers], positions=data.positions[tgt.rows])
    fit = ProbeFit(target, layers, *(np.full(len(layers), np.nan) for _ in range(3)))
    for i, l in enumerate(layers):
        fit.estimators[l], fit.probe_score[i], fit.control_score[i], fit.train_score[i] = fit_target(template, acts[hooks[l]], tgt, standardize)
    return fit


# -- gradients between task sets ------------------------------------------------------------------
def gradient_interference(run, model: str, step: int, tasks=None, *, device: str = "cpu", batch_size: int = 256,
                          training_seed: int = 0):
    """Held-out loss gradients of several task sets on one checkpoint, and their interference:
    an xarray Dataset with ``grad_norm(task)``, ``grad_cosine(task, other_task)`` and their
    per-parameter-group twins, as in ``analyses/interference.nc``.

    ``tasks``: names of the run's tasks (and ``background``), and/or your own
    :class:`~mechrare.data.Instances` (answer loss) or ``[rows, T]`` token-id arrays
    (next-token loss), as a list or a {name: ...} dict. Default: every task and the background."""
    from mechrare.analyses.common import BACKGROUND
    from mechrare.analyses.interference import gradient_gram
    from mechrare.data.instances import Instances

    run = _as_run(run)
    taskset = run.context().require_tasks("gradient_interference")
    if tasks is None:
        tasks = taskset.names + [BACKGROUND]
    items = tasks.items() if isinstance(tasks, dict) else [(t if isinstance(t, str) else getattr(t, "task", f"set{i}"), t) for i, t in enumerate(tasks)]
    data = {}
    for name, value in items:
        if isinstance(value, str):
            data[name] = taskset.background() if value == BACKGROUND else taskset.eval_instances(value)
        elif isinstance(value, Instances):
            data[name] = value
        else:
            data[name] = np.asarray(value)
    if len(data) < 2:
        raise ConfigError("tasks: give at least two task sets to compare")
    hf = run.load(model, step, seed=training_seed, device=device)
    return gradient_gram(hf, data, batch_size=batch_size)


# -- the built-in tasks, posed to another tokenizer ---------------------------------------------------
def export_tasks(config="quickstart", tokenizer: str | Path = "", out: str | Path = "tasks", *, overrides=(),
                 train_examples: int = 512, seed: int = 0) -> list[Path]:
    """Write the tasks of ``config``'s mixture as JSONL files in ``tokenizer``'s ids (a tokenizer folder or
    a checkpoint with one), for a SERIES.toml's ``[tasks] files``: each word the tasks use stands for a
    random token of that vocabulary (:mod:`mechrare.data.export`). Returns the files."""
    from mechrare.data.export import export_tasks as write
    from mechrare.data.mixture import Mixture

    _, cfg = load_run_config(config, list(overrides))
    if train_examples < 1:
        raise ConfigError(f"train_examples: must be >= 1, got {train_examples}")
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tokenizer))
    except (OSError, ValueError) as e:
        raise ConfigError(f"tokenizer: cannot load a tokenizer from {str(tokenizer)!r} ({str(e).splitlines()[0][:120]}); "
                          "give a local tokenizer folder or a checkpoint folder that holds one") from None
    return write(Mixture(cfg.mixture, cfg.seed), tok, out, train_examples, seed)
