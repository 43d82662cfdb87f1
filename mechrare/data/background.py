"""The background the tasks are injected into, one class per ``mixture.background.kind``.

``markov`` (the default): a seeded Zipfian Markov chain standing in for natural
text. ``text`` and ``tokens``: a real tokenized corpus. Each kind gives the words
task families may use, the vocabulary (with the tasks' own symbols), training
windows and held-out windows; :class:`~mechrare.data.mixture.Mixture` injects
the tasks. A new kind registers here (or under the ``mechrare.backgrounds``
entry point).
"""

from __future__ import annotations

import numpy as np

from mechrare.config import BackgroundConfig
from mechrare.data.vocab import Vocabulary
from mechrare.registry import Registry


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


# -- the background kinds ---------------------------------------------------------------
BACKGROUNDS: Registry[type] = Registry("background kind", entry_point_group="mechrare.backgrounds")


@BACKGROUNDS.register("markov")
class MarkovBackground:
    """``kind = "markov"``: the Markov chain's words, and the tasks' symbols as new tokens."""

    def __init__(self, cfg: BackgroundConfig, seed: int, length: int, where: str, data_dirs=None):
        self.source = MarkovSource(cfg, seed)
        self.words = self.source.tokens

    def vocabulary(self, extras: list[str], seed: int, where: str):
        self.vocab = Vocabulary(self.words + list(dict.fromkeys(extras)))
        self._word_ids = self.vocab.ids(self.words)
        return self.vocab

    def sample(self, rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
        return self._word_ids[self.source.sample(rng, rows, length)]

    def held_out(self, rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
        return self.sample(rng, rows, length)  # a fresh draw of the chain: never a training sequence by construction

    def entropy(self) -> float | None:
        return self.source.entropy()

    def install(self, data_dir) -> None:
        """Nothing to keep: the chain is a function of the config and seed."""


class CorpusBackground:
    """``kind = "text"`` and ``"tokens"``: windows of a tokenized corpus (:mod:`mechrare.data.corpus`),
    the tasks' symbols placed on random tokens of its tokenizer (:mod:`mechrare.data.text_vocab`)."""

    def __init__(self, cfg: BackgroundConfig, seed: int, length: int, where: str, data_dirs=None):
        from mechrare.data.corpus import TokenCorpus
        from mechrare.data.text_prep import prepare
        from mechrare.data.text_vocab import TokenizerVocabulary

        self.prepared = prepare(cfg, data_dirs, where)
        meta = self.prepared.meta
        self.vocab = TokenizerVocabulary(self.prepared.tokenizer(), meta["eos_id"], meta["pad_id"], seed,
                                         str(self.prepared.tokenizer_file))
        self.corpus = TokenCorpus(self.prepared.segments(where), length, len(self.vocab), cfg.held_out, where)
        self.words = self.vocab.words

    def vocabulary(self, extras: list[str], seed: int, where: str):
        self.vocab.place(extras, where)
        return self.vocab

    def sample(self, rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
        return self.corpus.sample(rng, rows)

    def held_out(self, rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
        return self.corpus.held_out_sample(rng, rows)

    def entropy(self) -> float | None:
        return None  # natural text: its loss floor is unknown

    def install(self, data_dir) -> None:
        self.prepared.install(data_dir)


BACKGROUNDS.add("text", CorpusBackground)
BACKGROUNDS.add("tokens", CorpusBackground)
