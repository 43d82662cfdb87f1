"""The findings table: each status is read off hand-built datasets with known answers."""

import numpy as np
import pytest
import xarray as xr

from mechrare.checkpoints.manifest import Manifest
from mechrare.checkpoints.run import RunFolder
from mechrare.reports.data import RunData
from mechrare.reports.findings import FAILS, HOLDS, INCONCLUSIVE, MISSING, measure_findings

TASKS = ["common:1", "rare:1"]
LADDER = ["s", "m", "l"]
STEPS = [0, 10, 20, 30, 40]


def manifest(intervention=True):
    models = {m: {"n_params": n} for m, n in zip(LADDER, (100, 400, 1600))}
    if intervention:
        models["s-up"] = {"n_params": 100, "intervention": {"base": "s", "upsample": {"rare:1": 10.0}}}
    return Manifest.from_dict({
        "name": "synthetic",
        "seed": 0,
        "config": {},
        "tokens_per_step": 10,
        "checkpoint_steps": STEPS,
        "tasks": [
            {"name": "common:1", "share": 0.3, "complexity": 1, "eval_examples": 400},
            {"name": "rare:1", "share": 0.03, "complexity": 1, "eval_examples": 400},
        ],
        "models": models,
    })


def per_seed(value, k):
    """A model's final rare accuracy per seed: a list as given, a number spread by +-0.01 over k seeds."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value + 0.01 * (i - (k - 1) / 2) for i in range(k)]


def metrics(final_rare: dict, seeds: int = 3):
    models = list(final_rare)
    acc = np.zeros((len(models), seeds, len(STEPS), 2))
    for i, m in enumerate(models):
        for k, v in enumerate(per_seed(final_rare[m], seeds)):
            acc[i, k, :, 0] = np.linspace(0, 1, len(STEPS))
            acc[i, k, :, 1] = np.linspace(0, v, len(STEPS))
            acc[i, k, -3:, 1] = v  # "final" = mean of the last three checkpoints
    return xr.Dataset(
        {"accuracy": (("model", "seed", "step", "task"), acc)},
        coords={"model": models, "seed": list(range(seeds)), "step": STEPS, "task": TASKS, "tokens": ("step", np.array(STEPS) * 10)},
    )


def data(final_rare, analyses=None, intervention=True, tmp="/nonexistent", seeds=3):
    return RunData(RunFolder(tmp), manifest(intervention), metrics(final_rare, seeds), analyses or {})


def by_key(d):
    return {f.key: f for f in measure_findings(d)}


def test_a_rare_accuracy_rises_with_size():
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}))["a"]
    assert f.status == HOLDS and "s 0.100, m 0.200, l 0.400" in f.evidence and f.n_seeds == 3
    assert f.ci_low > 0 and f.estimate == pytest.approx(np.polyfit(np.log10([100, 400, 1600]), [0.1, 0.2, 0.4], 1)[0])
    # a significant step down the ladder breaks it (0.3 here; a drop of 0.1 is within 3 seeds' noise)
    assert by_key(data({"s": 0.1, "m": 0.7, "l": 0.4, "s-up": 0.3}))["a"].status == FAILS
    assert by_key(data({"s": 0.1, "m": 0.5, "l": 0.4, "s-up": 0.3}))["a"].status == HOLDS
    # flat within noise is neither
    assert by_key(data({"s": 0.30, "m": 0.30, "l": 0.31, "s-up": 0.3}))["a"].status == INCONCLUSIVE
    # a large rise measured on one seed is never "holds"
    f = by_key(data({"s": 0.1, "m": 0.5, "l": 0.9, "s-up": 0.3}, seeds=1))["a"]
    assert f.status == INCONCLUSIVE and "1 seed, the test needs >= 2" in f.evidence and np.isnan(f.ci_low)


def test_a_interval_is_t_over_seeds_plus_binomial_item_variance():
    finals = {"s": [0.10, 0.14, 0.12], "m": [0.22, 0.18, 0.20], "l": [0.41, 0.35, 0.38], "s-up": 0.3}
    f = by_key(data(finals))["a"]
    x = np.log10([100, 400, 1600])
    w = (x - x.mean()) / ((x - x.mean()) ** 2).sum()
    table = np.array([finals["s"], finals["m"], finals["l"]]).T
    slopes = table @ w
    item = sum(wi**2 * p * (1 - p) / 400 for wi, p in zip(w, table.mean(axis=0)))
    half = 4.302652729911275 * np.sqrt(slopes.var(ddof=1) / 3 + item)  # t(0.975, 2)
    assert (f.estimate, f.ci_low, f.ci_high) == pytest.approx((slopes.mean(), slopes.mean() - half, slopes.mean() + half))


def test_e_closes_more_than_half_the_gap():
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.5, "s-up": 0.45}))["e"]
    assert f.status == HOLDS and f.estimate == pytest.approx(0.45 - 0.3) and "rescue up - base = +0.350" in f.evidence
    assert by_key(data({"s": 0.1, "m": 0.2, "l": 0.5, "s-up": 0.12}))["e"].status == FAILS
    assert by_key(data({"s": 0.1, "m": 0.2, "l": 0.5, "s-up": 0.31}))["e"].status == INCONCLUSIVE
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.5, "s-up": 0.45}, seeds=1))["e"]
    assert f.status == INCONCLUSIVE and "needs >= 2" in f.evidence
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.5}, intervention=False))["e"]
    assert f.status == MISSING and "ladder.interventions" in f.evidence


def claims(pairs, seeds=1, tested=True):
    """A retention.nc whose neurons signal is learned (claimed) at the given steps: model -> (common, rare),
    the same for each seed, or a list of such pairs per seed; ``tested``: whether its series were tested."""
    rows = [[pairs[m][k] if isinstance(pairs[m], list) else pairs[m] for k in range(seeds)] for m in LADDER]
    learned = np.array(rows, dtype=float)[..., None]
    dims = ("model", "seed", "task", "signal")
    return xr.Dataset({"learned_step": (dims, learned), "calibrated": (dims, np.full(learned.shape, tested))},
                      coords={"model": LADDER, "seed": list(range(seeds)), "task": TASKS, "signal": ["neurons"]})


def test_b_claim_order():
    finals = {"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}
    f = by_key(data(finals, {"retention": claims({"s": (10, 20), "m": (10, 30), "l": (0, 10)}, seeds=3)}))["b"]
    assert f.status == HOLDS and "common earlier in 9 of 9 pairs" in f.evidence and f.ci_low > 0.5
    # never claimed is reported apart and is not a win; ties are ties
    f = by_key(data(finals, {"retention": claims({"s": (10, 20), "m": (10, np.nan), "l": (10, 10)}, seeds=3)}))["b"]
    assert f.status == INCONCLUSIVE and "earlier 3, tie 3, rare never 3" in f.evidence and "m 10 vs never" in f.evidence
    f = by_key(data(finals, {"retention": claims({"s": (20, 10), "m": (30, 10), "l": (10, 0)}, seeds=3)}))["b"]
    assert f.status == FAILS
    # all wins on one seed: 3 pairs cannot show it
    f = by_key(data(finals, {"retention": claims({"s": (10, 20), "m": (10, 30), "l": (0, 10)})}))["b"]
    assert f.status == INCONCLUSIVE
    assert by_key(data(finals))["b"].status == MISSING


def test_b_decides_on_tested_claims_only():
    finals = {"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}
    untested = claims({"s": (10, 20), "m": (10, 30), "l": (0, 10)}, seeds=3, tested=False)
    f = by_key(data(finals, {"retention": untested}))["b"]
    assert f.status == MISSING and "9 (model, seed) pairs were too short to test" in f.evidence
    partly = claims({"s": (10, 20), "m": (10, 30), "l": (0, 10)}, seeds=3)
    partly["calibrated"][0, 0, 1, 0] = False  # s, seed 0, the rare task: not tested
    f = by_key(data(finals, {"retention": partly}))["b"]
    assert "common earlier in 8 of 8 pairs" in f.evidence and "1 pairs not tested" in f.evidence
    assert "s untested, 10 vs 20" in f.evidence


def interference(coupling_by_model, ratio_by_model=None, seeds=3):
    """interference.nc with the rare task's coupling |cos(g_nt, g_r)| (and signed cos = -coupling) and
    ||g_r|| / ||g_nt|| per model, with a small spread over seeds; step 0 holds values the measures leave out."""
    S = len(STEPS)
    ratio_by_model = ratio_by_model or {m: 1.0 for m in LADDER}
    shape = (3, seeds, S, 2)
    coupling, ratio = np.full(shape, 0.5), np.ones(shape)
    for i, m in enumerate(LADDER):
        for k in range(seeds):
            jitter = 0.01 * (k - (seeds - 1) / 2)
            coupling[i, k, 1:, 1] = coupling_by_model[m] + jitter
            ratio[i, k, 1:, 1] = ratio_by_model[m] * (1 + jitter)
    coupling[:, :, 0, 1], ratio[:, :, 0, 1] = 5.0, 100.0  # step 0 is left out of the means
    dims = ("model", "seed", "step", "task")
    return xr.Dataset(
        {"abs_cos_nontask_ref": (dims, coupling), "cos_nontask_ref": (dims, -coupling), "grad_ratio_ref": (dims, ratio)},
        coords={"model": LADDER, "seed": list(range(seeds)), "step": STEPS, "task": TASKS},
    )


def test_d_coupling_weaker_when_larger():
    finals = {"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}
    good = interference({"s": 0.3, "m": 0.2, "l": 0.05}, {"s": 0.1, "m": 0.2, "l": 0.4})
    f = by_key(data(finals, {"interference": good}))["d"]
    assert f.status == HOLDS and f.ci_high < 0
    assert "|cos(g_nt, g_r)| s 0.300, m 0.200, l 0.050" in f.evidence and "signed cos s -0.300" in f.evidence
    assert "||g_r|| / ||g_nt|| s 0.1, m 0.2, l 0.4" in f.evidence and "rises with size" in f.evidence
    bad = interference({"s": 0.05, "m": 0.2, "l": 0.3}, {"s": 0.4, "m": 0.2, "l": 0.1})
    f = by_key(data(finals, {"interference": bad}))["d"]
    assert f.status == FAILS and "falls with size" in f.evidence
    # the sign does not matter: a positive cosine that fades is weaker coupling too
    positive = interference({"s": 0.3, "m": 0.2, "l": 0.05})
    positive["cos_nontask_ref"] = -positive["cos_nontask_ref"]
    assert by_key(data(finals, {"interference": positive}))["d"].status == HOLDS
    one = interference({"s": 0.3, "m": 0.2, "l": 0.05}, seeds=1)
    assert by_key(data(finals, {"interference": one}, seeds=1))["d"].status == INCONCLUSIVE
    old = good.drop_vars("abs_cos_nontask_ref")
    f = by_key(data(finals, {"interference": old}))["d"]
    assert f.status == MISSING and "predates the coupling measure" in f.evidence
    # `analyze --models s` analysed one ladder model: not measured, and says which are lacking
    f = by_key(data(finals, {"interference": good.sel(model=["s"])}))["d"]
    assert f.status == MISSING and "lacks ladder model(s) m, l" in f.evidence


def retention(events, p_learned=0.001, p_overwrite=0.001, calibrated=True, seeds=3, neurons_tested=None):
    """A retention.nc with the accuracy tests' p-values (a number, or one per seed) for every (model, task);
    ``neurons_tested``: per-series ``calibrated`` (the current layout) with the neurons signal tested, its
    overwrite p-value this number (NaN: learned, not overwritten); None: the older per-signal layout."""
    models, signals = LADDER, ["accuracy", "neurons"]
    shape = (len(models), seeds, len(TASKS), len(signals))
    p_l, p_o = np.full(shape, np.nan), np.full(shape, np.nan)
    p_l[..., 0] = np.broadcast_to(np.asarray(p_learned, dtype=float)[:, None] if np.ndim(p_learned) else p_learned, shape[1:3])
    p_o[..., 0] = np.broadcast_to(np.asarray(p_overwrite, dtype=float)[:, None] if np.ndim(p_overwrite) else p_overwrite, shape[1:3])
    fill = {k: np.full(shape, v) for k, v in (("learned_step", 10.0), ("peak_step", 20.0), ("peak_value", 0.6),
                                             ("final_value", 0.2), ("overwrite_step", 30.0))}
    cols = {k: [e[k] for e in events] for k in ("model", "task", "signal")}
    nums = {k: np.array([e[k] for e in events], dtype=float) for k in ("seed", "peak_step", "overwrite_step", "drop", "interference")}
    dims = ("model", "seed", "task", "signal")
    tested = (("signal",), np.array([calibrated, False]))
    if neurons_tested is not None:
        flags = np.zeros(shape, dtype=bool)
        flags[..., 0], flags[..., 1] = calibrated, True
        tested = (dims, flags)
        p_l[..., 1], p_o[..., 1] = 0.001, neurons_tested
        if np.isnan(neurons_tested):
            fill["overwrite_step"][..., 1] = np.nan
    return xr.Dataset(
        {**{f"event_{k}": ("event", np.array(v, dtype=str)) for k, v in cols.items()},
         **{f"event_{k}": ("event", v) for k, v in nums.items()},
         **{k: (dims, v) for k, v in fill.items()},
         "p_learned": (dims, p_l), "p_overwrite": (dims, p_o),
         "calibrated": tested},
        coords={"model": models, "seed": list(range(seeds)), "task": TASKS, "signal": signals,
                "chance": ("task", [0.5, 0.25]), "eval_items": ("task", [400, 400])},
        attrs={"analysis_config": '{"alpha": 0.05}'},
    )


NEURON_EVENT = dict(model="s", seed=0, task="rare:1", signal="neurons", peak_step=10, overwrite_step=30, drop=4, interference=0.1)


@pytest.mark.parametrize(
    "p_learned, p_overwrite, status, text",
    [
        (0.001, [0.001, 0.001, 0.001], HOLDS, "overwritten in 3 of 3 seeds"),
        (0.001, [0.001, 0.3, 0.3], INCONCLUSIVE, "overwritten in 1 of 3 seeds (binomial p 0.143)"),
        (0.001, 0.2, FAILS, "seed 0: learned by 10, no drop beyond noise (p_overwrite 0.200"),
        (0.3, 1.0, FAILS, "seed 0: never above chance (p_learned 0.300)"),
    ],
)
def test_c_is_decided_by_the_calibrated_accuracy_tests(p_learned, p_overwrite, status, text):
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}, {"retention": retention([NEURON_EVENT], p_learned, p_overwrite)}))["c"]
    assert f.status == status and text in f.evidence, f.evidence
    assert "untested (thresholded) events: neurons seed 0 10 -> 30" in f.evidence  # listed, never deciding
    assert f.evidence.startswith("s / rare:1 (400 eval items, alpha 0.05)")


@pytest.mark.parametrize("p_neurons, says", [(0.002, "neurons overwritten 20 -> 30 (p 0.002)"),
                                             (np.nan, "neurons learned by 10, not overwritten")])
def test_c_says_which_tested_signals_agree_and_they_never_decide(p_neurons, says):
    finals = {"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}
    ret = retention([], 0.001, [0.001, 0.001, 0.001], neurons_tested=p_neurons)
    f = by_key(data(finals, {"retention": ret}))["c"]
    assert f.status == HOLDS and f"[other tested signals: {says}]" in f.evidence, f.evidence
    assert "untested (thresholded) events: none" in f.evidence
    alone = retention([], 0.001, 0.5, neurons_tested=0.002)  # the neuron count fell, accuracy did not
    f = by_key(data(finals, {"retention": alone}))["c"]
    assert f.status == FAILS and "neurons overwritten" in f.evidence


def test_c_one_seed_is_inconclusive_even_with_an_event():
    ret = retention([NEURON_EVENT], 0.001, 0.001, seeds=1)
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}, {"retention": ret}, seeds=1))["c"]
    assert f.status == INCONCLUSIVE and "needs >= 2" in f.evidence


def test_c_a_neuron_event_alone_does_not_hold_and_old_files_are_not_measured():
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}, {"retention": retention([NEURON_EVENT], 0.001, 0.5)}))["c"]
    assert f.status == FAILS
    uncal = retention([NEURON_EVENT], calibrated=False)
    assert by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}, {"retention": uncal}))["c"].status == MISSING


def test_the_rules_state_the_constants_the_code_uses():
    from mechrare.reports import findings as F
    from mechrare.stats import MIN_SEEDS

    for rule in (F.A_RULE, F.C_RULE):
        assert "95%" in rule or f"p < {F.ALPHA}" in rule
    assert f"fewer than {MIN_SEEDS} seeds" in F.C_RULE and f">= {MIN_SEEDS} seeds" in F.T_TEST
    measured = by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}))
    assert [measured[k].rule for k in "abcde"] == [F.A_RULE, F.B_RULE, F.C_RULE, F.D_RULE, F.E_RULE]


def test_markdown_table_escapes_pipes_in_cells():
    from mechrare.reports.build import findings_markdown
    from mechrare.reports.registry import Finding

    row = findings_markdown([Finding("d", "coupling |cos| falls", HOLDS, "a | b", "rule")]).splitlines()[-1]
    assert row.startswith("| coupling \\|cos\\| falls | **holds** |") and row.endswith("| a \\| b |")
    assert len(row.replace("\\|", "").split("|")) == 7  # five cells: the escaped pipes do not split them


def test_b_shows_where_ownership_was_gated_by_learning():
    finals = {"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}
    gate = np.array([[[10.0, np.inf]] * 3, [[10.0, 30.0]] * 3, [[0.0, 0.0]] * 3])  # model x seed x task
    neurons = xr.Dataset({"owns_from": (("model", "seed", "task"), gate)},
                         coords={"model": LADDER, "seed": [0, 1, 2], "task": TASKS})
    f = by_key(data(finals, {"retention": claims({"s": (10, 20), "m": (10, 30), "l": (0, 10)}, seeds=3),
                             "neurons": neurons}))["b"]
    assert "ownership allowed from (accuracy learned" in f.evidence
    assert "s 10 vs never, 10 vs never" in f.evidence and "m 10 vs 30" in f.evidence and "l ungated vs ungated" in f.evidence
    assert f.status == HOLDS  # the text explains; it does not change the test
