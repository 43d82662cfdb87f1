"""SAEs train on CUDA under bf16 autocast and save in sae-lens's format (skipped without a GPU)."""

import numpy as np
import pytest
import torch

from mechrare.analyses.sae import SAEConfig, run_sae
from mechrare.config import load_config
from mechrare.training import train_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_sae_on_cuda(tmp_path):
    _, cfg = load_config("tiny", ['ladder.models=["d16-l2"]', "train.steps=100", "train.device=cuda"])
    run = train_run(cfg, tmp_path / "run", name="tiny", progress=False)
    ds = run_sae(run.path, SAEConfig(device="cuda", train_steps=300, max_checkpoints=2, sequences=512), progress=False)
    assert list(ds.step.values) == [0, 100]
    assert float(ds.explained_variance.sel(step=100).max()) > 0.8
    assert np.allclose(ds.l0, 8)
