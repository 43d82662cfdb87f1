"""train.together: a shape's (model, seed) pairs trained as one program give each model the series it has
alone (float tolerance), in the same files; an interrupted group resumes; each member is clipped alone."""

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from safetensors.torch import load_file

from mechrare.checkpoints import CheckpointStore
from mechrare.checkpoints.train_state import load_state
from mechrare.config import load_config
from mechrare.training import train_run
from mechrare.training.callbacks import ResumeCallback
from mechrare.training.members import together_groups
from mechrare.training.runner import Plan

OVERRIDES = ['ladder.models=["d16-l2", "d8-l1"]', "ladder.seeds=3", "train.steps=60", "checkpoints.every=20",
             "checkpoints.resume_every=20"]


def close(a, b, atol=2e-5):
    """Nested states equal within float tolerance (tensors), or exactly (everything else)."""
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a.float(), b.float(), atol=atol, rtol=1e-4)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            close(a[k], b[k], atol)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            close(x, y, atol)
    else:
        assert a == b or (isinstance(a, float) and abs(a - b) < 1e-6)


def assert_same_series(alone: Path, together: Path) -> None:
    for var in ("train_loss", "loss", "accuracy", "background_loss"):
        np.testing.assert_allclose(xr.open_dataset(together / "metrics.nc")[var].values,
                                   xr.open_dataset(alone / "metrics.nc")[var].values, rtol=1e-4, atol=1e-5, equal_nan=True)
    a, b = CheckpointStore(alone), CheckpointStore(together)
    for model in ("d16-l2", "d8-l1", "d8-l1-up5"):
        for seed in (0, 1, 2):
            assert a.steps(model, seed=seed) == b.steps(model, seed=seed)
            for step in (20, 60):
                folder = lambda run: Path(run) / "models" / model / f"seed_{seed}" / f"step_{step}"  # noqa: E731
                assert sorted(p.name for p in folder(alone).iterdir()) == sorted(p.name for p in folder(together).iterdir())
                close(load_file(folder(alone) / "model.safetensors"), load_file(folder(together) / "model.safetensors"))
            resume = lambda run: load_state(Path(run) / "models" / model / f"seed_{seed}" / "resume", torch.device("cpu"))  # noqa: E731
            close(resume(alone), resume(together))  # the same resume state: it resumes either way


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    out = tmp_path_factory.mktemp("together") / "alone"
    train_run(load_config("tiny", OVERRIDES + ["train.jobs=1"])[1], out, progress=False)
    return out


@pytest.mark.slow
def test_together_equals_alone(alone, tmp_path):
    out = tmp_path / "together"
    # 16 x 15 = 240 positions per model: the loss in 3 chunks (one by default)
    train_run(load_config("tiny", OVERRIDES + ["train.together=true", "train.loss_chunk=100"])[1], out, progress=False)
    assert_same_series(alone, out)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [41, 40], ids=["group-at-one-step", "members-apart"])
def test_an_interrupted_group_resumes(alone, tmp_path, monkeypatch, caplog, stop):
    """Stopped at 41, every member holds its step-40 state and the group resumes together; stopped at 40
    inside the first member's callback, the others hold step 20's, and they resume one after another."""
    out = tmp_path / "interrupted"
    write = ResumeCallback.on_step_end

    def then_stop(self, trainer, loss):
        write(self, trainer, loss)
        if trainer.step == stop:
            raise KeyboardInterrupt(f"stopped at step {stop}")

    monkeypatch.setattr(ResumeCallback, "on_step_end", then_stop)
    config = load_config("tiny", OVERRIDES + ["train.together=true"])[1]
    with pytest.raises(KeyboardInterrupt):
        train_run(config, out, progress=False)
    assert max(CheckpointStore(out).steps("d16-l2")) == 40
    monkeypatch.setattr(ResumeCallback, "on_step_end", write)
    with caplog.at_level("INFO", logger="mechrare"):
        train_run(config, out, progress=False)
    assert ("at different steps; training them one after another" in caplog.text) == (stop == 40)
    assert_same_series(alone, out)


def test_groups_are_shapes():
    _, cfg = load_config("tiny", OVERRIDES)
    plan = Plan(cfg)
    groups = together_groups([(s, seed) for s in plan.shapes for seed in plan.seeds])
    names = [sorted({s.name for s, _ in g}) for g in groups]
    assert sorted(names) == [["d16-l2"], ["d8-l1", "d8-l1-up5"]]  # an intervention joins its base model's shape
    assert sorted(len(g) for g in groups) == [3, 6]  # every seed of each


def test_each_member_is_clipped_by_its_own_norm():
    from mechrare.training.grouped import GroupTrainer

    torch.manual_seed(0)
    grads = {"a": torch.randn(3, 4, 5) * torch.tensor([0.01, 1.0, 10.0]).view(3, 1, 1), "b": torch.randn(3, 7)}
    group = GroupTrainer.__new__(GroupTrainer)
    group.params = {k: torch.zeros_like(g, requires_grad=True) for k, g in grads.items()}
    for k, g in grads.items():
        group.params[k].grad = g.clone()
    group._clip(1.0)
    for member in range(3):
        own = [torch.nn.Parameter(torch.zeros_like(g[member])) for g in grads.values()]
        for p, g in zip(own, grads.values()):
            p.grad = g[member].clone()
        torch.nn.utils.clip_grad_norm_(own, 1.0)
        for p, k in zip(own, grads):
            torch.testing.assert_close(group.params[k].grad[member], p.grad)
