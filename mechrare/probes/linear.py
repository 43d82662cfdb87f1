"""Built-in linear probes with scikit-learn's contract, each owning its batched fit (``fit_many``)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mechrare.probes.base import PROBES, Probe, register_probe
from mechrare.probes.solvers import fit_logistic_each, fit_logistic_many, fit_ridge_many

_DEVICE = [StrOptions({"cpu", "cuda"}), str]


class _TorchLinearProbe(Probe):
    """Shared fit/predict for probes whose weights come from their batched ``fit_many``."""

    def fit_many(self, X, y, w=None, class_mask=None):
        """Fit P problems at once on ``X`` [P, N, d] (a torch tensor on any device), labels
        ``y`` [P, N], example weights ``w`` (0: padding) and ``class_mask`` [P, K];
        returns :class:`~mechrare.probes.solvers.LinearModels`. Runs on ``X``'s device."""
        raise NotImplementedError

    def fit(self, X, y):
        import torch

        self._validate_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; got 1 class")
        device = torch.device(self.device)
        models = self.fit_many(torch.tensor(X, device=device)[None], torch.tensor(encoded, device=device)[None])
        self.coef_ = models.W[0].T.double().cpu().numpy()
        self.intercept_ = models.b[0].double().cpu().numpy()
        self.n_iter_ = np.array([max(1, models.n_iter)])
        return self

    def _scores(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return X @ self.coef_.T + self.intercept_

    def decision_function(self, X):
        scores = self._scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict(self, X):
        scores = self._scores(X)
        return self.classes_[scores.argmax(1)]


@register_probe("logistic")
class LogisticProbe(_TorchLinearProbe):
    """Multinomial logistic regression: scikit-learn's ``LogisticRegression(C=C)`` objective.

    ``solver``: ``batched`` (one L-BFGS program over every problem in torch:
    float64 on CPU, float32 on GPU), ``scipy`` (SciPy's L-BFGS-B one problem at a
    time, float64, CPU) or ``auto``: the faster one on the device of the data,
    scipy on a CPU and batched on a GPU (``benchmarks/probes_batched_vs_sklearn.py``).
    ``tol`` bounds the max-norm of the gradient of the mean loss (None: 1e-6 in
    float64, 1e-4 in float32). ``device`` is where ``fit`` runs; ``fit_many``
    runs where its inputs are."""

    _parameter_constraints = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="neither"), None],
        "solver": [StrOptions({"auto", "batched", "scipy"})],
        "device": _DEVICE,
    }

    def __init__(self, C: float = 1.0, max_iter: int = 300, tol: float | None = None, solver: str = "auto", device: str = "cpu"):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.solver = solver
        self.device = device

    def fit_many(self, X, y, w=None, class_mask=None):
        solver = self.solver
        if solver == "auto":
            solver = "batched" if getattr(X, "device", None) is not None and X.device.type != "cpu" else "scipy"
        fit = fit_logistic_each if solver == "scipy" else fit_logistic_many
        return fit(X, y, w=w, class_mask=class_mask, C=self.C, max_iter=self.max_iter, tol=self.tol)

    def predict_proba(self, X):
        scores = self._scores(X)
        scores = scores - scores.max(1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(1, keepdims=True)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))


@register_probe("ridge")
class RidgeProbe(_TorchLinearProbe):
    """One-hot ridge regression classifier (closed form in torch), as
    scikit-learn's ``RidgeClassifier(alpha=alpha)``."""

    _parameter_constraints = {
        "alpha": [Interval(Real, 0, None, closed="left")],
        "device": _DEVICE,
    }

    def __init__(self, alpha: float = 1.0, device: str = "cpu"):
        self.alpha = alpha
        self.device = device

    def fit_many(self, X, y, w=None, class_mask=None):
        return fit_ridge_many(X, y, w=w, class_mask=class_mask, alpha=self.alpha)


# Any scikit-learn classifier works as a probe as it is; this one is registered
# by name so configs can ask for it.
PROBES.add("sklearn-logistic", LogisticRegression)
