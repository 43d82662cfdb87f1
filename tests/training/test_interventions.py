"""Interventions: an extra model trained on an upsampled mixture, recorded in the manifest."""

import numpy as np
import pytest

from mechrare.checkpoints import InterventionRecord
from mechrare.config import RunConfig
from mechrare.errors import ConfigError
from mechrare.training.runner import Plan


def config(**ladder) -> RunConfig:
    return RunConfig.from_dict(
        {
            "mixture": {
                "sequence_length": 16,
                "eval_examples": 8,
                "tasks": [
                    {"family": "facts", "complexity": 8, "frequency": 0.3},
                    {"family": "compare", "complexity": 4, "frequency": 0.03},
                ],
                "background": {"vocab_size": 16, "branching": 2},
            },
            "ladder": {"models": ["d8-l1", "d16-l2"], **ladder},
            "train": {"steps": 10, "batch_size": 16},
        }
    )


def test_intervention_gets_its_own_mixture_and_manifest_entry():
    plan = Plan(config(interventions=[{"model": "d8-l1", "upsample": {"compare:4": 10}}]))
    assert [s.name for s in plan.shapes] == ["d8-l1", "d16-l2", "d8-l1-up10"]
    base, up = plan.mixtures["d8-l1"], plan.mixtures["d8-l1-up10"]
    assert plan.mixtures["d16-l2"] is base  # the ladder shares one data order
    w = np.array([0.3, 0.3, 1.0])
    assert np.allclose(up.shares, w / w.sum())
    manifest = plan.manifest("x")
    entry = manifest.models["d8-l1-up10"]
    assert entry.intervention == InterventionRecord(base="d8-l1", upsample={"compare:4": 10.0})
    assert entry.shares["compare:4"] == pytest.approx(0.3 / 1.6)
    assert manifest.models["d8-l1"].shares["compare:4"] == pytest.approx(0.03 / 1.33)
    assert entry.shape == manifest.models["d8-l1"].shape
    assert manifest.shares("d8-l1-up10")["compare:4"] == entry.shares["compare:4"]
    rare = sum(int((up.batch(s, 16).task == 1).sum()) for s in range(50))
    rare_base = sum(int((base.batch(s, 16).task == 1).sum()) for s in range(50))
    assert rare > 4 * rare_base


def test_intervention_names_must_be_unique():
    with pytest.raises(ConfigError, match=r"ladder.interventions\[0\].name: model 'd16-l2' appears twice"):
        Plan(config(interventions=[{"model": "d8-l1", "upsample": {"compare:4": 2}, "name": "d16-l2"}]))
    with pytest.raises(ConfigError, match=r"ladder.interventions\[0\].model: unknown model size"):
        Plan(config(interventions=[{"model": "d9-l9", "upsample": {"compare:4": 2}}]))


def test_a_frequency_sweep_is_one_intervention_per_model_and_factor():
    plan = Plan(config(sweep={"task": "compare:4", "factors": [0.5, 1, 4]}))
    assert [s.name for s in plan.shapes] == ["d8-l1", "d16-l2", "d8-l1-up0.5", "d8-l1-up4", "d16-l2-up0.5", "d16-l2-up4"]
    assert plan.interventions["d16-l2-up0.5"] == {"base": "d16-l2", "upsample": {"compare:4": 0.5}, "sweep": True}
    w = np.array([0.3, 0.03 * 4, 1.0])
    assert np.allclose(plan.mixtures["d8-l1-up4"].shares, w / w.sum())
    only = Plan(config(sweep={"task": "compare:4", "factors": [2], "models": ["d16-l2"]},
                       interventions=[{"model": "d8-l1", "upsample": {"compare:4": 10}}]))
    assert [s.name for s in only.shapes] == ["d8-l1", "d16-l2", "d8-l1-up10", "d16-l2-up2"]


@pytest.mark.parametrize("sweep, message", [
    ({"task": "compare:9", "factors": [2]}, r"ladder.sweep.task.compare:9: no such task"),
    ({"task": "compare:4", "factors": []}, r"ladder.sweep.factors: needs at least one factor"),
    ({"task": "compare:4", "factors": [0, 2]}, r"ladder.sweep.factors: factors must be finite and > 0, got 0"),
    ({"task": "compare:4", "factors": [2, 2]}, r"ladder.sweep.factors: factor 2 appears twice"),
    ({"task": "compare:4", "factors": [2], "models": ["d99-l1"]}, r"ladder.sweep.models: 'd99-l1' is not a ladder model"),
])
def test_bad_sweeps_are_one_line_errors(sweep, message):
    with pytest.raises(ConfigError, match=message):
        Plan(config(sweep=sweep))
