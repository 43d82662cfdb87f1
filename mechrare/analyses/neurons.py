"""Which task claims which MLP neuron, and when: analyses/neurons.nc, by two measures.

**The paper's task neurons** (``owner``, ``n_claimed``, ``claim_step``,
``turnover``, ``rare_to_common``): a task's task neurons are its top-K MLP
neurons by the norm of its held-out loss gradient on the neuron's parameters,
the definition the interference protocol uses
(:mod:`mechrare.analyses.task_neurons`; the gradients are interference.nc's
``neuron_grad``, so run interference too: ``mechrare analyze`` orders it
first). ``blocks = "protocol"`` (default) takes interference's
``neuron_layer`` (the first block, as the paper); ``"all"`` takes the top-K of
every block. A neuron is claimed by a task when it is among the task's top-K,
the task is learned (below), and the task's share of its gradient energy on the
neuron exceeds the *null floor* at the neuron's rank (``task_neuron_floor``):
``grad_floor`` x the r-th largest share of the block at initialisation (step 0),
the largest over every training seed of the model. A neuron claimed by several tasks goes to the
one with the largest share. Without interference.nc (or where it lacks a seed
or step) these variables are absent and ``attrs["task_neurons"]`` says why.

**Attribution patching** (the ``*_attribution`` variables, a second measure
that differs in what it asks: what zeroing the neuron would do to the task's
answer, rather than where the task's loss gradient falls). For each MLP neuron n
(``blocks.{l}.mlp.hook_post``, read and differentiated through a transformer_lens
``TransformerBridge``) and each task, on ``examples`` (256) of the task's
*training* instances (for pooled tasks the train half):

    allocation[n, task] = max(0, mean over instances of sum over positions of a_n * dm/da_n)

with the default ``measure = "logit_diff"``: m is the answer's logit difference
(logit of the correct answer minus the mean logit of the other answers the task
can have), summed over the answer tokens. ``background`` is attributed on
held-out background documents (every next-token prediction, against the whole
vocabulary). Other measures: ``loss_increase`` (the loss's first-order rise,
clipped at 0) and ``margin`` (|a dm/da| with m = target logit minus the mean
logit). Per (block, task) the allocation is normalised into shares; a neuron's
``owner_attribution`` is the task with the largest share among those whose
allocation exceeds ``floor`` x the largest allocation any neuron of the block
had for that task at step 0, if that share is >= ``min_share`` x uniform and >=
``selectivity`` x the next task's share; otherwise -1.

**Only a learned task owns neurons** under both measures (``learned_gate``,
default on): before the step at which its held-out accuracy is above its chance
level by more than binomial noise allows (:mod:`mechrare.analyses.learned`, the
test retention uses; ``owns_from``), a task takes no part in ownership; a task
the test never finds learned owns nothing (``owns_from`` = inf). Tasks the test
cannot take (no metrics.nc, or no chance level) and ``background`` are not gated
(``owns_from`` = 0).

``n_claimed`` counts owned neurons per (block, task); ``claim_step(model, task)``
is the first step at which the task owns >= ``claim_neurons`` neurons (all
blocks) and keeps that many for the next ``claim_stable`` checkpoints.
``turnover(step, from_task, to_task)`` counts neurons whose owner changed since
the previous checkpoint, and ``rare_to_common`` those that moved from one task to
another task with a larger mixture share (``background`` is not a task there).
The ``ablation`` analysis (:mod:`mechrare.analyses.ablation`) checks that owned neurons matter:
zeroing them raises the owner's loss more than zeroing as many random neurons. The neuron dimensions are ``block`` and ``neuron``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechrare.activations import mlp_hooks
from mechrare.analyses.common import components
from mechrare.analyses.driver import PerCheckpoint
from mechrare.analyses.ownership import attribution_owners, claim_step, gradient_owners, interference_energy, model_extent, owner_series, ownership
from mechrare.analyses.registry import as_context, register_analysis
from mechrare.checkpoints.datasets import describe, series_coords
from mechrare.data.taskset import TaskSet
from mechrare.errors import ConfigError


@dataclass
class NeuronsConfig:
    min_share: float = 2.0
    selectivity: float = 2.0
    claim_neurons: int = 3
    claim_stable: int = 2
    measure: str = "logit_diff"
    floor: float = 1.0  # x the largest allocation any neuron has for the task at initialisation
    blocks: str = "protocol"  # the paper's task neurons in: "protocol" (interference's neuron_layer, as the paper) or "all" blocks
    grad_floor: float = 1.0  # x the r-th largest gradient share at initialisation (largest over the seeds) for rank r (0: no floor)
    learned_gate: bool = True  # a task owns neurons only once its accuracy is learned (binomial test)
    alpha: float = 0.05  # false-positive rate of that test
    examples: int = 256  # training instances per task (background: held-out documents) the attribution averages over
    batch_size: int = 256
    device: str = "auto"

    def validate(self, path: str) -> None:
        if self.measure not in MEASURES:
            raise ConfigError(f"{path}.measure: must be one of {', '.join(MEASURES)}, got {self.measure!r}")
        if self.min_share <= 0 or self.selectivity < 1:
            raise ConfigError(f"{path}: min_share must be > 0 and selectivity >= 1, got {self.min_share}, {self.selectivity}")
        for key in ("claim_neurons", "batch_size", "examples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{path}.{key}: must be >= 1, got {getattr(self, key)}")
        if self.claim_stable < 0:
            raise ConfigError(f"{path}.claim_stable: must be >= 0, got {self.claim_stable}")
        if self.blocks not in ("protocol", "all"):
            raise ConfigError(f"{path}.blocks: must be 'protocol' or 'all', got {self.blocks!r}")
        if self.grad_floor < 0:
            raise ConfigError(f"{path}.grad_floor: must be >= 0, got {self.grad_floor}")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"{path}.alpha: must be in (0, 1), got {self.alpha}")


# -- attribution ---------------------------------------------------------------------------
def _margin(logits, targets):
    """Logit of the target minus the mean logit, per position."""
    return logits.gather(-1, targets[..., None])[..., 0] - logits.mean(-1)


def _logit_diff_fn(candidates):
    """Logit of the target minus the mean logit of the other candidate answers."""

    def fn(logits, targets):
        import torch

        cand = torch.as_tensor(candidates, device=logits.device)
        other = logits[..., cand]  # [B, P, C]
        is_target = cand[None, None, :] == targets[..., None]
        mean_other = (other * ~is_target).sum(-1) / (~is_target).sum(-1).clamp_min(1)
        return logits.gather(-1, targets[..., None])[..., 0] - mean_other

    return fn


def _token_ce(logits, targets):
    import torch.nn.functional as F

    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")


MEASURES = {
    # name: (per-position metric to differentiate, per-row reduction of a * grad, final map)
    "loss_increase": (_token_ce, lambda a, g: -(a * g).sum(1), lambda m: np.clip(m, 0, None)),
    "margin": (_margin, lambda a, g: (a * g).sum(1).abs(), lambda m: m),
    "logit_diff": (None, lambda a, g: (a * g).sum(1), lambda m: np.clip(m, 0, None)),
}


def task_inputs(tasks: TaskSet, task: str | None, n: int = 256, seed: int = 0):
    """(ids [n, T] of training instances, answer slice), or background documents and None.

    Ownership is about what training made of a neuron, so it is measured on the
    task's *training* distribution (for pooled tasks, the train half)."""
    if task is None:
        return tasks.background(n), None
    inst = tasks.train_instances(task, n, seed)
    return inst.input_ids, inst.answer_slice


def neuron_attribution(bridge, ids: np.ndarray, answer: slice | None, batch_size: int = 256, measure: str = "logit_diff") -> np.ndarray:
    """[n_layers, n_neurons] attribution of every MLP neuron (see module docstring)."""
    import torch

    metric_fn, per_row, final = MEASURES[measure]
    if metric_fn is None:  # logit_diff: against the answers this set can have
        sl0 = answer if answer is not None else slice(0, ids.shape[1] - 1)
        metric_fn = _logit_diff_fn(np.unique(ids[:, sl0.start + 1 : sl0.stop + 1]))
    hooks = mlp_hooks(bridge.cfg.n_layers)
    device = next(bridge.parameters()).device
    total = None
    for start in range(0, len(ids), batch_size):
        x = torch.as_tensor(ids[start : start + batch_size], device=device)
        acts: dict[str, torch.Tensor] = {}

        def keep(name):
            def fn(tensor, hook):
                acts[name] = tensor
                return tensor

            return fn

        logits = bridge.run_with_hooks(x, fwd_hooks=[(h, keep(h)) for h in hooks], return_type="logits").float()
        sl = answer if answer is not None else slice(0, x.shape[1] - 1)
        metric = metric_fn(logits[:, sl], x[:, sl.start + 1 : sl.stop + 1]).sum()
        grads = torch.autograd.grad(metric, [acts[h] for h in hooks])
        rows = torch.stack([per_row(acts[h], g) for h, g in zip(hooks, grads)], 1)  # [B, L, n]
        part = rows.sum(0).detach().double().cpu()
        total = part if total is None else total + part
    return final((total / len(ids)).numpy())


# -- the analysis --------------------------------------------------------------------------------
_WHO = {
    "": "the paper's task neurons: the neuron is in the task's top-K by held-out gradient, the task is learned, and its "
        "gradient share on the neuron is above the null floor",
    "_attribution": "attribution patching: the task's share of the neuron's allocation passes floor, min_share and selectivity",
}
VARIABLES = {
    "allocation": (
        "attribution-patching estimate of how much zeroing the neuron lowers the task's answer logit difference "
        "(mean over instances of sum over answer positions of a * dm/da; the loss rise or |margin change| under "
        "other measures), clipped at 0", "1"),
    "owns_from": ("step from which the task may own neurons: its tested learned step; inf: never learned; 0: not gated", "1"),
    "task_neuron_floor": ("null floor of the paper's ownership at each rank: the rank-th largest share of the task's "
                          "gradient energy in the block at initialisation, the largest over the seeds (so the same for every seed)", "1"),
}
for _suffix, _how in _WHO.items():
    VARIABLES.update({
        "owner" + _suffix: (f"index into task of the task owning the neuron ({_how})", "1"),
        "n_claimed" + _suffix: (f"neurons the task owns in the block ({_how})", "1"),
        "claim_step" + _suffix: ("first step with >= claim_neurons owned neurons (all blocks), held for claim_stable more "
                                 f"checkpoints ({_how})", "1"),
        "turnover" + _suffix: (f"neurons whose owner moved from task to other_task since the previous checkpoint ({_how})", "1"),
        "rare_to_common" + _suffix: ("neurons whose owner moved from a task to a task with a larger share of training "
                                     f"sequences, background excluded ({_how})", "1"),
    })


@register_analysis
class Neurons(PerCheckpoint):
    name = "neurons"
    config_class = NeuronsConfig
    #: ownership settings only change the assembly: they re-derive from the same parts
    part_ignore = ("device", "min_share", "selectivity", "claim_neurons", "claim_stable", "floor", "learned_gate", "alpha",
                   "blocks", "grad_floor")
    #: the paper's task neurons come from interference.nc's neuron_grad
    after = ("evaluation", "interference")

    def prepare(self, ctx, cfg: NeuronsConfig) -> list:
        tasks = ctx.tasks
        return [task_inputs(tasks, t, cfg.examples) for t in tasks.names] + [task_inputs(tasks, None, cfg.examples)]

    def compute(self, ctx, cfg: NeuronsConfig, inputs, ckpt, device, steps):
        bridge = ctx.series.load_bridge(ckpt.model, ckpt.step, seed=ckpt.seed, device=str(device))
        cols = []
        for ids, answer in inputs:
            if ids is None:  # a task set without background text
                cols.append(None)
                continue
            cols.append(neuron_attribution(bridge, ids, answer, cfg.batch_size, cfg.measure))
        shape = next(c.shape for c in cols if c is not None)
        return {"allocation": np.stack([np.full(shape, np.nan) if c is None else c for c in cols], -1)}

    def assemble(self, ctx, cfg: NeuronsConfig, inputs, parts):
        """One seed's allocations; ownership is derived in :meth:`finish`, which knows the seed."""
        import xarray as xr

        tasks, share = components(ctx.tasks)
        models = list(parts)
        steps = sorted({s for per in parts.values() for s in per})
        L = max(p["allocation"].shape[0] for per in parts.values() for p in per.values())
        N = max(p["allocation"].shape[1] for per in parts.values() for p in per.values())
        alloc = np.full((len(models), len(steps), L, N, len(tasks)), np.nan)
        for mi, m in enumerate(models):
            for s, p in parts[m].items():
                a = p["allocation"]
                alloc[mi, steps.index(s), : a.shape[0], : a.shape[1]] = a
        return xr.Dataset(
            {"allocation": (("model", "step", "block", "neuron", "task"), alloc)},
            coords={**series_coords(ctx.series, models, steps), "block": np.arange(L), "neuron": np.arange(N),
                    "task": tasks, "other_task": tasks, "share": ("task", share)},
        )

    def finish(self, ctx, cfg: NeuronsConfig, inputs, ds):
        from mechrare.analyses.learned import owns_from
        from mechrare.checkpoints.datasets import open_dataset

        tasks = [str(t) for t in ds.task.values]
        steps = [int(s) for s in ds.step.values]
        seeds = [int(x) for x in ds.seed.values]
        M, K, S, L, N, T = ds.allocation.shape
        path = ctx.analysis_path("interference")
        interference = open_dataset(path) if path.is_file() else None
        if interference is not None and "seed" not in interference.dims:
            interference = interference.expand_dims(seed=[0])
        gate = np.zeros((M, K, T))
        measures = {"": np.full((M, K, S, L, N), -1, dtype=np.int16), "_attribution": np.full((M, K, S, L, N), -1, dtype=np.int16)}
        floors = np.full((M, L, N, T), np.nan)
        why: list[str] = []
        for mi, m in enumerate(str(x) for x in ds.model.values):
            for ki, seed in enumerate(seeds):
                if cfg.learned_gate:
                    starts = owns_from(ctx, m, seed, tasks[:-1], cfg.alpha)
                    gate[mi, ki, :-1] = [starts[t] for t in tasks[:-1]]
                measures["_attribution"][mi, ki] = attribution_owners(
                    ds.allocation.values[mi, ki], steps, gate[mi, ki], cfg.floor, cfg.min_share, cfg.selectivity)
            got = interference_energy(interference, m, seeds, steps)
            if isinstance(got, str):
                why.append(got)
                continue
            energy, k, layer = got
            blocks = None if cfg.blocks == "all" else np.arange(energy.shape[2]) == layer
            owner, fl = gradient_owners(energy, steps, gate[mi], k, blocks, cfg.grad_floor)
            lm, nm = min(L, owner.shape[2]), min(N, owner.shape[3])
            measures[""][mi, :, :, :lm, :nm] = owner[:, :, :lm, :nm]
            if fl is not None:
                floors[mi, : fl.shape[0], : fl.shape[1]] = fl[:L, :N]
        out = {}
        for suffix, owner in measures.items():
            if suffix == "" and why:
                continue
            derived = {key: [] for key in ("n_claimed", "turnover", "rare_to_common", "claim_step")}
            for mi, m in enumerate(str(x) for x in ds.model.values):
                mshare = np.array(components(ctx.tasks, m)[1])  # the shares this model was trained on
                have = model_extent(ds.allocation.values[mi, 0])[0]
                per = [owner_series(owner[mi, ki], steps, have, mshare, T, cfg.claim_neurons, cfg.claim_stable) for ki in range(K)]
                for key in derived:
                    derived[key].append(np.stack([p[key] for p in per]))
            d3 = ("model", "seed", "step")
            out.update({
                "owner" + suffix: (d3 + ("block", "neuron"), owner),
                "n_claimed" + suffix: (d3 + ("block", "task"), np.stack(derived["n_claimed"])),
                "claim_step" + suffix: (("model", "seed", "task"), np.stack(derived["claim_step"])),
                "turnover" + suffix: (d3 + ("task", "other_task"), np.stack(derived["turnover"])),
                "rare_to_common" + suffix: (d3, np.stack(derived["rare_to_common"])),
            })
        if not why:
            out["task_neuron_floor"] = (("model", "seed", "block", "rank", "task"), np.repeat(floors[:, None], K, axis=1))
        ds = ds.assign(owns_from=(("model", "seed", "task"), gate), **out)
        ds.attrs["task_neurons"] = ("; ".join(why) + ": the paper's task-neuron ownership was not derived") if why else (
            f"the paper's top-K gradient neurons from interference.nc, blocks={cfg.blocks}, null floor from "
            f"{K} seed(s) at step 0" + ("" if steps and steps[0] == 0 else " (no step 0 analysed: no floor)"))
        describe(ds, VARIABLES)
        for name in ("owner", "owner_attribution"):
            if name in ds:
                ds[name].attrs.update(flag_values=np.int16(-1), flag_meanings="unowned")
        return ds


def run_neurons(run, cfg: NeuronsConfig | None = None, models: list[str] | None = None, steps: list[int] | None = None, progress: bool = True):
    """Attribution for every checkpoint of ``run`` (a path, Run or Context), resuming; writes analyses/neurons.nc."""
    return Neurons().run(as_context(run), cfg or NeuronsConfig(), models=models, steps=steps, progress=progress)
