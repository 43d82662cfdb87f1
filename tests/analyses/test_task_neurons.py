"""The paper's task neurons: K, the rank-matched null floor, the claim rule, and the
gradients against an independent computation on a trained checkpoint; ownership in
neurons.nc against a plain re-implementation of the rule."""

import numpy as np
import pytest
import torch
import xarray as xr

from mechrare.analyses.interference import InterferenceConfig, run_interference
from mechrare.analyses.learned import owns_from
from mechrare.analyses.neurons import NeuronsConfig, run_neurons
from mechrare.analyses.ownership import interference_energy
from mechrare.analyses.task_neurons import gradient_owner, init_floor, shares, top_k_count
from mechrare.runs import open_run

MODEL = "d24-l2"


def test_top_k_count():
    assert top_k_count(96) == 9 and top_k_count(20) == 4 and top_k_count(3) == 3
    assert top_k_count(96, 5) == 5 and top_k_count(4, 10) == 4


def test_init_floor_is_rank_by_rank_over_seeds():
    e = np.zeros((2, 1, 4, 1))
    e[0, 0, :, 0] = [4, 3, 2, 1]  # shares .4 .3 .2 .1
    e[1, 0, :, 0] = [1, 7, 1, 1]  # shares .1 .7 .1 .1
    np.testing.assert_allclose(init_floor(e)[0, :, 0], [0.7, 0.3, 0.2, 0.1])


def test_claim_rule():
    # one block, 5 neurons, 2 tasks; K = 2
    energy = np.array([[[5.0, 0.0], [3.0, 1.0], [1.0, 4.0], [1.0, 4.0], [0.0, 1.0]]])
    q = shares(energy)
    everyone = np.array([True, True])
    assert gradient_owner(energy, 2, None, everyone).tolist() == [[0, 0, 1, 1, -1]]
    # the floor holds rank r to the null's r-th share: task 0's second neuron (share .3) fails a .35 floor
    floor = np.zeros((1, 5, 2))
    floor[0, :, 0] = [0.4, 0.35, 0, 0, 0]
    assert q[0, 1, 0] == pytest.approx(0.3)
    assert gradient_owner(energy, 2, floor, everyone).tolist() == [[0, -1, 1, 1, -1]]
    # an unlearned task owns nothing; a neuron both claim goes to the larger share
    assert gradient_owner(energy, 2, None, np.array([False, True])).tolist() == [[-1, -1, 1, 1, -1]]
    both = np.array([[[5.0, 4.0], [1.0, 4.0], [1.0, 0.0], [3.0, 0.0]]])  # neuron 0: shares .5 vs .5 -> task 0 (first)
    assert gradient_owner(both, 2, None, everyone).tolist() == [[0, 1, -1, 0]]
    # blocks outside the chosen ones own nothing
    two = np.concatenate([energy, energy])
    assert gradient_owner(two, 2, None, everyone, np.array([True, False])).tolist() == [[0, 0, 1, 1, -1], [-1] * 5]


def test_missing_interference_gives_a_reason():
    assert "no neuron_grad" in interference_energy(None, MODEL, [0], [0])
    ds = xr.Dataset({"neuron_grad": (("model", "step", "block", "neuron", "task"), np.zeros((1, 1, 1, 1, 1))),
                     "top_k": (("model",), [4]), "neuron_layer": (("model",), [0])},
                    coords={"model": [MODEL], "step": [0]})
    assert "lacks" in interference_energy(ds, MODEL, [0], [0, 10])
    assert "no model" in interference_energy(ds, "other", [0], [0])
    energy, k, layer = interference_energy(ds, MODEL, [0], [0])
    assert energy.shape == (1, 1, 1, 1, 1) and (k, layer) == (4, 0)


@pytest.fixture(scope="module")
def datasets(tiny_run):
    inter = run_interference(tiny_run.path, InterferenceConfig(), models=[MODEL], progress=False)
    return inter, run_neurons(tiny_run.path, NeuronsConfig(), models=[MODEL], progress=False)


def test_neuron_grad_matches_an_independent_gradient(datasets, tiny_run):
    """The squared norm of d(mean answer loss)/d(neuron's gate row, up row, down column), by hand."""
    inter, _ = datasets
    run = open_run(tiny_run.path)
    model = run.series.load(MODEL, 300)
    inst = run.tasks.eval_instances("facts:8")
    ids, sl = torch.as_tensor(inst.input_ids), inst.answer_slice
    logits = model(input_ids=ids).logits.float()
    loss = torch.nn.functional.cross_entropy(logits[:, sl].reshape(-1, logits.shape[-1]), ids[:, sl.start + 1 : sl.stop + 1].reshape(-1))
    model.zero_grad()
    loss.backward()
    got = inter.neuron_grad.sel(model=MODEL, seed=0, step=300, task="facts:8").values
    for block in range(model.config.num_hidden_layers):
        mlp = model.model.layers[block].mlp
        mine = (mlp.gate_proj.weight.grad.pow(2).sum(1) + mlp.up_proj.weight.grad.pow(2).sum(1)
                + mlp.down_proj.weight.grad.pow(2).sum(0)).double().numpy()
        np.testing.assert_allclose(got[block, : len(mine)], mine, rtol=2e-3, atol=1e-12)


def test_ownership_follows_the_rule(datasets, tiny_run):
    """owner in neurons.nc = a plain loop over the rule: top-K of the protocol's block, the gate,
    and each rank's share above the same rank's share at step 0."""
    inter, neurons = datasets
    grad = inter.neuron_grad.sel(model=MODEL, seed=0).transpose("step", "block", "neuron", "task").values
    k, layer = int(inter.top_k.sel(model=MODEL).max()), int(inter.neuron_layer.sel(model=MODEL).max())
    steps = [int(s) for s in neurons.step.values]
    tasks = [str(t) for t in neurons.task.values]
    gate = owns_from(open_run(tiny_run.path).context(), MODEL, 0, tasks[:-1])
    gate = [gate[t] for t in tasks[:-1]] + [0.0]
    n = int(np.isfinite(grad[0, layer, :, 0]).sum())
    init = grad[0, layer, :n]
    init_sorted = [sorted(init[:, t] / init[:, t].sum(), reverse=True) for t in range(len(tasks))]
    owner = neurons.owner.sel(model=MODEL, seed=0).values
    claimed_somewhere = 0
    for si, step in enumerate(steps):
        e = grad[si, layer, :n]
        expect = [-1] * n
        best = [-1.0] * n
        for t in range(len(tasks)):
            if step < gate[t]:
                continue
            q = e[:, t] / e[:, t].sum()
            for rank, i in enumerate(np.argsort(-e[:, t], kind="stable")[:k]):
                if q[i] > init_sorted[t][rank] and q[i] > best[i]:
                    expect[i], best[i] = t, q[i]
        assert owner[si, layer, :n].tolist() == expect, step
        assert (owner[si, [b for b in range(owner.shape[1]) if b != layer]] == -1).all()
        claimed_somewhere += sum(x >= 0 for x in expect)
    assert claimed_somewhere > 0
