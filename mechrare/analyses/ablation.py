"""Are claimed neurons causal for their task? analyses/ablation.nc.

For a few checkpoints of each model (``checkpoints``, evenly spaced over the
series, the last always among them) and every task that owns at least
``min_owned`` MLP neurons there (neurons.nc's ``owner``, the paper's task
neurons; ``measure = "attribution"`` takes ``owner_attribution``), the task's
mean answer loss (cross-entropy over the answer tokens, on ``examples`` of its
*training* instances, the distribution ownership is measured on) is read with

* nothing zeroed (``loss_base``),
* the task's owned neurons zeroed at ``blocks.{l}.mlp.hook_post``
  (``rise_owned`` = loss - loss_base), and
* ``draws`` random neuron sets zeroed instead, each with as many neurons in
  every block as the task owns there, drawn from the block's neurons the task
  does not own (``rise_random[draw]``).

``excess`` = rise_owned - mean over draws of rise_random: how much more the
claimed neurons matter to their task than as many neurons picked at random.
``rank_p`` = (1 + draws with rise_random >= rise_owned) / (draws + 1), the
one-sided permutation p-value of that checkpoint's owned set among its draws.
Report finding (f) decides on ``excess`` over seeds. A task with fewer
owned neurons than ``min_owned`` at a checkpoint is NaN there (``n_owned`` says
how many it had).

The random draws are a pure function of (``seed``, model, training seed, step,
task), so a rerun reproduces them. A part depends on the checkpoint's weights
and on the owned set it ablates: after neurons.nc changes, the parts whose
owned set changed are recomputed.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mechrare.analyses.common import components
from mechrare.analyses.driver import PerCheckpoint, digest
from mechrare.analyses.neurons import task_inputs
from mechrare.analyses.registry import as_context, register_analysis
from mechrare.checkpoints.datasets import describe, series_coords
from mechrare.errors import ConfigError
from mechrare.names import inside

OWNER_VARS = {"task_neurons": "owner", "attribution": "owner_attribution"}

VARIABLES = {
    "loss_base": ("task's mean answer cross-entropy on its training instances, nothing zeroed", "nat"),
    "rise_owned": ("rise of the task's answer loss when the MLP neurons it owns are zeroed", "nat"),
    "rise_random": ("rise of the task's answer loss when as many random neurons per block (not owned by the task) "
                    "are zeroed, per draw", "nat"),
    "excess": ("rise_owned minus the mean over draws of rise_random", "nat"),
    "rank_p": ("one-sided permutation p-value of rise_owned among the draws: (1 + draws >= it) / (draws + 1)", "1"),
    "n_owned": ("MLP neurons the task owns at the checkpoint (all blocks)", "1"),
}


@dataclass
class AblationConfig:
    checkpoints: int = 3  # per model, evenly spaced over the analysed steps, the last always included (0: every one)
    draws: int = 20  # random neuron sets per (task, checkpoint)
    min_owned: int = 1  # fewer owned neurons than this: not ablated (NaN)
    measure: str = "task_neurons"  # "task_neurons" (neurons.nc's owner, the paper's) or "attribution" (owner_attribution)
    examples: int = 256  # training instances per task the loss is read on
    batch_size: int = 256
    seed: int = 0  # of the random draws
    device: str = "auto"

    def validate(self, path: str) -> None:
        path = path or "ablation"
        if self.measure not in OWNER_VARS:
            raise ConfigError(f"{path}.measure: must be one of {', '.join(OWNER_VARS)}, got {self.measure!r}")
        for key, low in (("checkpoints", 0), ("draws", 2), ("min_owned", 1), ("examples", 1), ("batch_size", 1)):
            if getattr(self, key) < low:
                raise ConfigError(f"{path}.{key}: must be >= {low}, got {getattr(self, key)}")


def evenly_spaced(steps: list[int], k: int) -> list[int]:
    """``k`` of ``steps`` evenly spaced over the series, the last always included and the first (an
    untrained model owns nothing) only when no more than ``k`` are on offer; all of them for k = 0."""
    if k == 0 or len(steps) <= k:
        return list(steps)
    idx = np.round(np.linspace(0, len(steps) - 1, k + 1)[1:]).astype(int)
    return [steps[i] for i in sorted(set(idx))]


@lru_cache(maxsize=4)
def _owners(path: str, mtime_ns: int, var: str):
    """neurons.nc's ``var`` as {(model, seed, step): [block, neuron] int array} (cached per file version)."""
    from mechrare.checkpoints.datasets import open_dataset

    ds = open_dataset(Path(path))
    if var not in ds:
        why = ds.attrs.get("task_neurons", "")
        raise ConfigError(f"ablation: {path} has no {var!r}" + (f" ({why})" if why else "")
                          + "; rerun `mechrare analyze RUN --only interference,neurons` or set ablation.measure = \"attribution\"")
    da = ds[var]
    if "seed" not in da.dims:
        da = da.expand_dims(seed=[0])
    da = da.transpose("model", "seed", "step", "block", "neuron")
    values = da.values
    out = {}
    for mi, m in enumerate(str(x) for x in da.model.values):
        for ki, seed in enumerate(int(x) for x in da.seed.values):
            for si, step in enumerate(int(x) for x in da.step.values):
                out[(m, seed, step)] = values[mi, ki, si]
    return out


def owners(ctx, cfg: AblationConfig) -> dict:
    path = ctx.analysis_path("neurons")
    if not path.is_file():
        raise ConfigError("ablation: needs analyses/neurons.nc (which neurons each task owns); run "
                          f"`mechrare analyze {ctx.folder} --only interference,neurons` first")
    return _owners(str(path), path.stat().st_mtime_ns, OWNER_VARS[cfg.measure])


def zeroed_loss(bridge, ids: np.ndarray, answer: slice, neurons: dict[int, np.ndarray], batch_size: int = 256) -> float:
    """Mean answer cross-entropy on ``ids`` with the {block: neuron indices} MLP neurons zeroed."""
    import torch
    import torch.nn.functional as F

    device = next(bridge.parameters()).device

    def zero(idx):
        def fn(tensor, hook):
            tensor = tensor.clone()
            tensor[..., idx] = 0
            return tensor

        return fn

    hooks = [(f"blocks.{l}.mlp.hook_post", zero(torch.as_tensor(np.asarray(ix), dtype=torch.long, device=device)))
             for l, ix in neurons.items() if len(ix)]
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            x = torch.as_tensor(ids[start : start + batch_size], device=device)
            logits = bridge.run_with_hooks(x, fwd_hooks=hooks, return_type="logits")[:, answer].float()
            target = x[:, answer.start + 1 : answer.stop + 1]
            total += F.cross_entropy(logits.transpose(1, 2), target, reduction="sum").item()
            count += target.numel()
    return total / count


def matched_draw(owned: dict[int, np.ndarray], owner_block: np.ndarray, task: int, width: int, rng) -> dict[int, np.ndarray]:
    """As many neurons in each block as ``owned`` holds there, drawn without replacement from the block's
    first ``width`` neurons that ``task`` does not own."""
    out = {}
    for l, ix in owned.items():
        pool = np.flatnonzero(owner_block[l, :width] != task)
        out[l] = rng.choice(pool, size=min(len(ix), len(pool)), replace=False)
    return out


def ablate_task(bridge, ids, answer, owner: np.ndarray, task: int, draws: int, rng, batch_size: int = 256) -> dict:
    """One task at one checkpoint: base loss, rise with its owned neurons zeroed, rises of ``draws`` matched draws."""
    width = bridge.cfg.d_mlp
    owner = owner[:, :width]
    owned = {l: np.flatnonzero(owner[l] == task) for l in range(owner.shape[0])}
    owned = {l: ix for l, ix in owned.items() if len(ix)}
    base = zeroed_loss(bridge, ids, answer, {}, batch_size)
    hit = zeroed_loss(bridge, ids, answer, owned, batch_size) - base
    rand = np.array([zeroed_loss(bridge, ids, answer, matched_draw(owned, owner, task, width, rng), batch_size) - base
                     for _ in range(draws)])
    return {"n_owned": sum(len(ix) for ix in owned.values()), "base": base, "owned": hit, "random": rand}


@register_analysis
class Ablation(PerCheckpoint):
    name = "ablation"
    config_class = AblationConfig
    after = ("neurons",)

    def prepare(self, ctx, cfg: AblationConfig):
        owners(ctx, cfg)  # one line now if neurons.nc is missing or lacks the measure
        return [task_inputs(ctx.tasks, t, cfg.examples) for t in ctx.tasks.names]

    def select_steps(self, ctx, cfg: AblationConfig, model: str, steps: list[int]) -> list[int]:
        have = {s for (m, _, s) in owners(ctx, cfg) if m == model}
        return evenly_spaced([s for s in steps if s in have], cfg.checkpoints)

    def part_path(self, ctx, cfg: AblationConfig, model: str, step: int, steps: list[int], seed: int = 0) -> Path:
        """The driver's part path, its key also hashing the owned set the part ablates."""
        path = super().part_path(ctx, cfg, model, step, steps, seed)
        owner = owners(ctx, cfg).get((model, seed, step))
        key = digest([path.stem, None if owner is None else zlib.crc32(np.ascontiguousarray(owner).tobytes())])
        return inside(ctx.folder, path.with_name(f"step_{step}-{key}.npz"))

    def compute(self, ctx, cfg: AblationConfig, inputs, ckpt, device, steps):
        owner = owners(ctx, cfg).get((ckpt.model, ckpt.seed, ckpt.step))
        T = len(inputs)
        out = {"base": np.full(T, np.nan), "owned": np.full(T, np.nan), "random": np.full((T, cfg.draws), np.nan),
               "n_owned": np.zeros(T, dtype=np.int64)}
        if owner is None:
            return out
        counts = [int((owner == t).sum()) for t in range(T)]
        out["n_owned"][:] = counts
        if max(counts) < cfg.min_owned:
            return out
        bridge = ctx.series.load_bridge(ckpt.model, ckpt.step, seed=ckpt.seed, device=str(device))
        for t, (ids, answer) in enumerate(inputs):
            if counts[t] < cfg.min_owned:
                continue
            rng = np.random.default_rng([cfg.seed, zlib.crc32(ckpt.model.encode()), ckpt.seed, ckpt.step, t])
            r = ablate_task(bridge, ids, answer, owner, t, cfg.draws, rng, cfg.batch_size)
            out["base"][t], out["owned"][t], out["random"][t] = r["base"], r["owned"], r["random"]
        return out

    def assemble(self, ctx, cfg: AblationConfig, inputs, parts):
        import xarray as xr

        names, shares = components(ctx.tasks)
        tasks, share = names[:-1], shares[:-1]  # no background: it owns no answer to lose
        models = list(parts)
        steps = sorted({s for per in parts.values() for s in per})
        M, S, T, D = len(models), len(steps), len(tasks), cfg.draws
        arrays = {"loss_base": np.full((M, S, T), np.nan), "rise_owned": np.full((M, S, T), np.nan),
                  "rise_random": np.full((M, S, T, D), np.nan), "n_owned": np.full((M, S, T), np.nan)}
        for mi, m in enumerate(models):
            for s, p in parts[m].items():
                si = steps.index(s)
                arrays["loss_base"][mi, si] = p["base"]
                arrays["rise_owned"][mi, si] = p["owned"]
                arrays["rise_random"][mi, si] = p["random"]
                arrays["n_owned"][mi, si] = p["n_owned"]
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # tasks not ablated are all-NaN
            random_mean = np.nanmean(arrays["rise_random"], axis=-1)
            excess = arrays["rise_owned"] - random_mean
            beaten = (arrays["rise_random"] >= arrays["rise_owned"][..., None]).sum(-1)
            rank_p = np.where(np.isfinite(arrays["rise_owned"]), (1 + beaten) / (D + 1), np.nan)
        d3 = ("model", "step", "task")
        ds = xr.Dataset(
            {**{k: (d3, v) for k, v in arrays.items() if k != "rise_random"},
             "rise_random": (d3 + ("draw",), arrays["rise_random"]), "excess": (d3, excess), "rank_p": (d3, rank_p)},
            coords={**series_coords(ctx.series, models, steps), "task": tasks, "share": ("task", share), "draw": np.arange(D)},
        )
        ds.attrs["measure"] = cfg.measure
        return describe(ds, VARIABLES)


def run_ablation(run, cfg: AblationConfig | None = None, models: list[str] | None = None, steps: list[int] | None = None,
                 progress: bool = True):
    """The ownership ablation for ``run`` (a path, Run or Context), resuming; writes analyses/ablation.nc."""
    return Ablation().run(as_context(run), cfg or AblationConfig(), models=models, steps=steps, progress=progress)
