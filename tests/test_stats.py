"""mechrare.stats: intervals over seeds and eval items, checked against simulation and scipy."""

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from mechrare.stats import (
    MIN_SEEDS,
    binomial_tail,
    binomial_variance,
    clopper_pearson,
    contrast,
    seed_interval,
    slope_weights,
)


def simulate(rng, k, p_true, seed_sd, n_items, models=1):
    """[k, models] accuracies: each seed's true accuracy drawn around p_true, then measured on n_items."""
    p = np.clip(np.asarray(p_true)[None, :] + rng.normal(0, seed_sd, (k, models)), 0.01, 0.99)
    return rng.binomial(n_items, p) / n_items


@pytest.mark.parametrize("k,seed_sd,n_items", [(3, 0.03, 256), (3, 0.0, 64), (5, 0.05, 256), (2, 0.02, 128)])
def test_interval_covers_the_true_mean_at_least_95_percent(k, seed_sd, n_items):
    rng = np.random.default_rng([k, n_items])
    p_true, sims, hits = 0.3, 2000, 0
    for _ in range(sims):
        acc = simulate(rng, k, [p_true], seed_sd, n_items)[:, 0]
        est = seed_interval(acc, binomial_variance(acc.mean(), n_items))
        hits += est.low <= p_true <= est.high
    coverage = hits / sims
    # at least nominal, up to Monte Carlo error (3 s.e. of a 0.95 proportion over 2000 draws)
    assert coverage >= 0.95 - 3 * np.sqrt(0.95 * 0.05 / sims), coverage


def test_a_percentile_bootstrap_over_three_seeds_undercovers():
    """Why the module does not bootstrap seeds: with 3 seeds a percentile bootstrap misses often."""
    rng = np.random.default_rng(7)
    sims, hits = 1000, 0
    for _ in range(sims):
        x = rng.normal(0, 1, 3)
        boot = rng.choice(x, (2000, 3)).mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        hits += lo <= 0 <= hi
    assert hits / sims < 0.85


def test_planted_effect_is_detected_and_null_is_not():
    """Three seeds, 256 items, seed sd 0.02: a rise of 0.3 per decade of parameters is found
    in >= 80% of runs (0.2 per decade: about 70%), a flat ladder in <= 2.5% (one-sided)."""
    rng = np.random.default_rng(3)
    x = np.log10([1e4, 3e4, 1e5])
    w = slope_weights(x)
    found = null_fired = 0
    for _ in range(300):
        planted = simulate(rng, 3, [0.05, 0.20, 0.35], 0.02, 256, models=3)
        flat = simulate(rng, 3, [0.20, 0.20, 0.20], 0.02, 256, models=3)
        found += contrast(planted, w, 256).above(0)
        null_fired += contrast(flat, w, 256).above(0)
    assert found / 300 >= 0.8
    assert null_fired / 300 <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 300)


def test_contrast_is_the_per_seed_slope_averaged():
    rng = np.random.default_rng(0)
    values = rng.random((4, 3))
    x = np.log10([100, 1000, 5000])
    est = contrast(values, slope_weights(x))
    per_seed = [np.polyfit(x, row, 1)[0] for row in values]
    assert est.value == pytest.approx(np.mean(per_seed))
    assert est.per_seed == pytest.approx(per_seed)
    half = 3.182446305284263 * np.std(per_seed, ddof=1) / 2  # t(0.975, 3) * s / sqrt(4)
    assert est.high - est.value == pytest.approx(half)


def test_one_seed_has_no_interval():
    est = seed_interval([0.4], binomial_variance(0.4, 256))
    assert MIN_SEEDS == 2 and est.n_seeds == 1 and not est.measured
    assert not est.above(0) and not est.below(1)
    assert "no CI" in est.text()


def test_rows_with_a_missing_model_are_left_out():
    values = np.array([[0.1, 0.2], [np.nan, 0.3], [0.2, 0.4]])
    est = contrast(values, [-1, 1])
    assert est.n_seeds == 2 and est.value == pytest.approx(0.15)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (7, 23)])
def test_clopper_pearson_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high))


def test_binomial_tail_is_the_upper_tail():
    assert binomial_tail(2, 3, 0.05) == pytest.approx(3 * 0.05**2 * 0.95 + 0.05**3)
    assert binomial_tail(1, 3, 0.05) == pytest.approx(1 - binom.pmf(0, 3, 0.05))
    assert binomial_tail(0, 3, 0.05) == pytest.approx(1.0)


def test_binomial_variance_keeps_noise_at_the_edges():
    assert binomial_variance(0.0, 100) > 0 and binomial_variance(1.0, 100) > 0
    assert binomial_variance(0.5, 100) == pytest.approx(0.0025)
