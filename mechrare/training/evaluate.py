"""Per-task held-out loss and exact-match accuracy, and background loss."""

from __future__ import annotations

from mechrare.data.mixture import Mixture


def evaluate(model, mixture: Mixture, device, batch_size: int = 512, autocast_dtype=None) -> dict:
    """``{"eval": {task: {"loss", "accuracy"}}, "background_loss": float}``.

    Loss is the mean cross-entropy over answer tokens; an instance is correct
    when the argmax prediction is right at every answer token (teacher-forced,
    which for exact match equals greedy decoding)."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    out: dict = {"eval": {}}
    autocast = (
        torch.autocast(device_type=device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else torch.autocast(device_type=device.type, enabled=False)
    )
    with torch.no_grad(), autocast:
        for es in mixture.eval_sets:
            ids = torch.as_tensor(es.input_ids, device=device)
            sl = es.answer_slice
            targets = ids[:, sl.start + 1 : sl.stop + 1]
            loss_sum, correct = 0.0, 0
            for i in range(0, len(ids), batch_size):
                logits = model(input_ids=ids[i : i + batch_size]).logits[:, sl].float()
                tgt = targets[i : i + batch_size]
                loss_sum += F.cross_entropy(logits.transpose(1, 2), tgt, reduction="sum").item()
                correct += (logits.argmax(-1) == tgt).all(dim=1).sum().item()
            out["eval"][es.task] = {
                "loss": loss_sum / targets.numel(),
                "accuracy": correct / len(ids),
            }
        bg = torch.as_tensor(mixture.background_eval(), device=device)
        total = 0.0
        for i in range(0, len(bg), batch_size):
            chunk = bg[i : i + batch_size]
            logits = model(input_ids=chunk).logits[:, :-1].float()
            total += F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="sum").item()
        out["background_loss"] = total / (bg.shape[0] * (bg.shape[1] - 1))
    model.train(was_training)
    return out

