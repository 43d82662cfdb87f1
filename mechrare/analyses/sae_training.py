"""Training one sparse autoencoder with sae-lens's ``SAETrainer``, and scoring it.

Kept apart from the run-level analysis (``mechrare.analyses.sae``) so that
the same code trains on synthetic ground truth in the tests and on model
activations in the analysis.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass

import numpy as np

ARCHITECTURES = ("topk", "standard", "jumprelu", "batchtopk")


@dataclass
class SAETrainSpec:
    architecture: str = "topk"
    d_sae: int = 256
    k: int = 8
    l1_coefficient: float = 1.0
    l0_coefficient: float = 1.0
    steps: int = 1000
    batch_size: int = 512
    lr: float = 3e-3
    seed: int = 0


def _build_sae(spec: SAETrainSpec, d_in: int, device: str):
    import sae_lens as sl

    common = {"d_in": d_in, "d_sae": spec.d_sae, "device": device}
    if spec.architecture == "topk":
        return sl.TopKTrainingSAE(sl.TopKTrainingSAEConfig(k=spec.k, **common))
    if spec.architecture == "batchtopk":
        return sl.BatchTopKTrainingSAE(sl.BatchTopKTrainingSAEConfig(k=spec.k, **common))
    if spec.architecture == "standard":
        return sl.StandardTrainingSAE(sl.StandardTrainingSAEConfig(l1_coefficient=spec.l1_coefficient, **common))
    if spec.architecture == "jumprelu":
        return sl.JumpReLUTrainingSAE(sl.JumpReLUTrainingSAEConfig(l0_coefficient=spec.l0_coefficient, **common))
    raise ValueError(f"unknown SAE architecture {spec.architecture!r}; known: {', '.join(ARCHITECTURES)}")


def buffer_batches(buffer, batch_size: int, seed: int):
    """Endless shuffled minibatches over an activation buffer ([N, d] tensor)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(buffer), generator=g).split(batch_size):
            if len(idx) == batch_size:
                yield buffer[idx.to(buffer.device)]


def train_sae(data_provider, d_in: int, spec: SAETrainSpec, device: str = "cpu", autocast: bool = False):
    """Train an SAE of ``spec`` on an iterator of ``[batch, d_in]`` tensors."""
    import torch
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(spec.seed)
    sae = _build_sae(spec, d_in, device)
    cfg = SAETrainerConfig(
        total_training_samples=spec.steps * spec.batch_size,
        train_batch_size_samples=spec.batch_size,
        lr=spec.lr,
        lr_end=spec.lr / 10,
        lr_scheduler_name="cosineannealing",
        device=device,
        autocast=autocast,
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=10,
        dead_feature_window=max(50, spec.steps // 4),
        feature_sampling_window=max(100, spec.steps // 2),
    )
    quiet = logging.getLogger("sae_lens")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # sae-lens's own progress bar
            SAETrainer(cfg=cfg, sae=sae, data_provider=data_provider).fit()
    finally:
        quiet.setLevel(level)
    return sae.eval()


def decoder_directions(sae) -> np.ndarray:
    """Unit-norm decoder rows, [d_sae, d_in]."""
    import torch

    w = sae.W_dec.detach().float()
    return torch.nn.functional.normalize(w, dim=1).cpu().numpy()


def score_sae(sae, acts, token_task, n_tasks: int, tokens=None, instance=None, batch_size: int = 4096) -> dict:
    """Explained variance, L0, dead fraction and per-feature task mass, on ``acts``.

    ``token_task``: [N] task index of each token (-1: background). Returns ``mass`` as
    [d_sae, n_tasks + 1] (last column: background). With ``tokens`` ([N] token ids) also
    ``token_r2`` [d_sae]: the share of each feature's activation variance that the token id
    alone explains (the correlation ratio eta^2, NaN for a feature that never fires); with
    ``instance`` ([N] instance id of each task token, -1 elsewhere) also ``instances``
    [d_sae, n_tasks]: on how many distinct instances of each task the feature fires."""
    import torch

    x_all = torch.as_tensor(acts, dtype=torch.float32)
    device = next(sae.parameters()).device
    sse = l0 = 0.0
    fired = mass = None
    groups = torch.as_tensor(np.where(np.asarray(token_task) < 0, n_tasks, token_task), dtype=torch.long)
    d_sae = sae.cfg.d_sae
    if tokens is not None:
        tok = torch.as_tensor(np.unique(np.asarray(tokens), return_inverse=True)[1].reshape(-1), dtype=torch.long)
        n_tok = int(tok.max()) + 1 if len(tok) else 1
        s1 = torch.zeros(n_tok, d_sae, dtype=torch.float64)
        s2 = torch.zeros(d_sae, dtype=torch.float64)
        count = torch.bincount(tok, minlength=n_tok).double()
    if instance is not None:
        inst_np = np.asarray(instance)
        keys, inv = np.unique(inst_np, return_inverse=True)
        inv = inv.reshape(-1)
        key_col = torch.as_tensor(np.where(inst_np >= 0, inv - int((keys < 0).any()), -1), dtype=torch.long)
        n_inst = int((keys >= 0).sum())
        seen = torch.zeros(d_sae, max(n_inst, 1), dtype=torch.bool)
        inst_task = np.full(max(n_inst, 1), -1)
        tt = np.asarray(token_task)
        inst_task[key_col.numpy()[inst_np >= 0]] = tt[inst_np >= 0]
    with torch.no_grad():
        for i in range(0, len(x_all), batch_size):
            x = x_all[i : i + batch_size].to(device)
            feats = sae.encode(x)
            recon = sae.decode(feats)
            sse += float(((x - recon) ** 2).sum())
            active = feats > 0
            l0 += float(active.sum())
            fired = active.any(0) if fired is None else fired | active.any(0)
            onehot = torch.nn.functional.one_hot(groups[i : i + batch_size].to(device), n_tasks + 1).float()
            part = feats.float().T @ onehot
            mass = part if mass is None else mass + part
            f = feats.double().cpu()
            if tokens is not None:
                s1.index_add_(0, tok[i : i + batch_size], f)
                s2 += (f * f).sum(0)
            if instance is not None:
                kc = key_col[i : i + batch_size]
                on = kc >= 0
                if on.any():
                    hit = torch.zeros(d_sae, max(n_inst, 1))
                    hit.index_add_(1, kc[on], active.cpu()[on].float().T)
                    seen |= hit > 0
    var = float(((x_all - x_all.mean(0)) ** 2).sum())
    out = {
        "explained_variance": 1.0 - sse / max(var, 1e-12),
        "l0": l0 / len(x_all),
        "dead_fraction": 1.0 - float(fired.float().mean()),
        "alive": fired.cpu().numpy(),
        "mass": mass.cpu().numpy(),
    }
    if tokens is not None:
        n = float(count.sum())
        total = s1.sum(0)
        between = (s1 * s1 / count.clamp_min(1)[:, None]).sum(0) - total * total / n
        within_all = s2 - total * total / n
        with np.errstate(invalid="ignore", divide="ignore"):
            out["token_r2"] = np.where(within_all.numpy() > 1e-12, (between / within_all).numpy(), np.nan)
    if instance is not None:
        s = seen.numpy()
        out["instances"] = np.stack([s[:, inst_task == t].sum(1) for t in range(n_tasks)], 1) if n_tasks else np.zeros((d_sae, 0))
    return out


def task_specificity(mass: np.ndarray) -> np.ndarray:
    """Share of each feature's activation mass on each group, [d_sae, groups] (NaN if it never fires)."""
    total = mass.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, mass / total, np.nan)


def task_features(mass, alive, instances, token_r2, specificity: float, min_instances: int, max_token_r2: float) -> dict:
    """Which alive features count for which task, [d_sae, n_tasks] bool each:

    * ``specific``: >= ``specificity`` of the feature's activation mass on the task's tokens;
    * ``few``: specific, but firing on fewer than ``min_instances`` distinct instances of the task;
    * ``token``: specific, on enough instances, but its activation is told by the token id alone
      (``token_r2`` >= ``max_token_r2``): a token-identity feature, such as one that fires on a task's
      marker whatever the context;
    * ``task``: specific, on enough instances, and not a token-identity feature: a task feature."""
    n_tasks = instances.shape[1]
    spec = task_specificity(mass)[:, :n_tasks]
    specific = (spec >= specificity) & np.asarray(alive, dtype=bool)[:, None]
    few = specific & (instances < min_instances)
    tokenish = np.nan_to_num(np.asarray(token_r2, dtype=float), nan=1.0)[:, None] >= max_token_r2
    token = specific & ~few & tokenish
    return {"specific": specific, "few": few, "token": token, "task": specific & ~few & ~tokenish}


def match_features(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """Hungarian matching of decoder directions ``a`` ([n, d]) to ``b`` ([m, d]).

    Returns, for each row of ``a``, the matched row of ``b`` or -1 when the
    best assignment's cosine is below ``threshold``."""
    from scipy.optimize import linear_sum_assignment

    cos = a @ b.T
    rows, cols = linear_sum_assignment(-cos)
    out = np.full(len(a), -1)
    keep = cos[rows, cols] >= threshold
    out[rows[keep]] = cols[keep]
    return out
