"""The one per-checkpoint driver: step selection, device, progress and resume parts.

An analysis that works checkpoint by checkpoint subclasses :class:`PerCheckpoint`
and provides a config class, ``compute`` (one checkpoint -> numpy arrays) and
``assemble`` (all parts -> an xarray Dataset). The driver owns the rest:

* **step selection**: every checkpoint of the chosen models, under each
  training seed, restricted to the ``steps`` asked for (and to the analysis's
  own ``select_steps``);
* **seeds**: ``assemble`` sees one seed's parts at a time; the driver stacks
  the seeds' datasets along a ``seed`` dimension (after ``model``);
* **device**: ``<analysis>.device`` resolved once (``auto``: CUDA when there is one);
* **resume parts**: each checkpoint's arrays are written atomically to
  ``analyses/<name>.parts/<settings>/<model>/seed_<s>/step_<N>-<inputs>.npz``. ``settings``
  hashes the analysis settings that change a part; ``inputs`` hashes the
  sha256 of every checkpoint the part was computed from (``inputs``), so a
  rerun with the same settings on the same weights resumes, and a retrained or
  restored checkpoint is recomputed. Older parts of the same step are removed. Each part
  carries the sha256 of its arrays (``__sha256__``); a part that is damaged, or from before
  checksums, is recomputed, and the rerun says so;
* **up to date**: the written dataset records ``inputs_key`` (:meth:`PerCheckpoint.inputs_key`: its
  parts' paths, every setting, and the sha256 of the datasets it reads); ``mechrare analyze``
  reuses a dataset whose key matches (:meth:`PerCheckpoint.current`) without reading a part, and then removes
  ``analyses/<name>.parts`` unless asked to keep them (``keep_parts``). ``run`` itself never skips:
  it resumes from whatever parts are there;
* **progress**: one bar per analysis over the checkpoints still to compute;
* **jobs**: on CPU, parts are computed by ``jobs`` worker processes side by side
  (:mod:`mechrare.workers`; 0 = one per core), each writing its own part;
* **torchrun**: under a job whose process group is up (``mechrare analyze`` sets it up), each process
  computes every ``world``-th missing part on its own device (``cuda:LOCAL_RANK``), then rank 0
  assembles and writes the dataset, which the others read back.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mechrare.analyses.registry import Analysis, Context
from mechrare.checkpoints.datasets import open_dataset, provenance, write_dataset
from mechrare.checkpoints.parts import check_parts, load_part, save_part
from mechrare.checkpoints.series import Checkpoint
from mechrare.devices import resolve_device
from mechrare.errors import ConfigError, RunFolderError
from mechrare.names import inside
from mechrare.ranks import current_job, process_device
from mechrare.workers import resolve_jobs, run_jobs, set_worker_state, worker_state

log = logging.getLogger("mechrare")

Parts = dict[str, dict[int, dict[str, np.ndarray]]]  # model -> step -> arrays (one seed)
Series = tuple[str, int]  # (model, training seed)


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def write_part(path: Path, arrays: dict, step: int) -> None:
    """Save a checkpoint's part and remove that step's parts made from other weights."""
    save_part(path, arrays)
    for stale in path.parent.glob(f"step_{step}-*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)


def _compute_part(job) -> None:
    """One part, in a worker process (see PerCheckpoint.run)."""
    (model, seed, step), steps, path = job
    w = worker_state()
    ckpt = w["ctx"].series.checkpoint(model, step, seed)
    write_part(path, w["analysis"].compute(w["ctx"], w["cfg"], w["state"], ckpt, w["device"], steps), step)


def unfinished(series, models: list[str]) -> list[str]:
    """The (model, seed) pairs of ``models`` that have not finished training, as text."""
    return [m if series.seeds() == [0] else f"{m} seed {seed}"
            for m in models for seed in series.seeds(m) if not series.finished(m, seed)]


def select_models(ctx: Context, models: list[str] | None) -> list[str]:
    have = ctx.series.models()
    if models is None:
        return ctx.series.analysed_models()
    unknown = [m for m in models if m not in have]
    if unknown:
        raise ConfigError(f"models: no model {unknown[0]!r} in this series; models: {', '.join(have)}")
    return list(dict.fromkeys(models))


class PerCheckpoint(Analysis):
    """Base class of the per-checkpoint analyses (see the module docstring)."""

    #: settings that change nothing in a part (where it runs, or only the assembly)
    part_ignore: ClassVar[tuple[str, ...]] = ("device",)
    #: whether ``compute`` reads the task set
    needs_tasks: ClassVar[bool] = True
    #: raise when ``compute`` returns other numbers, so that parts of older code are not reused
    part_version: ClassVar[int] = 1

    # -- what subclasses provide ------------------------------------------------------------
    def prepare(self, ctx: Context, cfg: Any) -> Any:
        """Work shared by every checkpoint (inputs, probe data); checked before any compute."""
        return None

    def select_steps(self, ctx: Context, cfg: Any, model: str, steps: list[int]) -> list[int]:
        """The steps of ``model`` to analyse, from the ``steps`` on offer."""
        return steps

    def inputs(self, model: str, step: int, steps: list[int]) -> list[int]:
        """The checkpoints (of ``model``) whose weights the part of ``step`` depends on."""
        return [step]

    @abstractmethod
    def compute(self, ctx: Context, cfg: Any, state: Any, ckpt: Checkpoint, device, steps: list[int]) -> dict[str, np.ndarray]:
        """One checkpoint's numbers. ``steps``: the steps of this model being analysed."""

    @abstractmethod
    def assemble(self, ctx: Context, cfg: Any, state: Any, parts: Parts):
        """Every part -> the analysis's xarray Dataset (models and steps in series order)."""

    def finish(self, ctx: Context, cfg: Any, state: Any, ds):
        """The assembled dataset with every seed (``seed`` after ``model``) -> what is written;
        where a number needs to know the training seed."""
        return ds

    # -- the driver --------------------------------------------------------------------------
    def part_settings(self, cfg: Any) -> dict:
        settings = {k: v for k, v in asdict(cfg).items() if k not in self.part_ignore}
        return settings if self.part_version == 1 else {**settings, "_part_version": self.part_version}

    def parts_dir(self, ctx: Context, cfg: Any) -> Path:
        return Path(ctx.folder) / "analyses" / f"{self.name}.parts" / digest(self.part_settings(cfg))

    def part_path(self, ctx: Context, cfg: Any, model: str, step: int, steps: list[int], seed: int = 0) -> Path:
        series = ctx.series
        key = digest([[s, series.fingerprint(model, s, seed)] for s in self.inputs(model, step, steps)])
        return inside(ctx.folder, self.parts_dir(ctx, cfg) / model / f"seed_{seed}" / f"step_{step}-{key}.npz")

    def inputs_key(self, ctx: Context, cfg: Any, models: list[str] | None = None, steps: list[int] | None = None,
                   plan: dict | None = None) -> str:
        """What the dataset is a function of: the parts it is assembled from (their paths hash the part
        settings and the weights), every other setting, and the sha256 of the datasets it reads."""
        from mechrare.atomic import sha256_file

        plan = self.plan(ctx, cfg, models, steps) if plan is None else plan
        paths = sorted(str(self.part_path(ctx, cfg, m, s, chosen, seed).relative_to(ctx.folder))
                       for (m, seed), chosen in plan.items() for s in chosen)
        own = ctx.analysis_path(self.name)
        reads = {}
        for name in (*self.after, "metrics"):
            path = ctx.dataset_path(name)
            if path != own and path.is_file():
                reads[name] = sha256_file(path)
        settings = {k: v for k, v in asdict(cfg).items() if k != "device"}
        return digest([self.part_version, paths, settings, reads])

    def current(self, ctx: Context, cfg: Any, models: list[str] | None = None, steps: list[int] | None = None):
        """The written dataset when its ``inputs_key`` is the one these inputs give; a damaged one is None
        (recomputed, and the new file replaces it)."""
        path = ctx.analysis_path(self.name)
        if not path.is_file():
            return None
        try:
            ds = open_dataset(path)
        except RunFolderError:
            return None
        return ds if ds.attrs.get("inputs_key") == self.inputs_key(ctx, cfg, models, steps) else None

    def plan(self, ctx: Context, cfg: Any, models: list[str] | None, steps: list[int] | None) -> dict[Series, list[int]]:
        """(model, seed) -> the steps to analyse."""
        models = select_models(ctx, models)
        wanted = None if steps is None else set(int(s) for s in steps)
        plan = {}
        for m in models:
            for seed in ctx.series.seeds(m):
                if not ctx.series.finished(m, seed):
                    continue
                offered = [s for s in ctx.series.steps(m, seed) if wanted is None or s in wanted]
                chosen = self.select_steps(ctx, cfg, m, offered)
                if chosen:
                    plan[(m, seed)] = chosen
        if not plan:
            which = f"steps {sorted(wanted)}" if wanted is not None else "any checkpoint"
            left = unfinished(ctx.series, models)
            also = f" (not finished, so not analysed: {', '.join(left)}; finish with `mechrare train`)" if left else ""
            raise ConfigError(f"{self.name}: nothing to analyse: no {'finished ' if left else ''}model has {which}{also}; "
                              "see `mechrare ls` for the steps on disk")
        return plan

    def run(self, ctx: Context, cfg: Any, *, models: list[str] | None = None, steps: list[int] | None = None,
            progress: bool = True, jobs: int = 1):
        """Compute the missing parts (``jobs`` worker processes on CPU; 0 = one per core), then assemble and write."""
        from tqdm.auto import tqdm

        if self.needs_tasks:
            ctx.require_tasks(self.name)
        device = resolve_device(cfg.device, f"{self.name}.device")
        plan = self.plan(ctx, cfg, models, steps)
        key = self.inputs_key(ctx, cfg, plan=plan)
        state = self.prepare(ctx, cfg)
        paths = {
            (m, seed, s): self.part_path(ctx, cfg, m, s, chosen, seed) for (m, seed), chosen in plan.items() for s in chosen
        }
        loaded, damaged = check_parts(paths)
        for line in damaged:
            log.warning("%s: recomputing %s", self.name, line.split(";")[0])
        todo = [key for key in paths if key not in loaded]
        job = current_job()
        if job.active:  # under torchrun: every process its share of the checkpoints, one device each
            todo, device = todo[job.rank::job.world], process_device(job, device)
        workers = 1 if job.active else resolve_jobs(jobs, device.type, len(todo))
        with tqdm(total=len(todo), desc=self.name, unit="ckpt", disable=not progress) as bar:
            if workers == 1:
                for m, seed, s in todo:
                    arrays = self.compute(ctx, cfg, state, ctx.series.checkpoint(m, s, seed), device, plan[(m, seed)])
                    write_part(paths[(m, seed, s)], arrays, s)
                    bar.update()
            else:
                shared = {"analysis": self, "ctx": ctx, "cfg": cfg, "state": state, "device": device}
                items = [(key, plan[key[:2]], paths[key]) for key in todo]
                for _ in run_jobs(_compute_part, items, workers, initializer=set_worker_state, initargs=(shared,)):
                    bar.update()
        job.barrier()  # every part written
        if not job.main:  # rank 0 assembles and writes; the others read what it wrote
            job.barrier()
            return open_dataset(ctx.analysis_path(self.name))
        seeds = sorted({seed for _, seed in plan})
        per_seed = []
        for seed in seeds:
            parts: Parts = {
                m: {s: loaded[(m, k, s)] if (m, k, s) in loaded else load_part(paths[(m, k, s)]) for s in chosen}
                for (m, k), chosen in plan.items() if k == seed
            }
            per_seed.append(self.assemble(ctx, cfg, state, parts))
        ds = self.finish(ctx, cfg, state, stack_seeds(per_seed, seeds))
        ds.attrs = {**provenance(self.name, asdict(cfg)), **ds.attrs, "inputs_key": key}
        write_dataset(ds, ctx.analysis_path(self.name), root=ctx.folder)
        job.barrier()
        return ds


def stack_seeds(datasets: list, seeds: list[int]):
    """One dataset per training seed -> one with a ``seed`` dimension after ``model``
    (models or steps one seed lacks are NaN there)."""
    import xarray as xr

    ds = xr.concat(datasets, dim="seed", data_vars="all", coords="minimal", compat="override", join="outer",
                   combine_attrs="override")
    ds = ds.assign_coords(seed=np.array(seeds, dtype=np.int64))
    lead = [d for d in ("model", "seed") if d in ds.dims]
    return ds.transpose(*lead, ...)
