"""Tasks over a fixed instance pool: the paper's ``compare`` and ``modadd``, and ``facts``.

``compare`` and ``modadd`` follow the paper's form, ``TOK1 TOK2 LABEL`` over a
fixed set of random vocabulary tokens (here: background words), behind the
task's marker token so that an instance is unambiguous at the start of a
document. The pool of all instances is split into a train and a test half.
``facts`` is memorisation (fixed key -> value pairs): its eval set is its
training set, by design.
"""

from __future__ import annotations

import itertools

import numpy as np

from mechrare.data.tasks.base import Example, Task, check_int, register_task, symbols

MAX_POOL = 1 << 20


class PooledTask(Task):
    def setup(self) -> None:
        self.setup_task()
        pool = self.build_pool()
        order = self.rng.permutation(len(pool))
        pool = [pool[i] for i in order]
        if self.split == "all":
            self.train_pool, self.test_pool = pool, pool
        else:
            if len(pool) < 2:
                raise self.fail("complexity", f"{self.name} has {len(pool)} instance(s); it needs >= 2 to split")
            half = len(pool) // 2
            self.train_pool, self.test_pool = pool[:half], pool[half:]

    def setup_task(self) -> None:
        pass

    def build_pool(self) -> list[Example]:
        raise NotImplementedError

    def pick_words(self, n: int, what: str) -> list[str]:
        if n > len(self.words):
            raise self.fail(
                "complexity",
                f"needs {n} {what} drawn from the background vocabulary, which has {len(self.words)}; "
                "raise mixture.background.vocab_size",
            )
        return [self.words[i] for i in self.rng.choice(len(self.words), size=n, replace=False)]

    def train_sample(self, rng: np.random.Generator) -> Example:
        return self.train_pool[int(rng.integers(len(self.train_pool)))]

    def eval_examples(self, n: int) -> list[Example]:
        return self.test_pool[:n]


@register_task("compare")
class Compare(PooledTask):
    """``<compare:n> A B LABEL``: LABEL is ``LT`` if A comes before B in a hidden
    order over n random vocabulary tokens, else ``GT``. Complexity n is the size
    of the order."""

    family = "compare"

    def setup_task(self) -> None:
        if self.complexity < 2:
            raise self.fail("complexity", f"must be >= 2 (items in the order), got {self.complexity}")
        self.items = self.pick_words(self.complexity, "items")  # in hidden order

    def tokens(self) -> list[str]:
        return ["LT", "GT"]

    def targets(self) -> dict[str, int]:
        return {"answer": 2, "rank_a": self.complexity, "rank_b": self.complexity}

    @property
    def length(self) -> int:
        return 4

    def build_pool(self) -> list[Example]:
        out = []
        for i, j in itertools.permutations(range(self.complexity), 2):
            label = 0 if i < j else 1
            toks = (self.marker, self.items[i], self.items[j], ("LT", "GT")[label])
            out.append(Example(toks, 3, {"answer": label, "rank_a": i, "rank_b": j}))
        return out


@register_task("modadd")
class ModAdd(PooledTask):
    """``<modadd:k> T(a1) .. T(ak) T(s)`` with s = (a1 + .. + ak) mod p, where T
    maps 0 .. p-1 to p random vocabulary tokens. Complexity k is the number of
    operands (k = 2 is the paper's form)."""

    family = "modadd"
    defaults = {"p": 11}

    def setup_task(self) -> None:
        self.p = check_int(self, "p", 2)
        if self.complexity < 1:
            raise self.fail("complexity", "must be >= 1 operand")
        if float(self.p) ** self.complexity > MAX_POOL:
            raise self.fail(
                "complexity",
                f"p^k = {self.p}^{self.complexity} instances exceeds {MAX_POOL}; use fewer operands or a smaller p",
            )
        self.numbers = self.pick_words(self.p, "number tokens")

    def tokens(self) -> list[str]:
        return []

    def targets(self) -> dict[str, int]:
        out = {"answer": self.p, "operand_1": self.p}
        out.update({f"partial_{j}": self.p for j in range(2, self.complexity)})
        return out

    @property
    def length(self) -> int:
        return self.complexity + 2

    def build_pool(self) -> list[Example]:
        out = []
        for ops in itertools.product(range(self.p), repeat=self.complexity):
            sums = np.cumsum(ops) % self.p
            toks = (self.marker, *(self.numbers[a] for a in ops), self.numbers[int(sums[-1])])
            latents = {"answer": int(sums[-1]), "operand_1": int(ops[0])}
            latents.update({f"partial_{j}": int(sums[j - 1]) for j in range(2, self.complexity)})
            out.append(Example(toks, self.complexity + 1, latents))
        return out


@register_task("facts")
class Facts(PooledTask):
    """``<facts:n> KEY VALUE``: n fixed key -> value pairs to memorise.

    A key is ``key_length`` tokens. With ``key_length = 1`` every key is a token
    of its own (recall can live in the embedding table); with 2 or more, keys
    are distinct tuples over a shared alphabet (``facts{n}_k{i}``) of the
    smallest size that holds n keys, so recall must be stored in the MLPs,
    whose capacity grows with width. Values (``fval{j}``) are shared by all
    facts tasks. A ``variant`` (``facts:64:rare``) has its own keys
    (``facts64rare_k{i}``) and its own mapping: the same task on another fact set. The evaluation set is the facts themselves (recall, not
    generalisation)."""

    family = "facts"
    defaults = {"values": 16, "key_length": 1}
    split = "all"

    def setup_task(self) -> None:
        self.n_values = check_int(self, "values", 2)
        self.key_length = check_int(self, "key_length", 1)
        n, k = self.complexity, self.key_length
        alphabet = max(2, int(np.ceil(n ** (1 / k))))
        while alphabet**k < n:
            alphabet += 1
        self.alphabet = alphabet if k > 1 else n
        if k == 1:
            self.keys = [(i,) for i in range(n)]
        else:
            picks = self.rng.choice(self.alphabet**k, size=n, replace=False)
            self.keys = [tuple(int(x) for x in np.unravel_index(p, (self.alphabet,) * k)) for p in picks]
        self.mapping = self.rng.integers(self.n_values, size=n)

    def tokens(self) -> list[str]:
        return symbols(self.key_prefix, self.alphabet) + symbols("fval", self.n_values)

    @property
    def key_prefix(self) -> str:
        """Key tokens: ``facts{n}_k{i}``, and ``facts{n}{variant}_k{i}`` for a variant (disjoint keys)."""
        return f"facts{self.complexity}{self.variant}_k"

    def targets(self) -> dict[str, int]:
        return {"answer": self.n_values, "key": self.complexity}

    @property
    def length(self) -> int:
        return self.key_length + 2

    def build_pool(self) -> list[Example]:
        prefix = self.key_prefix
        return [
            Example(
                (self.marker, *(f"{prefix}{x}" for x in key), f"fval{v}"),
                self.key_length + 1,
                {"answer": int(v), "key": i},
            )
            for i, (key, v) in enumerate(zip(self.keys, self.mapping))
        ]
