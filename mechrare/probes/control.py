"""Control tasks (Hewitt & Liang, 2019): a random label per input type.

Each input type (here: the token under the probe, at the readout position)
gets one label drawn from the target's empirical label distribution, fixed by
a seed. A probe that scores well on the control task is memorising types, not
reading the latent; selectivity = probe score - control score."""

from __future__ import annotations

import numpy as np


def control_labels(types: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Control labels for examples with input ``types`` and real ``labels``."""
    types = np.asarray(types)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    unique_types = np.unique(types)
    drawn = rng.choice(labels, size=len(unique_types), replace=True)
    mapping = dict(zip(unique_types.tolist(), drawn.tolist()))
    return np.array([mapping[t] for t in types.tolist()], dtype=labels.dtype)
