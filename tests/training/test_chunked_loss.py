"""The chunked causal-LM loss (train.together's) is HF's loss, value and gradients, at every chunk size,
and no tensor the size of the whole logits is ever made."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mechrare.data.mixture import IGNORE
from mechrare.models.ladder import LADDER, build_model, olmo2_config
from mechrare.training.chunked_loss import causal_lm_loss

VOCAB, B, L = 97, 6, 11


@pytest.fixture(scope="module")
def model_and_batch():
    model = build_model(olmo2_config(LADDER["d16-l2"], VOCAB, L, 0, 1), seed=3)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, VOCAB, (B, L), generator=g)
    labels = ids.clone()
    labels[torch.rand(B, L, generator=g) < 0.3] = IGNORE  # unlabelled positions, as padding makes them
    return model, ids, labels


def grads(model):
    out = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("chunk", [1, 7, 60, 10_000])  # one row, uneven chunks, exactly the rows, one chunk
def test_equals_hf_loss_and_gradients(model_and_batch, chunk):
    model, ids, labels = model_and_batch
    hf = model(input_ids=ids, labels=labels).loss
    hf.backward()
    expected = grads(model)
    ours = causal_lm_loss(model.model(input_ids=ids).last_hidden_state, model.lm_head.weight, labels, chunk)
    ours.backward()
    got = grads(model)
    torch.testing.assert_close(ours, hf, atol=1e-6, rtol=1e-6)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)


def test_independent_of_hf(model_and_batch):
    """Against a sum written out by hand: -log softmax of each labelled next token, averaged."""
    model, ids, labels = model_and_batch
    with torch.no_grad():
        h = model.model(input_ids=ids).last_hidden_state
        logp = torch.log_softmax(h @ model.lm_head.weight.T, -1)
        terms = [-logp[b, t, labels[b, t + 1]] for b in range(B) for t in range(L - 1) if labels[b, t + 1] != IGNORE]
        expected = torch.stack(terms).mean()
        torch.testing.assert_close(causal_lm_loss(h, model.lm_head.weight, labels, 5), expected, atol=1e-6, rtol=1e-6)


class LargestTensor(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("chunk", [20, 32])  # 3 chunks, and 2 uneven ones, of the 60 positions
def test_never_makes_the_whole_logits(model_and_batch, chunk):
    model, ids, labels = model_and_batch
    h = model.model(input_ids=ids).last_hidden_state.detach().requires_grad_()
    with LargestTensor() as seen:
        causal_lm_loss(h, model.lm_head.weight, labels, chunk).backward()
    model.zero_grad(set_to_none=True)
    assert seen.largest == chunk * VOCAB  # one chunk's logits (the head's weight is 16 x VOCAB)
    with LargestTensor() as seen:  # the control: HF's loss makes them all
        model(input_ids=ids, labels=labels).loss.backward()
    model.zero_grad(set_to_none=True)
    assert seen.largest >= B * (L - 1) * VOCAB


def test_bad_chunk(model_and_batch):
    model, ids, labels = model_and_batch
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        causal_lm_loss(model.model(input_ids=ids).last_hidden_state, model.lm_head.weight, labels, 0)
