import numpy as np
import pytest

from _helpers import small_mixture
from mechrare.config import MixtureConfig, from_dict
from mechrare.data import Mixture
from mechrare.data.mixture import IGNORE
from mechrare.errors import ConfigError


def build(seed=0, **overrides):
    return Mixture(from_dict(MixtureConfig, small_mixture(**overrides), "mixture"), seed)


def test_batches_are_a_function_of_seed_and_step():
    a, b = build(), build()
    for step in (0, 5, 1234):
        x, y = a.batch(step, 32), b.batch(step, 32)
        assert np.array_equal(x.input_ids, y.input_ids) and np.array_equal(x.task, y.task)
    assert not np.array_equal(a.batch(0, 32).input_ids, a.batch(1, 32).input_ids)
    assert not np.array_equal(a.batch(0, 32).input_ids, build(seed=1).batch(0, 32).input_ids)


def test_long_run_shares_match_frequencies():
    m = build()
    counts = np.zeros(len(m.tasks) + 1)
    for step in range(400):
        comp = m.batch(step, 64).task
        counts += np.bincount(comp + 1, minlength=len(m.tasks) + 1)
    observed = counts[1:] / counts.sum()
    expected = m.shares[:-1]
    assert np.allclose(observed, expected, atol=0.01)
    assert np.isclose(expected[0], 0.2 / 1.4)


def test_inject_layout():
    m = build()
    b = m.batch(3, 64)
    for row in np.flatnonzero(b.task >= 0):
        task = m.tasks[b.task[row]]
        n = task.length
        toks = m.vocab.decode(b.input_ids[row])
        assert toks[0] == task.marker and toks[n] == "<eos>"
        assert all(t.startswith("w") for t in toks[n + 1 :])
        assert b.task_mask[row, : n + 1].all() and not b.task_mask[row, n + 1 :].any()
    for row in np.flatnonzero(b.task < 0):
        assert all(t.startswith("w") for t in m.vocab.decode(b.input_ids[row]))
    assert (b.labels != IGNORE).all()


def test_sequence_placement_pads_and_ignores_padding():
    data = small_mixture()
    data["tasks"][0]["placement"] = "sequence"
    m = Mixture(from_dict(MixtureConfig, data, "mixture"), 0)
    b = m.batch(0, 128)
    rows = np.flatnonzero(b.task == 0)
    assert len(rows)
    for row in rows:
        n = m.tasks[0].length
        assert (b.input_ids[row, n + 1 :] == m.vocab.pad_id).all()
        assert (b.labels[row, n + 1 :] == IGNORE).all() and (b.labels[row, : n + 1] != IGNORE).all()


def test_bursty_schedule_matches_frequency_in_bursts():
    data = small_mixture()
    data["tasks"][0]["schedule"] = {"every": 10, "offset": 3}
    m = Mixture(from_dict(MixtureConfig, data, "mixture"), 0)
    m.check_batch_size(32)
    counts = np.array([(m.batch(s, 32).task == 0).sum() for s in range(40)])
    expected = round(m.shares[0] * 32 * 10)
    burst_steps = [3, 13, 23, 33]
    assert all(counts[s] == min(expected, 32) for s in burst_steps)
    spill = expected - 32
    if spill > 0:
        assert all(counts[s + 1] == min(spill, 32) for s in burst_steps)
    assert counts.sum() == 4 * expected
    # the other tasks keep their i.i.d. long-run share
    others = sum((m.batch(s, 32).task == 1).sum() for s in range(200))
    assert abs(others / (200 * 32) - m.shares[1]) < 0.02


def test_impossible_bursts_are_rejected():
    data = small_mixture()
    data["tasks"][1]["schedule"] = {"every": 1}
    data["tasks"][1]["frequency"] = 0.001
    m = Mixture(from_dict(MixtureConfig, data, "mixture"), 0)
    with pytest.raises(ConfigError, match=r"mixture.tasks\[1\].schedule.every: a burst"):
        m.check_batch_size(8)


def test_unknown_family_and_short_sequences():
    data = small_mixture()
    data["tasks"][2]["family"] = "nope"
    with pytest.raises(ConfigError, match=r"mixture.tasks\[2\].family: unknown task family 'nope'"):
        Mixture(from_dict(MixtureConfig, data, "mixture"), 0)
    with pytest.raises(ConfigError, match="mixture.sequence_length: copy:3 needs 9 tokens"):
        Mixture(from_dict(MixtureConfig, small_mixture(sequence_length=8), "mixture"), 0)


def test_eval_sets_and_vocab():
    m = build()
    for es, task in zip(m.eval_sets, m.tasks):
        assert es.input_ids.shape[1] == task.length
        assert set(es.latents) == set(task.targets())
        decoded = [m.vocab.decode(r) for r in es.input_ids[:3]]
        assert all(d[0] == task.marker for d in decoded)
    assert len(set(m.vocab.tokens)) == len(m.vocab)


def test_upsample_multiplies_a_tasks_weight_and_keeps_the_rest():
    base = build()
    up = build(upsample={"compare:5": 4.0})
    weights = np.array([0.2, 0.1 * 4, 0.1, 1.0])  # background frequency 1.0
    assert np.allclose(up.shares, weights / weights.sum())
    derived = base.with_upsample({"compare:5": 4.0})
    assert np.allclose(derived.shares, up.shares)
    assert np.allclose(base.shares, np.array([0.2, 0.1, 0.1, 1.0]) / 1.4)  # the original is untouched
    assert derived.vocab is base.vocab and derived.eval_sets is base.eval_sets
    counts = np.zeros(len(up.tasks) + 1)
    for step in range(300):
        counts += np.bincount(derived.batch(step, 64).task + 1, minlength=len(up.tasks) + 1)
    assert np.allclose(counts[1:] / counts.sum(), up.shares[:-1], atol=0.015)
    stacked = base.with_upsample({"compare:5": 2.0}).with_upsample({"compare:5": 2.0})
    assert np.allclose(stacked.shares, up.shares)


@pytest.mark.parametrize(
    "upsample, key",
    [({"nope:1": 2.0}, "mixture.upsample.nope:1"), ({"facts:8": 0.0}, "mixture.upsample.facts:8")],
)
def test_upsample_bad_input_names_the_key(upsample, key):
    with pytest.raises(ConfigError, match=key):
        build(upsample=upsample)


def test_burst_schedule_names_each_bursts_steps():
    data = small_mixture()
    data["tasks"][1]["schedule"] = {"every": 20, "offset": 5}
    mixture = Mixture(from_dict(MixtureConfig, data, "mixture"), 0)
    (task, (every, offset, n)), = mixture.burst_schedule(16).items()
    assert (task, every, offset) == ("compare:5", 20, 5)
    rows = mixture.burst_size(1, 16)
    assert n == -(-rows // 16) and n >= 2  # 0.1 share x 16 rows x 20 steps spread over whole batches
    counts = [(mixture.batch(s, 16).task == 1).sum() for s in range(5, 5 + n + 1)]
    assert all(c > 0 for c in counts[:n]) and counts[n] == 0  # the burst fills exactly n batches
    assert Mixture(from_dict(MixtureConfig, small_mixture(), "mixture"), 0).burst_schedule(16) == {}


def test_a_variant_is_the_same_task_on_its_own_instances():
    data = small_mixture()
    data["tasks"] = [{"family": "facts", "complexity": 16, "frequency": 0.3, "params": {"key_length": 2}},
                     {"family": "facts", "complexity": 16, "frequency": 0.03, "params": {"key_length": 2}, "variant": "rare"}]
    m = Mixture(from_dict(MixtureConfig, data, "mixture"), 0)
    assert m.task_names == ["facts:16", "facts:16:rare"]
    common, rare = m.tasks
    assert set(common.tokens()) & set(rare.tokens()) == {f"fval{i}" for i in range(16)}  # the answers only
    assert common.marker != rare.marker and common.targets() == rare.targets()
    assert len(m.eval_sets[0]) == len(m.eval_sets[1]) == 16
    assert not np.array_equal(common.mapping, rare.mapping)
    data["tasks"][1]["variant"] = ""
    with pytest.raises(ConfigError, match="facts:16"):  # two tasks of one name
        Mixture(from_dict(MixtureConfig, data, "mixture"), 0)
    data["tasks"][1]["variant"] = "a b"
    with pytest.raises(ConfigError, match=r"mixture.tasks\[1\].variant: must be letters and digits only"):
        from_dict(MixtureConfig, data, "mixture")
