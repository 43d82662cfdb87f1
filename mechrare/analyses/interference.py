"""Gradient interference over the checkpoint series: analyses/interference.nc.

At every checkpoint, with the model in fp32:

* **Reference gradients** g_k: the gradient of task k's held-out loss (answer
  tokens of its whole eval set, i.e. all of the task's eval instances), and of the
  background's next-token loss on held-out documents (``task = "background"``).
  ``grad_norm`` and ``grad_cosine`` come from their Gram matrix, over all
  parameters, per parameter group (``grad_norm_layer``, ``grad_cosine_layer``:
  embed, layer0 ... , head) and per parameter kind (``grad_norm_kind``,
  ``grad_cosine_kind``: embed, attn, mlp, norm, head, by the architecture's
  component names: :func:`mechrare.models.internals.param_kinds`).
* **Training-batch components** h_k: the training loss of real training batches
  (the steps that follow the checkpoint, ``batches`` of them spread over the
  interval to the next checkpoint) split by the token each loss term predicts:
  task k's instance tokens, or the rest (background). sum_k h_k is the batch
  gradient g.
* **The paper's protocol** (Section 4): task k's *task neurons* are the top-K MLP
  neurons of ``neuron_layer`` by the norm of g_k on the neuron's parameters
  (gate and up rows, down column), K = ``top_k`` or 10% of the neurons (at
  least 4): :mod:`mechrare.analyses.task_neurons`, the one definition that
  neuron ownership shares; ``neuron_grad`` stores the squared norms for every
  block, tasks and background; g_r = g_k. Per batch, g = g_t + g_nt with
  g_t = h_k; ``cos_batch_ref`` = cos(g, g_r) and ``cos_nontask_ref`` =
  cos(g_nt, g_r), restricted to the task neurons' parameters, averaged over the
  batches (``cos_nontask_ref_std``: their spread). Its magnitude, the
  *coupling*, is ``abs_cos_nontask_ref`` = the mean over batches of
  |cos(g_nt, g_r)|: updates that cancel (negative) and that drag (positive)
  both couple the rare task to the rest. The paper's mechanism, that the task's
  updates become weak relative to the rest, is read from the norms on the same
  neurons: ``grad_ratio_ref`` = ||g_r|| / ||g_nt|| (the task's held-out
  gradient against the batch's non-task part) and ``grad_ratio_batch`` =
  ||g_t|| / ||g_nt|| (the task's own share of the training batch against the
  rest; 0 in a batch without the task), each the mean over batches.
  ``neuron_cosine(task, component, other_component)``: the cosine between two
  components' batch gradients (the tasks' h_k and the background's) on
  ``task``'s neurons, averaged over batches: the task x task matrix where the
  paper measures (NaN where a component is absent from every sampled batch).
* **loss_change(task, other_task)** at step s' is the first-order change of
  ``task``'s held-out loss, over the interval from the previous checkpoint s to
  s', caused by ``other_task``'s share of the actual update delta = theta_s' -
  theta_s: g_task(s) . delta_other, where delta_other = w * h_other and w =
  delta * hbar / (hbar^2 + eps^2) coordinate-wise (hbar = sum of the components
  at s, averaged over the interval's sampled batches). This is exact for SGD and,
  to first order, for optimizers whose step is coordinate-wise linear in the
  gradient with a scale shared by all tasks (Adam's preconditioner); it assumes
  the sampled batches stand for the whole interval. Positive = the other task's
  updates raised this task's loss (interference), negative = transfer.
  ``loss_change_se`` is its jackknife standard error over the sampled batches
  (leaving one batch out changes both the component's mean gradient and the
  attribution weights w; a second pass); ``batch_seed`` draws
  other batches (0: evenly spaced over the interval). Findings and retention use
  only values beyond ``t`` standard errors of 0.
  ``loss_change_total`` = g_task . delta (all of the update) and
  ``loss_change_actual`` = the measured change of ``task_loss`` show how far first
  order carries over the interval.

On a series trained elsewhere (:mod:`mechrare.series`) the training batches are not
at hand: the batch quantities use proxy batches of the series' background text with
its tasks injected at the shares SERIES.toml gives (:mod:`mechrare.data.proxy_batches`;
``SERIES_BATCH_SIZE`` rows unless ``batch_size`` is set), and the dataset's
``batches`` attribute says so. The reference-gradient quantities do not use batches.

Intervals run between consecutive *analysed* checkpoints (all of them by
default; ``steps=[...]`` picks coarser ones). Only the reference gradients, the
component sums and one live gradient are held at once; each checkpoint's
numbers are a resume part keyed by its own and the next checkpoint's weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from mechrare.analyses.common import components
from mechrare.analyses.driver import PerCheckpoint
from mechrare.analyses.gradients import (
    ParamGroups,
    attribution_weights,
    component_losses,
    gram_cosines,
    group_dots,
    loss_change_matrix,
    loss_change_se,
    reference_gram,
)
from mechrare.analyses.registry import as_context, register_analysis
from mechrare.analyses.task_neurons import neuron_energy, neuron_rows, top_k_count, top_neurons
from mechrare.checkpoints.datasets import describe, series_coords
from mechrare.data.proxy_batches import PROXY
from mechrare.data.taskset import BatchSource, TaskSet
from mechrare.errors import ConfigError
from mechrare.models.internals import KINDS


#: rows per proxy batch on a series trained elsewhere (where batch_size is 0)
SERIES_BATCH_SIZE = 64


@dataclass
class InterferenceConfig:
    batches: int = 8  # training batches per checkpoint (g_t / g_nt split, update attribution, loss_change_se)
    batch_seed: int = 0  # which batches: 0 = evenly spaced over the interval; k > 0 = drawn at random with seed k
    batch_size: int = 0  # rows per training batch; 0 = the batch size the run was trained with
    top_k: int = 0  # task neurons; 0 = 10% of the layer's MLP neurons (at least 4)
    neuron_layer: int = 0
    eval_batch_size: int = 256
    rel_eps: float = 1e-3
    device: str = "auto"

    def validate(self, path: str) -> None:
        for key in ("batches", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{path}.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("batch_size", "top_k", "neuron_layer", "batch_seed"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{path}.{key}: must be >= 0, got {getattr(self, key)}")
        if not 0 < self.rel_eps < 1:
            raise ConfigError(f"{path}.rel_eps: must be in (0, 1), got {self.rel_eps}")


def _cos(a, b) -> float:
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else np.nan


def _ratio(a, b) -> float:
    den = float(b.norm())
    return float(a.norm()) / den if den > 0 else np.nan


def _cosines(rows) -> np.ndarray:
    """[n, n] cosines between the rows of [n, d] (NaN where a row is zero)."""
    gram = (rows.double() @ rows.double().T).cpu().numpy()
    norm = np.sqrt(np.diag(gram))
    with np.errstate(divide="ignore", invalid="ignore"):
        return gram / np.outer(norm, norm)


# -- one checkpoint ----------------------------------------------------------------------
def batch_steps(step: int, next_step: int | None, n: int, seed: int = 0) -> list[int]:
    """The training steps whose batches stand for the interval after ``step``: evenly spaced
    (``seed`` 0) or ``n`` distinct steps of the interval drawn with ``seed``."""
    if next_step is None or next_step - step <= 1:
        return list(range(step, step + (n if next_step is None else 1)))
    if seed:
        rng = np.random.default_rng([seed, step])
        width = next_step - step
        return sorted(step + int(k) for k in rng.choice(width, size=min(n, width), replace=False))
    return sorted({int(round(x)) for x in np.linspace(step, next_step - 1, n)})


def checkpoint_interference(model, tasks: TaskSet, batches: BatchSource, cfg: InterferenceConfig, batch_size: int, step: int, next_params, next_step):
    """Every per-checkpoint quantity, as numpy arrays (see the module docstring).

    ``batches``: the training batches the model was trained on; ``next_params``: the
    next analysed checkpoint's weights ({name: tensor}) or None for the last one."""
    import torch

    device = next(model.parameters()).device
    groups = ParamGroups.of(model)
    params = groups.params(model)
    n_tasks = len(tasks.names)
    comps = n_tasks + 1
    datas = [tasks.eval_instances(t) for t in tasks.names] + [tasks.background()]
    refs, losses, gram = reference_gram(model, groups, params, datas, cfg.eval_batch_size)  # gram: [T, T, G, K]
    out = {
        "task_loss": losses,
        "gram": gram,
        "kinds": np.array(groups.kinds),
    }
    layer = min(cfg.neuron_layer, groups.internals.n_layers - 1)
    k = top_k_count(groups.internals.d_mlp, cfg.top_k)
    energy = np.stack([neuron_energy(g, groups) for g in refs], -1)  # [L, n, T + 1]
    out["neuron_grad"] = energy
    ref_rows = [neuron_rows(refs[t], groups, layer) for t in range(n_tasks)]
    chosen = [torch.as_tensor(top_neurons(energy[layer, :, t], k), device=device) for t in range(n_tasks)]
    steps = batch_steps(step, next_step, cfg.batches, cfg.batch_seed)
    comp_sum = [[torch.zeros_like(p) for p in params] for _ in range(comps)]
    cos_b = np.full((len(steps), n_tasks), np.nan)
    cos_nt = np.full((len(steps), n_tasks), np.nan)
    ratio_ref = np.full((len(steps), n_tasks), np.nan)
    ratio_batch = np.full((len(steps), n_tasks), np.nan)
    pair_cos = np.full((len(steps), n_tasks, comps, comps), np.nan)
    for b, s in enumerate(steps):
        batch = batches.batch(s, batch_size)
        parts = component_losses(model, batch, n_tasks, device)
        rows = []
        for c in range(comps):
            grads = torch.autograd.grad(parts[c], params, retain_graph=c < comps - 1)
            for acc, g in zip(comp_sum[c], grads):
                acc += g / len(steps)
            rows.append(neuron_rows(grads, groups, layer))
        total = sum(rows)
        for t in range(n_tasks):
            sel = chosen[t]
            g_r, g_t = ref_rows[t][sel], rows[t][sel]
            g_nt = total[sel] - g_t
            cos_b[b, t] = _cos(total[sel], g_r)
            cos_nt[b, t] = _cos(g_nt, g_r)
            ratio_ref[b, t] = _ratio(g_r, g_nt)
            ratio_batch[b, t] = _ratio(g_t, g_nt)
            pair_cos[b, t] = _cosines(torch.stack([r[sel].flatten() for r in rows]))
    with warnings.catch_warnings():  # a component absent from every sampled batch: NaN, said once in the docs
        warnings.simplefilter("ignore", RuntimeWarning)
        out["cos_batch_ref"] = np.nanmean(cos_b, axis=0)
        out["cos_nontask_ref"] = np.nanmean(cos_nt, axis=0)
        out["cos_nontask_ref_std"] = np.nanstd(cos_nt, axis=0)
        out["abs_cos_nontask_ref"] = np.nanmean(np.abs(cos_nt), axis=0)
        out["grad_ratio_ref"] = np.nanmean(ratio_ref, axis=0)
        out["grad_ratio_batch"] = np.nanmean(ratio_batch, axis=0)
        out["neuron_cosine"] = np.nanmean(pair_cos, axis=0)
    out["top_k"] = np.array(k)
    out["neuron_layer"] = np.array(layer)
    if next_params is not None:
        delta = [next_params[n].to(device) - p.detach() for n, p in zip(groups.names, params)]
        hbar = [sum(parts) for parts in zip(*comp_sum)]
        weights = attribution_weights(delta, hbar, cfg.rel_eps)
        out["next_loss_change"] = loss_change_matrix(refs, comp_sum, weights, groups)
        out["next_loss_change_se"] = loss_change_se(model, batches, batch_size, steps, refs, comp_sum, delta, cfg.rel_eps, groups, params)
        out["next_loss_change_total"] = np.array([group_dots(g, delta, groups).sum() for g in refs])
    return out, groups.groups


def gradient_gram(model, data: dict, batch_size: int = 256):
    """Held-out loss gradients of ``data`` ({name: Instances (answer loss) or [rows, T] token
    ids (next-token loss)}) at ``model``'s weights, as a Dataset of their norms and cosines,
    over all parameters and per parameter group."""
    import xarray as xr

    groups = ParamGroups.of(model)
    names = list(data)
    _, losses, gram = reference_gram(model, groups, groups.params(model), [data[n] for n in names], batch_size)
    norm, cosine, norm_g, cosine_g = gram_cosines(gram.sum(-1))
    _, _, norm_k, cosine_k = gram_cosines(gram.sum(2))
    ds = xr.Dataset(
        {
            "grad_norm": (("task",), norm),
            "grad_cosine": (("task", "other_task"), cosine),
            "grad_norm_layer": (("param_group", "task"), norm_g),
            "grad_cosine_layer": (("param_group", "task", "other_task"), cosine_g),
            "grad_norm_kind": (("param_kind", "task"), norm_k),
            "grad_cosine_kind": (("param_kind", "task", "other_task"), cosine_k),
            "task_loss": (("task",), losses),
        },
        coords={"task": names, "other_task": names, "param_group": groups.groups, "param_kind": groups.kinds},
    )
    return describe(ds, VARIABLES)


VARIABLES = {
    "grad_norm": ("norm of the gradient of the task's held-out loss (all parameters)", "1"),
    "grad_cosine": ("cosine between the held-out loss gradients of task and other_task (all parameters)", "1"),
    "grad_norm_layer": ("norm of the task's held-out loss gradient on the parameter group", "1"),
    "grad_cosine_layer": ("cosine between held-out loss gradients on the parameter group", "1"),
    "grad_norm_kind": ("norm of the task's held-out loss gradient on the parameters of one kind (embed, attn, mlp, norm, head)", "1"),
    "grad_cosine_kind": ("cosine between held-out loss gradients on the parameters of one kind", "1"),
    "loss_change": ("first-order change of task's held-out loss from other_task's share of the update since the previous analysed checkpoint", "1"),
    "loss_change_se": ("standard error of loss_change over the sampled training batches (NaN: one batch)", "1"),
    "loss_change_total": ("first-order change of the task's held-out loss from the whole update since the previous analysed checkpoint", "1"),
    "loss_change_actual": ("measured change of task_loss since the previous analysed checkpoint", "1"),
    "task_loss": ("held-out loss, fp32 (nats per token)", "1"),
    "cos_batch_ref": ("cos(g, g_r) on the task's top-K MLP neurons: training-batch gradient vs the task's held-out gradient (mean over batches)", "1"),
    "cos_nontask_ref": ("cos(g_nt, g_r) on the task's top-K MLP neurons: non-task part of the training-batch gradient vs the task's held-out gradient (mean over batches)", "1"),
    "cos_nontask_ref_std": ("standard deviation of cos(g_nt, g_r) over the sampled batches", "1"),
    "abs_cos_nontask_ref": ("coupling: mean over batches of |cos(g_nt, g_r)| on the task's top-K MLP neurons", "1"),
    "grad_ratio_ref": ("||g_r|| / ||g_nt|| on the task's top-K MLP neurons: held-out task gradient vs the batch's non-task part (mean over batches)", "1"),
    "grad_ratio_batch": ("||g_t|| / ||g_nt|| on the task's top-K MLP neurons: the task's part of the training batch vs the rest (mean over batches)", "1"),
    "neuron_cosine": ("cosine between the training-batch gradients of component and other_component on the task's top-K MLP neurons (mean over batches)", "1"),
    "top_k": ("task neurons per task and block (the protocol's K)", "1"),
    "neuron_layer": ("the block whose task neurons the protocol's cosines and ratios use", "1"),
    "neuron_grad": ("squared norm of the task's held-out loss gradient on the MLP neuron's parameters (gate row, up row, "
                    "down column): the paper's task-neuron score (NaN: a smaller model's padding)", "1"),
}


@register_analysis
class Interference(PerCheckpoint):
    name = "interference"
    config_class = InterferenceConfig
    part_version = 5  # 2: coupling, gradient-norm ratios and the neuron cosine matrix; 3: loss_change_se; 4: neuron_grad; 5: per kind

    def batch_size(self, ctx, cfg: InterferenceConfig) -> int:
        if cfg.batch_size:
            return cfg.batch_size
        per = ctx.series.tokens_per_step()
        if ctx.kind == "series" or per is None:
            return SERIES_BATCH_SIZE  # a series' real batches are not at hand (proxy batches)
        length = ctx.tasks.require_batches(None, self.name).batch(0, 1).input_ids.shape[1]
        return per // length

    def prepare(self, ctx, cfg: InterferenceConfig) -> int:
        bs = self.batch_size(ctx, cfg)
        for m in ctx.series.models():  # an intervention trained on its own mixture
            ctx.tasks.require_batches(m, self.name).check_batch_size(bs, "interference.batch_size")
        return bs

    def inputs(self, model: str, step: int, steps: list[int]) -> list[int]:
        i = steps.index(step)
        return steps[i : i + 2]  # this checkpoint and the next analysed one: the interval's update

    def compute(self, ctx, cfg: InterferenceConfig, batch_size: int, ckpt, device, steps):
        i = steps.index(ckpt.step)
        next_step = steps[i + 1] if i + 1 < len(steps) else None
        model = ctx.series.load(ckpt.model, ckpt.step, seed=ckpt.seed, device=str(device))
        next_params = None
        if next_step is not None:  # by parameter name as loaded (a file may name them otherwise, e.g. GPT-NeoX's embed_out)
            following = ctx.series.load(ckpt.model, next_step, seed=ckpt.seed)
            next_params = {n: p.detach() for n, p in following.named_parameters()}
        batches = ctx.tasks.require_batches(ckpt.model, self.name, seed=ckpt.seed)
        out, groups = checkpoint_interference(model, ctx.tasks, batches, cfg, batch_size, ckpt.step, next_params, next_step)
        out["groups"] = np.array(groups)
        return out

    def assemble(self, ctx, cfg: InterferenceConfig, batch_size: int, parts):
        import xarray as xr

        tasks, share = components(ctx.tasks)
        models = list(parts)
        steps = sorted({s for per in parts.values() for s in per})
        groups = max((list(p["groups"]) for per in parts.values() for p in per.values()), key=len)
        kinds = [k for k in KINDS + ("other",) if any(k in list(p["kinds"]) for per in parts.values() for p in per.values())]
        M, S, T, G, K = len(models), len(steps), len(tasks), len(groups), len(kinds)
        a = {
            "grad_norm": np.full((M, S, T), np.nan),
            "grad_cosine": np.full((M, S, T, T), np.nan),
            "grad_norm_layer": np.full((M, S, G, T), np.nan),
            "grad_cosine_layer": np.full((M, S, G, T, T), np.nan),
            "grad_norm_kind": np.full((M, S, K, T), np.nan),
            "grad_cosine_kind": np.full((M, S, K, T, T), np.nan),
            "loss_change": np.full((M, S, T, T), np.nan),
            "loss_change_se": np.full((M, S, T, T), np.nan),
            "loss_change_total": np.full((M, S, T), np.nan),
            "loss_change_actual": np.full((M, S, T), np.nan),
            "task_loss": np.full((M, S, T), np.nan),
            "cos_batch_ref": np.full((M, S, T), np.nan),
            "cos_nontask_ref": np.full((M, S, T), np.nan),
            "cos_nontask_ref_std": np.full((M, S, T), np.nan),
            "abs_cos_nontask_ref": np.full((M, S, T), np.nan),
            "grad_ratio_ref": np.full((M, S, T), np.nan),
            "grad_ratio_batch": np.full((M, S, T), np.nan),
            "neuron_cosine": np.full((M, S, T, T, T), np.nan),
            "top_k": np.zeros(M, dtype=np.int64),
            "neuron_layer": np.zeros(M, dtype=np.int64),
        }
        L = max(p["neuron_grad"].shape[0] for per in parts.values() for p in per.values())
        N = max(p["neuron_grad"].shape[1] for per in parts.values() for p in per.values())
        a["neuron_grad"] = np.full((M, S, L, N, T), np.nan)
        nt = len(tasks) - 1
        for mi, m in enumerate(models):
            mine = sorted(parts[m])
            for j, s in enumerate(mine):
                p, si = parts[m][s], steps.index(s)
                gi = [groups.index(g) for g in p["groups"]]
                ki = [kinds.index(k) for k in p["kinds"]]
                norm, cosine, norm_g, cosine_g = gram_cosines(p["gram"].sum(-1))  # its groups: gi
                _, _, norm_k, cosine_k = gram_cosines(p["gram"].sum(2))  # its kinds: ki
                a["grad_norm_layer"][mi, si][gi] = norm_g
                a["grad_cosine_layer"][mi, si][gi] = cosine_g
                a["grad_norm_kind"][mi, si][ki] = norm_k
                a["grad_cosine_kind"][mi, si][ki] = cosine_k
                a["grad_norm"][mi, si] = norm
                a["grad_cosine"][mi, si] = cosine
                a["task_loss"][mi, si] = p["task_loss"]
                for key in ("cos_batch_ref", "cos_nontask_ref", "cos_nontask_ref_std", "abs_cos_nontask_ref",
                            "grad_ratio_ref", "grad_ratio_batch"):
                    a[key][mi, si, :nt] = p[key]
                a["neuron_cosine"][mi, si, :nt] = p["neuron_cosine"]
                a["top_k"][mi] = int(p["top_k"])
                a["neuron_layer"][mi] = int(p["neuron_layer"])
                e = p["neuron_grad"]
                a["neuron_grad"][mi, si, : e.shape[0], : e.shape[1]] = e
                if j > 0:
                    prev = parts[m][mine[j - 1]]
                    a["loss_change"][mi, si] = prev["next_loss_change"]
                    a["loss_change_se"][mi, si] = prev["next_loss_change_se"]
                    a["loss_change_total"][mi, si] = prev["next_loss_change_total"]
                    a["loss_change_actual"][mi, si] = p["task_loss"] - prev["task_loss"]
        dims, dims2 = ("model", "step", "task"), ("model", "step", "task", "other_task")
        lg = ("model", "step", "param_group")
        ds = xr.Dataset(
            {
                "grad_norm": (dims, a["grad_norm"]),
                "grad_cosine": (dims2, a["grad_cosine"]),
                "grad_norm_layer": (lg + ("task",), a["grad_norm_layer"]),
                "grad_cosine_layer": (lg + ("task", "other_task"), a["grad_cosine_layer"]),
                "grad_norm_kind": (("model", "step", "param_kind", "task"), a["grad_norm_kind"]),
                "grad_cosine_kind": (("model", "step", "param_kind", "task", "other_task"), a["grad_cosine_kind"]),
                "loss_change": (dims2, a["loss_change"]),
                "loss_change_se": (dims2, a["loss_change_se"]),
                "loss_change_total": (dims, a["loss_change_total"]),
                "loss_change_actual": (dims, a["loss_change_actual"]),
                "task_loss": (dims, a["task_loss"]),
                "cos_batch_ref": (dims, a["cos_batch_ref"]),
                "cos_nontask_ref": (dims, a["cos_nontask_ref"]),
                "cos_nontask_ref_std": (dims, a["cos_nontask_ref_std"]),
                "abs_cos_nontask_ref": (dims, a["abs_cos_nontask_ref"]),
                "grad_ratio_ref": (dims, a["grad_ratio_ref"]),
                "grad_ratio_batch": (dims, a["grad_ratio_batch"]),
                "neuron_cosine": (dims + ("component", "other_component"), a["neuron_cosine"]),
                "top_k": (("model",), a["top_k"]),
                "neuron_layer": (("model",), a["neuron_layer"]),
                "neuron_grad": (("model", "step", "block", "neuron", "task"), a["neuron_grad"]),
            },
            coords={
                **series_coords(ctx.series, models, steps),
                "task": tasks,
                "other_task": tasks,
                "component": tasks,
                "other_component": tasks,
                "share": ("task", share),
                "param_group": groups,
                "param_kind": kinds,
                "block": np.arange(L),
                "neuron": np.arange(N),
            },
            attrs={"batch_size": batch_size, "batches": PROXY if ctx.kind == "series" else "the training batches"},
        )
        return describe(ds, VARIABLES)


def run_interference(run, cfg: InterferenceConfig | None = None, models: list[str] | None = None, steps: list[int] | None = None, progress: bool = True):
    """Interference at every checkpoint of ``run`` (a path, Run or Context), resuming; writes analyses/interference.nc."""
    return Interference().run(as_context(run), cfg or InterferenceConfig(), models=models, steps=steps, progress=progress)
