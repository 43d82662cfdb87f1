"""Analyses over a run's checkpoint series; each returns (and writes) an xarray Dataset."""

from mechrare.analyses import interference as _interference  # noqa: F401  (registers "interference")
from mechrare.analyses import neurons as _neurons  # noqa: F401  (registers "neurons")
from mechrare.analyses import probes as _probes  # noqa: F401  (registers "probes")
from mechrare.analyses import retention as _retention  # noqa: F401  (registers "retention")
from mechrare.analyses import sae as _sae  # noqa: F401  (registers "sae")
from mechrare.analyses.registry import ANALYSES, Analysis, ordered

__all__ = ["ANALYSES", "Analysis", "ordered"]
