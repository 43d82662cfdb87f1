"""``mechrare toy``: train the Section 3 model at every width and write a run folder.

The folder has the same contracts as a ladder run, with ``model`` = width
(``w1``, ``w2``, ...) and ``step`` the minibatch step:

- ``metrics.nc``: ``retained_signal`` s_k(U) = Tr(P_U C_k)/Tr(C_k) and the
  population ``loss`` per (model, step, task);
- ``analyses/interference.nc``: per-task population gradients (``grad_norm``,
  ``grad_cosine``), ``loss_change`` (attributed per step, summed per interval,
  see :mod:`mechrare.toy.tracking`), ``loss_change_total``/``_actual``, and the
  paper's protocol on encoder units (``cos_nontask_ref``, ``cos_batch_ref`` on
  each task's top units by gradient norm);
- ``analyses/neurons.nc``: encoder-unit ``allocation`` (u^T C_k u ||P_k v||^2),
  ``owner``, ``n_claimed`` and ``claim_step`` by the rule of the LM analysis;
- ``analyses/retention.nc``: :func:`mechrare.analyses.retention.run_retention`
  on ``retained_signal`` and the unit claims;
- ``analyses/toy.nc``: the theory beside the measurement: per-direction
  ``gain`` (V U^T)_jj over training and its ``learned_step``, the utilities
  pi_k lambda_kj, predicted and measured N_crit, predicted final s_k.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mechrare.toy.config import ToyConfig
from mechrare.toy.train import train_toy


def write_toy_run(cfg: ToyConfig, out: str | Path, name: str = "toy", progress: bool = True):
    """Train, then write manifest, metrics.nc and the analyses (retention last). Returns the RunFolder.

    The toy trains in seconds, so a rerun retrains from scratch into the same
    folder (every file replaced atomically); a folder holding something else is refused."""
    from mechrare.checkpoints.manifest import ModelRecord, TaskRecord, new_manifest
    from mechrare.checkpoints.run import RunFolder, first_difference
    from mechrare.errors import RunFolderError
    from mechrare.toy.datasets import write_datasets

    run = RunFolder(out)
    config = dataclasses.asdict(cfg)
    if run.exists():
        old = run.read_manifest()
        diff = first_difference(old.config, config) if old.kind == "toy" else "kind: not a toy run"
        if diff:
            raise RunFolderError(f"{run.path}: holds another run ({diff}); choose another --out")
    elif run.path.exists() and any(run.path.iterdir()):
        raise RunFolderError(f"{run.path}: exists, is not empty and is not a mechrare run; choose another --out")
    rows, marks = train_toy(cfg, progress)
    run.path.mkdir(parents=True, exist_ok=True)
    pi, names = cfg.frequencies(), cfg.task_names()
    manifest = new_manifest(
        name,
        config,
        kind="toy",
        tokens_per_step=cfg.batch_size,  # samples per step
        checkpoint_steps=marks,
        tasks=[TaskRecord(name=n, share=float(p), complexity=cfg.block) for n, p in zip(names, pi)],
        models={f"w{w}": ModelRecord(n_params=2 * cfg.dim * w, status="done", width=w) for w in cfg.widths},
    )
    run.write_manifest(manifest)
    write_datasets(run, cfg, rows, progress=progress)
    return run
