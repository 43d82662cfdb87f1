"""The toy model, trained at many widths (and many settings) in one tensor program.

Parameters are U [S, W, d, Nmax] (encoder) and V [S, W, d, Nmax] (the decoder:
its block-k rows are task k's linear decoder), for S settings and W widths; the
columns beyond a width are masked to zero. A sample of task k is x = B_k
sqrt(lambda_k) * z, z ~ N(0, I); its loss is ||V U^T x - x||^2 over the whole
output: task k's decoder (the block-k rows of V) must reconstruct x's block and
every other task's decoder must stay silent on it, so a unit shared by two tasks
leaks one task's features into the other's output. That is the interference the
theory is about, and it makes the optimum the top-N eigenspace of M = E[x x^T] =
sum_k pi_k C_k (Eckart-Young). Everything per checkpoint is closed form in (U, V).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ToyBatch:
    x: "torch.Tensor"  # [S, B, d]  # noqa: F821
    task: "torch.Tensor"  # [S, B]  # noqa: F821


class ToySetting:
    """The data side of S settings sharing (K, block, batch size): pi [S, K], lam [S, K, m]."""

    def __init__(self, pi: np.ndarray, lam: np.ndarray, gap: int, batch_size: int, seed: int, device="cpu"):
        import torch

        self.pi = np.atleast_2d(pi)
        self.lam = lam if lam.ndim == 3 else lam[None]
        self.S, self.K, self.m = self.lam.shape
        self.d = self.K * self.m
        self.gap, self.B, self.seed = gap, batch_size, seed
        self.device = torch.device(device)
        self._sqrt_lam = torch.as_tensor(np.sqrt(self.lam).reshape(self.S, self.d), dtype=torch.float32, device=self.device)
        self._block_of = torch.arange(self.d, device=self.device) // self.m

    def task_counts(self, step: int) -> np.ndarray:
        """[S] rare samples at ``step`` under the bursty schedule (gap > 0)."""
        burst = np.rint(self.pi[:, -1] * self.B * self.gap).astype(int)
        return np.clip(burst - (step % self.gap) * self.B, 0, self.B)

    def batch(self, step: int) -> ToyBatch:
        import torch

        rng = np.random.default_rng([self.seed, step, 0x70F])
        if self.gap:
            n_rare = self.task_counts(step)
            common = self.pi[:, :-1] / self.pi[:, :-1].sum(1, keepdims=True)
            task = np.stack(
                [np.concatenate([np.full(n_rare[s], self.K - 1), rng.choice(self.K - 1, self.B - n_rare[s], p=common[s])]) for s in range(self.S)]
            )
        else:
            u = rng.random((self.S, self.B, 1))
            task = (u > np.cumsum(self.pi, 1)[:, None, :]).sum(-1).clip(max=self.K - 1)
        z = torch.as_tensor(rng.standard_normal((self.S, self.B, self.d)), dtype=torch.float32, device=self.device)
        t = torch.as_tensor(task, device=self.device)
        on_block = self._block_of[None, None, :] == t[..., None]
        return ToyBatch(z * self._sqrt_lam[:, None, :] * on_block, t)


class ToyModel:
    def __init__(self, setting: ToySetting, widths: list[int], init_scale: float, seed: int):
        import torch

        self.setting = setting
        self.widths = list(widths)
        S, W, d, n = setting.S, len(widths), setting.d, max(widths)
        g = torch.Generator().manual_seed(seed)
        self.mask = (torch.arange(n)[None, :] < torch.as_tensor(widths)[:, None]).float().to(setting.device)  # [W, n]
        self.U = (torch.randn(S, W, d, n, generator=g) * init_scale).to(setting.device) * self.mask[None, :, None, :]
        self.V = (torch.randn(S, W, d, n, generator=g) * init_scale).to(setting.device) * self.mask[None, :, None, :]
        self.U.requires_grad_(True)
        self.V.requires_grad_(True)

    @property
    def params(self) -> list:
        return [self.U, self.V]

    def sample_losses(self, batch: ToyBatch):
        """[S, W, B] per-sample loss ||V U^T x - x||^2."""
        import torch

        h = torch.einsum("sbd,swdn->swbn", batch.x, self.U)
        y = torch.einsum("swbn,swdn->swbd", h, self.V)
        return ((y - batch.x[:, None]) ** 2).sum(-1)

    def task_losses(self):
        """[S, W, K] population loss of each task: sum_j lambda_kj ||(A - I) e_kj||^2, A = V U^T."""
        import torch

        st = self.setting
        A = torch.einsum("swdn,swen->swde", self.V, self.U)
        R = A - torch.eye(st.d, device=A.device)
        lam = torch.as_tensor(st.lam.reshape(st.S, st.d), dtype=torch.float32, device=A.device)
        out = []
        for k in range(st.K):
            sl = slice(k * st.m, (k + 1) * st.m)
            out.append(((R[:, :, :, sl] ** 2).sum(-2) * lam[:, None, sl]).sum(-1))
        return torch.stack(out, -1)

    def capture(self) -> np.ndarray:
        """[S, W, d]: ||P_U e_i||^2 for every basis direction (how much of it the encoder keeps)."""
        import torch

        with torch.no_grad():
            Q, sv, _ = torch.linalg.svd(self.U.detach().double(), full_matrices=False)
            keep = (sv > sv.amax(-1, keepdim=True) * 1e-6).double()
            return ((Q**2) * keep[..., None, :]).sum(-1).float().cpu().numpy()

    def retained_signal(self, capture: np.ndarray) -> np.ndarray:
        """[S, W, K] s_k(U) = Tr(P_U C_k) / Tr(C_k)."""
        st = self.setting
        c = capture.reshape(st.S, len(self.widths), st.K, st.m)
        return (c * st.lam[:, None]).sum(-1) / st.lam.sum(-1)[:, None]

    def unit_allocation(self) -> np.ndarray:
        """[S, W, n, K]: what encoder unit n carries for task k, u_n^T C_k u_n * ||P_k v_n||^2."""
        import torch

        st = self.setting
        with torch.no_grad():
            U = self.U.detach().reshape(st.S, len(self.widths), st.K, st.m, -1)
            V = self.V.detach().reshape(st.S, len(self.widths), st.K, st.m, -1)
            lam = torch.as_tensor(st.lam, dtype=torch.float32, device=U.device)[:, None, :, :, None]
            var = (U**2 * lam).sum(3)  # [S, W, K, n]
            use = (V**2).sum(3)
            return (var * use).permute(0, 1, 3, 2).cpu().numpy()


def make_optimizer(model: ToyModel, name: str, lr: "torch.Tensor"):  # noqa: F821
    """SGD with a per-setting learning rate, or Adam; returns step(loss_sum)."""
    import torch

    if name == "adam":
        opt = torch.optim.Adam(model.params, lr=float(lr.max()))

        def step(loss):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for p in model.params:
                p.grad *= model.mask[None, :, None, :]
            opt.step()

        return step

    def step(loss):
        grads = torch.autograd.grad(loss, model.params)
        with torch.no_grad():
            for p, g in zip(model.params, grads):
                p -= lr[:, None, None, None] * g * model.mask[None, :, None, :]

    return step


def auto_lr(pi: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """[S] 0.5 / the largest eigenvalue of M per setting: stable SGD for the linear autoencoder."""
    return 0.5 / (np.atleast_2d(pi)[:, :, None] * (lam if lam.ndim == 3 else lam[None])).reshape(len(np.atleast_2d(pi)), -1).max(1)


def train(model: ToyModel, steps: int, lr: np.ndarray, optimizer: str = "sgd", checkpoints=(), on_checkpoint=None, progress: bool = False) -> None:
    """``steps`` minibatch updates of every (setting, width) at once; ``on_checkpoint(step)``
    is called before the first update (step 0) and after update N for N in ``checkpoints``."""
    import torch
    from tqdm.auto import tqdm

    lr_t = torch.as_tensor(lr, dtype=torch.float32, device=model.setting.device)
    step_fn = make_optimizer(model, optimizer, lr_t)
    marks = set(checkpoints)
    if on_checkpoint is not None and 0 in marks:
        on_checkpoint(0)
    for s in tqdm(range(steps), desc="toy", unit="step", disable=not progress):
        loss = model.sample_losses(model.setting.batch(s)).mean(-1).sum()
        step_fn(loss)
        if on_checkpoint is not None and s + 1 in marks:
            on_checkpoint(s + 1)
