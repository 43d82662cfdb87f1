"""Closed-form per-task gradients against autograd, and the update attribution against real losses."""

import numpy as np
import pytest
import torch

from mechrare.toy.config import ToyConfig
from mechrare.toy.model import ToyModel, ToySetting, auto_lr
from mechrare.toy.tracking import TrackedTrainer, empirical_moments, pair_dots, population_moments, task_gradients


def setup(widths=(1, 3, 6), gap=0, seed=0, init=0.3):
    cfg = ToyConfig(n_tasks=4, block=3, widths=list(widths), gap=gap)
    st = ToySetting(cfg.frequencies(), cfg.spectra(), gap, 64, seed)
    return cfg, st, ToyModel(st, list(widths), init, seed)


def test_minibatch_task_parts_sum_to_the_autograd_gradient():
    cfg, st, model = setup()
    batch = st.batch(3)
    loss = model.sample_losses(batch).mean(-1).sum()
    gU, gV = torch.autograd.grad(loss, model.params)
    pU, pV = task_gradients(model, empirical_moments(model, batch))
    assert torch.allclose(pU.sum(2), gU * model.mask[None, :, None, :], atol=1e-5, rtol=1e-4)
    assert torch.allclose(pV.sum(2), gV * model.mask[None, :, None, :], atol=1e-5, rtol=1e-4)
    # each task's part is the gradient of that task's rows alone
    k = 1
    per = model.sample_losses(batch) * (batch.task[:, None, :] == k)
    gUk, _ = torch.autograd.grad(per.mean(-1).sum(), model.params)
    assert torch.allclose(pU[:, :, k], gUk * model.mask[None, :, None, :], atol=1e-5, rtol=1e-4)


def test_population_gradients_match_autograd_of_the_closed_form_losses():
    cfg, st, model = setup()
    gU, gV = task_gradients(model, population_moments(model))
    for k in range(st.K):
        aU, aV = torch.autograd.grad(model.task_losses()[..., k].sum(), model.params)
        assert torch.allclose(gU[:, :, k], aU * model.mask[None, :, None, :], atol=1e-5, rtol=1e-4)
        assert torch.allclose(gV[:, :, k], aV * model.mask[None, :, None, :], atol=1e-5, rtol=1e-4)
    gram = pair_dots((gU, gV), (gU, gV))
    assert torch.allclose(gram, gram.transpose(-1, -2), atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_attributed_loss_change_adds_up_to_the_measured_change(optimizer):
    cfg, st, model = setup(init=0.1)
    lr = auto_lr(cfg.frequencies(), cfg.spectra()) * (0.2 if optimizer == "sgd" else 0.01)
    trainer = TrackedTrainer(model, lr, optimizer)
    before = model.task_losses().detach().clone()
    for s in range(20):
        trainer.step(s)
    measured = (model.task_losses().detach() - before).numpy()
    lc = trainer.take_loss_change()
    predicted = lc.sum(-1)
    big = np.abs(measured) > 1e-3
    assert big.sum() >= 10
    err = np.abs(predicted - measured)
    rel = err[big] / np.abs(measured[big])
    # first order per step: the error is second order in the step size, small against the changes
    assert np.median(rel) < 0.05 and err.max() < 0.05 * np.abs(measured).max(), (predicted[big], measured[big])
    assert np.allclose(trainer.take_loss_change(), 0)  # taken means reset
    # a task's own updates lower its loss (diagonal < 0 where it moved)
    diag = np.einsum("swkk->swk", lc)
    assert (diag[big] < 0).mean() > 0.9


def test_bursty_gap_withholds_the_rare_task_between_bursts():
    cfg, st, model = setup(gap=10)
    trainer = TrackedTrainer(model, auto_lr(cfg.frequencies(), cfg.spectra()) * 0.2)
    for s in range(1, 10):  # between bursts: no rare samples, so nothing attributed to the rare task
        trainer.step(s)
    assert trainer.rare_seen[0] == 0
    assert np.allclose(trainer.take_loss_change()[..., -1], 0)
    trainer.step(10)
    assert trainer.rare_seen[0] == st.task_counts(10)[0] > 0
