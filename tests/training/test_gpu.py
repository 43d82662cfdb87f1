"""The CUDA path: bf16 autocast, SDPA, fused AdamW, checkpoints that load on CPU.

Skipped where torch sees no CUDA device (CI); run on a GPU machine with
``python -m pytest -m gpu``."""

import pytest
import torch

from mechrare.checkpoints import CheckpointStore
from mechrare.config import load_config
from mechrare.training import train_run

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("compile_model", [False, True])
def test_cuda_training_run(tmp_path, compile_model):
    _, cfg = load_config(
        "tiny",
        ['ladder.models=["d16-l2"]', "train.device=cuda", "train.steps=120", f"train.compile={str(compile_model).lower()}"],
    )
    run = train_run(cfg, tmp_path / "run", name="tiny", progress=False)
    store = CheckpointStore(run.path)
    manifest = store.manifest
    assert manifest.models["d16-l2"].device.startswith("cuda")
    assert store.steps("d16-l2") == manifest.checkpoint_steps
    first, last = store.info("d16-l2", 0), store.info("d16-l2", 120)
    assert last["background_loss"] < first["background_loss"] - 0.5
    model = store.load("d16-l2", 120)  # a CUDA-trained checkpoint loads on CPU, fp32
    assert next(model.parameters()).dtype == torch.float32
    ids = torch.tensor([[3, 4, 5, 6]])
    gpu_model = store.load("d16-l2", 120, device="cuda")
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, gpu_model(input_ids=ids.cuda()).logits.cpu(), atol=1e-4)
