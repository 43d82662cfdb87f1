"""The paper's task neurons, one definition for interference, ownership and retention.

A task's *task neurons* in an MLP block are the top-K neurons by the norm of the
gradient of the task's held-out loss on the neuron's parameters (its gate and up
rows and its down column; an ungated MLP's input row and output column, e.g. GPT-NeoX's
``dense_h_to_4h`` and ``dense_4h_to_h``): the paper's Section 4 protocol, first MLP layer. K is
``top_k`` or, when 0, 10% of the block's neurons with a minimum of 4
(:func:`top_k_count`). The interference analysis computes the gradients (it holds
every task's held-out gradient anyway) and stores their squared norms per neuron
as ``neuron_grad``; its protocol cosines use the top-K of its ``neuron_layer``;
the neuron analysis derives ownership from the same numbers
(:func:`gradient_owner`), so both pick the same neurons.

**Claims.** Neuron n of block l counts for task t (``claimed``) when

* n is among t's top-K in block l;
* t is learned at this step (the binomial accuracy test, ``owns_from``); and
* t's *share* of its gradient energy on n, q = |g_n|^2 / sum_m |g_m|^2 over the
  block, exceeds the **null floor** at n's rank: the r-th largest share of the
  block at initialisation, the largest over every training seed of the model
  (:func:`init_floor`). A random network's gradient is already concentrated on
  some neurons; the floor says how much, rank by rank (the top-K are order
  statistics, so the r-th is held to the r-th of independent initialisations,
  not to their maximum). Shares are scale-free, so the floor does not drift as
  the weights grow.

A neuron claimed by several tasks goes to the one with the largest share; the
rest are unowned (-1).
"""

from __future__ import annotations

import numpy as np


def top_k_count(n_neurons: int, top_k: int = 0) -> int:
    """K: ``top_k`` (capped at the block's size), or 10% of the neurons with a minimum of 4."""
    k = top_k or max(4, n_neurons // 10)
    return int(min(k, n_neurons))


def neuron_rows(grads: list, groups, layer: int):
    """[n_neurons, (2 or 3) * d_model]: each MLP neuron's parameters of block ``layer`` (its gate row
    where the MLP is gated, its input row and its output column), gathered from a gradient list in
    ``groups.names`` order (``groups``: a :class:`~mechrare.analyses.gradients.ParamGroups`, whose
    ``internals`` name the weights for the architecture)."""
    import torch

    by_name = dict(zip(groups.names, grads))
    ins, out = groups.internals.neuron_weights(layer)
    return torch.cat([by_name[n] for n in ins] + [by_name[out].T], dim=1)


def neuron_energy(grads: list, groups) -> np.ndarray:
    """[n_layers, n_neurons] squared gradient norm on each MLP neuron's parameters."""
    return np.stack([neuron_rows(grads, groups, l).double().pow(2).sum(1).cpu().numpy()
                     for l in range(groups.internals.n_layers)])


def top_neurons(energy: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries of ``energy`` [n] (ties: the lower index)."""
    return np.argsort(-energy, kind="stable")[:k]


def shares(energy: np.ndarray) -> np.ndarray:
    """[..., n, T] energy -> each neuron's share of the task's total over the n neurons (0 where the total is 0)."""
    total = energy.sum(axis=-2, keepdims=True)
    return np.divide(energy, total, out=np.zeros_like(energy, dtype=float), where=total > 0)


def top_k_mask(energy: np.ndarray, k: int) -> np.ndarray:
    """[L, n, T] -> bool [L, n, T]: the top-``k`` neurons of each (block, task); none where the energy is all 0."""
    mask = np.zeros(energy.shape, dtype=bool)
    L, _, T = energy.shape
    for l in range(L):
        for t in range(T):
            if energy[l, :, t].max() > 0:
                mask[l, top_neurons(energy[l, :, t], k), t] = True
    return mask


def init_floor(energy_at_init: np.ndarray) -> np.ndarray:
    """[seeds, L, n, T] energy at step 0 -> [L, n, T]: the r-th largest share of each (block, task) at
    rank r (0 = largest), the largest over the seeds."""
    q = shares(np.asarray(energy_at_init, dtype=float))
    return (-np.sort(-q, axis=2)).max(axis=0)


def gradient_owner(energy: np.ndarray, k: int, floor: np.ndarray | None, learned: np.ndarray, blocks: np.ndarray | None = None) -> np.ndarray:
    """owner [L, n] (task index or -1) at one checkpoint.

    ``energy`` [L, n, T]: squared gradient norms per neuron; ``floor`` [L, n, T] by rank (None: no floor);
    ``learned`` [T] bool: tasks allowed to claim at this step; ``blocks`` [L] bool: blocks where
    task neurons are defined (None: all)."""
    q = shares(energy)
    claim = top_k_mask(energy, k) & learned[None, None, :]
    if floor is not None:  # the neuron of rank r against the null's r-th share
        rank = np.argsort(np.argsort(-energy, axis=1, kind="stable"), axis=1, kind="stable")
        claim &= q > np.take_along_axis(floor, rank, axis=1)
    if blocks is not None:
        claim &= np.asarray(blocks, dtype=bool)[:, None, None]
    best = np.where(claim, q, -1.0)
    owner = best.argmax(-1)
    return np.where(claim.any(-1), owner, -1)
