"""The batched solvers against independent fits, and control tasks."""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier

from mechrare.probes import control_labels, fit_logistic_many, fit_ridge_many


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
