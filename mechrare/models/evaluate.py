"""Held-out answer loss and exact-match accuracy per task, and background loss: one definition
for training's metrics.nc and an external series' analyses/evaluation.nc."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mechrare.ranks import SINGLE, Dist


def _chunks(n: int, batch_size: int, dist: Dist) -> Iterator[tuple[slice, bool]]:
    """This process's batches of ``n`` rows: ``(rows, real)``. Under torchrun each process takes a
    contiguous share of ``ceil(n / world)`` rows (the last ones fewer, maybe none) in the same number of
    batches, since every forward of a sharded model is collective; a process out of rows runs row 0
    again with ``real`` false, and its result is dropped. In one process: every row, as before."""
    per = -(-n // dist.world)
    lo, hi = min(n, dist.rank * per), min(n, (dist.rank + 1) * per)
    for i in range(0, per, batch_size):
        a, b = lo + i, min(lo + i + batch_size, hi)
        yield (slice(a, b), True) if a < b else (slice(0, 1), False)


def evaluate_sets(model, eval_sets: list, background: np.ndarray | None, device, batch_size: int = 512,
                  autocast_dtype=None, dist: Dist = SINGLE) -> dict:
    """``{"eval": {task: {"loss", "accuracy"}}, "background_loss": float}`` (NaN without background).

    Loss is the mean cross-entropy over answer tokens; an instance is correct
    when the argmax prediction is right at every answer token (teacher-forced,
    which for exact match equals greedy decoding). Under torchrun (``dist``, ``model`` sharded over the
    job) each process evaluates its share of every set's rows and the sums are added up over the job:
    every process returns the same numbers, the losses summed in another order than in one process."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    sums: list[float] = []  # per set: answer-token loss, correct instances; then the background loss
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
            for rows, real in _chunks(len(ids), batch_size, dist):
                logits = model(input_ids=ids[rows]).logits[:, sl].float()
                if real:
                    tgt = targets[rows]
                    loss_sum += F.cross_entropy(logits.transpose(1, 2), tgt, reduction="sum").item()
                    correct += (logits.argmax(-1) == tgt).all(dim=1).sum().item()
            sums += [loss_sum, correct]
        if background is not None:
            bg = torch.as_tensor(background, device=device)
            total = 0.0
            for rows, real in _chunks(len(bg), batch_size, dist):
                chunk = bg[rows]
                logits = model(input_ids=chunk).logits[:, :-1].float()
                if real:
                    total += F.cross_entropy(logits.transpose(1, 2), chunk[:, 1:], reduction="sum").item()
            sums.append(total)
    model.train(was_training)
    if dist.active:
        sums = dist.all_sum(torch.tensor(sums, dtype=torch.float64, device=device)).tolist()
    out: dict = {"eval": {}, "background_loss": float("nan")}
    for k, es in enumerate(eval_sets):
        n, answer = len(es.input_ids), es.answer_slice.stop - es.answer_slice.start
        out["eval"][es.task] = {"loss": sums[2 * k] / (n * answer), "accuracy": sums[2 * k + 1] / n}
    if background is not None:
        out["background_loss"] = sums[-1] / (background.shape[0] * (background.shape[1] - 1))
    return out
