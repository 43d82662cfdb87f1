"""What an analysis is, what it reads, and the registry ``mechrare analyze`` runs from.

An analysis reads a :class:`Context`: a checkpoint series, a task set and the
folder its dataset goes to. It never reads a manifest or a mixture. Most
analyses are per-checkpoint (:class:`mechrare.analyses.driver.PerCheckpoint`:
a config, a ``compute(checkpoint)`` and an ``assemble(parts)``); run-level
ones (retention) implement :meth:`Analysis.run` directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from mechrare.registry import Registry
from mechrare.runs import Context, open_run

__all__ = ["ANALYSES", "Analysis", "Context", "as_context", "default_names", "ordered", "register_analysis"]


def as_context(run) -> Context:
    """A Context from a Context, a Run, or a run folder's path."""
    if isinstance(run, Context):
        return run
    if hasattr(run, "context"):
        return run.context()
    return open_run(Path(run)).context()


class Analysis(ABC):
    """Base class: a name, a config class and :meth:`run`."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    #: analyses whose datasets this one reads when they are present (run after them)
    after: ClassVar[tuple[str, ...]] = ()
    #: the kinds of series it runs on when no analysis is named (``ladder``: trained here; ``series``: elsewhere)
    kinds: ClassVar[tuple[str, ...]] = ("ladder", "series")

    @abstractmethod
    def run(self, ctx: Context, cfg: Any, *, models: list[str] | None = None, steps: list[int] | None = None,
            progress: bool = True, jobs: int = 1):
        """Compute, write ``ctx.analysis_path(name)`` and return the xarray Dataset
        (``jobs``: worker processes it may use on CPU; 0 = one per core)."""

    def current(self, ctx: Context, cfg: Any, models: list[str] | None = None, steps: list[int] | None = None):
        """The written dataset when it was made from exactly these inputs, else None (``mechrare analyze``
        then runs the analysis). The default knows no inputs: None, so it always runs."""
        return None


def default_names(kind: str) -> list[str]:
    """The analyses ``mechrare analyze`` runs on a series of ``kind`` when none is named."""
    return [n for n in ANALYSES.names() if kind in ANALYSES.get(n).kinds]


def ordered(names: list[str]) -> list[str]:
    """``names`` with every analysis after the ones it reads (stable otherwise)."""
    done: list[str] = []

    def visit(name: str, stack: tuple[str, ...] = ()) -> None:
        if name in done or name in stack:
            return
        for dep in ANALYSES.get(name).after:
            if dep in names:
                visit(dep, stack + (name,))
        done.append(name)

    for name in names:
        visit(name)
    return done


def register_analysis(cls: type[Analysis]) -> type[Analysis]:
    """Class decorator: register an instance of ``cls`` under ``cls.name``."""
    ANALYSES.add(cls.name, cls())
    return cls


ANALYSES: Registry[Analysis] = Registry("analysis", entry_point_group="mechrare.analyses")
