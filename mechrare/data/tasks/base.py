"""Task families: the base classes, the example type and the family registry.

A task is a family (``copy``, ``compare``, ...) at a complexity (the knob that
makes it harder). It declares the tokens it needs, its probe targets (the
latent variables a model must compute, read at the last prompt position) and
a held-out evaluation set that training never sees.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mechrare.errors import ConfigError
from mechrare.registry import Registry

TASK_FAMILIES: Registry[type["Task"]] = Registry("task family", entry_point_group="mechrare.tasks")
register_task = TASK_FAMILIES.register


@dataclass(frozen=True)
class Example:
    """One task instance: ``tokens[:n_prompt]`` is the prompt, the rest the answer.

    ``latents`` maps each probe target to its class index for this instance.
    """

    tokens: tuple[str, ...]
    n_prompt: int
    latents: dict[str, int]

    @property
    def answer(self) -> tuple[str, ...]:
        return self.tokens[self.n_prompt :]


class Task(ABC):
    """Base class. Subclasses set ``family`` and ``defaults`` (family parameters)."""

    family: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    #: "halves": a fixed instance pool or the instance space is split into train
    #: and held-out test; "all": eval on the training instances (memorisation).
    split: ClassVar[str] = "halves"

    def __init__(self, complexity: int, params: dict[str, Any], seed: int, words: list[str], path: str = "task", variant: str = ""):
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ConfigError(f"{path}.params.{unknown[0]}: unknown parameter of {self.family}; valid: {valid}")
        self.complexity = complexity
        self.variant = variant
        self.params = {**self.defaults, **params}
        self.path = path
        self.words = words
        self.rng = np.random.default_rng([seed, zlib.crc32(self.name.encode())])
        self.setup()

    # -- identity -------------------------------------------------------------
    @property
    def name(self) -> str:
        """``<family>:<complexity>``, or ``<family>:<complexity>:<variant>`` for a variant (its own
        instances: the rng is seeded by the name)."""
        return f"{self.family}:{self.complexity}" + (f":{self.variant}" if self.variant else "")

    @property
    def marker(self) -> str:
        return f"<{self.name}>"

    def fail(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.path}.{key}: {msg}")

    # -- what subclasses provide ---------------------------------------------
    def setup(self) -> None:
        """Check parameters and build fixed structure (orders, maps) from ``self.rng``."""

    @abstractmethod
    def tokens(self) -> list[str]:
        """Tokens this task needs besides its marker (may be shared with others)."""

    @abstractmethod
    def targets(self) -> dict[str, int]:
        """Probe targets: name -> number of classes. ``answer`` is always one."""

    @property
    @abstractmethod
    def length(self) -> int:
        """Number of tokens of an instance, marker included."""

    @abstractmethod
    def train_sample(self, rng: np.random.Generator) -> Example:
        """A training instance (never one of ``eval_examples``)."""

    @abstractmethod
    def eval_examples(self, n: int) -> list[Example]:
        """The fixed held-out evaluation set (at most ``n`` instances)."""


def symbols(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def check_int(task: Task, key: str, low: int) -> int:
    value = task.params[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise task.fail(f"params.{key}", f"must be an integer >= {low}, got {value!r}")
    return value
