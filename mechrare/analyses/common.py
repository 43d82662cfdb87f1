"""What several analyses share: the non-task component and the components' shares."""

from __future__ import annotations

import numpy as np

from mechrare.data.taskset import TaskSet

BACKGROUND = "background"  # the non-task component, after the tasks in gradient and neuron datasets


def components(tasks: TaskSet, model: str | None = None) -> tuple[list[str], list[float]]:
    """The task set's tasks plus ``background``, with their shares of training sequences
    (the ones ``model`` was trained on, where given; NaN where the task set does not know)."""
    names = tasks.names
    shares = tasks.shares(model)
    if not shares:
        return names + [BACKGROUND], [np.nan] * (len(names) + 1)
    return names + [BACKGROUND], [shares[t] for t in names] + [1.0 - sum(shares.values())]
