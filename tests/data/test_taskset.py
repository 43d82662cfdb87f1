"""The task-set interface on a mechrare mixture: instances, shares, batches."""

import numpy as np
import pytest

from _helpers import small_mixture
from mechrare.config import MixtureConfig, from_dict
from mechrare.data import Instances, Mixture
from mechrare.data.taskset import MixtureTaskSet
from mechrare.errors import ConfigError


@pytest.fixture
def tasks():
    mixture = Mixture(from_dict(MixtureConfig, small_mixture(), "mixture"), 0)
    up = mixture.with_upsample({"compare:5": 4})
    return MixtureTaskSet(mixture, {"small-up": up})


def test_instances_are_the_mixtures(tasks):
    m = tasks.mixture
    assert tasks.names == ["facts:8", "compare:5", "copy:3"]
    ev = tasks.eval_instances("compare:5")
    assert ev is m.eval_sets[1] and isinstance(ev, Instances)
    assert ev.answers.shape[1] == ev.input_ids.shape[1] - ev.n_prompt
    # seeded draws from the training distribution, reproducible, never held-out for pooled tasks
    a, b = tasks.train_instances("compare:5", 50, seed=3), tasks.train_instances("compare:5", 50, seed=3)
    assert np.array_equal(a.input_ids, b.input_ids) and a.n_prompt == ev.n_prompt
    assert not {tuple(r) for r in a.input_ids} & {tuple(r) for r in ev.input_ids}
    assert set(a.latents) == set(ev.targets) == set(m.tasks[1].targets())
    # probe instances are distinct, held-out ones first
    p = tasks.probe_instances("copy:3", 40)
    assert len({tuple(r) for r in p.input_ids}) == len(p) == 40
    held = m.tasks[2].eval_examples(40)
    assert tuple(m.vocab.decode(p.input_ids[0])) == held[0].tokens


def test_shares_background_and_batches(tasks):
    run, up = tasks.shares(), tasks.shares("small-up")
    assert run == tasks.shares("any-other-model")
    assert up["compare:5"] > run["compare:5"] and sum(run.values()) < 1
    assert tasks.background(8).shape == (8, tasks.mixture.cfg.sequence_length)
    assert tasks.batches("small-up") is not tasks.batches()
    b = tasks.batches().batch(5, 16)
    assert b.task_mask.shape == b.input_ids.shape
    assert tasks.complexity("facts:8") == 8 and tasks.pad_id == 0


def test_unknown_task_is_one_line(tasks):
    with pytest.raises(ConfigError, match="no task 'nope'; tasks: facts:8, compare:5, copy:3"):
        tasks.eval_instances("nope")


def test_instances_check_their_shape():
    with pytest.raises(ValueError, match="n_prompt must be in"):
        Instances("t", np.zeros((3, 4), dtype=int), n_prompt=4)
    with pytest.raises(ValueError, match="non-empty"):
        Instances("t", np.zeros((0, 4), dtype=int), n_prompt=2)
