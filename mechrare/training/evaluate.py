"""Per-task held-out loss and exact-match accuracy, and background loss, at a training checkpoint."""

from __future__ import annotations

from mechrare.data.mixture import Mixture
from mechrare.models.evaluate import evaluate_sets
from mechrare.ranks import SINGLE, Dist


def evaluate(model, mixture: Mixture, device, batch_size: int = 512, autocast_dtype=None, dist: Dist = SINGLE) -> dict:
    """``{"eval": {task: {"loss", "accuracy"}}, "background_loss": float}``
    (:func:`mechrare.models.evaluate.evaluate_sets` on the mixture's eval sets and background; under
    torchrun, ``dist``, each process evaluates its share of the rows)."""
    return evaluate_sets(model, mixture.eval_sets, mixture.background_eval(), device, batch_size, autocast_dtype, dist)
