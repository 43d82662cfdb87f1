"""Held-out answer loss and exact-match accuracy per task, and background loss: one definition
for training's metrics.nc and an external series' analyses/evaluation.nc."""

from __future__ import annotations

import numpy as np


def evaluate_sets(model, eval_sets: list, background: np.ndarray | None, device, batch_size: int = 512,
                  autocast_dtype=None) -> dict:
    """``{"eval": {task: {"loss", "accuracy"}}, "background_loss": float}`` (NaN without background).

    Loss is the mean cross-entropy over answer tokens; an instance is correct
    when the argmax prediction is right at every answer token (teacher-forced,
    which for exact match equals greedy decoding)."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    out: dict = {"eval": {}, "background_loss": float("nan")}
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else torch.autocast(device_type=device.type, enabled=False)
    )
    with torch.no_grad(), autocast:
        for es in eval_sets:
            ids = torch.as_tensor(es.input_ids, device=device)
            sl = es.answer_slice
            targets = ids[:, sl.start + 1 : sl.stop + 1]
            loss_sum, correct = 0.0, 0
            for i in range(0, len(ids), batch_size):
                logits = model(input_ids=ids[i : i + batch_size]).logits[:, sl].float()
                tgt = targets[i : i + batch_size]
                loss_sum += F.cross_entropy(logits.transpose(1, 2), tgt, reduction="sum").item()
                correct += (logits.argmax(-1) == tgt).all(dim=1).sum().item()
            out["eval"][es.task] = {"loss": loss_sum / targets.numel(), "accuracy": correct / len(ids)}
        if background is not None:
            bg = torch.as_tensor(background, device=device)
            total = 0.0
            for i in range(0, len(bg), batch_size):
                chunk = bg[i : i + batch_size]
                logits = model(input_ids=chunk).logits[:, :-1].float()
                total += F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="sum").item()
            out["background_loss"] = total / (bg.shape[0] * (bg.shape[1] - 1))
    model.train(was_training)
    return out
