"""Sizes of one family padded to the largest: each member's forward and gradients in the padded program are
its own (an independent computation: the member's own HF model), and the padding stays zero."""

import pytest
import torch
from torch.func import functional_call, vmap

from mechrare.models.ladder import ModelShape, build_model, olmo2_config
from mechrare.training.padding import WIDTH, corner, dims, head_width, largest, norm_widths, padded_config, padded_template, stack_padded

# one head width (8): widths 16/24/32, heads 2/3/4, MLP widths 64/40/128, depths 2/1/3
SHAPES = [ModelShape("a", 16, 2, 2, 64), ModelShape("b", 24, 1, 3, 40), ModelShape("c", 32, 3, 4, 128)]
VOCAB, LENGTH = 37, 12


def members(shapes=SHAPES):
    return [build_model(olmo2_config(s, VOCAB, LENGTH, 0, 1), seed=k) for k, s in enumerate(shapes)]


def stacked(models, template):
    params = stack_padded([dict(m.named_parameters()) for m in models], dict(template.named_parameters()))
    buffers = {n: b for n, b in template.named_buffers() if not n.endswith("." + WIDTH)}
    buffers = stack_padded([dict(m.named_buffers()) for m in models], buffers) | norm_widths(template, models, "cpu")
    return {k: v.detach().requires_grad_() for k, v in params.items()}, buffers


def padded_logits(template, params, buffers, ids):
    return vmap(lambda p, b, x: functional_call(template, (p, b), (x,)).logits)(params, buffers, ids)


def test_the_padded_program_is_each_members_own():
    models = members()
    template = padded_template([m.config for m in models])
    params, buffers = stacked(models, template)
    ids = torch.randint(2, VOCAB, (len(models), 3, LENGTH))
    logits = padded_logits(template, params, buffers, ids)
    targets = torch.randn_like(logits)
    (logits * targets).sum().backward()
    for k, m in enumerate(models):
        own = m(ids[k]).logits
        torch.testing.assert_close(logits[k], own, atol=1e-5, rtol=1e-5)
        (own * targets[k]).sum().backward()
        mine = dict(m.named_parameters())
        for name, p in params.items():
            grad = p.grad[k]
            if name in mine:
                torch.testing.assert_close(grad[corner(mine[name].shape)], mine[name].grad, atol=1e-5, rtol=1e-4)
                rest = grad.clone()
                rest[corner(mine[name].shape)] = 0
            else:  # a layer this member does not have
                rest = grad
            assert torch.count_nonzero(rest) == 0, f"member {k}: {name}'s padding got a gradient"


def test_the_norms_must_divide_by_the_members_own_width():
    """With the padded width's mean (Olmo2RMSNorm as it is), the smaller members compute something else."""
    models = members()
    template = padded_template([m.config for m in models])
    params, buffers = stacked(models, template)
    for name in buffers:
        if name.endswith("." + WIDTH):
            buffers[name] = torch.full_like(buffers[name], float(template.get_submodule(name[: -len(WIDTH) - 1]).weight.shape[0]))
    ids = torch.randint(2, VOCAB, (len(models), 2, LENGTH))
    logits = padded_logits(template, params, buffers, ids).detach()
    assert not torch.allclose(logits[0], models[0](ids[0]).logits, atol=1e-3)
    torch.testing.assert_close(logits[2], models[2](ids[2]).logits, atol=1e-5, rtol=1e-5)  # the largest: unpadded


def test_the_padded_shape_is_the_largest_of_each():
    big = padded_config([m.config for m in members()])
    assert (big.hidden_size, big.num_attention_heads, big.num_key_value_heads, big.intermediate_size,
            big.num_hidden_layers) == (32, 4, 4, 128, 3)


def test_one_family_has_one_head_width():
    with pytest.raises(ValueError, match="one head width"):
        padded_config([m.config for m in members([SHAPES[0], ModelShape("d", 24, 1, 2, 40)])])
    with pytest.raises(ValueError, match=r"one head width .*got \[8, 12\]"):
        largest([SHAPES[0], ModelShape("d", 24, 1, 2, 40)])


def test_ladder_shapes_and_model_configs_give_one_family_key_and_one_largest():
    """The memory check reads ladder shapes and the trainer reads model configs: one rule for both."""
    configs = [m.config for m in members()]
    assert [dims(s) for s in SHAPES] == [dims(c) for c in configs] == [(16, 2, 2, 64), (24, 1, 3, 40), (32, 3, 4, 128)]
    assert {head_width(s) for s in SHAPES} == {head_width(c) for c in configs} == {8}
    assert largest(SHAPES) == largest(configs) == (32, 3, 4, 128)
    assert largest(SHAPES[:2]) == (24, 2, 3, 64)  # each dimension's own largest, not one member's shape


def test_a_member_is_in_the_leading_corner():
    models = members()
    template = padded_template([m.config for m in models])
    params, _ = stacked(models, template)
    q = params["model.layers.0.self_attn.q_proj.weight"]  # [K, 4 heads x 8, 32]
    torch.testing.assert_close(q[1, :24, :24], models[1].model.layers[0].self_attn.q_proj.weight)
    assert torch.count_nonzero(q[1, 24:]) == 0 and torch.count_nonzero(q[1, :, 24:]) == 0
    assert torch.count_nonzero(params["model.layers.2.mlp.up_proj.weight"][:2]) == 0  # a and b have no layer 2
