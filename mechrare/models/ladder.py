"""The size ladder as data, mapped to ``transformers.Olmo2Config``.

Named sizes run from ``d8-l1`` (a few thousand parameters, for tests) to the
DataDecide / OLMo ladder (4M .. 1B) used by the paper. The DataDecide shapes
(d_model, layers, heads; SwiGLU hidden width 4 * d_model, i.e. OLMo's MLP ratio
8) reproduce AI2's published counts exactly under their convention: one tied
embedding over the 50,304-token padded vocabulary, no QK-norm (see
:func:`reference_param_count`). A mechrare model uses the run's own small
vocabulary, untied output, and OLMo-2's QK-norm, so its real count (recorded
in the manifest as ``n_params``) differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from mechrare.config import CustomModelConfig
from mechrare.errors import ConfigError


@dataclass(frozen=True)
class ModelShape:
    name: str
    d_model: int
    n_layers: int
    n_heads: int
    d_mlp: int
    #: AI2's published parameter count for this shape, where there is one
    reference_params: int | None = None


def _shape(name: str, d: int, layers: int, heads: int, reference: int | None = None) -> ModelShape:
    return ModelShape(name, d, layers, heads, 4 * d, reference)


LADDER: dict[str, ModelShape] = {
    s.name: s
    for s in [
        # CPU sizes (2 layers unless named otherwise), for tests and the quickstart
        _shape("d8-l1", 8, 1, 2),
        _shape("d16-l2", 16, 2, 2),
        _shape("d24-l2", 24, 2, 2),
        _shape("d32-l2", 32, 2, 4),
        _shape("d48-l2", 48, 2, 4),
        _shape("d64-l2", 64, 2, 4),
        _shape("d96-l2", 96, 2, 4),
        _shape("d128-l2", 128, 2, 4),
        _shape("d128-l4", 128, 4, 4),
        _shape("d256-l4", 256, 4, 4),
        # DataDecide (OLMo ladder) shapes, the paper's reference ladder
        _shape("4M", 64, 8, 8, 3_744_832),
        _shape("6M", 96, 8, 8, 6_010_464),
        _shape("8M", 128, 8, 8, 8_538_240),
        _shape("10M", 144, 8, 8, 9_900_432),
        _shape("14M", 192, 8, 8, 14_380_224),
        _shape("16M", 208, 8, 8, 16_004_560),
        _shape("20M", 192, 16, 8, 19_101_888),
        _shape("60M", 384, 16, 12, 57_078_144),
        _shape("90M", 528, 16, 12, 97_946_640),
        _shape("150M", 768, 12, 12, 151_898_880),
        _shape("300M", 1024, 16, 16, 319_980_544),
        _shape("530M", 1344, 16, 16, 530_074_944),
        _shape("750M", 1536, 16, 16, 681_297_408),
        _shape("1B", 2048, 16, 16, 1_176_832_000),
    ]
}


def ladder_names() -> list[str]:
    return list(LADDER)


def check_model_name(name: str, path: str) -> None:
    """A model's name becomes a folder name: :func:`mechrare.names.is_safe_name`."""
    from mechrare.names import RULE, is_safe_name

    if not is_safe_name(name):
        raise ConfigError(f"{path}: {name!r} must be {RULE}")


def resolve_model(entry: str | CustomModelConfig, path: str = "ladder.models[0]") -> ModelShape:
    """A ladder name or an inline shape -> :class:`ModelShape`."""
    if isinstance(entry, str):
        if entry not in LADDER:
            raise ConfigError(f"{path}: unknown model size {entry!r}; known: {', '.join(LADDER)}")
        return LADDER[entry]
    d_mlp = entry.d_mlp if entry.d_mlp is not None else 4 * entry.d_model
    name = entry.name or f"d{entry.d_model}-l{entry.n_layers}-h{entry.n_heads}-m{d_mlp}"
    check_model_name(name, f"{path}.name")
    return ModelShape(name, entry.d_model, entry.n_layers, entry.n_heads, d_mlp)


def resolve_ladder(models: list, path: str = "ladder.models") -> list[ModelShape]:
    shapes = [resolve_model(m, f"{path}[{i}]") for i, m in enumerate(models)]
    names = [s.name for s in shapes]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise ConfigError(f"{path}[{i}]: model {n!r} appears twice; give each size once")
    return shapes


def reference_param_count(shape: ModelShape, vocab_size: int = 50_304) -> int:
    """Parameters under DataDecide's convention: tied embedding, no QK-norm, no biases."""
    d, f = shape.d_model, shape.d_mlp
    per_layer = 4 * d * d + 3 * d * f + 2 * d
    return vocab_size * d + shape.n_layers * per_layer + d


def olmo2_param_count(shape: ModelShape, vocab_size: int) -> int:
    """Parameters of mechrare's ``Olmo2ForCausalLM``: untied embedding and output,
    QK-norm, two RMSNorms per block and a final norm."""
    d, f = shape.d_model, shape.d_mlp
    return 2 * vocab_size * d + shape.n_layers * (4 * d * d + 3 * d * f + 4 * d) + d


def olmo2_config(shape: ModelShape, vocab_size: int, max_positions: int, pad_id: int, eos_id: int, init_std: float = 0.02):
    from transformers import Olmo2Config

    return Olmo2Config(
        vocab_size=vocab_size,
        hidden_size=shape.d_model,
        intermediate_size=shape.d_mlp,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_heads,
        max_position_embeddings=max_positions,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
        tie_word_embeddings=False,
        initializer_range=init_std,
        attention_dropout=0.0,
    )


def build_model(config, seed: int, attn_implementation: str = "eager"):
    """A freshly initialised ``Olmo2ForCausalLM``; the same seed gives the same weights."""
    import torch
    from transformers import Olmo2ForCausalLM

    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Olmo2ForCausalLM(config)
    return model


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
