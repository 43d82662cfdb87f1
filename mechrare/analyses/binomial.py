"""Learned and overwritten, for held-out accuracy: tests calibrated against binomial noise.

A task's held-out accuracy at a checkpoint is k correct of n eval items. Its
noise is binomial, so each event is a test against a null that has exactly that
noise, with its false-positive rate fixed at ``alpha`` per (model, task) series:

* **learned**: some window of ``window`` consecutive checkpoints is above the
  task's chance level (1 / the number of answers it can have, not the
  vocabulary's) by more than binomial noise allows. Statistic: the largest
  z = (window accuracy - chance) / sqrt(chance (1 - chance) / (window n)) over
  the series. Null: every checkpoint Binomial(n, chance), simulated
  ``n_null`` times for the series' own n and length, so the maximum over the
  series is accounted for. ``learned_step`` is the last checkpoint of the
  first window whose z exceeds the null's 1 - alpha quantile.
* **overwritten**: the accuracy falls after a peak by more than noise allows.
  Statistic: the largest standardised drop between two non-overlapping windows,
  earlier minus later, (a_i - a_j) / sqrt(2 p (1 - p) / (window n)), p their
  mean. Null: "accuracy never falls", with the series' own binomial noise.
  Within that null a flat curve is the least favourable (a rise only makes
  drops rarer), so each checkpoint is drawn Binomial(n, level) for every level
  the series' isotonic (non-decreasing) fit takes, and the largest p-value is
  kept. An overwrite needs the task learned first. The event runs from the
  peak window's last checkpoint to the drop window's last checkpoint.

p-values are (1 + #null statistics >= observed) / (n_null + 1). The nulls draw
checkpoints independently. Real checkpoints are scored on the *same* eval items,
so their errors are positively correlated; that makes a single-checkpoint max
conservative, but a window of nearly identical checkpoints is then less
informative than ``window`` independent draws, so the pooled tests can be
optimistic when the model barely changes between checkpoints. The measured
rates (tests/analyses/test_binomial.py, benchmarks/RESULTS.md) are for the
binomial null the issue fixes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SeriesEvents:
    """What a series' learned and overwritten tests found (steps are checkpoint steps; NaN: none);
    ``tested``: false where the series was too short to test (``details["skipped"]`` says why)."""

    p_learned: float = np.nan
    learned_step: float = np.nan
    peak_step: float = np.nan
    peak_value: float = np.nan
    final_value: float = np.nan
    p_overwrite: float = np.nan
    overwrite_step: float = np.nan
    drop: float = np.nan
    learned: bool = False
    overwritten: bool = False
    tested: bool = False
    details: dict = field(default_factory=dict)

    @property
    def retained(self) -> bool:
        return self.learned and not self.overwritten


@dataclass
class BinomialEvents(SeriesEvents):
    """The binomial tests' findings, with the chance level they tested against."""

    chance: float = np.nan


def windows(k: np.ndarray, w: int) -> np.ndarray:
    """Trailing window sums over the last axis: [..., T] -> [..., T - w + 1]."""
    c = np.cumsum(k, axis=-1)
    out = c[..., w - 1 :].astype(float)
    out[..., 1:] -= c[..., : -w]
    return out


def learned_statistic(k: np.ndarray, n: int, chance: float, w: int) -> np.ndarray:
    """[..., T'] z of each trailing window's accuracy above chance."""
    return (windows(k, w) / (w * n) - chance) / np.sqrt(chance * (1 - chance) / (w * n))


def drop_statistic(k: np.ndarray, n: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest standardised drop between non-overlapping trailing windows i < j (j >= i + w):
    (statistic [...], i [...], j [...]) in window indices."""
    a = windows(k, w) / (w * n)  # [..., T']
    m = a.shape[-1]
    ai, aj = a[..., :, None], a[..., None, :]
    p = np.clip((ai + aj) / 2, 0.5 / (w * n), 1 - 0.5 / (w * n))
    z = (ai - aj) / np.sqrt(2 * p * (1 - p) / (w * n))
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    z = np.where(j >= i + w, z, -np.inf)
    flat = z.reshape(*z.shape[:-2], -1)
    best = flat.argmax(-1)
    return np.take_along_axis(flat, best[..., None], -1)[..., 0], best // m, best % m


def monotone_fit(k: np.ndarray, n: int) -> np.ndarray:
    """The non-decreasing accuracy curve closest to the series (isotonic regression)."""
    from sklearn.isotonic import IsotonicRegression

    x = np.arange(len(k))
    return IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit(x, k / n).predict(x)


def drop_p_value(stat: float, k: np.ndarray, n: int, window: int, n_null: int, rng) -> float:
    """p-value of a drop statistic under "accuracy never falls": the largest over flat
    curves at the levels the series' isotonic (non-decreasing) fit passes through.

    A flat curve is the least favourable non-decreasing one for a drop (any rise only
    makes drops less likely); its level changes the noise, so every level the fit
    takes is tried and the largest p-value kept."""
    levels = np.unique(np.round(monotone_fit(k, n), 6))
    if len(levels) > 8:
        levels = np.quantile(levels, np.linspace(0, 1, 8))
    worst = 0.0
    for level in levels:
        null = drop_statistic(rng.binomial(n, level, size=(n_null, len(k))), n, window)[0]
        worst = max(worst, float((1 + (null >= stat).sum()) / (n_null + 1)))
    return worst


def detect_binomial(steps, accuracy, n: int, chance: float, window: int = 3, alpha: float = 0.05,
                n_null: int = 1000, seed=0) -> BinomialEvents:
    """The learned and overwritten tests on one accuracy series (NaN checkpoints dropped).

    ``seed``: an int or a sequence of ints for ``numpy.random.default_rng`` (the null's draws)."""
    steps, accuracy = np.asarray(steps, dtype=float), np.asarray(accuracy, dtype=float)
    ok = np.isfinite(accuracy)
    steps, k = steps[ok], np.rint(accuracy[ok] * n)
    out = BinomialEvents(chance=float(chance))
    if len(k) < 2 * window or n < 1 or not 0 < chance < 1:
        out.details["skipped"] = f"{len(k)} checkpoints, n = {n}, chance = {chance}: too few to test"
        return out
    out.tested = True
    rng = np.random.default_rng(seed)
    acc = windows(k, window) / (window * n)
    out.final_value = float(acc[-1])
    top = int(np.argmax(acc))
    out.peak_value, out.peak_step = float(acc[top]), float(steps[top + window - 1])

    z = learned_statistic(k, n, chance, window)
    null = learned_statistic(rng.binomial(n, chance, size=(n_null, len(k))), n, chance, window).max(-1)
    out.p_learned = float((1 + (null >= z.max()).sum()) / (n_null + 1))
    out.learned = out.p_learned <= alpha
    if out.learned:
        crit = np.quantile(null, 1 - alpha)
        first = int(np.argmax(z > crit)) if (z > crit).any() else int(np.argmax(z))
        out.learned_step = float(steps[first + window - 1])

    stat, i, j = drop_statistic(k, n, window)
    out.p_overwrite = drop_p_value(stat, k, n, window, n_null, rng)
    out.overwritten = bool(out.learned and out.p_overwrite <= alpha)
    if out.overwritten:
        out.peak_step, out.peak_value = float(steps[int(i) + window - 1]), float(acc[int(i)])
        out.overwrite_step = float(steps[int(j) + window - 1])
        out.drop = float(acc[int(i)] - acc[int(j)])
    return out
