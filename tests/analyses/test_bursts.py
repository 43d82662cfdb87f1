"""Bursty tasks: the burst checkpoints, the cycles retention reads between bursts, and the figure."""

import numpy as np
import pytest

from mechrare.analyses.bursts import burst_cycles, summarize


def _series(before, after, every=10, offset=2, n=1):
    """Checkpoints before / after each burst and a dense grid in between (which the cycles ignore)."""
    steps, loss = [], []
    for k, (b, a) in enumerate(zip(before, after)):
        start = offset + k * every
        steps += [start, start + n, start + n + 3]
        loss += [b, a, (a + b) / 2 + 5]  # a mid-gap checkpoint, not a cycle point
    return np.array(steps), np.array(loss)


def test_learn_then_forget_and_accumulation():
    steps, loss = _series([2, 2, 2, 2, 2], [1, 1, 1, 1, 1])  # each burst taught 1 nat; the gap undid it all
    c = burst_cycles(steps, loss, 10, 2, 1)
    assert c["burst_step"].tolist() == [2, 12, 22, 32]  # the last burst has no next-before checkpoint
    assert c["gain"].tolist() == [1, 1, 1, 1] and c["forgetting"].tolist() == [1, 1, 1, 1]
    assert summarize(c) == (pytest.approx(1.0), pytest.approx(0.0))
    steps, loss = _series([2.0, 1.6, 1.2, 0.8, 0.4], [1.5, 1.1, 0.7, 0.3, 0.1])  # kept 0.4 of each 0.5
    c = burst_cycles(steps, loss, 10, 2, 1)
    fraction, slope = summarize(c)
    assert fraction == pytest.approx(0.1 / 0.5) and slope == pytest.approx(-0.4)


def test_missing_checkpoints_and_nan_drop_a_cycle():
    steps, loss = _series([2, 2, 2, 2], [1, 1, 1, 1])
    loss[4] = np.nan  # the checkpoint after the second burst
    c = burst_cycles(steps, loss, 10, 2, 1)
    assert c["burst_step"].tolist() == [2, 22]
    assert np.isnan(summarize({k: v[:1] for k, v in c.items()})[0])  # one cycle: nothing to say
    assert len(burst_cycles([], [], 10, 2, 1)["gain"]) == 0


@pytest.mark.slow
def test_bursty_run_cycles_and_figure(tmp_path):
    """A short bursty run: checkpoints bracket each burst, retention.nc's cycles are the ones read off
    metrics.nc by hand, and the report draws the figure."""
    from mechrare.analyses.retention import run_retention
    from mechrare.checkpoints import open_dataset
    from mechrare.config import RunConfig
    from mechrare.reports import build_report
    from mechrare.training import train_run

    cfg = RunConfig.from_dict({
        "mixture": {"sequence_length": 16, "eval_examples": 32,
                    "tasks": [{"family": "facts", "complexity": 8, "frequency": 0.3},
                              {"family": "facts", "complexity": 16, "frequency": 0.05, "schedule": {"every": 20, "offset": 4}}],
                    "background": {"vocab_size": 16, "branching": 2}},
        "ladder": {"models": ["d8-l1", "d16-l2"]},
        "train": {"steps": 120, "batch_size": 16, "lr": 3e-3, "threads": 1},
        "checkpoints": {"every": 60, "log_spaced": False},
    })
    from mechrare.runs import open_run

    path = train_run(cfg, tmp_path / "b", name="b", progress=False).path
    run = open_run(path)
    (every, offset, n), = run.tasks.bursts(16 * 16).values()
    steps = run.series.steps("d8-l1")
    assert {4, 4 + n, 24, 24 + n, 104, 104 + n} <= set(steps)
    ds = run_retention(path, progress=False)
    metrics = open_dataset(path / "metrics.nc")
    for m in ("d8-l1", "d16-l2"):
        loss = metrics.loss.sel(model=m, seed=0, task="facts:16")
        c = burst_cycles(loss.step.values, loss.values, every, offset, n)
        got = ds.sel(model=m, seed=0, task="facts:16")
        assert np.allclose(got.cycle_gain.values[: len(c["gain"])], c["gain"])
        assert np.allclose(got.cycle_forgetting.values[: len(c["gain"])], c["forgetting"])
        assert float(got.forgetting_fraction) == pytest.approx(summarize(c)[0], nan_ok=True)
        assert np.isnan(ds.forgetting_fraction.sel(model=m, seed=0, task="facts:8"))  # not bursty
    build_report(path)
    assert (path / "report" / "figures" / "bursts.png").is_file()
