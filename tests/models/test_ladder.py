import pytest

from mechrare.config import CustomModelConfig
from mechrare.errors import ConfigError
from mechrare.models import (
    LADDER,
    build_model,
    count_params,
    olmo2_config,
    olmo2_param_count,
    reference_param_count,
    resolve_ladder,
    resolve_model,
)

DATADECIDE = {
    "4M": 3_744_832, "6M": 6_010_464, "8M": 8_538_240, "10M": 9_900_432, "14M": 14_380_224,
    "16M": 16_004_560, "20M": 19_101_888, "60M": 57_078_144, "90M": 97_946_640, "150M": 151_898_880,
    "300M": 319_980_544, "530M": 530_074_944, "750M": 681_297_408, "1B": 1_176_832_000,
}


@pytest.mark.parametrize("name", list(DATADECIDE))
def test_datadecide_shapes_reproduce_published_counts(name):
    assert LADDER[name].reference_params == DATADECIDE[name]
    assert reference_param_count(LADDER[name]) == DATADECIDE[name]


@pytest.mark.parametrize("name", ["d8-l1", "d16-l2", "d64-l2", "4M"])
def test_param_formula_matches_the_built_model(name):
    shape = LADDER[name]
    model = build_model(olmo2_config(shape, 101, 32, 0, 1), seed=0)
    assert count_params(model) == olmo2_param_count(shape, 101)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (
        shape.d_model, shape.n_layers, shape.n_heads, shape.d_mlp)
    assert cfg.pad_token_id == 0 and cfg.eos_token_id == 1


def test_same_seed_same_weights():
    import torch

    cfg = olmo2_config(LADDER["d16-l2"], 50, 16, 0, 1)
    a, b, c = build_model(cfg, 3), build_model(cfg, 3), build_model(cfg, 4)
    for (n, p), (_, q), (_, r) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(p, q), n
    assert not all(torch.equal(p, r) for p, r in zip(a.parameters(), c.parameters()))


def test_resolution_and_errors():
    shape = resolve_model(CustomModelConfig(d_model=12, n_layers=1, n_heads=3))
    assert shape.name == "d12-l1-h3-m48" and shape.d_mlp == 48
    assert resolve_model(CustomModelConfig(d_model=12, n_layers=1, n_heads=3, d_mlp=20, name="mine")).name == "mine"
    with pytest.raises(ConfigError, match=r"ladder.models\[1\]: unknown model size 'huge'"):
        resolve_ladder(["d8-l1", "huge"])
    with pytest.raises(ConfigError, match="appears twice"):
        resolve_ladder(["d8-l1", "d8-l1"])
