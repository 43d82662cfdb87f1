"""AdamW (fused on CUDA) with OLMo-style weight-decay groups and warmup + cosine decay."""

from __future__ import annotations

from functools import partial

from mechrare.config import TrainConfig
from mechrare.training.lr import lr_factor


def param_groups(model, weight_decay: float) -> list[dict]:
    """Decay matrices; do not decay norms or embeddings (as OLMo-2 does)."""
    decay, no_decay = [], []
    embed = {id(p) for p in model.get_input_embeddings().parameters()}
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and id(p) not in embed else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model, cfg: TrainConfig, device_type: str):
    return adamw(param_groups(model, cfg.weight_decay), cfg, device_type)


def adamw(groups: list[dict], cfg: TrainConfig, device_type: str):
    """AdamW over ``groups`` with the run's settings, and its warmup + cosine schedule."""
    import torch

    opt = torch.optim.AdamW(
        groups,
        lr=cfg.lr,
        betas=tuple(cfg.betas),
        fused=device_type == "cuda",
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, partial(lr_factor, total=cfg.steps, warmup=cfg.warmup, min_ratio=cfg.min_lr_ratio)
    )
    return opt, sched
