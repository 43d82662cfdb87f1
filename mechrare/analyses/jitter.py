"""Learned and overwritten, for signals whose noise is not binomial (probe, neurons, SAE).

A probe's held-out accuracy, a count of owned neurons or of task-specific SAE
features moves from checkpoint to checkpoint for reasons other than learning:
the probe's fit, attribution on a fixed sample, SAE training. That noise has no
formula, so each test takes its null from the series itself, by permuting the
order of its checkpoints (the issue's "checkpoint-order permutation"):

* **residuals**: r = x - running median of ``trend`` (5) checkpoints. A running
  median follows steps (a task learned, then overwritten) and leaves the
  checkpoint-to-checkpoint jitter, with its shape (counts near 0, heavy tails).
* **jitter scale**: s = sqrt(mean of (x[t+1] - x[t])^2 / 2) over the successive
  differences without the ``trim`` (2) largest, so that the jumps of a learned
  and overwritten signal do not inflate the noise they are measured against.
* **learned** (for neurons: *claimed*): the largest rise of a ``window``-checkpoint
  mean over the first window, in units of s * sqrt(2 / window). Null: the same
  statistic on ``n_null`` random orderings of the residuals (a flat series with
  the series' own jitter). ``learned_step`` is the last checkpoint of the first
  window whose rise exceeds the null's 1 - alpha quantile.
* **overwritten**: the largest fall between two non-overlapping windows,
  earlier minus later, in the same units, against the same null. A flat series is
  the least favourable one that never falls: a rise only makes falls rarer and
  inflates s. An overwrite needs the signal learned first.

Both statistics divide by the series' own s, so the null needs only the shape of
its jitter, which the permuted residuals carry. ``min_effect`` (signal units) is
an extra floor on the rise and the fall; it only lowers the false-positive rate.
p-values are (1 + #null statistics >= observed) / (n_null + 1).

What the null does not cover: jitter that is correlated from one checkpoint to
the next (slow wander). Permuting treats it as independent, so slow wander can
pass as a rise or a fall; benchmarks/RESULTS.md gives the measured rates under
AR(1) noise. Series shorter than ``min_checkpoints`` (16) are not tested (the
measured rates are above alpha for shorter ones).
"""

from __future__ import annotations

import numpy as np

from mechrare.analyses.binomial import SeriesEvents, windows

MIN_CHECKPOINTS = 16


def window_means(x: np.ndarray, w: int) -> np.ndarray:
    """[..., T] -> [..., T - w + 1] means of trailing windows."""
    return windows(x, w) / w


def jitter_scale(x: np.ndarray, trim: int = 2) -> np.ndarray:
    """[..., T] -> [...] sqrt(mean squared successive difference / 2), the ``trim`` largest left out."""
    d2 = np.sort(np.diff(x, axis=-1) ** 2, axis=-1)
    keep = max(d2.shape[-1] - trim, 1)
    return np.sqrt(d2[..., :keep].mean(-1) / 2)


def _scaled(num: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """num / scale, with a zero scale (a series without jitter) giving +inf for a positive num, else 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / scale
    return np.where(scale > 0, out, np.where(num > 0, np.inf, 0.0))


def rise_statistic(x: np.ndarray, w: int, trim: int = 2) -> np.ndarray:
    """[..., T] -> [..., T - 2w + 1] rise of each window (starting at w, after the first) over the first."""
    m = window_means(x, w)
    unit = (jitter_scale(x, trim) * np.sqrt(2 / w))[..., None]
    return _scaled(m[..., w:] - m[..., :1], unit)


def drop_statistic(x: np.ndarray, w: int, trim: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest fall between non-overlapping windows i < j (j >= i + w), in jitter units:
    (statistic [...], i [...], j [...]) in window indices."""
    m = window_means(x, w)
    n = m.shape[-1]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    diff = np.where(j >= i + w, m[..., :, None] - m[..., None, :], -np.inf)
    flat = diff.reshape(*diff.shape[:-2], -1)
    best = flat.argmax(-1)
    top = np.take_along_axis(flat, best[..., None], -1)[..., 0]
    unit = jitter_scale(x, trim) * np.sqrt(2 / w)
    return _scaled(top, unit), best // n, best % n


def residuals(x: np.ndarray, trend: int = 5) -> np.ndarray:
    """The series minus its running median: its checkpoint-to-checkpoint jitter."""
    from scipy.ndimage import median_filter

    return x - median_filter(x, size=trend, mode="nearest")


def detect_jitter(steps, values, window: int = 3, alpha: float = 0.05, n_null: int = 1000, seed=0,
                  min_effect: float = 0.0, trim: int = 2, trend: int = 5,
                  min_checkpoints: int = MIN_CHECKPOINTS) -> SeriesEvents:
    """The learned and overwritten tests on one series (NaN checkpoints dropped).

    ``seed``: an int or a sequence of ints for ``numpy.random.default_rng`` (the permutations)."""
    steps, x = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    ok = np.isfinite(x)
    steps, x = steps[ok], x[ok]
    out = SeriesEvents()
    if len(x) < max(min_checkpoints, 2 * window + 1):
        out.details["skipped"] = f"{len(x)} checkpoints: too few to test (needs {max(min_checkpoints, 2 * window + 1)})"
        if len(x):
            out.final_value = float(x[-1])
        return out
    out.tested = True
    rng = np.random.default_rng(seed)
    m = window_means(x, window)
    out.final_value = float(m[-1])
    top = int(np.argmax(m))
    out.peak_value, out.peak_step = float(m[top]), float(steps[top + window - 1])

    order = np.argsort(rng.random((n_null, len(x))), axis=-1)
    null_series = residuals(x, trend)[order]
    z = rise_statistic(x, window, trim)
    null = rise_statistic(null_series, window, trim).max(-1)
    out.p_learned = float((1 + (null >= z.max()).sum()) / (n_null + 1))
    rise = float((m[window:] - m[0]).max())
    out.learned = out.p_learned <= alpha and rise >= min_effect
    if out.learned:
        crit = np.quantile(null, 1 - alpha)
        first = int(np.argmax(z > crit)) if (z > crit).any() else int(np.argmax(z))
        out.learned_step = float(steps[first + 2 * window - 1])

    stat, i, j = drop_statistic(x, window, trim)
    null_drop = drop_statistic(null_series, window, trim)[0]
    out.p_overwrite = float((1 + (null_drop >= stat).sum()) / (n_null + 1))
    drop = float(m[int(i)] - m[int(j)])
    out.overwritten = bool(out.learned and out.p_overwrite <= alpha and drop >= min_effect)
    if out.overwritten:
        out.peak_step, out.peak_value = float(steps[int(i) + window - 1]), float(m[int(i)])
        out.overwrite_step = float(steps[int(j) + window - 1])
        out.drop = drop
    return out
