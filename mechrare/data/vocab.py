"""The run's vocabulary, saved as a Hugging Face tokenizer in every checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)


class Vocabulary:
    """An ordered list of whitespace-free token strings; ids are positions.

    Ids 0, 1, 2 are ``<pad>``, ``<eos>`` and ``<unk>``. ``<pad>`` is the model's
    padding index (its embedding gets no gradient) and never appears in a loss.
    """

    def __init__(self, tokens: list[str]):
        tokens = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be unique")
        bad = [t for t in tokens if not t or any(c.isspace() for c in t)]
        if bad:
            raise ValueError(f"vocabulary tokens must be non-empty with no whitespace: {bad[:3]}")
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def eos_id(self) -> int:
        return 1

    def id(self, token: str) -> int:
        return self._ids[token]

    def ids(self, tokens: list[str]) -> np.ndarray:
        return np.array([self._ids[t] for t in tokens], dtype=np.int64)

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_hf_tokenizer(self):
        """A ``PreTrainedTokenizerFast`` (WordLevel over whitespace) for this vocabulary."""
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        core = Tokenizer(models.WordLevel(vocab=dict(self._ids), unk_token=UNK))
        core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return PreTrainedTokenizerFast(
            tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=1 << 20
        )

    def save(self, folder: str | Path) -> None:
        self.to_hf_tokenizer().save_pretrained(str(folder))
