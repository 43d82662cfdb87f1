"""Analyses over a checkpoint series; each writes (and returns) an xarray Dataset.

Every analysis reads a :class:`~mechrare.runs.Context` (a checkpoint series and
a task set); per-checkpoint ones share :class:`~mechrare.analyses.driver.PerCheckpoint`.
"""

from mechrare.analyses import ablation as _ablation  # noqa: F401  (registers "ablation")
from mechrare.analyses import evaluation as _evaluation  # noqa: F401  (registers "evaluation")
from mechrare.analyses import interference as _interference  # noqa: F401  (registers "interference")
from mechrare.analyses import neurons as _neurons  # noqa: F401  (registers "neurons")
from mechrare.analyses import probes as _probes  # noqa: F401  (registers "probes")
from mechrare.analyses import retention as _retention  # noqa: F401  (registers "retention")
from mechrare.analyses import sae as _sae  # noqa: F401  (registers "sae")
from mechrare.analyses.driver import PerCheckpoint
from mechrare.analyses.registry import ANALYSES, Analysis, as_context, default_names, ordered, register_analysis
from mechrare.analyses.settings import resolve_settings

__all__ = ["ANALYSES", "Analysis", "PerCheckpoint", "as_context", "default_names", "ordered", "register_analysis", "resolve_settings"]
