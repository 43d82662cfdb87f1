"""The findings table: each status is read off hand-built datasets with known answers."""

import numpy as np
import pytest
import xarray as xr

from mechrare.checkpoints.manifest import Manifest
from mechrare.checkpoints.run import RunFolder
from mechrare.reports.data import RunData
from mechrare.reports.findings import FAILS, HOLDS, MISSING, measure_findings

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


def metrics(final_rare: dict[str, float]):
    models = list(final_rare)
    acc = np.zeros((len(models), len(STEPS), 2))
    for i, m in enumerate(models):
        acc[i, :, 0] = np.linspace(0, 1, len(STEPS))
        acc[i, :, 1] = np.linspace(0, final_rare[m], len(STEPS))
        acc[i, -3:, 1] = final_rare[m]  # "final" = mean of the last three checkpoints
    return xr.Dataset(
        {"accuracy": (("model", "step", "task"), acc)},
        coords={"model": models, "step": STEPS, "task": TASKS, "tokens": ("step", np.array(STEPS) * 10)},
    )


def data(final_rare, analyses=None, intervention=True, tmp="/nonexistent"):
    return RunData(RunFolder(tmp), manifest(intervention), metrics(final_rare), analyses or {})


def by_key(d):
    return {f.key: f for f in measure_findings(d)}


def test_a_rare_accuracy_rises_with_size():
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}))["a"]
    assert f.status == HOLDS and "s 0.100, m 0.200, l 0.400" in f.evidence
    # a significant step down the ladder breaks it (s.e. ~ 0.02 here)
    assert by_key(data({"s": 0.1, "m": 0.5, "l": 0.4, "s-up": 0.3}))["a"].status == FAILS
    # flat within noise is not a rise
    assert by_key(data({"s": 0.30, "m": 0.30, "l": 0.31, "s-up": 0.3}))["a"].status == FAILS


def test_e_gap_closed_fraction():
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.5, "s-up": 0.35}))["e"]
    assert f.status == HOLDS and "62.5% of the gap to l closed (m: 0.200)" in f.evidence  # (0.35-0.1)/(0.5-0.1)
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.5, "s-up": 0.2}))["e"]
    assert f.status == FAILS and "25.0% of the gap to l closed" in f.evidence
    f = by_key(data({"s": 0.5, "m": 0.2, "l": 0.4, "s-up": 0.6}))["e"]
    assert f.status == FAILS and "no gap to close" in f.evidence
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.5}, intervention=False))["e"]
    assert f.status == MISSING and "ladder.interventions" in f.evidence


def neurons(claims):
    claim = np.array([[claims[m][0], claims[m][1]] for m in LADDER], dtype=float)
    return xr.Dataset({"claim_step": (("model", "task"), claim)}, coords={"model": LADDER, "task": TASKS})


def test_b_claim_order():
    finals = {"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}
    ok = neurons({"s": (10, 20), "m": (10, np.nan), "l": (0, 10)})
    f = by_key(data(finals, {"neurons": ok}))["b"]
    assert f.status == HOLDS and "m 10 vs never" in f.evidence
    tie = neurons({"s": (10, 20), "m": (10, 10), "l": (0, 10)})
    f = by_key(data(finals, {"neurons": tie}))["b"]
    assert f.status == FAILS and "earlier in 2 of 3" in f.evidence
    assert by_key(data(finals))["b"].status == MISSING


def interference(cos_by_model, lc_by_model):
    S = len(STEPS)
    cos = np.ones((3, S, 2, 2))
    lc = np.zeros((3, S, 2, 2))
    for i, m in enumerate(LADDER):
        cos[i, 1:, 0, 1] = cos[i, 1:, 1, 0] = cos_by_model[m]
        cos[i, 0, 0, 1] = cos[i, 0, 1, 0] = 5.0  # step 0 is left out of the mean
        lc[i, 1:, 1, 0] = lc_by_model[m] / (S - 1)  # rare's loss change from common's updates
    dims = ("model", "step", "task", "other_task")
    return xr.Dataset(
        {"grad_cosine": (dims, cos), "loss_change": (dims, lc)},
        coords={"model": LADDER, "step": STEPS, "task": TASKS, "other_task": TASKS},
    )


def test_d_interference_lower_when_larger():
    finals = {"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}
    good = interference({"s": -0.3, "m": -0.1, "l": 0.2}, {"s": 0.5, "m": 0.2, "l": -0.1})
    f = by_key(data(finals, {"interference": good}))["d"]
    assert f.status == HOLDS
    assert "s +0.300, m +0.100, l -0.200" in f.evidence and "s +0.500, m +0.200, l -0.100" in f.evidence
    bad = interference({"s": -0.3, "m": -0.4, "l": 0.2}, {"s": 0.5, "m": 0.2, "l": -0.1})
    assert by_key(data(finals, {"interference": bad}))["d"].status == FAILS
    bad_lc = interference({"s": -0.3, "m": -0.1, "l": 0.2}, {"s": 0.1, "m": 0.2, "l": -0.1})
    assert by_key(data(finals, {"interference": bad_lc}))["d"].status == FAILS


def retention(events, p_learned=0.001, p_overwrite=0.001, calibrated=True):
    """A retention.nc with the accuracy tests' p-values for every (model, task) and the given events."""
    models, signals = LADDER, ["accuracy", "neurons"]
    shape = (len(models), len(TASKS), len(signals))
    p_l, p_o = np.full(shape, np.nan), np.full(shape, np.nan)
    p_l[..., 0], p_o[..., 0] = p_learned, p_overwrite
    fill = {k: np.full(shape, v) for k, v in (("learned_step", 10.0), ("peak_step", 20.0), ("peak_value", 0.6),
                                             ("final_value", 0.2), ("overwrite_step", 30.0))}
    cols = {k: [e[k] for e in events] for k in ("model", "task", "signal")}
    nums = {k: np.array([e[k] for e in events], dtype=float) for k in ("peak_step", "overwrite_step", "drop", "interference")}
    dims = ("model", "task", "signal")
    return xr.Dataset(
        {**{f"event_{k}": ("event", np.array(v, dtype=str)) for k, v in cols.items()},
         **{f"event_{k}": ("event", v) for k, v in nums.items()},
         **{k: (dims, v) for k, v in fill.items()},
         "p_learned": (dims, p_l), "p_overwrite": (dims, p_o),
         "calibrated": (("signal",), np.array([calibrated, False]))},
        coords={"model": models, "task": TASKS, "signal": signals, "chance": ("task", [0.5, 0.25]), "eval_items": ("task", [400, 400])},
        attrs={"analysis_config": '{"alpha": 0.05}'},
    )


NEURON_EVENT = dict(model="s", task="rare:1", signal="neurons", peak_step=10, overwrite_step=30, drop=4, interference=0.1)


@pytest.mark.parametrize(
    "p_learned, p_overwrite, status, text",
    [
        (0.001, 0.001, HOLDS, "accuracy: learned by step 10, peak 0.600 at 20 -> overwritten at 30"),
        (0.001, 0.2, FAILS, "accuracy: learned by step 10 (p 0.001), no drop beyond noise (p_overwrite 0.200"),
        (0.3, 1.0, FAILS, "accuracy: never above chance 0.250 (p_learned 0.300)"),
    ],
)
def test_c_is_decided_by_the_calibrated_accuracy_tests(p_learned, p_overwrite, status, text):
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}, {"retention": retention([NEURON_EVENT], p_learned, p_overwrite)}))["c"]
    assert f.status == status and text in f.evidence, f.evidence
    assert "uncalibrated signals with an event: neurons 10 -> 30" in f.evidence  # listed, never deciding
    assert f.evidence.startswith("s / rare:1 (400 eval items, alpha 0.05)")


def test_c_a_neuron_event_alone_does_not_hold_and_old_files_are_not_measured():
    f = by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}, {"retention": retention([NEURON_EVENT], 0.001, 0.5)}))["c"]
    assert f.status == FAILS
    uncal = retention([NEURON_EVENT], calibrated=False)
    assert by_key(data({"s": 0.1, "m": 0.2, "l": 0.4, "s-up": 0.3}, {"retention": uncal}))["c"].status == MISSING
