"""The SAE pipeline recovers known sparse features (toy-models-of-superposition style)."""

import numpy as np
import pytest
import torch

from mechrare.analyses.sae_training import SAETrainSpec, decoder_directions, match_features, score_sae, task_features, train_sae


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


def _small_sae(d=8, d_sae=16, seed=0):
    spec = SAETrainSpec(architecture="topk", d_sae=d_sae, k=3, steps=40, batch_size=128)
    _, _, batches = synthetic(n_feat=12, d=d, seed=seed)
    return train_sae(batches(128, seed), d, spec), batches


def test_token_r2_and_instances_against_brute_force():
    """eta^2 of each feature on the token id, and distinct instances per task, recomputed by plain loops."""
    sae, batches = _small_sae()
    rng = np.random.default_rng(0)
    x = next(batches(600, 5)).numpy()
    tokens = rng.integers(0, 7, size=600)
    token_task = rng.integers(-1, 2, size=600)  # tasks 0, 1 and background
    instance = np.where(token_task >= 0, rng.integers(0, 9, size=600) + 100 * token_task, -1)
    stats = score_sae(sae, x, token_task, n_tasks=2, tokens=tokens, instance=instance, batch_size=128)
    feats = sae.encode(torch.as_tensor(x)).detach().double().numpy()
    for f in range(feats.shape[1]):
        a = feats[:, f]
        total = ((a - a.mean()) ** 2).sum()
        between = sum((tokens == v).sum() * (a[tokens == v].mean() - a.mean()) ** 2 for v in np.unique(tokens))
        if total > 1e-12:
            assert stats["token_r2"][f] == pytest.approx(between / total, rel=1e-6, abs=1e-9)
        else:
            assert np.isnan(stats["token_r2"][f])
        for t in range(2):
            on = (a > 0) & (token_task == t)
            assert stats["instances"][f, t] == len(set(instance[on].tolist()))


def test_a_feature_told_by_the_token_has_eta_one():
    """A feature that fires with one value on one token, and 0 elsewhere, is a token-identity feature."""
    sae, batches = _small_sae()
    x = next(batches(400, 6)).numpy()
    a = sae.encode(torch.as_tensor(x)).detach().numpy()
    f = int(np.argmax((a > 0).sum(0)))  # a feature that fires
    tokens = np.where(a[:, f] > 0, 1, 0)  # the token id says when it fires, not how much
    r2 = score_sae(sae, x, np.zeros(400, dtype=int), 1, tokens=tokens)["token_r2"][f]
    assert 0 < r2 < 1
    tokens = np.unique(np.round(a[:, f], 6), return_inverse=True)[1]  # one token per value: fully told
    assert score_sae(sae, x, np.zeros(400, dtype=int), 1, tokens=tokens)["token_r2"][f] == pytest.approx(1.0)


def test_task_feature_rule():
    mass = np.array([[9.0, 1.0], [9.0, 1.0], [9.0, 1.0], [1.0, 9.0], [0.0, 0.0]])  # task 0 share .9 for three features
    alive = np.array([True, True, True, True, False])
    instances = np.array([[10], [2], [10], [10], [0]])
    token_r2 = np.array([0.2, 0.2, 0.95, 0.1, np.nan])
    got = task_features(mass, alive, instances, token_r2, specificity=0.8, min_instances=5, max_token_r2=0.9)
    assert got["specific"][:, 0].tolist() == [True, True, True, False, False]
    assert got["few"][:, 0].tolist() == [False, True, False, False, False]
    assert got["token"][:, 0].tolist() == [False, False, True, False, False]
    assert got["task"][:, 0].tolist() == [True, False, False, False, False]
