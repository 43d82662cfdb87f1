"""Finding (f) and the ablation figure: the decision on simulated nulls and planted effects, and
its numbers against an independent reading of ablation.nc."""

from types import SimpleNamespace

import numpy as np
import xarray as xr

from mechrare.reports.causal import claimed_neurons_are_causal, excess_table, last_ablated
from mechrare.reports.registry import FAILS, HOLDS, INCONCLUSIVE, MISSING


def ablation(excess_mean: float, seeds: int = 3, pairs: int = 4, draws: int = 10, noise: float = 0.05, rng=None):
    """A synthetic ablation.nc: models m0..m{pairs-1}, one task, two steps (only the last ablated); the
    random draws' rises around 0.1, the owned rise = 0.1 + excess_mean + seed noise."""
    rng = rng or np.random.default_rng(0)
    M, K, S, T = pairs, seeds, 2, 1
    rand = 0.1 + 0.02 * rng.standard_normal((M, K, S, T, draws))
    owned = 0.1 + excess_mean + noise * rng.standard_normal((M, K, S, T))
    rand[:, :, 0], owned[:, :, 0] = np.nan, np.nan  # the first step not ablated
    excess = owned - rand.mean(-1)
    rank_p = (1 + (rand >= owned[..., None]).sum(-1)) / (draws + 1)
    d = ("model", "seed", "step", "task")
    return xr.Dataset({"rise_owned": (d, owned), "rise_random": (d + ("draw",), rand), "excess": (d, excess),
                       "rank_p": (d, np.where(np.isfinite(owned), rank_p, np.nan)), "n_owned": (d, np.full(owned.shape, 5.0))},
                      coords={"model": [f"m{i}" for i in range(M)], "seed": np.arange(K), "step": [10, 20], "task": ["t"],
                              "draw": np.arange(draws)}, attrs={"measure": "task_neurons"})


def decide(ds):
    return claimed_neurons_are_causal(SimpleNamespace(analyses={"ablation": ds}))


def test_the_estimate_is_the_seed_mean_of_the_pair_mean_excess():
    ds = ablation(0.2)
    f = decide(ds)
    assert last_ablated(ds) == {f"m{i}": 20 for i in range(4)}
    expect = ds.excess.sel(step=20, task="t").mean("model").mean("seed")
    assert abs(f.estimate - float(expect)) < 1e-12 and f.n_seeds == 3
    table, seeds = excess_table(ds)
    assert seeds == [0, 1, 2] and set(table) == {(f"m{i}", "t") for i in range(4)}
    assert f.status == HOLDS and "in 12 of 12 (model, task, seed) cases" in f.evidence


def test_simulated_null_rarely_holds_and_a_planted_effect_does():
    rng = np.random.default_rng(1)
    null = [decide(ablation(0.0, rng=rng)).status for _ in range(300)]
    assert null.count(HOLDS) / 300 <= 0.05  # one side of a 95% interval: 2.5% expected
    assert null.count(FAILS) / 300 <= 0.05
    planted = [decide(ablation(0.15, rng=rng)).status for _ in range(100)]  # 3 seeds: t(2) = 4.3 needs a clear effect
    assert planted.count(HOLDS) >= 90
    harmful = [decide(ablation(-0.15, rng=rng)).status for _ in range(50)]
    assert harmful.count(FAILS) >= 45  # zeroing the claimed neurons hurts less than random ones: does not hold


def test_one_seed_is_inconclusive_and_nothing_owned_is_not_measured():
    f = decide(ablation(0.5, seeds=1))
    assert f.status == INCONCLUSIVE and "the test needs >= 2" in f.evidence
    empty = ablation(0.5).assign(rise_owned=lambda d: d.rise_owned * np.nan, excess=lambda d: d.excess * np.nan)
    assert decide(empty).status == MISSING
    assert claimed_neurons_are_causal(SimpleNamespace(analyses={})).status == MISSING
