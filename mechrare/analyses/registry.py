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


ANALYSES: Registry[Analysis] = Registry("analysis", entry_point_group="mechrare.analyses")
