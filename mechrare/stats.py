"""Uncertainty of the numbers a report states: seeds and eval items together.

A finding's effect is a *contrast* of per-seed measurements (a slope over the
ladder, a difference between two models). Its 95% interval combines

* **seed-to-seed variation**: the spread of the per-seed contrasts, with a
  Student t quantile on k - 1 degrees of freedom (k seeds), and
* **eval-set sampling**: the binomial variance of accuracy on the task's n
  held-out items, ``sum_i w_i^2 p_i (1 - p_i) / n``. The items are the same
  for every seed, so this part does not shrink with more seeds; it is added
  in full (conservative where the seeds' item errors are independent, and
  where the models' errors on the same items are correlated).

So ``estimate +- t_{0.975, k-1} * sqrt(s^2 / k + v_items)``. A percentile
bootstrap over seeds is *not* used: with 3 seeds it has 10 distinct resamples
and covers far less than 95% (measured in tests/test_stats.py). With one seed
there is no seed-to-seed variance to estimate: the interval is not computed
and a test that needs it is ``inconclusive``.

Counts of events (how many seeds show an overwrite) use exact binomial
tests; fractions of pairs use Clopper-Pearson intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
MIN_SEEDS = 2  # the fewest seeds a seed-to-seed variance needs


@dataclass(frozen=True)
class Estimate:
    """A contrast's mean over seeds and its 95% interval (NaN with fewer than MIN_SEEDS seeds)."""

    value: float
    low: float
    high: float
    n_seeds: int
    per_seed: tuple[float, ...] = ()

    @property
    def measured(self) -> bool:
        return np.isfinite(self.low) and np.isfinite(self.high)

    def above(self, null: float = 0.0) -> bool:
        """The whole interval lies above ``null``."""
        return self.measured and self.low > null

    def below(self, null: float = 0.0) -> bool:
        return self.measured and self.high < null

    def text(self, digits: int = 3, signed: bool = True) -> str:
        fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
        if not self.measured:
            return fmt.format(self.value) + f" (no CI: {self.n_seeds} seed{'s' if self.n_seeds != 1 else ''})"
        return fmt.format(self.value) + f" [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def t_quantile(k: int, level: float = LEVEL) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, k - 1))


def seed_interval(per_seed, item_variance: float = 0.0, level: float = LEVEL) -> Estimate:
    """Mean of ``per_seed`` (NaNs dropped) with the interval of the module docstring."""
    x = np.asarray(per_seed, dtype=float)
    x = x[np.isfinite(x)]
    k = len(x)
    if k == 0:
        return Estimate(np.nan, np.nan, np.nan, 0)
    value = float(x.mean())
    if k < MIN_SEEDS:
        return Estimate(value, np.nan, np.nan, k, tuple(map(float, x)))
    half = t_quantile(k, level) * float(np.sqrt(x.var(ddof=1) / k + max(item_variance, 0.0)))
    return Estimate(value, value - half, value + half, k, tuple(map(float, x)))


def binomial_variance(p: float, n: int) -> float:
    """Variance of an accuracy measured on ``n`` items at true accuracy ``p`` (p clipped away from 0 and 1
    by half an item, so that a perfect or zero score still carries sampling noise)."""
    if n <= 0 or not np.isfinite(p):
        return 0.0
    p = min(max(p, 0.5 / n), 1 - 0.5 / n)
    return p * (1 - p) / n


def contrast(per_seed_values: np.ndarray, weights, n_items=None, level: float = LEVEL) -> Estimate:
    """The contrast ``sum_i w_i x_i`` of per-model measurements ``per_seed_values`` ([seed, model]).

    ``n_items``: eval items per model where the measurements are accuracies (adds their
    binomial variance); None where they are not."""
    values = np.asarray(per_seed_values, dtype=float)
    w = np.asarray(weights, dtype=float)
    ok = np.isfinite(values).all(axis=1)
    per_seed = values[ok] @ w
    item = 0.0
    if n_items is not None and ok.any():
        means = values[ok].mean(axis=0)
        item = float(sum(wi**2 * binomial_variance(p, int(n)) for wi, p, n in zip(w, means, np.broadcast_to(n_items, w.shape))))
    return seed_interval(per_seed, item, level)


def slope_weights(x) -> np.ndarray:
    """Weights w with ``w @ y`` the least-squares slope of y on x."""
    x = np.asarray(x, dtype=float)
    d = x - x.mean()
    return d / float((d**2).sum())


def clopper_pearson(successes: int, trials: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact binomial interval of a proportion."""
    from scipy.stats import beta

    if trials == 0:
        return np.nan, np.nan
    a = (1 - level) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(a, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - a, successes + 1, trials - successes))
    return low, high


def binomial_tail(count: int, trials: int, p: float) -> float:
    """P(X >= count) for X ~ Binomial(trials, p): how often ``count`` or more of ``trials``
    independent tests at false-positive rate ``p`` fire under the null."""
    from scipy.stats import binom

    return float(binom.sf(count - 1, trials, p))
