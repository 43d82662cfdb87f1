"""analyses/neurons.nc: the paper's task neurons against an independent gradient and rule,
attribution against finite differences, the ownership rules and claim steps (that owned neurons are
causal for their task: tests/analyses/test_ablation.py)."""

import numpy as np
import pytest
import torch

from mechrare.analyses.interference import InterferenceConfig, run_interference
from mechrare.analyses.neurons import (
    NeuronsConfig,
    _logit_diff_fn,
    claim_step,
    neuron_attribution,
    ownership,
    run_neurons,
    task_inputs,
)
from mechrare.checkpoints import CheckpointStore, open_dataset
from mechrare.cli import main
from mechrare.runs import open_run

MODEL = "d24-l2"


@pytest.fixture(scope="module")
def neurons_ds(tiny_run):
    run_interference(tiny_run.path, InterferenceConfig(), models=[MODEL], progress=False)  # the task neurons' gradients
    return run_neurons(tiny_run.path, NeuronsConfig(), models=[MODEL], progress=False)


def test_ownership_rule():
    # 1 layer, 4 neurons, 2 tasks
    alloc = np.array([[[9.0, 1.0], [1.0, 9.0], [5.0, 5.0], [0.1, 0.1]]])
    assert ownership(alloc, None, min_share=1.0, selectivity=2.0).tolist() == [[0, 1, -1, -1]]
    # a floor from initialisation removes a claim that training did not make
    floor = np.array([[10.0, 0.0]])
    assert ownership(alloc, floor, min_share=1.0, selectivity=2.0).tolist() == [[-1, 1, -1, -1]]
    # min_share: the neuron must hold >= min_share x uniform of the task's total
    assert ownership(alloc, None, min_share=2.0, selectivity=2.0).tolist() == [[0, 1, -1, -1]]  # 9 / 15.1 >= 2 / 4
    assert ownership(alloc, None, min_share=3.0, selectivity=2.0).tolist() == [[-1, -1, -1, -1]]  # < 3 / 4


def test_claim_step_needs_a_stable_claim():
    steps = [0, 10, 20, 30, 40]
    assert claim_step(steps, np.array([0, 5, 0, 5, 5]), 3, 1) == 30
    assert claim_step(steps, np.array([0, 5, 5, 5, 5]), 3, 2) == 10
    assert np.isnan(claim_step(steps, np.array([0, 1, 2, 2, 2]), 3, 1))


def test_attribution_matches_finite_differences(tiny_run):
    """a * dm/da (summed over positions, averaged over rows) = d/d(eps) of the metric when
    the neuron's activation is scaled by (1 + eps): checked by a central difference."""
    store = CheckpointStore(tiny_run.path)
    tasks = open_run(tiny_run.path).tasks
    bridge = store.load_bridge(MODEL, 300)
    ids, sl = task_inputs(tasks, "facts:8", n=64)
    attr = neuron_attribution(bridge, ids, sl, measure="logit_diff")  # clipped at 0
    metric = _logit_diff_fn(np.unique(ids[:, sl.start + 1 : sl.stop + 1]))
    x = torch.as_tensor(ids)

    def metric_with_scale(layer, neuron, scale):
        def fn(t, hook):
            t = t.clone()
            t[..., neuron] *= scale
            return t

        with torch.no_grad():
            logits = bridge.run_with_hooks(x, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", fn)], return_type="logits")
        return float(metric(logits[:, sl].float(), x[:, sl.start + 1 : sl.stop + 1]).sum()) / len(ids)

    eps = 1e-2
    top = np.dstack(np.unravel_index(np.argsort(-attr, axis=None)[:4], attr.shape))[0]
    for layer, neuron in top:
        fd = (metric_with_scale(layer, neuron, 1 + eps) - metric_with_scale(layer, neuron, 1 - eps)) / (2 * eps)
        assert fd == pytest.approx(attr[layer, neuron], rel=0.05)


def test_contract(neurons_ds, tiny_run):
    ds = neurons_ds
    assert ds.allocation.dims == ("model", "seed", "step", "block", "neuron", "task")
    assert list(ds.task.values) == ["facts:8", "compare:4", "lookup:2", "background"]
    for suffix in ("", "_attribution"):
        owner, n_claimed = ds["owner" + suffix], ds["n_claimed" + suffix]
        assert owner.dtype.kind == "i" and int(owner.min()) >= -1
        # no claims at initialisation (the floors come from it), claims after training
        assert int(n_claimed.sel(model=MODEL, seed=0, step=0).sum()) == 0
        assert int(n_claimed.sel(model=MODEL, seed=0, step=300).sum()) > 0
        for t, name in enumerate(ds.task.values):
            counted = (owner.sel(model=MODEL, seed=0, step=300) == t).sum("neuron")
            assert (counted.values == n_claimed.sel(model=MODEL, seed=0, step=300, task=name).values).all()
    assert "from interference.nc" in ds.attrs["task_neurons"]
    assert open_dataset(tiny_run.path / "analyses" / "neurons.nc").equals(ds)


def test_only_learned_tasks_own_neurons(neurons_ds, tiny_run):
    """owns_from is the binomial test's learned step (inf: never learned); before it a task owns nothing,
    and without the gate ownership is the rule applied to the raw allocation."""
    import zlib

    from mechrare.analyses.binomial import detect_binomial

    ds, run = neurons_ds.sel(model=MODEL, seed=0), open_run(tiny_run.path)
    acc = open_dataset(tiny_run.path / "metrics.nc").accuracy.sel(model=MODEL, seed=0)
    tasks = [str(t) for t in ds.task.values]
    for t in tasks[:-1]:
        inst = run.tasks.eval_instances(t)
        e = detect_binomial(acc.step.values, acc.sel(task=t).values, len(inst), 1 / inst.targets["answer"],
                            seed=[0, zlib.crc32(f"{MODEL}/{t}".encode())])
        start = float(ds.owns_from.sel(task=t))
        assert start == (e.learned_step if e.learned else np.inf)
        for var in ("n_claimed", "n_claimed_attribution"):
            early = ds[var].sel(task=t).sum("block").where(ds.step < start, 0)
            assert int(early.sum()) == 0
    assert float(ds.owns_from.sel(task="background")) == 0
    plain = run_neurons(tiny_run.path, NeuronsConfig(learned_gate=False), models=[MODEL], progress=False).sel(model=MODEL, seed=0)
    alloc = plain.allocation.values
    floor = alloc[0].max(axis=1)  # step 0's largest allocation per (block, task)
    for si in range(len(plain.step)):
        expect = ownership(alloc[si], floor, 2.0, 2.0)
        assert (plain.owner_attribution.values[si] == expect).all()
    assert float(plain.owns_from.max()) == 0


@pytest.mark.parametrize("suffix", ["", "_attribution"])
def test_rare_to_common_counts_task_to_task_moves_only(neurons_ds, suffix):
    ds = neurons_ds.sel(model=MODEL, seed=0)
    share, owner = ds.share.values, ds["owner" + suffix].values
    bg = len(ds.task) - 1
    for si in range(1, len(ds.step)):
        prev, now = owner[si - 1], owner[si]
        moved = (prev != now) & (prev >= 0) & (now >= 0) & (prev != bg) & (now != bg)
        assert int(ds["rare_to_common" + suffix].values[si]) == int((share[prev[moved]] < share[now[moved]]).sum())


def test_cli_resume_and_bad_setting(neurons_ds, tiny_run, capsys):
    parts = sorted((tiny_run.path / "analyses" / "neurons.parts").rglob("*.npz"))
    stamps = {p: p.stat().st_mtime_ns for p in parts}
    assert main(["analyze", str(tiny_run.path), "--only", "neurons", "--models", MODEL, "--keep-parts", "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in parts} == stamps
    assert main(["analyze", str(tiny_run.path), "--only", "neurons", "--set", "neurons.measure=nope"]) == 2
    assert "neurons.measure: must be one of" in capsys.readouterr().err
