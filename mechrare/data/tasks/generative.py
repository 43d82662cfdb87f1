"""Tasks over a large instance space: fresh samples, with a held-out test set.

The evaluation set is a fixed seeded sample of distinct instances, drawn once
(its size fixed by the first ``eval_examples`` call); training draws reject
those instances, so no test instance is ever trained on.
"""

from __future__ import annotations

import numpy as np

from mechrare.data.tasks.base import Example, Task, check_int, register_task, symbols


class GenerativeTask(Task):
    #: at most this share of the instance space goes to the test set
    max_test_share = 0.5

    def setup(self) -> None:
        self._eval_seed = int(self.rng.integers(1 << 62))
        self._eval: list[Example] | None = None
        self._eval_keys: set[tuple[str, ...]] = set()
        self.setup_task()

    def setup_task(self) -> None:
        """Check parameters and build fixed structure."""

    def space_size(self) -> float:
        raise NotImplementedError

    def draw(self, rng: np.random.Generator) -> Example:
        raise NotImplementedError

    def eval_examples(self, n: int) -> list[Example]:
        if self._eval is None:
            target = int(max(1, min(n, self.space_size() * self.max_test_share)))
            rng = np.random.default_rng([self._eval_seed, 0xE7A1])
            found: dict[tuple[str, ...], Example] = {}
            for _ in range(50 * target + 1000):
                ex = self.draw(rng)
                found.setdefault(ex.tokens, ex)
                if len(found) >= target:
                    break
            self._eval = list(found.values())
            self._eval_keys = set(found)
        return self._eval[:n]

    def train_sample(self, rng: np.random.Generator) -> Example:
        if self._eval is None:
            raise RuntimeError(f"{self.name}: call eval_examples() before sampling training data")
        while True:
            ex = self.draw(rng)
            if ex.tokens not in self._eval_keys:
                return ex


@register_task("copy")
class Copy(GenerativeTask):
    """``<copy:n> x1 .. xn SEP x1 .. xn``; complexity n is the sequence length."""

    family = "copy"
    defaults = {"alphabet": 16}

    def setup_task(self) -> None:
        self.alphabet = check_int(self, "alphabet", 2)

    def tokens(self) -> list[str]:
        return symbols("sym", self.alphabet) + ["SEP"]

    def targets(self) -> dict[str, int]:
        return {"answer": self.alphabet, "last_input": self.alphabet}

    @property
    def length(self) -> int:
        return 2 * self.complexity + 2

    def space_size(self) -> float:
        return float(self.alphabet) ** self.complexity

    def output(self, xs: np.ndarray) -> np.ndarray:
        return xs

    def draw(self, rng: np.random.Generator) -> Example:
        xs = rng.integers(self.alphabet, size=self.complexity)
        ys = self.output(xs)
        toks = [self.marker, *(f"sym{x}" for x in xs), "SEP", *(f"sym{y}" for y in ys)]
        latents = {"answer": int(ys[0]), "last_input": int(xs[-1])}
        return Example(tuple(toks), self.complexity + 2, latents)


@register_task("reverse")
class Reverse(Copy):
    """``<reverse:n> x1 .. xn SEP xn .. x1``."""

    family = "reverse"

    def output(self, xs: np.ndarray) -> np.ndarray:
        return xs[::-1]


@register_task("sparse_parity")
class SparseParity(GenerativeTask):
    """``<sparse_parity:k> b1 .. bN SEP y``: y is the parity of k hidden relevant bits."""

    family = "sparse_parity"
    defaults = {"n_bits": 16}

    def setup_task(self) -> None:
        self.n_bits = check_int(self, "n_bits", 1)
        if self.complexity > self.n_bits:
            raise self.fail("complexity", f"must be <= params.n_bits={self.n_bits}, got {self.complexity}")
        self.relevant = np.sort(self.rng.choice(self.n_bits, size=self.complexity, replace=False))

    def tokens(self) -> list[str]:
        return ["bit0", "bit1", "SEP"]

    def targets(self) -> dict[str, int]:
        out = {"answer": 2}
        out.update({f"partial_{j}": 2 for j in range(1, self.complexity)})
        return out

    @property
    def length(self) -> int:
        return self.n_bits + 3

    def space_size(self) -> float:
        return 2.0**self.n_bits

    def draw(self, rng: np.random.Generator) -> Example:
        bits = rng.integers(2, size=self.n_bits)
        cums = np.cumsum(bits[self.relevant]) % 2
        y = int(cums[-1])
        toks = [self.marker, *(f"bit{b}" for b in bits), "SEP", f"bit{y}"]
        latents = {"answer": y, **{f"partial_{j}": int(cums[j - 1]) for j in range(1, self.complexity)}}
        return Example(tuple(toks), self.n_bits + 2, latents)


@register_task("lookup")
class Lookup(GenerativeTask):
    """In-context associative recall, ``<lookup:k> k1 v1 .. kk vk SEP kq vq``;
    complexity k is the number of key-value pairs in context."""

    family = "lookup"
    defaults = {"keys": 16, "values": 16}

    def setup_task(self) -> None:
        self.n_keys = check_int(self, "keys", 1)
        self.n_values = check_int(self, "values", 2)
        if self.complexity > self.n_keys:
            raise self.fail("complexity", f"must be <= params.keys={self.n_keys}, got {self.complexity}")

    def tokens(self) -> list[str]:
        return symbols("key", self.n_keys) + symbols("val", self.n_values) + ["SEP"]

    def targets(self) -> dict[str, int]:
        return {"answer": self.n_values, "query_position": self.complexity, "query_key": self.n_keys}

    @property
    def length(self) -> int:
        return 2 * self.complexity + 4

    def space_size(self) -> float:
        k = self.complexity
        perms = float(np.prod(np.arange(self.n_keys - k + 1, self.n_keys + 1, dtype=np.float64)))
        return perms * float(self.n_values) ** k * k

    def draw(self, rng: np.random.Generator) -> Example:
        k = self.complexity
        keys = rng.choice(self.n_keys, size=k, replace=False)
        vals = rng.integers(self.n_values, size=k)
        q = int(rng.integers(k))
        toks = [self.marker]
        for key, val in zip(keys, vals):
            toks += [f"key{key}", f"val{val}"]
        toks += ["SEP", f"key{keys[q]}", f"val{vals[q]}"]
        latents = {"answer": int(vals[q]), "query_position": q, "query_key": int(keys[q])}
        return Example(tuple(toks), 2 * k + 3, latents)
