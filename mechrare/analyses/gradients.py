"""Gradient plumbing shared by the interference analysis: losses, per-task and
per-component gradients, grouped inner products and the update attribution.

A *gradient* here is a list of tensors, one per trainable parameter, in
``model.named_parameters()`` order. Inner products are reduced per parameter
*group* (``embed``, ``layer0`` ... ``layer{L-1}``, ``head``) and parameter *kind*
(``embed``, ``attn``, ``mlp``, ``norm``, ``head``: :func:`mechrare.models.internals.param_kinds`)
at once, into a [group, kind] table, so that one pass gives the all-parameter, the
per-layer and the per-kind numbers (a Gram matrix adds up over disjoint parts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechrare.data.instances import Instances
from mechrare.models.internals import KINDS, Internals, internals, param_kinds


@dataclass
class ParamGroups:
    names: list[str]  # parameter names, in order
    groups: list[str]  # group labels: embed, layer0.., head
    index: list[int]  # group index per parameter
    internals: Internals | None = None  # where the architecture keeps its parts
    kinds: list[str] | None = None  # kind labels: embed, attn, mlp, norm, head (other, where any)
    kind_index: list[int] | None = None  # kind index per parameter

    @classmethod
    def of(cls, model) -> "ParamGroups":
        """The trainable parameters grouped by the architecture's own component names
        (:mod:`mechrare.models.internals`): the token embedding, each block, and the rest
        (final norm and head); and, across them, by kind (embed, attn, mlp, norm, head)."""
        parts = internals(model)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        groups = ["embed"] + [f"layer{l}" for l in range(parts.n_layers)] + ["head"]
        per = param_kinds(model, parts, names)
        kinds = list(KINDS) + (["other"] if "other" in per else [])
        return cls(names, groups, [parts.group_of(n) for n in names], parts, kinds, [kinds.index(k) for k in per])

    def params(self, model) -> list:
        named = dict(model.named_parameters())
        return [named[n] for n in self.names]


def group_dots(a: list, b: list, groups: ParamGroups, weight: list | None = None) -> np.ndarray:
    """Inner products sum_c a_c (w_c) b_c per (group, kind), as float64 [n_groups, n_kinds]
    (``.sum()`` is the all-parameter product, ``.sum(-1)`` per group, ``.sum(0)`` per kind)."""
    import torch

    kinds = groups.kinds or ["all"]
    out = torch.zeros(len(groups.groups), len(kinds), dtype=torch.float64)
    for k, (x, y) in enumerate(zip(a, b)):
        prod = x * y if weight is None else x * weight[k] * y
        out[groups.index[k], groups.kind_index[k] if groups.kind_index else 0] += prod.sum(dtype=torch.float64).cpu()
    return out.numpy()


# -- losses ------------------------------------------------------------------------
def answer_loss_sum(model, ids, es: Instances):
    """Summed cross-entropy over the answer tokens of ``ids`` (rows of ``es``'s shape)."""
    import torch.nn.functional as F

    sl = es.answer_slice
    logits = model(input_ids=ids).logits[:, sl].float()
    targets = ids[:, sl.start + 1 : sl.stop + 1]
    return F.cross_entropy(logits.transpose(1, 2), targets, reduction="sum"), targets.numel()


def next_token_loss_sum(model, ids):
    import torch.nn.functional as F

    logits = model(input_ids=ids).logits[:, :-1].float()
    return F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="sum"), ids[:, 1:].numel()


def reference_gradient(model, params: list, loss_chunks) -> tuple[list, float]:
    """Gradient of the mean loss over all chunks (``loss_chunks`` yields (sum, count))
    and that mean loss; accumulates chunk by chunk so that any set size fits."""
    import torch

    grads = [torch.zeros_like(p) for p in params]
    total, count = 0.0, 0
    for loss_sum, n in loss_chunks:
        for g, d in zip(grads, torch.autograd.grad(loss_sum, params)):
            g += d
        total += float(loss_sum.detach())
        count += n
    for g in grads:
        g /= max(count, 1)
    return grads, total / max(count, 1)


def reference_gram(model, groups: ParamGroups, params: list, datas: list, batch_size: int):
    """Held-out loss gradients of each of ``datas`` (see :func:`task_loss_chunks`), their mean
    losses and their Gram matrix per group and kind: (gradients, losses [T], gram [T, T, groups, kinds])."""
    device = next(model.parameters()).device
    refs, losses = [], []
    for data in datas:
        g, loss = reference_gradient(model, params, task_loss_chunks(model, data, device, batch_size))
        refs.append(g)
        losses.append(loss)
    gram = np.array([[group_dots(a, b, groups) for b in refs] for a in refs])
    return refs, np.array(losses), gram


def gram_cosines(gram: np.ndarray):
    """From a Gram matrix over disjoint parameter parts [T, T, G] (groups, or kinds): (norm [T], cosine [T, T], group norm [G, T],
    group cosine [G, T, T]); a zero gradient has NaN cosines."""
    full = gram.sum(-1)
    norm = np.sqrt(np.diag(full))
    norm_g = np.sqrt(np.einsum("iig->gi", gram))
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = full / np.outer(norm, norm)
        cosine_g = np.moveaxis(gram, 2, 0) / (norm_g[:, :, None] * norm_g[:, None, :])
    return norm, cosine, norm_g, cosine_g


def task_loss_chunks(model, data: Instances | np.ndarray, device, batch_size: int):
    """(loss sum, count) chunks: over the answer tokens of ``data`` (Instances), or every
    next-token prediction of ``data`` ([rows, T] documents, e.g. the background)."""
    import torch

    if not isinstance(data, Instances):
        docs = torch.as_tensor(data, device=device)
        for i in range(0, len(docs), batch_size):
            yield next_token_loss_sum(model, docs[i : i + batch_size])
        return
    ids = torch.as_tensor(data.input_ids, device=device)
    for i in range(0, len(ids), batch_size):
        yield answer_loss_sum(model, ids[i : i + batch_size], data)


def component_losses(model, batch, n_tasks: int, device) -> list:
    """The training loss of ``batch`` split by the token it predicts: entry k < n_tasks
    sums the loss on task k's tokens, entry n_tasks the rest (background); each is
    divided by the batch's token count, so that the entries add up to the training loss."""
    import torch
    import torch.nn.functional as F

    ids = torch.as_tensor(batch.input_ids, device=device)
    labels = torch.as_tensor(batch.labels, device=device)[:, 1:]
    logits = model(input_ids=ids).logits[:, :-1].float()
    valid = labels != -100
    tok = F.cross_entropy(logits.transpose(1, 2), labels.clamp_min(0), reduction="none") * valid
    owner = torch.as_tensor(np.where(batch.task_mask[:, 1:], batch.task[:, None], -1), device=device)
    n = valid.sum().clamp_min(1)
    out = [(tok * (owner == k)).sum() / n for k in range(n_tasks)]
    out.append((tok * (owner == -1)).sum() / n)
    return out


# -- update attribution ----------------------------------------------------------------
def attribution_weights(delta: list, mixture_grad: list, rel_eps: float = 1e-3) -> list:
    """w_c = delta_c * gbar_c / (gbar_c^2 + eps^2), eps = rel_eps * rms(gbar) per tensor.

    With per-component gradients h_j summing to the mixture gradient gbar, the update
    piece owed to component j is delta_j = w * h_j (coordinate-wise share of the mixture
    gradient); sum_j delta_j = delta wherever |gbar_c| >> eps. Exact for SGD (delta =
    -lr * gbar) and for any optimizer whose step is coordinate-wise linear in the gradient
    with a shared scale (Adam's preconditioner, to first order)."""
    out = []
    for d, g in zip(delta, mixture_grad):
        eps2 = (rel_eps**2) * float((g.double() ** 2).mean()) + 1e-30
        out.append(d * g / (g * g + eps2))
    return out


def loss_change_matrix(task_grads: list[list], comp_grads: list[list], weights: list, groups: ParamGroups) -> np.ndarray:
    """[task, component] first-order change of each task's loss from each component's
    share of the update: sum_c g_task,c * w_c * h_comp,c (summed over all groups)."""
    out = np.zeros((len(task_grads), len(comp_grads)))
    for i, g in enumerate(task_grads):
        for j, h in enumerate(comp_grads):
            out[i, j] = group_dots(g, h, groups, weights).sum()
    return out


def loss_change_se(model, batches, batch_size: int, steps: list[int], refs, comp_mean, delta, rel_eps: float, groups, params):
    """Jackknife standard error of loss_change over the sampled batches (NaN with one batch).

    loss_change depends on the batches twice: through the components' mean gradients h_other and
    through the attribution weights w (from the mean of all components). Leaving batch b out,
    h_other,-b = (B h_other - h_b,other) / (B - 1), likewise the total, w_-b from them, and
    lc_-b = g_task . (w_-b * h_other,-b); s.e. = sqrt((B - 1) / B * sum_b (lc_-b - mean)^2).
    A second pass over the batches, one at a time."""
    import torch

    B, comps = len(steps), len(comp_mean)
    if B < 2:
        return np.full((len(refs), comps), np.nan)
    device = next(model.parameters()).device
    total = [sum(parts) for parts in zip(*comp_mean)]
    loo = []
    for s in steps:
        parts = component_losses(model, batches.batch(s, batch_size), len(refs) - 1, device)
        grads = [torch.autograd.grad(parts[c], params, retain_graph=c < comps - 1) for c in range(comps)]
        rest = [[(B * m - g) / (B - 1) for m, g in zip(comp_mean[c], grads[c])] for c in range(comps)]
        rest_total = [(B * t - sum(gs)) / (B - 1) for t, gs in zip(total, zip(*grads))]
        loo.append(loss_change_matrix(refs, rest, attribution_weights(delta, rest_total, rel_eps), groups))
    loo = np.array(loo)
    return np.sqrt((B - 1) / B * ((loo - loo.mean(0)) ** 2).sum(0))
