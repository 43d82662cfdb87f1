"""retention's permutation tests for probe, neurons and SAE series: the statistics against direct
computations, and the false-positive rate and power measured on simulated series."""

import numpy as np
import pytest

from mechrare.analyses.jitter import (
    detect_jitter,
    drop_statistic,
    jitter_scale,
    residuals,
    rise_statistic,
    window_means,
)

ALPHA = 0.05


def mc_bound(rate: float, series: int) -> float:
    """The largest measured rate a one-sided binomial test at 1% accepts as <= ``rate``."""
    return rate + 2.33 * np.sqrt(rate * (1 - rate) / series)


def test_statistics_by_hand():
    x = np.array([0.0, 1, 0, 1, 5, 9, 9, 8, 7, 2, 1, 2])
    d = np.diff(x) ** 2
    s = np.sqrt(np.sort(d)[:-2].mean() / 2)  # the two largest jumps (16 and 25) left out
    assert jitter_scale(x) == pytest.approx(s)
    m = np.array([x[t : t + 3].mean() for t in range(10)])
    assert window_means(x, 3) == pytest.approx(m)
    unit = s * np.sqrt(2 / 3)
    assert rise_statistic(x, 3) == pytest.approx((m[3:] - m[0]) / unit)
    stat, i, j = drop_statistic(x, 3)
    best = max((m[p] - m[q], p, q) for p in range(10) for q in range(p + 3, 10))
    assert float(stat) == pytest.approx(best[0] / unit) and (int(i), int(j)) == best[1:]
    assert residuals(np.r_[np.zeros(8), np.full(8, 5.0)]) == pytest.approx(np.zeros(16))  # a step is trend, not jitter


def test_no_jitter_means_any_rise_counts_and_none_is_zero():
    step = np.r_[np.zeros(8), np.full(8, 5.0)]
    assert np.isinf(rise_statistic(step, 3).max()) and jitter_scale(step) == 0
    e = detect_jitter(np.arange(16), step)
    assert e.learned and e.learned_step == 8 and not e.overwritten and e.retained  # the first window that holds a 5
    flat = detect_jitter(np.arange(16), np.full(16, 3.0))
    assert not flat.learned and flat.p_learned == 1.0 and flat.p_overwrite == 1.0


def test_a_clear_learn_then_overwrite_a_clean_rise_and_too_short():
    rng = np.random.default_rng(0)
    steps = np.arange(26) * 10
    curve = np.r_[np.zeros(9), np.full(8, 6.0), np.zeros(9)] + rng.normal(0, 1, 26)
    e = detect_jitter(steps, curve, seed=1)
    assert e.learned and e.overwritten and not e.retained and e.p_overwrite < 0.01
    assert 90 <= e.learned_step <= 120 and 90 <= e.peak_step < e.overwrite_step and e.drop > 4
    rise = 6 / (1 + np.exp(-(np.arange(26) - 13))) + rng.normal(0, 1, 26)
    e = detect_jitter(steps, rise, seed=1)
    assert e.learned and e.retained and not e.overwritten
    short = detect_jitter(steps[:10], curve[:10])
    assert not short.tested and not short.learned and "too few" in short.details["skipped"]
    floor = detect_jitter(steps, curve, seed=1, min_effect=20.0)  # min_effect only removes events
    assert floor.p_learned == e.p_learned and not floor.learned and not floor.overwritten


def test_nan_checkpoints_are_dropped():
    x = np.r_[np.zeros(9), np.full(8, 6.0), np.zeros(9)]
    with_nan = x.copy()
    with_nan[[3, 12, 20]] = np.nan
    steps = np.arange(26)
    e, ref = detect_jitter(steps, with_nan, seed=2), detect_jitter(np.delete(steps, [3, 12, 20]), np.delete(x, [3, 12, 20]), seed=2)
    assert (e.p_learned, e.p_overwrite, e.learned_step, e.overwrite_step) == (ref.p_learned, ref.p_overwrite, ref.learned_step, ref.overwrite_step)


NOISE = {
    "gaussian": lambda rng, T: rng.standard_normal(T),
    "poisson 0.3": lambda rng, T: rng.poisson(0.3, T).astype(float),
    "poisson 5": lambda rng, T: rng.poisson(5.0, T).astype(float),
    "binomial 64": lambda rng, T: rng.binomial(64, 0.5, T) / 64,
    "student t3": lambda rng, T: rng.standard_t(3, T),
}


def simulate(draw, T, series, seed):
    rng = np.random.default_rng(seed)
    out = [detect_jitter(np.arange(T), draw(rng, T), seed=[seed, s]) for s in range(series)]
    return np.mean([e.learned for e in out]), np.mean([e.p_overwrite <= ALPHA for e in out]), np.mean([e.overwritten for e in out])


@pytest.mark.slow
@pytest.mark.parametrize("noise, T", [("gaussian", 16), ("poisson 0.3", 26), ("poisson 5", 50), ("binomial 64", 26), ("student t3", 26)])
def test_false_positive_rate_on_flat_series(noise, T):
    """No event in a flat series: neither test (the overwrite test alone, not only after 'learned') beyond alpha."""
    series = 1000
    learned, fell, _ = simulate(NOISE[noise], T, series, seed=T)
    assert learned <= mc_bound(ALPHA, series) and fell <= mc_bound(ALPHA, series), (learned, fell)


@pytest.mark.slow
def test_a_monotone_rise_is_not_an_overwrite():
    T, series = 26, 1000
    curve = 6 / (1 + np.exp(-(np.arange(T) - T / 2)))
    learned, fell, _ = simulate(lambda rng, T: curve + rng.standard_normal(T), T, series, seed=4)
    assert learned == 1.0 and fell <= mc_bound(ALPHA, series)


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["hold 4", "hold T/3", "counts"])
def test_power_at_a_fall_of_four_noise_standard_deviations(shape):
    """Learn, hold, fall back by 4 noise s.d. (and hold 4): found in >= 80%."""
    T = 26
    curves = {
        "hold 4": lambda rng, T: np.r_[np.zeros(T - 8), np.full(4, 4.0), np.zeros(4)] + rng.standard_normal(T),
        "hold T/3": lambda rng, T: np.r_[np.zeros(9), np.full(8, 4.0), np.zeros(9)] + rng.standard_normal(T),
        "counts": lambda rng, T: rng.poisson(np.r_[np.full(T - 8, 2.0), np.full(4, 20.0), np.full(4, 2.0)]).astype(float),
    }
    learned, _, overwritten = simulate(curves[shape], T, 300, seed=5)
    assert learned >= 0.9 and overwritten >= 0.8, (learned, overwritten)
