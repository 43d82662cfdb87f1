"""A third-party probe type: a small MLP probe, shipped as its own package.

It is the worked example of docs/extending_probes.md; the test suite puts
this folder on ``sys.path`` so Python sees the package and its entry point."""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mechrare.probes import Probe


class MLPProbe(Probe):
    """One hidden ReLU layer, trained full-batch with Adam in torch."""

    def __init__(self, hidden=32, epochs=300, lr=1e-2, weight_decay=1e-4, seed=0):
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def fit(self, X, y):
        import torch

        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, target = np.unique(y, return_inverse=True)
        torch.manual_seed(self.seed)
        net = torch.nn.Sequential(
            torch.nn.Linear(X.shape[1], self.hidden), torch.nn.ReLU(), torch.nn.Linear(self.hidden, len(self.classes_))
        )
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xt, yt = torch.tensor(X), torch.tensor(target)
        for _ in range(self.epochs):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()
        self.net_ = net.eval()
        return self

    def predict(self, X):
        import torch

        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        with torch.no_grad():
            return self.classes_[self.net_(torch.tensor(X)).argmax(1).numpy()]
