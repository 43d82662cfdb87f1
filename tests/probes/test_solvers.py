"""The batched solvers against independent fits, and control tasks."""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from mechrare.probes import LogisticProbe, control_labels, fit_logistic_many, fit_ridge_many
from mechrare.probes.solvers import fit_logistic_each


def problems(seed=0, P=5, N=120, d=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(P, N, d))
    ks = [2, 3, 4, 3, 2][:P]
    y = np.stack([(X[p] @ rng.normal(size=(d, k))).argmax(1) for p, k in enumerate(ks)])
    mask = np.zeros((P, 4), bool)
    for p, k in enumerate(ks):
        mask[p, :k] = True
    n_used = [120, 90, 120, 60, 100][:P]  # different sizes: pad with zero weight
    w = np.stack([np.arange(N) < n for n in n_used]).astype(float)
    return X, y, w, mask, ks, n_used


def test_batched_logistic_equals_sklearn_per_problem():
    X, y, w, mask, ks, n_used = problems()
    models = fit_logistic_many(torch.tensor(X), torch.tensor(y), w=torch.tensor(w), class_mask=torch.tensor(mask), C=0.7)
    logits = models.logits(torch.tensor(X)).numpy()
    for p, (k, n) in enumerate(zip(ks, n_used)):
        ref = LogisticRegression(C=0.7, tol=1e-10, max_iter=10000).fit(X[p, :n], y[p, :n])
        ours = logits[p, :, :k]
        if k == 2:
            assert np.allclose(ours[:, 1] - ours[:, 0], ref.decision_function(X[p]), atol=1e-4)
        else:
            centered = ours - ours.mean(1, keepdims=True)
            assert np.allclose(centered, ref.decision_function(X[p]), atol=1e-4)
        assert (models.predict(torch.tensor(X))[p].numpy() < k).all()


def test_dropping_finished_problems_changes_nothing():
    """Problems converge at different rates; dropping the finished ones from the batch
    must leave every solution as it is without compaction."""
    X, y, w, mask, ks, n_used = problems(2)
    X[0] *= 30  # an ill-conditioned problem: it needs many more iterations than the rest
    args = (torch.tensor(X), torch.tensor(y))
    kw = dict(w=torch.tensor(w), class_mask=torch.tensor(mask), C=0.7)
    full = fit_logistic_many(*args, compact=0.0, **kw)
    dropped = fit_logistic_many(*args, compact=0.99, **kw)
    assert full.n_iter == dropped.n_iter
    assert torch.allclose(full.W, dropped.W, atol=1e-12, rtol=0) and torch.allclose(full.b, dropped.b, atol=1e-12, rtol=0)


def test_scipy_one_by_one_solves_the_same_problems():
    X, y, w, mask, ks, n_used = problems(3)
    args = (torch.tensor(X), torch.tensor(y))
    kw = dict(w=torch.tensor(w), class_mask=torch.tensor(mask), C=0.7, tol=1e-10, max_iter=5000)
    a, b = fit_logistic_many(*args, **kw), fit_logistic_each(*args, **kw)
    la, lb = a.logits(args[0]), b.logits(args[0])
    for p, k in enumerate(ks):  # softmax logits are defined up to a shift per row
        da = la[p, :, :k] - la[p, :, :k].mean(1, keepdim=True)
        db = lb[p, :, :k] - lb[p, :, :k].mean(1, keepdim=True)
        assert torch.allclose(da, db, atol=1e-5), p
    assert (b.predict(args[0]) < torch.tensor(ks)[:, None]).all()  # never a padding class
    # solver "auto" is scipy on a CPU: the probe's fit_many is exactly fit_logistic_each there
    auto = LogisticProbe(C=0.7, tol=1e-10, max_iter=5000).fit_many(*args, w=kw["w"], class_mask=kw["class_mask"])
    assert torch.equal(auto.W, b.W) and torch.equal(auto.b, b.b)


def test_batched_ridge_equals_sklearn_per_problem():
    X, y, w, mask, ks, n_used = problems(1)
    models = fit_ridge_many(torch.tensor(X), torch.tensor(y), w=torch.tensor(w), class_mask=torch.tensor(mask), alpha=2.0)
    pred = models.predict(torch.tensor(X)).numpy()
    for p, n in enumerate(n_used):
        ref = RidgeClassifier(alpha=2.0).fit(X[p, :n], y[p, :n])
        assert (pred[p] == ref.predict(X[p])).all()


def test_control_labels_are_a_function_of_type():
    types = np.array([5, 7, 5, 9, 7, 5])
    labels = np.array([0, 1, 0, 2, 1, 1])
    ctrl = control_labels(types, labels, seed=3)
    for t in np.unique(types):
        assert len(set(ctrl[types == t])) == 1
    assert set(ctrl) <= set(labels)
    assert (control_labels(types, labels, seed=3) == ctrl).all()
