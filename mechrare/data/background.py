"""The background "language": a seeded Zipfian Markov chain standing in for natural text."""

from __future__ import annotations

import numpy as np

from mechrare.config import BackgroundConfig


def zipf_weights(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return w / w.sum()


class MarkovSource:
    """Words ``w0 .. w{V-1}``. Each word has ``branching`` successors (a seeded
    random choice) with Zipfian weights; the first word of a document is drawn
    from a Zipfian unigram distribution. Sampling is vectorised over rows."""

    def __init__(self, cfg: BackgroundConfig, seed: int):
        self.cfg = cfg
        rng = np.random.default_rng([seed, 0xB6])
        v, b = cfg.vocab_size, cfg.branching
        self.successors = np.stack([rng.choice(v, size=b, replace=False) for _ in range(v)])
        self.successor_cdf = np.cumsum(zipf_weights(b, cfg.zipf))
        self.start_cdf = np.cumsum(zipf_weights(v, cfg.zipf)[rng.permutation(v)])

    @property
    def tokens(self) -> list[str]:
        return [f"w{i}" for i in range(self.cfg.vocab_size)]

    def sample(self, rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
        """[rows, length] word indices (0 .. V-1)."""
        out = np.empty((rows, length), dtype=np.int64)
        u = rng.random((rows, length))
        out[:, 0] = np.minimum(np.searchsorted(self.start_cdf, u[:, 0], side="right"), self.cfg.vocab_size - 1)
        b = self.cfg.branching
        for t in range(1, length):
            k = np.minimum(np.searchsorted(self.successor_cdf, u[:, t], side="right"), b - 1)
            out[:, t] = self.successors[out[:, t - 1], k]
        return out

    def transition_matrix(self) -> np.ndarray:
        """[V, V] next-word probabilities (for the background's entropy floor)."""
        v = self.cfg.vocab_size
        probs = np.diff(np.concatenate([[0.0], self.successor_cdf]))
        m = np.zeros((v, v))
        for i in range(v):
            m[i, self.successors[i]] += probs
        return m

    def entropy(self) -> float:
        """Conditional entropy (nats) of the next word: the background loss floor
        for every position after a document's first word."""
        probs = np.diff(np.concatenate([[0.0], self.successor_cdf]))
        return float(-(probs * np.log(probs)).sum())
