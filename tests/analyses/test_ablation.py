"""analyses/ablation.nc: zeroing a task's claimed neurons against matched random neurons.

The hook ablation is checked against an independent computation (the same neurons' output weights
zeroed in the Hugging Face model), the matched draws against their contract, the permutation p-value
under a planted null (random "owned" sets), the planted effect (attribution-owned neurons hurt their
task more than random ones), the dataset's arithmetic, resume, and bad input."""

import numpy as np
import pytest
import torch

from mechrare.analyses.ablation import AblationConfig, ablate_task, evenly_spaced, matched_draw, run_ablation, zeroed_loss
from mechrare.analyses.interference import InterferenceConfig, run_interference
from mechrare.analyses.neurons import NeuronsConfig, run_neurons, task_inputs
from mechrare.checkpoints import CheckpointStore
from mechrare.cli import main
from mechrare.errors import ConfigError
from mechrare.runs import Context, open_run

MODEL = "d24-l2"


@pytest.fixture(scope="module")
def owned_run(tiny_run):
    run_interference(tiny_run.path, InterferenceConfig(), models=[MODEL], progress=False)
    run_neurons(tiny_run.path, NeuronsConfig(), models=[MODEL], progress=False)
    return tiny_run


@pytest.fixture(scope="module")
def ablation_ds(owned_run):
    return run_ablation(owned_run.path, AblationConfig(measure="attribution", draws=8), models=[MODEL], progress=False)


def test_evenly_spaced_keeps_the_last_and_skips_step_0():
    steps = list(range(0, 1100, 100))  # 11 checkpoints
    assert evenly_spaced(steps, 3) == [300, 700, 1000]
    assert evenly_spaced(steps, 1) == [1000]
    assert evenly_spaced(steps, 0) == steps
    assert evenly_spaced([0, 5], 3) == [0, 5]


def test_matched_draw_has_the_owned_counts_per_block_and_avoids_the_owned_neurons():
    owner = np.full((2, 10), -1)
    owner[0, [1, 2, 3]] = 0
    owner[1, [7]] = 0
    owner[1, [8, 9]] = 1
    owned = {0: np.array([1, 2, 3]), 1: np.array([7])}
    for seed in range(20):
        draw = matched_draw(owned, owner, 0, 10, np.random.default_rng(seed))
        assert {l: len(ix) for l, ix in draw.items()} == {0: 3, 1: 1}
        assert not set(draw[0]) & {1, 2, 3} and 7 not in draw[1]
        assert len(set(draw[0])) == 3
    same = [matched_draw(owned, owner, 0, 10, np.random.default_rng([1, 2])) for _ in range(2)]
    assert all((a == b).all() for a, b in zip(same[0].values(), same[1].values()))


def test_hook_ablation_equals_zeroed_output_weights(tiny_run):
    """Zeroing neuron n at blocks.l.mlp.hook_post equals removing its row of W_out: computed here on the
    Hugging Face model, with the down projection's columns zeroed and the loss written out by hand."""
    store = CheckpointStore(tiny_run.path)
    tasks = open_run(tiny_run.path).tasks
    ids, answer = task_inputs(tasks, tasks.names[0], 64)
    bridge = store.load_bridge(MODEL, 300)
    neurons = {0: np.array([0, 3, 5]), 1: np.array([2])}
    hooked = zeroed_loss(bridge, ids, answer, neurons, batch_size=16)
    base = zeroed_loss(bridge, ids, answer, {}, batch_size=16)

    model = store.load(MODEL, 300)
    with torch.no_grad():
        for l, ix in neurons.items():
            model.model.layers[l].mlp.down_proj.weight[:, torch.as_tensor(ix)] = 0
        x = torch.as_tensor(ids)
        logits = model(x).logits.double()
        logp = torch.log_softmax(logits[:, answer], -1)
        target = x[:, answer.start + 1 : answer.stop + 1]
        direct = float(-logp.gather(-1, target[..., None]).mean())
    assert hooked == pytest.approx(direct, rel=1e-4, abs=1e-5)
    assert hooked != pytest.approx(base, abs=1e-6)  # the neurons did something


def test_random_owned_sets_are_not_called_causal(tiny_run):
    """Planted null: 'owned' neurons drawn at random. The permutation p-value is then uniform on
    {1/9, ..., 1}: at most a few of 12 plants may reach its floor of 1/9 (expected 1.3)."""
    store = CheckpointStore(tiny_run.path)
    tasks = open_run(tiny_run.path).tasks
    ids, answer = task_inputs(tasks, tasks.names[0], 64)
    bridge = store.load_bridge(MODEL, 300)
    rng = np.random.default_rng(0)
    L, N = bridge.cfg.n_layers, bridge.cfg.d_mlp
    p_values = []
    for _ in range(12):
        owner = np.full((L, N), -1)
        owner[rng.integers(L), rng.choice(N, size=4, replace=False)] = 0
        r = ablate_task(bridge, ids, answer, owner, 0, 8, rng, batch_size=64)
        p_values.append((1 + (r["random"] >= r["owned"]).sum()) / 9)
    assert sum(p <= 1 / 9 + 1e-9 for p in p_values) <= 4  # P(>= 5 of 12 at rate 1/9) < 0.01
    assert np.mean(p_values) > 0.25  # a uniform p on {1/9..1} has mean 5/9


def test_dataset_arithmetic_and_planted_effect(ablation_ds):
    ds = ablation_ds.sel(model=MODEL, seed=0)
    assert set(ds.data_vars) >= {"loss_base", "rise_owned", "rise_random", "excess", "rank_p", "n_owned"}
    assert ds.sizes["draw"] == 8 and ds.attrs["measure"] == "attribution"
    assert len(ds.step) == 3  # checkpoints = 3 of the model's series, its last among them
    have = np.isfinite(ds.rise_owned.values)
    assert have.any(), "attribution ownership claimed nothing on the tiny run"
    expect = ds.rise_owned.values - ds.rise_random.mean("draw").values
    np.testing.assert_allclose(ds.excess.values[have], expect[have], rtol=1e-12)
    beaten = (ds.rise_random.values >= ds.rise_owned.values[..., None]).sum(-1)
    np.testing.assert_allclose(ds.rank_p.values[have], ((1 + beaten) / 9)[have])
    assert (ds.n_owned.values[~have] < 1).all()  # not ablated only when nothing was owned
    # planted effect: where a task owns >= 3 neurons at the last step, zeroing them hurts more than random
    last = ds.isel(step=-1)
    strong = np.flatnonzero(last.n_owned.values >= 3)
    assert len(strong) >= 1
    assert (last.excess.values[strong] > 0).all()


def test_missing_neurons_and_bad_settings_are_one_line(tmp_path, owned_run, capsys):
    ctx = Context(CheckpointStore(owned_run.path), open_run(owned_run.path).tasks, tmp_path)
    with pytest.raises(ConfigError, match=r"ablation: needs analyses/neurons.nc .*--only interference,neurons"):
        run_ablation(ctx, AblationConfig(), progress=False)
    assert main(["analyze", str(owned_run.path), "--only", "ablation", "--set", "ablation.draws=1"]) == 2
    assert "ablation.draws: must be >= 2, got 1" in capsys.readouterr().err
    assert main(["analyze", str(owned_run.path), "--only", "ablation", "--set", "ablation.measure=nope"]) == 2
    assert "ablation.measure: must be one of task_neurons, attribution" in capsys.readouterr().err


def test_cli_resumes_and_removes_its_parts(ablation_ds, owned_run, capsys):
    """The parts the Python call kept are reused by `mechrare analyze`, which then removes them; a second
    run with the same inputs rewrites nothing."""
    folder = owned_run.path / "analyses"
    assert (folder / "ablation.parts").is_dir()
    args = ["analyze", str(owned_run.path), "--only", "ablation", "--models", MODEL, "--no-progress",
            "--set", "ablation.measure=attribution", "--set", "ablation.draws=8"]
    assert main(args) == 0
    assert not (folder / "ablation.parts").exists()
    stamp = (folder / "ablation.nc").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert "ablation: up to date" in capsys.readouterr().out
    assert (folder / "ablation.nc").stat().st_mtime_ns == stamp
    assert main(args + ["--keep-parts", "--set", "ablation.draws=9"]) == 0  # other inputs: computed, parts kept
    assert (folder / "ablation.parts").is_dir()
