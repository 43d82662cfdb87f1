"""analyses/sae.nc on the tiny run: contract, sae-lens format, resume, bad settings."""

import os

import numpy as np
import pytest

from mechrare.checkpoints.parts import load_part
from mechrare.analyses.sae import SAEConfig, SAEs, chosen_steps, run_sae
from mechrare.analyses.sae_training import match_features, task_features, task_specificity
from mechrare.checkpoints import open_dataset
from mechrare.cli import main
from mechrare.errors import ConfigError
from mechrare.runs import open_run

MODEL = "d16-l2"
CFG = SAEConfig(train_steps=150, max_checkpoints=3, sequences=512, expansion=2)


@pytest.fixture(scope="module")
def sae_ds(tiny_run):
    return run_sae(tiny_run.path, CFG, models=[MODEL], progress=False)


def test_contract(sae_ds, tiny_run):
    ds = sae_ds
    assert list(ds.step.values) == [0, 64, 300] and list(ds.layer.values) == [2]
    assert list(ds.task.values) == ["facts:8", "compare:4", "lookup:2"]
    for name in ("explained_variance", "l0", "dead_fraction", "n_alive"):
        assert ds[name].dims == ("model", "seed", "step", "layer")
    assert ds.n_task_features.dims == ("model", "seed", "step", "layer", "task")
    assert float(ds.explained_variance.sel(step=300).max()) > 0.8  # held out
    assert float(ds.explained_variance_train.sel(step=300).max()) > 0.8
    assert not np.allclose(ds.explained_variance, ds.explained_variance_train)  # other tokens
    assert np.allclose(ds.l0, CFG.k)  # TopK
    assert np.isnan(ds.feature_retention.sel(step=300)).all()  # no later step to survive to
    assert np.isnan(ds.n_born.sel(step=0)).all()
    assert open_dataset(tiny_run.path / "analyses" / "sae.nc").equals(ds)


def test_saved_in_sae_lens_format_and_counts_follow_from_the_stats(sae_ds, tiny_run):
    from sae_lens import SAE

    ctx = open_run(tiny_run.path).context()
    folder = SAEs().sae_root(ctx, CFG) / MODEL / "seed_0" / "layer_2" / "step_300"
    sae = SAE.load_from_disk(str(folder / "sae"))
    assert sae.cfg.d_in == 16 and sae.cfg.d_sae == 32
    steps = chosen_steps(ctx.series.steps(MODEL), CFG)
    part = load_part(SAEs().part_path(ctx, CFG, MODEL, 300, steps))
    stats = {k: part[f"d2_{k}"] for k in ("mass", "alive", "decoder", "instances", "token_r2")}
    spec = task_specificity(stats["mass"])
    specific = (spec >= CFG.specificity) & stats["alive"][:, None]
    told = np.nan_to_num(stats["token_r2"], nan=1.0)[:, None] >= CFG.max_token_r2
    expected = (specific[:, :3] & (stats["instances"] >= CFG.min_instances) & ~told).sum(0)
    here = sae_ds.sel(model=MODEL, seed=0, step=300, layer=2)
    assert list(here.n_task_features.values) == list(expected)
    split = here.n_task_features + here.n_token_features + here.n_few_instance_features
    assert list(split.values) == list(specific[:, :3].sum(0))  # every specific feature is in exactly one class
    assert np.allclose(np.nansum(spec, 1)[stats["alive"]], 1.0)


def test_seed_baseline(sae_ds, tiny_run):
    """At the last analysed step a second SAE (seed + 1) is saved and matched to the first the same way."""
    from sae_lens import SAE

    ctx = open_run(tiny_run.path).context()
    here = sae_ds.sel(model=MODEL, seed=0, layer=2)
    assert float(here.seed_match_step) == 300
    folder = SAEs().sae_root(ctx, CFG) / MODEL / "seed_0" / "layer_2" / "step_300"
    other = SAE.load_from_disk(str(folder / "baseline"))
    part = load_part(SAEs().part_path(ctx, CFG, MODEL, 300, chosen_steps(ctx.series.steps(MODEL), CFG)))
    assert np.allclose(part["d2_baseline_decoder"], other.W_dec.detach().numpy() / np.linalg.norm(other.W_dec.detach().numpy(), axis=1, keepdims=True), atol=1e-5)
    assert not np.allclose(part["d2_baseline_decoder"], part["d2_decoder"])  # another seed
    alive, other_alive = part["d2_alive"].astype(bool), part["d2_baseline_alive"].astype(bool)
    got = match_features(part["d2_decoder"][alive], part["d2_baseline_decoder"][other_alive], CFG.match_threshold)
    assert float(here.seed_match_rate) == pytest.approx((got >= 0).mean())
    assert 0 < float(here.seed_match_rate) <= 1
    early = load_part(SAEs().part_path(ctx, CFG, MODEL, 0, chosen_steps(ctx.series.steps(MODEL), CFG)))
    assert "d2_baseline_decoder" not in early  # only the last step pays for it


def test_resumes(sae_ds, tiny_run):
    base = SAEs().sae_root(open_run(tiny_run.path).context(), CFG) / MODEL / "seed_0" / "layer_2"
    parts = SAEs().parts_dir(open_run(tiny_run.path).context(), CFG) / MODEL / "seed_0"
    files = sorted(base.glob("step_*/sae/*")) + sorted(parts.iterdir())
    assert len(list(parts.iterdir())) == 3
    before = {p: os.stat(p).st_mtime_ns for p in files}
    again = run_sae(tiny_run.path, CFG, models=[MODEL], progress=False)
    assert {p: os.stat(p).st_mtime_ns for p in files} == before
    assert again.equals(sae_ds)


def test_dictionary_size_can_be_fixed_across_sizes():
    assert SAEConfig(d_sae=48).train_spec(16).d_sae == SAEConfig(d_sae=48).train_spec(64).d_sae == 48
    assert SAEConfig(expansion=4).train_spec(16).d_sae == 64
    assert SAEConfig().train_spec(16, seed_offset=1).seed == SAEConfig().seed + 1


def test_settings_and_cli_errors(tiny_run, capsys):
    assert chosen_steps([0, 1, 2, 4, 8, 100], SAEConfig(max_checkpoints=3)) == [0, 2, 100]
    with pytest.raises(ConfigError, match="sae.steps: no checkpoint at step 7"):
        chosen_steps([0, 1, 2], SAEConfig(steps=[7]))
    assert main(["analyze", str(tiny_run.path), "--only", "sae", "--set", "sae.architecture=vq"]) == 2
    assert "sae.architecture: must be one of topk, standard, jumprelu, batchtopk" in capsys.readouterr().err
    for bad, message in (("sae.d_sae=-1", "sae.d_sae: must be >= 0"), ("sae.min_instances=0", "sae.min_instances: must be >= 1"),
                         ("sae.max_token_r2=1.5", "sae.max_token_r2: must be in (0, 1]")):
        assert main(["analyze", str(tiny_run.path), "--only", "sae", "--set", bad]) == 2
        assert message in capsys.readouterr().err
