"""The SAE pipeline recovers known sparse features (toy-models-of-superposition style)."""

import numpy as np
import torch

from mechrare.analyses.sae_training import SAETrainSpec, decoder_directions, match_features, score_sae, train_sae


def synthetic(n_feat=64, d=32, mean_l0=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    F = torch.nn.functional.normalize(torch.randn(n_feat, d, generator=g), dim=1)
    freq = 1.0 / torch.arange(1, n_feat + 1, dtype=torch.float32)  # Zipfian
    freq = (freq / freq.sum() * mean_l0).clamp(max=0.9)

    def batches(bs, seed):
        gen = torch.Generator().manual_seed(seed)
        while True:
            on = torch.rand(bs, n_feat, generator=gen) < freq
            yield (on * (torch.rand(bs, n_feat, generator=gen) + 0.5)) @ F

    return F, freq, batches


def test_recovers_frequent_features_and_reports_missed_rare_ones():
    F, freq, batches = synthetic()
    spec = SAETrainSpec(architecture="topk", d_sae=128, k=6, steps=3000, batch_size=1024, lr=3e-3)
    sae = train_sae(batches(1024, 1), 32, spec)
    cos = (F.numpy() @ decoder_directions(sae).T).max(1)
    recovered = cos >= 0.9
    frequent = np.arange(32)  # the more frequent half
    assert recovered[frequent].mean() >= 0.9, cos[frequent]
    missed = [int(i) for i in np.flatnonzero(~recovered)]
    print(f"recovered {recovered.mean():.0%} of all features; missed (by frequency rank): {missed}, "
          f"their frequencies {[round(float(freq[i]), 4) for i in missed]}")
    assert all(m >= 16 for m in missed), "only rare features may be missed"
    x = next(batches(4096, 2))
    stats = score_sae(sae, x.numpy(), np.full(4096, -1), n_tasks=0)
    assert stats["explained_variance"] > 0.9, stats
    assert abs(stats["l0"] - 6) < 0.01, stats  # TopK with k = 6


def test_hungarian_matching_with_threshold():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 8))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = a[[3, 0, 4, 1, 2]] + 0.01 * rng.normal(size=(5, 8))
    b[4] = rng.normal(size=8)  # feature 2 replaced by a new direction: no match
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    assert match_features(a, b, 0.9).tolist() == [1, 3, -1, 0, 2]


import pytest  # noqa: E402


@pytest.mark.parametrize("architecture", ["topk", "standard", "jumprelu", "batchtopk"])
def test_every_architecture_trains_saves_and_loads(tmp_path, architecture):
    from sae_lens import SAE

    _, _, batches = synthetic(n_feat=16, d=8)
    spec = SAETrainSpec(architecture=architecture, d_sae=16, k=3, steps=60, batch_size=256, l1_coefficient=0.1, l0_coefficient=0.1)
    sae = train_sae(batches(256, 1), 8, spec)
    sae.save_inference_model(str(tmp_path / "sae"))
    loaded = SAE.load_from_disk(str(tmp_path / "sae"))
    x = next(batches(64, 5))
    with torch.no_grad():
        if architecture == "batchtopk":
            # sae-lens saves BatchTopK in its JumpReLU inference form (a learned threshold
            # in place of the batch-dependent top-k): close, not identical
            assert loaded.cfg.architecture() == "jumprelu"
            err_loaded = ((loaded.decode(loaded.encode(x)) - x) ** 2).mean()
            err_train = ((sae.decode(sae.encode(x)) - x) ** 2).mean()
            assert err_loaded < 2 * err_train + 1e-3
        else:
            assert torch.allclose(loaded.decode(loaded.encode(x)), sae.decode(sae.encode(x)), atol=1e-4)
