"""The analyses that ``mechrare analyze`` runs, by name, with their config classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mechrare.registry import Registry


@dataclass(frozen=True)
class Analysis:
    name: str
    config_class: type
    run: Callable  # (run_path, config, progress=...) -> xarray.Dataset, written to analyses/<name>.nc
    after: tuple[str, ...] = ()  # analyses whose results this one reads when they are present


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


ANALYSES: Registry[Analysis] = Registry("analysis", entry_point_group="mechrare.analyses")
