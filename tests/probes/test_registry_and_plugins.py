"""The probe registry: built-ins, decorators, plain scikit-learn classifiers, entry points."""

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.tree import DecisionTreeClassifier

from mechrare.errors import ConfigError
from mechrare.probes import PROBES, LogisticProbe, Probe, get_probe, probe_names, register_probe

PLUGIN = Path(__file__).parent / "plugin"


def test_builtins_and_unfitted_instances():
    assert {"logistic", "ridge", "sklearn-logistic"} <= set(probe_names())
    probe = get_probe("logistic", C=0.3)
    assert isinstance(probe, LogisticProbe) and probe.C == 0.3 and not hasattr(probe, "coef_")
    with pytest.raises(ConfigError, match="unknown probe 'nope'"):
        get_probe("nope")
    with pytest.raises(ConfigError, match="bad parameters"):
        get_probe("logistic", colour=1)


def test_register_probe_decorator():
    @register_probe("test-majority")
    class Majority(Probe):
        def __init__(self, smoothing=0):
            self.smoothing = smoothing

        def fit(self, X, y):
            self.classes_, counts = np.unique(y, return_counts=True)
            self.majority_ = self.classes_[counts.argmax()]
            return self

        def predict(self, X):
            return np.full(len(X), self.majority_)

    X, y = make_classification(50, 4, random_state=0)
    probe = get_probe("test-majority")
    assert probe.fit(X, y).score(X, y) == max(np.mean(y), 1 - np.mean(y))
    assert clone(probe).get_params() == {"smoothing": 0}
    with pytest.raises(ValueError, match="already registered"):
        register_probe("test-majority")(LogisticProbe)


def test_any_sklearn_classifier_is_a_probe():
    from mechrare.analyses.probes import ProbesConfig, fit_checkpoint
    from mechrare.probes.targets import ProbeData, ProbeTarget

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    acts = [np.c_[labels + 0.1 * rng.normal(size=80), rng.normal(size=80)]]
    train = np.arange(80) < 50
    data = ProbeData(np.zeros((80, 2), int), np.zeros(80, int), np.zeros(80, int),
                     [ProbeTarget("t", "all", np.arange(80), labels, rng.integers(0, 2, 80), 2, train)])
    PROBES.add("test-tree", DecisionTreeClassifier)
    scores = fit_checkpoint(data, acts, ProbesConfig(probe="test-tree", params={"max_depth": 2}), "cpu")
    assert scores["probe_score"][0, 0] == 1.0 and scores["control_score"][0, 0] < 0.8


def test_entry_point_plugin_is_discovered(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(PROBES, "_entry_points_loaded", False)
    assert "mlp" in probe_names()
    probe = get_probe("mlp", hidden=16, epochs=200)
    X, y = make_classification(200, 6, n_informative=4, n_classes=3, random_state=0)
    assert probe.fit(X[:150], y[:150]).score(X[150:], y[150:]) > 0.6
    PROBES._entries.pop("mlp")
    sys.modules.pop("mechrare_mlp_probe", None)
