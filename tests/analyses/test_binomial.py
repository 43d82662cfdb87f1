"""retention's calibrated accuracy tests: the statistics against direct computations, and the
false-positive rate and power measured on simulated series (null: binomial noise)."""

import numpy as np
import pytest

from mechrare.analyses.binomial import detect_binomial, drop_statistic, learned_statistic, monotone_fit, windows

ALPHA = 0.05


def mc_bound(rate: float, series: int) -> float:
    """The largest measured rate a one-sided binomial test at 1% accepts as <= ``rate``."""
    return rate + 2.33 * np.sqrt(rate * (1 - rate) / series)


def test_statistics_by_hand():
    k = np.array([1, 2, 3, 10, 10, 10, 2, 2, 2])
    assert windows(k, 3).tolist() == [6, 15, 23, 30, 22, 14, 6]
    z = learned_statistic(k, 10, 0.25, 3)
    assert z[3] == pytest.approx((30 / 30 - 0.25) / np.sqrt(0.25 * 0.75 / 30))
    stat, i, j = drop_statistic(k, 10, 3)
    a = windows(k, 3) / 30
    best = max((a[p] - a[q]) / np.sqrt(2 * ((a[p] + a[q]) / 2) * (1 - (a[p] + a[q]) / 2) / 30)
               for p in range(7) for q in range(p + 3, 7) if 0 < (a[p] + a[q]) / 2 < 1)
    assert (int(i), int(j)) == (3, 6) and float(stat) == pytest.approx(best)
    fit = monotone_fit(np.array([0, 5, 3, 8]), 10)
    assert np.all(np.diff(fit) >= 0) and fit.tolist() == pytest.approx([0.0, 0.4, 0.4, 0.8])


def test_a_clear_learn_then_overwrite_and_a_clean_learning_curve():
    steps = np.arange(20) * 50
    acc = np.r_[np.full(6, 0.06), np.full(7, 0.62), np.full(7, 0.12)]
    e = detect_binomial(steps, acc, 256, 1 / 16, seed=1)
    assert e.learned and e.overwritten and not e.retained
    assert e.learned_step == 300 and 300 <= e.peak_step <= 600 and e.overwrite_step > e.peak_step
    assert e.drop == pytest.approx(0.5, abs=0.05) and e.p_overwrite < 0.01
    rise = np.minimum(0.9, np.linspace(0.06, 1.2, 20))
    e = detect_binomial(steps, rise, 256, 1 / 16, seed=1)
    assert e.learned and e.retained and not e.overwritten
    never = detect_binomial(steps, np.full(20, 0.5), 28, 0.5, seed=1)
    assert not never.learned and not never.overwritten and np.isnan(never.learned_step)
    short = detect_binomial(steps[:4], acc[:4], 256, 1 / 16)
    assert not short.learned and "too few" in short.details["skipped"]


def simulate(curve, n, chance, series, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(len(curve))
    out = [detect_binomial(steps, rng.binomial(n, curve) / n, n, chance, n_null=200, seed=[seed, s]) for s in range(series)]
    return np.mean([e.learned for e in out]), np.mean([e.overwritten for e in out])


@pytest.mark.slow
@pytest.mark.parametrize(
    "n, T, chance",
    [(6, 26, 0.5), (28, 26, 1 / 16), (256, 16, 0.5)],
)
def test_false_positive_rate_at_chance(n, T, chance):
    """Pure binomial noise at chance: neither 'learned' nor 'overwritten' beyond alpha."""
    series = 1000
    learned, overwritten = simulate(np.full(T, chance), n, chance, series)
    assert learned <= mc_bound(ALPHA, series) and overwritten <= mc_bound(ALPHA, series), (learned, overwritten)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat", "rise"])
def test_false_positive_rate_of_overwrites_without_any_drop(kind):
    """A task learned and held (flat at 0.5), or a monotone learning curve: no overwrite beyond alpha."""
    T, n, series = 26, 256, 1000
    curve = np.full(T, 0.5) if kind == "flat" else 1 / 16 + (0.8 - 1 / 16) / (1 + np.exp(-(np.arange(T) - T / 2)))
    learned, overwritten = simulate(curve, n, 1 / 16, series, seed=3)
    assert learned == 1.0 and overwritten <= mc_bound(ALPHA, series), overwritten


@pytest.mark.slow
@pytest.mark.parametrize("n", [28, 256])
def test_power_at_a_drop_of_four_binomial_standard_errors(n):
    """Learn, hold 4 checkpoints, drop by 4 binomial s.e. and hold 4: found in >= 80%."""
    hi = 0.6
    drop = 4 * np.sqrt(hi * (1 - hi) / n)
    curve = np.r_[np.full(18, 1 / 16), np.full(4, hi), np.full(4, hi - drop)]
    learned, overwritten = simulate(curve, n, 1 / 16, 200, seed=5)
    assert learned >= 0.99 and overwritten >= 0.8, overwritten
