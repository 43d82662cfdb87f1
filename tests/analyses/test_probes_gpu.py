"""Activations and probes on CUDA agree with the CPU path (skipped without a GPU)."""

import shutil

import numpy as np
import pytest
import torch

from mechrare.activations import get_activations, resid_hooks
from mechrare.analyses.probes import ProbesConfig, run_probes
from mechrare.checkpoints import CheckpointStore
from mechrare.config import load_config
from mechrare.training import train_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_activations_and_probes_match_cpu(tmp_path):
    _, cfg = load_config("tiny", ['ladder.models=["d16-l2"]', "train.steps=150"])
    run = train_run(cfg, tmp_path / "run", name="tiny", progress=False)
    store = CheckpointStore(run.path)
    ids = np.random.default_rng(0).integers(3, 40, (64, 12))
    cpu = get_activations(store.load_bridge("d16-l2", 150), ids, resid_hooks(2), positions=np.full(64, -1))
    gpu = get_activations(store.load_bridge("d16-l2", 150, device="cuda"), ids, resid_hooks(2), positions=np.full(64, -1))
    for h in cpu:
        assert np.abs(cpu[h] - gpu[h]).max() < 1e-3, h
    a = run_probes(run.path, ProbesConfig(device="cpu"), progress=False)
    shutil.rmtree(run.path / "analyses" / "probes.parts")  # results are keyed without the device
    b = run_probes(run.path, ProbesConfig(device="cuda"), progress=False)
    diff = np.abs(a.probe_score - b.probe_score).values
    assert np.nanmean(diff) < 0.01 and np.nanmax(diff) < 0.05
