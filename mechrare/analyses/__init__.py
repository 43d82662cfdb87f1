"""Analyses over a run's checkpoint series; each returns (and writes) an xarray Dataset."""

from mechrare.analyses import probes as _probes  # noqa: F401  (registers "probes")
from mechrare.analyses import sae as _sae  # noqa: F401  (registers "sae")
from mechrare.analyses.registry import ANALYSES, Analysis

__all__ = ["ANALYSES", "Analysis"]
