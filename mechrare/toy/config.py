"""ToyConfig: one toy experiment (tasks, widths, training), strict like every config."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mechrare.errors import ConfigError


@dataclass
class ToyConfig:
    """K regression tasks on orthogonal blocks of ``block`` dimensions each. Common
    tasks k = 1..K-1 have frequencies proportional to k^-freq_exponent (together
    1 - rare_frequency) and spectra lambda_{k,j} = j^-alpha; the last task is the
    rare one, with frequency ``rare_frequency`` and spectrum rare_scale * j^-alpha.
    ``gap`` > 0 withholds the rare task for ``gap`` steps and then delivers the
    gap's worth of rare samples in bulk (same long-run frequency)."""

    n_tasks: int = 6
    block: int = 4
    freq_exponent: float = 1.0
    alpha: float = 2.0
    rare_frequency: float = 0.05
    rare_scale: float = 2.0  # with the defaults: N_crit = 6 of widths 1..12
    widths: list[int] = field(default_factory=lambda: list(range(1, 13)))
    steps: int = 4000
    batch_size: int = 256
    lr: float = 0.0  # 0 = 0.5 / (largest eigenvalue of M)
    optimizer: str = "sgd"
    init_scale: float = 1e-2
    gap: int = 0
    every: int = 200  # checkpoint every N steps (plus 0, 1, 2, 4, ..., 512)
    seed: int = 0
    device: str = "cpu"

    def validate(self, path: str = "") -> None:
        p = f"{path}." if path else ""
        for key in ("n_tasks", "block", "steps", "batch_size", "every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{p}{key}: must be >= 1, got {getattr(self, key)}")
        if self.n_tasks < 2:
            raise ConfigError(f"{p}n_tasks: need at least one common and the rare task, got {self.n_tasks}")
        if not 0 < self.rare_frequency < 1:
            raise ConfigError(f"{p}rare_frequency: must be in (0, 1), got {self.rare_frequency}")
        if self.rare_scale <= 0 or self.alpha < 0:
            raise ConfigError(f"{p}rare_scale must be > 0 and alpha >= 0, got {self.rare_scale}, {self.alpha}")
        if not self.widths or min(self.widths) < 1 or max(self.widths) > self.dim:
            raise ConfigError(f"{p}widths: need 1 <= width <= {self.dim} (n_tasks * block), got {self.widths}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"{p}optimizer: must be sgd or adam, got {self.optimizer!r}")
        if self.gap < 0 or self.lr < 0 or self.init_scale <= 0:
            raise ConfigError(f"{p}gap and lr must be >= 0 and init_scale > 0")
        if self.gap and self.rare_frequency * self.batch_size * self.gap < 1:
            raise ConfigError(f"{p}gap: a burst would hold < 1 rare sample; raise gap or rare_frequency")

    @property
    def dim(self) -> int:
        return self.n_tasks * self.block

    def frequencies(self) -> np.ndarray:
        k = np.arange(1, self.n_tasks, dtype=float)
        common = k**-self.freq_exponent
        common = common / common.sum() * (1 - self.rare_frequency)
        return np.append(common, self.rare_frequency)

    def spectra(self) -> np.ndarray:
        """[K, block] eigenvalues lambda_{k,j}."""
        lam = np.tile(np.arange(1, self.block + 1, dtype=float) ** -self.alpha, (self.n_tasks, 1))
        lam[-1] *= self.rare_scale
        return lam

    def task_names(self) -> list[str]:
        return [f"common{k + 1}" for k in range(self.n_tasks - 1)] + ["rare"]
