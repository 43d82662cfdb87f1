"""The model ladder: named sizes -> Olmo2Config -> Olmo2ForCausalLM."""

from mechrare.models.ladder import (
    LADDER,
    ModelShape,
    build_model,
    count_params,
    ladder_names,
    olmo2_config,
    olmo2_param_count,
    reference_param_count,
    resolve_ladder,
    resolve_model,
)

__all__ = [
    "LADDER",
    "ModelShape",
    "build_model",
    "count_params",
    "ladder_names",
    "olmo2_config",
    "olmo2_param_count",
    "reference_param_count",
    "resolve_ladder",
    "resolve_model",
]
