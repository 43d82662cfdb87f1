"""The checkpoint series of a trained tiny run: complete, loadable two ways, verified."""

import json
import shutil

import numpy as np
import pytest
import torch

from mechrare.checkpoints import CheckpointStore, open_dataset
from mechrare.atomic import TMP_PREFIX
from mechrare.errors import ChecksumError, RunFolderError


def test_every_model_has_a_dense_series(tiny_run):
    store = CheckpointStore(tiny_run.path)
    manifest = store.manifest
    assert list(manifest.models) == ["d8-l1", "d16-l2", "d24-l2", "d8-l1-up5"]  # the ladder, then the intervention
    iv = manifest.models["d8-l1-up5"].intervention
    assert (iv.base, iv.upsample) == ("d8-l1", {"compare:4": 5.0})
    for model in store.models():
        steps = store.steps(model)
        assert steps == manifest.checkpoint_steps and len(steps) >= 12
        assert manifest.models[model].status == "done"
        info = store.info(model, 300)
        assert info["tokens"] == 300 * 16 * 16 and info["step"] == 300
    leftovers = [p for p in tiny_run.path.rglob(f"{TMP_PREFIX}*")]
    assert leftovers == []


def test_every_checkpoint_loads_in_transformers_and_transformer_lens_with_equal_logits(tiny_run):
    from transformers import AutoModelForCausalLM
    from transformer_lens.model_bridge import TransformerBridge

    store = CheckpointStore(tiny_run.path)
    tok = store.tokenizer()
    ids = torch.tensor([tok("<facts:8> facts8_k3 fval1 <eos> w0 w1 w2 w3")["input_ids"]])
    worst = 0.0
    for ckpt in store.iter_checkpoints():
        hf = AutoModelForCausalLM.from_pretrained(ckpt.path).eval()
        bridge = TransformerBridge.boot_transformers(str(ckpt.path), hf_model=hf, device="cpu")
        with torch.no_grad():
            a = hf(input_ids=ids).logits
            b = bridge(ids, return_type="logits")
        worst = max(worst, (a - b).abs().max().item())
    assert worst < 1e-4, worst


def test_store_load_verify_and_errors(tiny_run, tmp_path):
    store = CheckpointStore(tiny_run.path)
    model = store.load("d16-l2", 64)
    assert not model.training and model.config.vocab_size == store.manifest.vocab_size
    with pytest.raises(RunFolderError, match="no checkpoint of d16-l2 at step 65; available steps: 0 1 2"[:40]):
        store.path("d16-l2", 65)
    with pytest.raises(RunFolderError, match="no model 'big'"):
        store.steps("big")

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run.path, damaged)
    weights = damaged / "models" / "d8-l1" / "seed_0" / "step_4" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    bad = CheckpointStore(damaged)
    bad.verify("d8-l1", 2)
    with pytest.raises(ChecksumError, match="does not match the recorded"):
        bad.load("d8-l1", 4)


def test_metrics_nc_matches_the_checkpoint_records(tiny_run):
    ds = open_dataset(tiny_run.metrics_path)
    store = CheckpointStore(tiny_run.path)
    assert list(ds.model.values) == store.models()
    assert list(ds.task.values) == ["facts:8", "compare:4", "lookup:2"]
    assert ds.loss.dims == ("model", "seed", "step", "task") and ds.train_loss.dims == ("model", "seed", "step")
    assert int(ds.tokens.sel(step=300)) == 300 * 256
    assert list(ds.n_params.values) == [store.manifest.models[m].n_params for m in store.models()]
    for model in store.models():
        for step in (0, 50, 300):
            info = store.info(model, step)
            for task in ds.task.values:
                assert float(ds.accuracy.sel(model=model, seed=0, step=step, task=task)) == info["eval"][task]["accuracy"]
                assert float(ds.loss.sel(model=model, seed=0, step=step, task=task)) == pytest.approx(info["eval"][task]["loss"])
    assert np.isnan(ds.train_loss.sel(step=0)).all() and not np.isnan(ds.train_loss.sel(step=300)).any()
    assert ds.attrs["analysis"] == "metrics"


def test_same_data_order_across_sizes(tiny_run):
    """Every model's manifest entry used the same schedule and data (one mixture per run)."""
    manifest = json.loads((tiny_run.path / "manifest.json").read_text())
    assert manifest["tokens_per_step"] == 256 and manifest["config"]["seed"] == 0
