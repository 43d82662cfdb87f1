"""Parts of a causal LM by transformer_lens's component names, on three architectures."""

import pytest
import torch

from mechrare.analyses.gradients import ParamGroups
from mechrare.analyses.task_neurons import neuron_energy, neuron_rows
from mechrare.errors import ConfigError
from mechrare.models.internals import internals

ARCHS = {
    "gpt_neox": ("GPTNeoXConfig", "gpt_neox.embed_in.weight", ["gpt_neox.layers.{l}.mlp.dense_h_to_4h.weight"], "gpt_neox.layers.{l}.mlp.dense_4h_to_h.weight"),
    "llama": ("LlamaConfig", "model.embed_tokens.weight", ["model.layers.{l}.mlp.gate_proj.weight", "model.layers.{l}.mlp.up_proj.weight"], "model.layers.{l}.mlp.down_proj.weight"),
    "olmo2": ("Olmo2Config", "model.embed_tokens.weight", ["model.layers.{l}.mlp.gate_proj.weight", "model.layers.{l}.mlp.up_proj.weight"], "model.layers.{l}.mlp.down_proj.weight"),
}


def tiny(arch: str, layers: int = 3, d_mlp: int = 40):
    import transformers

    name = ARCHS[arch][0]
    cfg = getattr(transformers, name)(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=4,
                                      intermediate_size=d_mlp, eos_token_id=0, pad_token_id=0, bos_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    return getattr(transformers, name.replace("Config", "ForCausalLM"))(cfg)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_internals_name_the_architectures_parts(arch):
    model = tiny(arch)
    parts = internals(model)
    assert (parts.n_layers, parts.d_mlp) == (3, 40)
    _, embed, ins, out = ARCHS[arch]
    named = dict(model.named_parameters())
    assert parts.embed + ".weight" == embed
    assert parts.neuron_weights(2) == ([n.format(l=2) for n in ins], out.format(l=2))
    assert all(n in named for n in parts.neuron_weights(2)[0] + [parts.neuron_weights(2)[1]])


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_param_groups_put_every_parameter_in_its_block(arch):
    model = tiny(arch)
    groups = ParamGroups.of(model)
    assert groups.groups == ["embed", "layer0", "layer1", "layer2", "head"]
    by_group = {g: [n for n, i in zip(groups.names, groups.index) if groups.groups[i] == g] for g in groups.groups}
    assert by_group["embed"] == [ARCHS[arch][1]]
    for l in range(3):
        assert by_group[f"layer{l}"] and all(f".layers.{l}." in n for n in by_group[f"layer{l}"])
    assert any("lm_head" in n for n in by_group["head"]) and any("norm" in n for n in by_group["head"])
    assert sorted(groups.names) == sorted(n for n, p in model.named_parameters())


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_neuron_rows_gather_each_neurons_rows_and_column(arch):
    model = tiny(arch)
    groups = ParamGroups.of(model)
    grads = [torch.randn_like(p) for p in groups.params(model)]
    by_name = dict(zip(groups.names, grads))
    _, _, ins, out = ARCHS[arch]
    rows = neuron_rows(grads, groups, 1)
    expect = torch.cat([by_name[n.format(l=1)] for n in ins] + [by_name[out.format(l=1)].T], dim=1)
    assert torch.equal(rows, expect) and rows.shape == (40, 16 * (len(ins) + 1))
    energy = neuron_energy(grads, groups)
    assert energy.shape == (3, 40)
    assert energy[1, 7] == pytest.approx(float(expect[7].double().pow(2).sum()))


def test_an_architecture_the_bridge_does_not_support_is_one_line():
    from transformers import BertConfig, BertForMaskedLM

    with pytest.raises(ConfigError, match="does not support it|no dense MLP|not supported for neuron"):
        internals(BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32)))


KIND_OF = {  # by hand, from each architecture's parameter names
    "gpt_neox": {"embed_in": "embed", "input_layernorm": "norm", "post_attention_layernorm": "norm", "attention": "attn",
                 "mlp": "mlp", "final_layer_norm": "norm", "lm_head": "head"},
    "llama": {"embed_tokens": "embed", "self_attn": "attn", "mlp": "mlp", "input_layernorm": "norm",
              "post_attention_layernorm": "norm", "model.norm": "norm", "lm_head": "head"},
    "olmo2": {"embed_tokens": "embed", "q_norm": "norm", "k_norm": "norm", "self_attn": "attn", "mlp": "mlp",
              "post_attention_layernorm": "norm", "post_feedforward_layernorm": "norm", "model.norm": "norm", "lm_head": "head"},
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_param_kinds_match_the_names(arch):
    model = tiny(arch)
    groups = ParamGroups.of(model)
    assert groups.kinds == ["embed", "attn", "mlp", "norm", "head"]
    for name, k in zip(groups.names, groups.kind_index):
        expect = next(v for key, v in KIND_OF[arch].items() if f".{key}." in f".{name}")  # first match: norms inside attention win
        assert groups.kinds[k] == expect, name


def test_gram_per_kind_and_per_group_add_up_to_the_whole():
    from mechrare.analyses.gradients import group_dots

    model = tiny("olmo2")
    groups = ParamGroups.of(model)
    params = groups.params(model)
    a, b = [torch.randn_like(p) for p in params], [torch.randn_like(p) for p in params]
    table = group_dots(a, b, groups)
    assert table.shape == (5, 5)
    whole = sum(float((x.double() * y.double()).sum()) for x, y in zip(a, b))
    mlp = sum(float((x.double() * y.double()).sum()) for n, x, y in zip(groups.names, a, b) if ".mlp." in n)
    layer1 = sum(float((x.double() * y.double()).sum()) for n, x, y in zip(groups.names, a, b) if ".layers.1." in n)
    assert table.sum() == pytest.approx(whole)
    assert table.sum(0)[groups.kinds.index("mlp")] == pytest.approx(mlp)
    assert table.sum(1)[groups.groups.index("layer1")] == pytest.approx(layer1)
