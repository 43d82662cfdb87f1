"""A corpus tokenizer's vocabulary, with the tasks' own words placed on random tokens.

The paper poses its tasks to OLMo "over 100 random vocabulary tokens": a task
instance is a sequence of ordinary tokens of the model's tokenizer. Here the
tokenizer's ordinary (non-special) tokens are shuffled once (seeded): the first
half are the *words* task families draw their symbols from
(:meth:`mechrare.data.tasks.pooled.PooledTask.pick_words`), and every other string
a task uses (its marker ``<compare:8>``, labels such as ``LT``, symbols such as
``v3``) is an *alias* of one token of the second half, one to one. So the tasks'
tokens never collide with each other, and each also occurs in the text, as in
the paper. ``decode`` gives the tokenizer's own strings.
"""

from __future__ import annotations

import numpy as np

from mechrare.errors import ConfigError


class TokenizerVocabulary:
    """The same interface as :class:`mechrare.data.vocab.Vocabulary`, over a ``tokenizers.Tokenizer``."""

    def __init__(self, tokenizer, eos_id: int, pad_id: int | None, seed: int, tokenizer_file: str):
        self.tokenizer = tokenizer
        self.tokenizer_file = tokenizer_file
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.tokens = [tokenizer.id_to_token(i) or "" for i in range(size)]
        self._eos, self._pad = int(eos_id), pad_id
        special = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special} | {eos_id}
        if pad_id is not None:
            special.add(pad_id)
        ordinary = np.array([i for i in range(size) if i not in special and self.tokens[i]], dtype=np.int64)
        self._order = np.random.default_rng([seed, 0x70C]).permutation(ordinary)
        self.n_words = len(self._order) // 2
        self._ids = {t: i for i, t in enumerate(self.tokens) if t}
        self.aliases: dict[str, int] = {}

    @property
    def words(self) -> list[str]:
        """The tokens task families draw their symbols from (the shuffled first half)."""
        return [self.tokens[i] for i in self._order[: self.n_words]]

    def place(self, extras: list[str], where: str) -> None:
        """Give each of ``extras`` that is not a word its own token from the second half."""
        words = set(self.words)
        todo = [e for e in dict.fromkeys(extras) if e not in words and e not in self.aliases]
        free = self._order[self.n_words + len(self.aliases) :]
        if len(todo) > len(free):
            raise ConfigError(f"{where}: the tasks use {len(todo) + len(self.aliases)} symbols of their own, and the tokenizer has "
                              f"{len(self._order) - self.n_words} tokens to place them on; use a larger vocabulary or smaller tasks")
        for e, i in zip(todo, free):
            self.aliases[e] = int(i)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int | None:
        return self._pad

    @property
    def eos_id(self) -> int:
        return self._eos

    def id(self, token: str) -> int:
        return self.aliases[token] if token in self.aliases else self._ids[token]

    def ids(self, tokens: list[str]) -> np.ndarray:
        return np.array([self.id(t) for t in tokens], dtype=np.int64)

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_hf_tokenizer(self):
        """A ``PreTrainedTokenizerFast`` over the corpus tokenizer (what each checkpoint saves)."""
        from transformers import PreTrainedTokenizerFast

        extra = {"pad_token": self.tokens[self._pad]} if self._pad is not None else {}
        return PreTrainedTokenizerFast(tokenizer_file=self.tokenizer_file, eos_token=self.tokens[self._eos],
                                       model_max_length=1 << 20, **extra)

    def save(self, folder) -> None:
        self.to_hf_tokenizer().save_pretrained(str(folder))
