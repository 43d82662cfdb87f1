"""Analysis settings: from the run's config (``[analyses.<name>]``), ``--set`` and keyword
arguments, to each analysis's typed config."""

from __future__ import annotations

import dataclasses
from typing import Any

from mechrare.analyses.registry import ANALYSES
from mechrare.config import from_dict
from mechrare.errors import ConfigError


def check_names(settings: dict[str, Any], path: str = "analyses") -> None:
    """Every key of ``settings`` names a registered analysis."""
    for name in settings:
        if name not in ANALYSES:
            raise ConfigError(f"{path}.{name}: unknown analysis; analyses: {', '.join(ANALYSES.names())}")


def as_table(value: Any, path: str) -> dict[str, Any]:
    """A settings table from a dict or an analysis config object."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return dict(value)
    raise ConfigError(f"{path}: expected a table of settings or a config object, got {value!r}")


def resolve_settings(names: list[str], base: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Typed configs for the analyses ``names``: ``base`` (the run's ``[analyses]`` tables)
    updated key by key with ``overrides`` (``--set`` or keyword arguments). Unknown
    analyses, overrides of analyses not being run, unknown keys and bad values raise
    ConfigError naming the key."""
    base, overrides = dict(base or {}), dict(overrides or {})
    check_names(base, "analyses")
    check_names(overrides, "analyses")
    idle = sorted(set(overrides) - set(names))
    if idle:
        raise ConfigError(f"{idle[0]}: settings given, but {idle[0]} is not an analysis being run ({', '.join(names)})")
    out = {}
    for name in names:
        table = {**as_table(base.get(name, {}), f"analyses.{name}"), **as_table(overrides.get(name, {}), name)}
        out[name] = from_dict(ANALYSES.get(name).config_class, table, name)
    return out
