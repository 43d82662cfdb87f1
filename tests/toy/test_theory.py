"""The toy model against its own theory: critical width over a grid of settings,
trained at every width at once in one tensor program."""

import itertools

import numpy as np
import pytest

from mechrare.errors import ConfigError
from mechrare.toy.config import ToyConfig
from mechrare.toy.model import ToyModel, ToySetting, auto_lr, train
from mechrare.toy.theory import critical_width, predicted_signal

WIDTHS = list(range(1, 17))


def test_critical_width_by_hand():
    pi = np.array([0.5, 0.3, 0.2])
    lam = np.array([[1.0, 0.25], [1.0, 0.25], [0.5, 0.1]])
    assert critical_width(pi, lam) == 4  # common utilities 0.5, 0.3, 0.125 lie above the rare 0.1
    assert predicted_signal(pi, lam, 2).tolist() == [0.8, 0.8, 0.0]


def test_critical_width_matches_training_over_a_grid():
    grid = []
    for pr, scale, alpha in itertools.product([0.03, 0.05, 0.08], [0.5, 1.0, 2.0], [1.5, 2.0, 3.0]):
        cfg = ToyConfig(rare_frequency=pr, rare_scale=scale, alpha=alpha)
        if critical_width(cfg.frequencies(), cfg.spectra()) <= WIDTHS[-2]:  # testable with these widths
            grid.append(cfg)
    assert len(grid) >= 20
    pi = np.stack([c.frequencies() for c in grid])
    lam = np.stack([c.spectra() for c in grid])
    setting = ToySetting(pi, lam, gap=0, batch_size=256, seed=0)
    model = ToyModel(setting, WIDTHS, init_scale=1e-2, seed=0)
    train(model, 1500, auto_lr(pi, lam))
    s_rare = model.retained_signal(model.capture())[:, :, -1]  # [S, W]
    hits = []
    for i in range(len(grid)):
        kept = [w for j, w in enumerate(WIDTHS) if s_rare[i, j] >= 0.5]
        measured = kept[0] if kept else None
        hits.append(measured is not None and abs(measured - critical_width(pi[i], lam[i])) <= 1)
    assert np.mean(hits) >= 0.9, hits


def test_config_is_strict():
    with pytest.raises(ConfigError, match="widths"):
        ToyConfig(widths=[0, 2]).validate()
    with pytest.raises(ConfigError, match="rare_frequency"):
        ToyConfig(rare_frequency=1.5).validate()

