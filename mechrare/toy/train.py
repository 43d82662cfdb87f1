"""Training the Section 3 model at every width: checkpoint records, no files.

:func:`train_toy` trains one setting at all widths in one tensor program and
returns one record per checkpoint (retained signal, losses, gains, gradient
Gram matrices, the paper's protocol cosines, unit allocation, attributed loss
changes); :mod:`mechrare.toy.run` writes them as a run folder.
"""

from __future__ import annotations

import math

import numpy as np

from mechrare.toy.config import ToyConfig


def model_names(cfg: ToyConfig) -> list[str]:
    return [f"w{w}" for w in cfg.widths]


def top_units(width: int) -> int:
    """Units per task in the protocol's "task neurons": a quarter of the width, at least 1."""
    return max(1, math.ceil(width / 4))


class Recorder:
    """Collects one record per checkpoint (S = 1 setting, W widths)."""

    def __init__(self, model, trainer, pi: np.ndarray):
        self.model, self.trainer, self.pi = model, trainer, pi
        self.rows: list[dict] = []

    def __call__(self, step: int) -> None:
        import torch

        from mechrare.toy.tracking import pair_dots, task_gradients

        m = self.model
        st = m.setting
        capture = m.capture()
        with torch.no_grad():
            losses = m.task_losses()[0].cpu().numpy()  # [W, K]
            A = torch.einsum("swdn,swen->swde", m.V, m.U)[0]
            gain = torch.diagonal(A, dim1=-2, dim2=-1).cpu().numpy()  # [W, d]
        pop = task_gradients(m, self.trainer.C_pop)
        gram = pair_dots(pop, pop)[0].cpu().numpy()  # [W, K, K]
        cos_nt, cos_b = self._protocol(pop)
        self.rows.append(
            {
                "step": step,
                "retained_signal": m.retained_signal(capture)[0],
                "loss": losses,
                "gain": gain.reshape(len(m.widths), st.K, st.m),
                "gram": gram,
                "cos_nontask_ref": cos_nt,
                "cos_batch_ref": cos_b,
                "allocation": m.unit_allocation()[0],  # [W, n, K]
                "loss_change": self.trainer.take_loss_change()[0],  # [W, K, K] since the previous checkpoint
                "rare_seen": int(self.trainer.rare_seen[0]),
            }
        )

    def _protocol(self, pop) -> tuple[np.ndarray, np.ndarray]:
        """cos(g_nt, g_t) and cos(g, g_t) on task t's top units, g = sum_j pi_j g_j."""
        gU, gV = (g[0].cpu().numpy() for g in pop)  # [W, K, d, n]
        W, K = gU.shape[:2]
        per_unit = (gU**2).sum(2) + (gV**2).sum(2)  # [W, K, n]
        nt, b = np.full((W, K), np.nan), np.full((W, K), np.nan)
        for wi, width in enumerate(self.model.widths):
            for t in range(K):
                units = np.argsort(-per_unit[wi, t, :width], kind="stable")[: top_units(width)]
                vec = np.concatenate([gU[wi][:, :, units].reshape(K, -1), gV[wi][:, :, units].reshape(K, -1)], 1)
                total = (self.pi[:, None] * vec).sum(0)
                nontask = total - self.pi[t] * vec[t]
                nt[wi, t] = _cos(nontask, vec[t])
                b[wi, t] = _cos(total, vec[t])
        return nt, b


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else np.nan


def toy_lr(cfg: ToyConfig) -> np.ndarray:
    """The default step size: 0.5 (bursty: 0.25) / the largest curvature a batch can have. I.i.d. batches
    average to M (largest eigenvalue max pi_k lambda_k1); a bursty schedule also sends
    batches of rare samples only, whose curvature is lambda_r1 itself."""
    from mechrare.toy.model import auto_lr

    pi, lam = cfg.frequencies(), cfg.spectra()
    if not cfg.gap:
        return auto_lr(pi, lam)
    burst = min(1.0, cfg.rare_frequency * cfg.gap)  # the share of rare rows in the first burst batch
    return np.array([0.25 / max((pi[:, None] * lam).max(), burst * lam[-1].max())])  # 0.25: burst batches are noisy


def train_toy(cfg: ToyConfig, progress: bool = True) -> tuple[list[dict], list[int]]:
    """Train every width of ``cfg`` (one setting) and return the checkpoint records."""
    from tqdm.auto import tqdm

    from mechrare.toy.model import ToyModel, ToySetting
    from mechrare.toy.tracking import TrackedTrainer
    from mechrare.checkpoints.schedule import checkpoint_steps

    pi, lam = cfg.frequencies(), cfg.spectra()
    setting = ToySetting(pi, lam, cfg.gap, cfg.batch_size, cfg.seed, device=cfg.device)
    model = ToyModel(setting, cfg.widths, cfg.init_scale, cfg.seed)
    lr = np.array([cfg.lr]) if cfg.lr > 0 else toy_lr(cfg)
    trainer = TrackedTrainer(model, lr, cfg.optimizer)
    marks = checkpoint_steps(cfg.steps, cfg.every, True)
    record = Recorder(model, trainer, pi)
    record(0)
    todo = set(marks)
    for s in tqdm(range(cfg.steps), desc="toy", unit="step", disable=not progress, mininterval=1.0):
        trainer.step(s)
        if s + 1 in todo:
            record(s + 1)
    return record.rows, marks
