"""Per-task gradients of the toy model in closed form, and a training loop that
attributes every update to the tasks that caused it.

With A = V U^T and R = A - I, a loss tr(R C R^T) (C a second-moment matrix) has
dL/dV = 2 R C U and dL/dU = 2 (R C)^T V. Task k's part of a minibatch loss uses
its samples' C = X_k^T X_k / B; task k's population loss L_k uses C_k. So the
minibatch gradient splits exactly into task parts (their sum is what autograd
gives; tests check it), and each step's update is a sum of task parts.

``loss_change[k, j]`` accumulates, over the steps of an interval, g_k(theta_t) .
delta_j(t): the first-order change of task k's population loss caused by task
j's part of step t's update (exact split for SGD; for Adam the update is split
coordinate-wise in proportion to the task parts, as the LM analysis does).
It is first order per step: at small steps it adds up to the measured change
(tests: median error < 5%); at the default step size (0.5 / the largest
curvature) the second-order terms, SGD noise's among them, are not small, and
near convergence the measured change is mostly such terms.
"""

from __future__ import annotations

import numpy as np

from mechrare.toy.model import ToyModel


def empirical_moments(model: ToyModel, batch) -> "torch.Tensor":  # noqa: F821
    """[S, K, d, d]: X_k^T X_k / B for each task's rows of the batch."""
    import torch

    onehot = torch.nn.functional.one_hot(batch.task, model.setting.K).to(batch.x.dtype)  # [S, B, K]
    xk = batch.x[:, None] * onehot.transpose(1, 2)[..., None]  # [S, K, B, d]
    return xk.transpose(-1, -2) @ batch.x[:, None] / batch.x.shape[1]


def population_moments(model: ToyModel) -> "torch.Tensor":  # noqa: F821
    """[S, K, d, d]: C_k = B_k diag(lambda_k) B_k^T (unweighted by pi)."""
    import torch

    st = model.setting
    C = np.zeros((st.S, st.K, st.d, st.d), dtype=np.float32)
    for k in range(st.K):
        idx = np.arange(k * st.m, (k + 1) * st.m)
        C[:, k, idx, idx] = st.lam[:, k]
    return torch.as_tensor(C, device=st.device)


def task_gradients(model: ToyModel, C) -> tuple:
    """(dL_k/dU, dL_k/dV), each [S, W, K, d, n], for losses tr(R C_k R^T); masked to each width."""
    import torch

    with torch.no_grad():
        U, V = model.U.detach(), model.V.detach()
        R = V @ U.transpose(-1, -2) - torch.eye(U.shape[2], device=U.device)  # [S, W, d, d]
        RC = R[:, :, None] @ C[:, None]  # [S, W, K, d, d]
        mask = model.mask[None, :, None, None, :]
        gV = 2 * (RC @ U[:, :, None]) * mask
        gU = 2 * (RC.transpose(-1, -2) @ V[:, :, None]) * mask
    return gU, gV


def pair_dots(a: tuple, b: tuple) -> "torch.Tensor":  # noqa: F821
    """[S, W, K, K']: <a_k, b_j> over U and V together."""
    return sum(x.flatten(-2) @ y.flatten(-2).transpose(-1, -2) for x, y in zip(a, b))


class TrackedTrainer:
    """Minibatch training of every (setting, width) at once, with per-task update attribution."""

    def __init__(self, model: ToyModel, lr: np.ndarray, optimizer: str = "sgd", rel_eps: float = 1e-6):
        import torch

        self.model, self.optimizer = model, optimizer
        st = model.setting
        self.lr = torch.as_tensor(np.broadcast_to(lr, (st.S,)).copy(), dtype=torch.float32, device=st.device)
        self.C_pop = population_moments(model)
        self.rel_eps = rel_eps
        self.loss_change = torch.zeros(st.S, len(model.widths), st.K, st.K, device=st.device)
        self.rare_seen = np.zeros(st.S, dtype=np.int64)
        if optimizer == "adam":
            self.adam = torch.optim.Adam(model.params, lr=float(self.lr.max()))

    def step(self, s: int) -> None:
        import torch

        model = self.model
        batch = model.setting.batch(s)
        self.rare_seen += (batch.task == model.setting.K - 1).sum(1).cpu().numpy()
        parts = task_gradients(model, empirical_moments(model, batch))  # the minibatch gradient, by task
        pop = task_gradients(model, self.C_pop)  # g_k(theta_t), before the update
        if self.optimizer == "sgd":
            lr = self.lr[:, None, None, None, None]
            deltas = (-lr * parts[0], -lr * parts[1])
            with torch.no_grad():
                model.U += deltas[0].sum(2)
                model.V += deltas[1].sum(2)
        else:
            before = (model.U.detach().clone(), model.V.detach().clone())
            self.adam.zero_grad(set_to_none=True)
            model.U.grad, model.V.grad = parts[0].sum(2), parts[1].sum(2)
            self.adam.step()
            deltas = tuple(self._split(p.detach() - b, g) for p, b, g in zip(model.params, before, parts))
        self.loss_change += pair_dots(pop, deltas)

    def _split(self, delta, parts):
        """Coordinate-wise: delta_j = w * g_j with w = delta * gbar / (gbar^2 + eps^2)."""
        gbar = parts.sum(2)
        eps = self.rel_eps * gbar.abs().amax(dim=(-1, -2), keepdim=True).clamp_min(1e-30)
        w = delta * gbar / (gbar**2 + eps**2)
        return w[:, :, None] * parts

    def take_loss_change(self) -> np.ndarray:
        out = self.loss_change.cpu().numpy().copy()
        self.loss_change.zero_()
        return out
