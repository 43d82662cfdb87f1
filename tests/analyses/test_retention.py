"""analyses/retention.nc: detection on series with known answers, the join with
interference.nc, and the run-level dataset."""

import zlib

import numpy as np
import pytest

from mechrare.analyses.binomial import detect_binomial
from mechrare.analyses.jitter import detect_jitter
from mechrare.analyses.interference import InterferenceConfig, run_interference
from mechrare.analyses.neurons import NeuronsConfig, run_neurons
from mechrare.analyses.retention import RetentionConfig, detect, run_retention
from mechrare.checkpoints import open_dataset
from mechrare.cli import main
from mechrare.runs import open_run

STEPS = np.array([0, 1, 2, 4, 8, 16, 32, 50, 64, 100, 128, 150, 200, 250, 256, 300])


def test_learn_then_overwrite():
    x = np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.6, 0.6, 0.6, 0.3, 0.15, 0.1, 0.1, 0.1, 0.1])
    d = detect(STEPS, x, min_rise=0.05)
    assert d.learned_step == 32 and d.peak_step == 50 and not d.retained
    assert [e[:2] for e in d.events] == [(50.0, 128.0)]


def test_retained_with_noise_has_no_event():
    rng = np.random.default_rng(0)
    x = np.minimum(1, np.linspace(0, 1.6, len(STEPS))) + rng.normal(0, 0.01, len(STEPS))
    x[9] -= 0.04  # one noisy checkpoint: smoothed away, and below min_rise anyway
    d = detect(STEPS, x, min_rise=0.05)
    assert d.retained and d.events == []
    assert d.learned_step == STEPS[np.argmax(np.minimum(1, np.linspace(0, 1.6, len(STEPS))) >= 0.5)]


def test_never_learned_and_bursty_cycles():
    flat = detect(STEPS, np.full(len(STEPS), 0.1) + np.r_[0, 0.02] .repeat(8), min_rise=0.05)
    assert np.isnan(flat.learned_step) and not flat.retained and flat.events == []
    steps = np.arange(40) * 10
    cycles = np.tile([0.1, 0.1, 0.5, 0.5, 0.5, 0.3, 0.1, 0.1], 5)
    d = detect(steps, cycles, min_rise=0.05)
    assert len(d.events) == 5
    assert all(over > peak for peak, over, _ in d.events)


def test_nan_steps_are_skipped():
    x = np.array([0.0, np.nan, 0.0, np.nan, 0.5, 0.5, 0.5, np.nan, 0.0, 0.0, 0.0, np.nan, 0.0, 0.0, 0.0, 0.0])
    d = detect(STEPS, x, min_rise=0.05, width=1)
    assert d.peak_step == 8 and d.events and d.events[0][1] == 64


@pytest.fixture(scope="module")
def retention_ds(tiny_run):
    run_interference(tiny_run.path, InterferenceConfig(), progress=False)
    run_neurons(tiny_run.path, NeuronsConfig(), progress=False)
    return run_retention(tiny_run.path, RetentionConfig())


def test_run_level_dataset(retention_ds, tiny_run):
    ds = retention_ds
    assert ds.learned_step.dims == ("model", "seed", "task", "signal")
    assert {"accuracy", "neurons"} <= set(ds.signal.values)
    metrics = open_dataset(tiny_run.path / "metrics.nc")
    tasks = open_run(tiny_run.path).tasks
    assert ds.calibrated.dims == ds.learned_step.dims and bool(ds.calibrated.sel(signal="accuracy").all())
    assert bool(ds.calibrated.sel(signal="neurons").all())  # 16 checkpoints: tested
    for t in ds.task.values:
        inst = tasks.eval_instances(str(t))
        assert int(ds.eval_items.sel(task=t)) == len(inst)
        assert float(ds.chance.sel(task=t)) == pytest.approx(1 / inst.targets["answer"])
    for m in ds.model.values:
        for t in ds.task.values:
            acc = metrics.accuracy.sel(model=m, seed=0, task=t)
            seed = [0, zlib.crc32(f"{m}/{t}".encode())]
            e = detect_binomial(acc.step.values, acc.values, len(tasks.eval_instances(str(t))), float(ds.chance.sel(task=t)), seed=seed)
            row = ds.sel(model=m, seed=0, task=t, signal="accuracy")
            assert bool(row.retained) == e.retained and float(row.p_learned) == e.p_learned
            assert float(row.p_overwrite) == e.p_overwrite and int(row.n_overwrites) == int(e.overwritten)
            assert np.allclose(row.learned_step, e.learned_step, equal_nan=True)
    neurons = open_dataset(tiny_run.path / "analyses" / "neurons.nc").n_claimed.sum("block")
    for m in ds.model.values:
        for t in ds.task.values:
            series = neurons.sel(model=m, seed=0, task=t)
            e = detect_jitter(series.step.values, series.values.astype(float), min_effect=3.0,
                              seed=[0, zlib.crc32(f"{m}/{t}/neurons".encode())])
            row = ds.sel(model=m, seed=0, task=t, signal="neurons")
            assert e.tested and float(row.p_learned) == e.p_learned and float(row.p_overwrite) == e.p_overwrite
            assert int(row.n_overwrites) == int(e.overwritten) and bool(row.retained) == e.retained
    assert ds.event_calibrated.dtype == bool
    assert open_dataset(tiny_run.path / "analyses" / "retention.nc").equals(ds)


def test_interference_join_matches_a_manual_window(retention_ds, tiny_run):
    inter = open_dataset(tiny_run.path / "analyses" / "interference.nc")
    ds = retention_ds
    for e in range(ds.sizes["event"]):
        m, t = str(ds.event_model.values[e]), str(ds.event_task.values[e])
        peak, over = ds.event_peak_step.values[e], ds.event_overwrite_step.values[e]
        steps = inter.step.values
        window = (steps > peak) & (steps <= over)
        expected = inter.cos_nontask_ref.sel(model=m, seed=0, task=t).values[window].mean()
        assert ds.event_interference.values[e] == pytest.approx(expected)


def test_cli_orders_retention_after_what_it_reads(tiny_run, capsys):
    assert main(["analyze", str(tiny_run.path), "--only", "retention,interference", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.index("interference: ") < out.index("retention: wrote")  # interference written, or up to date
    assert main(["analyze", str(tiny_run.path), "--only", "retention,nope"]) == 2
    assert "unknown analysis 'nope'" in capsys.readouterr().err


def test_only_significant_loss_changes_are_summed():
    import xarray as xr

    from mechrare.analyses.retention import significant_loss_change

    lc = np.array([[0.5, 0.5, -0.5, np.nan, 0.2]])
    se = np.array([[0.1, 0.3, 0.1, 0.1, np.nan]])
    ds = xr.Dataset({"loss_change": (("step", "k"), lc), "loss_change_se": (("step", "k"), se)},
                    attrs={"analysis_config": '{"batches": 8}'})  # t(0.975, 7) = 2.365
    out = significant_loss_change(ds).values[0]
    assert out[0] == 0.5 and out[1] == 0.0 and out[2] == -0.5 and np.isnan(out[3]) and np.isnan(out[4])
    old = ds.drop_vars("loss_change_se")  # older files: every value as it is
    assert np.array_equal(significant_loss_change(old).values, lc, equal_nan=True)
