"""Interference and neuron attribution on CUDA agree with the CPU path (skipped without a GPU)."""

import shutil

import numpy as np
import pytest
import torch

from mechrare.analyses.interference import InterferenceConfig, run_interference
from mechrare.analyses.neurons import NeuronsConfig, run_neurons
from mechrare.config import load_config
from mechrare.training import train_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_interference_and_neurons_match_cpu(tmp_path):
    _, cfg = load_config("tiny", ['ladder.models=["d16-l2"]', "train.steps=150"])
    run = train_run(cfg, tmp_path / "run", name="tiny", progress=False)
    torch.backends.cuda.matmul.allow_tf32 = False
    a = run_interference(run.path, InterferenceConfig(device="cpu"), progress=False)
    shutil.rmtree(run.path / "analyses" / "interference.parts")  # results are keyed without the device
    b = run_interference(run.path, InterferenceConfig(device="cuda"), progress=False)
    for key in ("grad_norm", "grad_cosine", "cos_batch_ref", "cos_nontask_ref", "loss_change_total"):
        np.testing.assert_allclose(a[key].values, b[key].values, rtol=1e-3, atol=1e-5, err_msg=key)
    n1 = run_neurons(run.path, NeuronsConfig(device="cpu"), progress=False)
    shutil.rmtree(run.path / "analyses" / "neurons.parts")
    n2 = run_neurons(run.path, NeuronsConfig(device="cuda"), progress=False)
    np.testing.assert_allclose(n1.allocation.values, n2.allocation.values, rtol=1e-3, atol=1e-6)
