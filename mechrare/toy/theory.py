"""The toy model's theory (paper, Section 3).

With orthogonal task blocks, M = sum_k pi_k C_k has eigenvalues pi_k lambda_{k,j}
on the basis vectors e_{k,j}. Gradient flow from a small initialisation learns the
directions in decreasing order of this *utility*, and the width-N encoder
converges to the top-N eigenspace of M. Task r's top direction is kept iff
pi_r lambda_{r,1} >= mu_N^F, the N-th eigenvalue of M_F = sum_{k != r} pi_k C_k, so
N_r^crit = min{N : mu_N^F <= pi_r lambda_{r,1}}.
"""

from __future__ import annotations

import numpy as np


def utilities(pi: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """[K, block] pi_k lambda_{k,j}: the eigenvalues of M on e_{k,j}."""
    return pi[:, None] * lam


def critical_width(pi: np.ndarray, lam: np.ndarray, task: int = -1) -> int:
    """N_r^crit for ``task`` (default: the last, rare one)."""
    u = utilities(pi, lam)
    task = task % len(pi)
    others = np.delete(u, task, axis=0).ravel()
    return int((others > u[task, 0]).sum()) + 1


def predicted_signal(pi: np.ndarray, lam: np.ndarray, width: int) -> np.ndarray:
    """[K] s_k of the top-``width`` eigenspace of M (ties broken by task order)."""
    u = utilities(pi, lam)
    order = np.argsort(-u.ravel(), kind="stable")[:width]
    kept = np.zeros(u.size, dtype=bool)
    kept[order] = True
    kept = kept.reshape(u.shape)
    return (lam * kept).sum(1) / lam.sum(1)


def half_signal_width(pi: np.ndarray, lam: np.ndarray, task: int = -1) -> int:
    """Smallest width whose top eigenspace gives ``task`` s >= 0.5."""
    for n in range(1, lam.size + 1):
        if predicted_signal(pi, lam, n)[task] >= 0.5:
            return n
    return lam.size
