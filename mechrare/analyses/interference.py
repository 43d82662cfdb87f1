"""Gradient interference over the checkpoint series: analyses/interference.nc.

At every checkpoint, with the model in fp32:

* **Reference gradients** g_k: the gradient of task k's held-out loss (answer
  tokens of its whole eval set, i.e. all of the task's eval instances), and of the
  background's next-token loss on held-out documents (``task = "background"``).
  ``grad_norm`` and ``grad_cosine`` come from their Gram matrix, over all
  parameters and per parameter group (``grad_norm_layer``, ``grad_cosine_layer``:
  embed, layer0 ... , head).
* **Training-batch components** h_k: the training loss of real training batches
  (the steps that follow the checkpoint, ``batches`` of them spread over the
  interval to the next checkpoint) split by the token each loss term predicts:
  task k's instance tokens, or the rest (background). sum_k h_k is the batch
  gradient g.
* **The paper's protocol** (Section 4): task k's *task neurons* are the top-K MLP
  neurons of ``neuron_layer`` by the norm of g_k on the neuron's parameters
  (gate and up rows, down column); g_r = g_k. Per batch, g = g_t + g_nt with
  g_t = h_k; ``cos_batch_ref`` = cos(g, g_r) and ``cos_nontask_ref`` =
  cos(g_nt, g_r), restricted to the task neurons' parameters, averaged over the
  batches (``cos_nontask_ref_std``: their spread).
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
  ``loss_change_total`` = g_task . delta (all of the update) and
  ``loss_change_actual`` = the measured change of ``task_loss`` show how far first
  order carries over the interval.

Only the reference gradients, the component sums and one live gradient are held
at once; each checkpoint's numbers are written as it finishes, so a rerun resumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mechrare.analyses.common import analysis_attrs, components, load_part, parts_dir, resolve_torch_device, run_mixture, save_part
from mechrare.analyses.gradients import (
    ParamGroups,
    attribution_weights,
    component_losses,
    group_dots,
    loss_change_matrix,
    reference_gradient,
    task_loss_chunks,
)
from mechrare.analyses.registry import ANALYSES, Analysis
from mechrare.checkpoints.metrics import model_step_coords, write_dataset
from mechrare.checkpoints.store import CheckpointStore
from mechrare.config import RunConfig
from mechrare.errors import ConfigError


@dataclass
class InterferenceConfig:
    batches: int = 4  # training batches per checkpoint (g_t / g_nt split, update attribution)
    batch_size: int = 0  # rows per training batch; 0 = the run's train.batch_size
    top_k: int = 0  # task neurons; 0 = 10% of the layer's MLP neurons (at least 4)
    neuron_layer: int = 0
    eval_batch_size: int = 256
    rel_eps: float = 1e-3
    device: str = "auto"

    def validate(self, path: str) -> None:
        for key in ("batches", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{path}.{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("batch_size", "top_k", "neuron_layer"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{path}.{key}: must be >= 0, got {getattr(self, key)}")
        if not 0 < self.rel_eps < 1:
            raise ConfigError(f"{path}.rel_eps: must be in (0, 1), got {self.rel_eps}")


# -- task neurons ----------------------------------------------------------------------
def neuron_rows(grads: list, names: list[str], layer: int):
    """[n_neurons, 3 * d_model]: each MLP neuron's parameters (gate row, up row, down
    column) of ``layer``, gathered from a gradient list."""
    import torch

    by_name = dict(zip(names, grads))
    pre = f"model.layers.{layer}.mlp."
    return torch.cat([by_name[pre + "gate_proj.weight"], by_name[pre + "up_proj.weight"], by_name[pre + "down_proj.weight"].T], dim=1)


def top_neurons(ref_rows, k: int):
    return ref_rows.norm(dim=1).topk(k).indices


def _cos(a, b) -> float:
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else np.nan


# -- one checkpoint ----------------------------------------------------------------------
def batch_steps(step: int, next_step: int | None, n: int) -> list[int]:
    """The training steps whose batches stand for the interval after ``step``."""
    if next_step is None or next_step - step <= 1:
        return list(range(step, step + (n if next_step is None else 1)))
    return sorted({int(round(x)) for x in np.linspace(step, next_step - 1, n)})


def checkpoint_interference(model, mixture, cfg: InterferenceConfig, batch_size: int, step: int, next_params, next_step):
    """Every per-checkpoint quantity, as numpy arrays (see the module docstring)."""
    import torch

    device = next(model.parameters()).device
    groups = ParamGroups.of(model)
    params = groups.params(model)
    n_tasks = len(mixture.tasks)
    comps = n_tasks + 1
    refs, losses = [], []
    for k in list(range(n_tasks)) + [None]:
        g, loss = reference_gradient(model, params, task_loss_chunks(model, mixture, k, device, cfg.eval_batch_size))
        refs.append(g)
        losses.append(loss)
    gram = np.array([[group_dots(refs[i], refs[j], groups) for j in range(comps)] for i in range(comps)])  # [T, T, G]
    out = {
        "task_loss": np.array(losses),
        "gram_layer": gram,
    }
    layer = min(cfg.neuron_layer, model.config.num_hidden_layers - 1)
    n_neurons = model.config.intermediate_size
    k = cfg.top_k or max(4, n_neurons // 10)
    k = min(k, n_neurons)
    ref_rows = [neuron_rows(refs[t], groups.names, layer) for t in range(n_tasks)]
    chosen = [top_neurons(r, k) for r in ref_rows]
    steps = batch_steps(step, next_step, cfg.batches)
    comp_sum = [[torch.zeros_like(p) for p in params] for _ in range(comps)]
    cos_b = np.full((len(steps), n_tasks), np.nan)
    cos_nt = np.full((len(steps), n_tasks), np.nan)
    for b, s in enumerate(steps):
        batch = mixture.batch(s, batch_size)
        parts = component_losses(model, batch, n_tasks, device)
        rows = []
        for c in range(comps):
            grads = torch.autograd.grad(parts[c], params, retain_graph=c < comps - 1)
            for acc, g in zip(comp_sum[c], grads):
                acc += g / len(steps)
            rows.append(neuron_rows(grads, groups.names, layer))
        total = sum(rows)
        for t in range(n_tasks):
            sel = chosen[t]
            g_r = ref_rows[t][sel]
            cos_b[b, t] = _cos(total[sel], g_r)
            cos_nt[b, t] = _cos(total[sel] - rows[t][sel], g_r)
    out["cos_batch_ref"] = np.nanmean(cos_b, axis=0)
    out["cos_nontask_ref"] = np.nanmean(cos_nt, axis=0)
    out["cos_nontask_ref_std"] = np.nanstd(cos_nt, axis=0)
    out["top_k"] = np.array(k)
    if next_params is not None:
        delta = [next_params[n].to(device) - p.detach() for n, p in zip(groups.names, params)]
        hbar = [sum(parts) for parts in zip(*comp_sum)]
        weights = attribution_weights(delta, hbar, cfg.rel_eps)
        out["next_loss_change"] = loss_change_matrix(refs, comp_sum, weights, groups)
        out["next_loss_change_total"] = np.array([group_dots(g, delta, groups).sum() for g in refs])
    return out, groups.groups


def _load_params(store: CheckpointStore, model: str, step: int) -> dict:
    from safetensors.torch import load_file

    return load_file(str(store.path(model, step) / "model.safetensors"))


def run_interference(run, cfg: InterferenceConfig | None = None, models: list[str] | None = None, progress: bool = True):
    """Interference at every checkpoint (resuming from finished ones); writes analyses/interference.nc."""
    from tqdm.auto import tqdm

    cfg = cfg or InterferenceConfig()
    store = CheckpointStore(run)
    run_cfg = RunConfig.from_dict(store.manifest["config"])
    batch_size = cfg.batch_size or run_cfg.train.batch_size
    device = resolve_torch_device(cfg.device)
    parts = parts_dir(store, "interference", asdict(cfg))
    models = models or store.models()
    mixtures = {m: run_mixture(store, m) for m in models}  # an intervention trained on its own mixture
    for mixture in mixtures.values():
        mixture.check_batch_size(batch_size, "interference.batch_size")
    todo = [c for c in store.iter_checkpoints(models) if not (parts / c.model / f"step_{c.step}.npz").is_file()]
    for ckpt in tqdm(todo, desc="interference", unit="ckpt", disable=not progress):
        steps = store.steps(ckpt.model)
        i = steps.index(ckpt.step)
        next_step = steps[i + 1] if i + 1 < len(steps) else None
        model = store.load(ckpt.model, ckpt.step, device=str(device))
        next_params = _load_params(store, ckpt.model, next_step) if next_step is not None else None
        out, groups = checkpoint_interference(model, mixtures[ckpt.model], cfg, batch_size, ckpt.step, next_params, next_step)
        out["groups"] = np.array(groups)
        save_part(parts / ckpt.model / f"step_{ckpt.step}.npz", out)
        del model, next_params
    ds = assemble(store, mixtures[models[0]].task_names, parts, models, cfg)
    write_dataset(ds, store.run.analysis_path("interference"))
    return ds


def assemble(store: CheckpointStore, task_names: list[str], parts, models: list[str], cfg: InterferenceConfig):
    import xarray as xr

    tasks, share = components(store, task_names)
    steps = sorted({s for m in models for s in store.steps(m)})
    found = {(m, s): load_part(parts / m / f"step_{s}.npz") for m in models for s in store.steps(m)}
    groups = max((list(v["groups"]) for v in found.values()), key=len)
    M, S, T, G = len(models), len(steps), len(tasks), len(groups)
    a = {
        "grad_norm": np.full((M, S, T), np.nan),
        "grad_cosine": np.full((M, S, T, T), np.nan),
        "grad_norm_layer": np.full((M, S, G, T), np.nan),
        "grad_cosine_layer": np.full((M, S, G, T, T), np.nan),
        "loss_change": np.full((M, S, T, T), np.nan),
        "loss_change_total": np.full((M, S, T), np.nan),
        "loss_change_actual": np.full((M, S, T), np.nan),
        "task_loss": np.full((M, S, T), np.nan),
        "cos_batch_ref": np.full((M, S, T), np.nan),
        "cos_nontask_ref": np.full((M, S, T), np.nan),
        "cos_nontask_ref_std": np.full((M, S, T), np.nan),
        "top_k": np.zeros(M, dtype=np.int64),
    }
    nt = len(task_names)
    for mi, m in enumerate(models):
        mine = store.steps(m)
        for j, s in enumerate(mine):
            p, si = found[(m, s)], steps.index(s)
            gi = [groups.index(g) for g in p["groups"]]
            gram = p["gram_layer"]  # [T, T, g]
            norms = np.sqrt(np.einsum("iig->gi", gram))
            a["grad_norm_layer"][mi, si][gi] = norms
            a["grad_cosine_layer"][mi, si][gi] = np.moveaxis(gram, 2, 0) / (norms[:, :, None] * norms[:, None, :])
            full = gram.sum(-1)
            d = np.sqrt(np.diag(full))
            a["grad_norm"][mi, si] = d
            a["grad_cosine"][mi, si] = full / np.outer(d, d)
            a["task_loss"][mi, si] = p["task_loss"]
            for key in ("cos_batch_ref", "cos_nontask_ref", "cos_nontask_ref_std"):
                a[key][mi, si, :nt] = p[key]
            a["top_k"][mi] = int(p["top_k"])
            if j > 0:
                prev = found[(m, mine[j - 1])]
                a["loss_change"][mi, si] = prev["next_loss_change"]
                a["loss_change_total"][mi, si] = prev["next_loss_change_total"]
                a["loss_change_actual"][mi, si] = p["task_loss"] - prev["task_loss"]
    dims, dims2 = ("model", "step", "task"), ("model", "step", "task", "other_task")
    lg = ("model", "step", "param_group")
    ds = xr.Dataset(
        {
            "grad_norm": (dims, a["grad_norm"], {"long_name": "norm of the task's held-out loss gradient"}),
            "grad_cosine": (dims2, a["grad_cosine"], {"long_name": "cosine between held-out loss gradients"}),
            "grad_norm_layer": (lg + ("task",), a["grad_norm_layer"]),
            "grad_cosine_layer": (lg + ("task", "other_task"), a["grad_cosine_layer"]),
            "loss_change": (dims2, a["loss_change"], {"long_name": "first-order change of task's loss from other_task's share of the update since the previous checkpoint"}),
            "loss_change_total": (dims, a["loss_change_total"], {"long_name": "first-order change of the task's loss from the whole update"}),
            "loss_change_actual": (dims, a["loss_change_actual"], {"long_name": "measured change of task_loss since the previous checkpoint"}),
            "task_loss": (dims, a["task_loss"], {"long_name": "held-out loss (fp32)"}),
            "cos_batch_ref": (dims, a["cos_batch_ref"], {"long_name": "cos(g, g_r) on the task neurons"}),
            "cos_nontask_ref": (dims, a["cos_nontask_ref"], {"long_name": "cos(g_nt, g_r) on the task neurons"}),
            "cos_nontask_ref_std": (dims, a["cos_nontask_ref_std"]),
            "top_k": (("model",), a["top_k"], {"long_name": "task neurons per task"}),
        },
        coords={
            **model_step_coords(store.manifest, models, steps),
            "task": tasks,
            "other_task": tasks,
            "share": ("task", share),
            "param_group": groups,
        },
        attrs=analysis_attrs(store, "interference", asdict(cfg)),
    )
    return ds


ANALYSES.add("interference", Analysis("interference", InterferenceConfig, run_interference))
