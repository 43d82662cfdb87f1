"""train.together: a shape's (model, seed) pairs (and with train.together_sizes, a family's sizes) trained as
one program give each model the series it has alone (float tolerance), in the same files; an interrupted
group resumes; each member is clipped alone."""

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


# one head width (8): d16-l2 (2 heads, 2 layers, MLP 64), its intervention, and w24 (3 heads, 1 layer, MLP 40)
FAMILY = ['ladder.models=["d16-l2", {d_model=24, n_layers=1, n_heads=3, d_mlp=40, name="w24"}]', "ladder.seeds=2",
          'ladder.interventions=[{model="d16-l2", upsample={"compare:4"=5}}]', "train.steps=60", "checkpoints.every=20",
          "checkpoints.resume_every=20"]
FAMILY_MODELS, FAMILY_SEEDS = ("d16-l2", "w24", "d16-l2-up5"), (0, 1)


def assert_same_series(alone: Path, together: Path, models=("d16-l2", "d8-l1", "d8-l1-up5"), seeds=(0, 1, 2)) -> None:
    for var in ("train_loss", "loss", "accuracy", "background_loss"):
        np.testing.assert_allclose(xr.open_dataset(together / "metrics.nc")[var].values,
                                   xr.open_dataset(alone / "metrics.nc")[var].values, rtol=1e-4, atol=1e-5, equal_nan=True)
    a, b = CheckpointStore(alone), CheckpointStore(together)
    for model in models:
        for seed in seeds:
            assert a.steps(model, seed=seed) == b.steps(model, seed=seed)
            for step in (20, 60):
                folder = lambda run: Path(run) / "models" / model / f"seed_{seed}" / f"step_{step}"  # noqa: E731
                assert sorted(p.name for p in folder(alone).iterdir()) == sorted(p.name for p in folder(together).iterdir())
                close(load_file(folder(alone) / "model.safetensors"), load_file(folder(together) / "model.safetensors"))
            resume = lambda run: load_state(Path(run) / "models" / model / f"seed_{seed}" / "resume", torch.device("cpu"))  # noqa: E731
            close(resume(alone), resume(together))  # the same resume state: it resumes either way


def stop_after_resume_state(monkeypatch, stop: int):
    """Every member raises KeyboardInterrupt in its resume-state callback at ``stop``; returns the callback."""
    write = ResumeCallback.on_step_end

    def then_stop(self, trainer, loss):
        write(self, trainer, loss)
        if trainer.step == stop:
            raise KeyboardInterrupt(f"stopped at step {stop}")

    monkeypatch.setattr(ResumeCallback, "on_step_end", then_stop)
    return write


def trained_alone(tmp_path_factory, overrides: list[str]) -> Path:
    """The run trained the usual way (one model after another), to compare with."""
    out = tmp_path_factory.mktemp("together") / "alone"
    train_run(load_config("tiny", overrides + ["train.jobs=1"])[1], out, progress=False)
    return out


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    return trained_alone(tmp_path_factory, OVERRIDES)


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
    write = stop_after_resume_state(monkeypatch, stop)
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


@pytest.fixture(scope="module")
def family_alone(tmp_path_factory):
    return trained_alone(tmp_path_factory, FAMILY)


@pytest.mark.slow
def test_a_family_together_equals_alone(family_alone, tmp_path, caplog):
    out = tmp_path / "family"
    with caplog.at_level("INFO", logger="mechrare"):
        train_run(load_config("tiny", FAMILY + ["train.together=true", "train.together_sizes=true"])[1], out, progress=False)
    assert "one after another" not in caplog.text
    assert_same_series(family_alone, out, FAMILY_MODELS, FAMILY_SEEDS)


@pytest.mark.slow
def test_an_interrupted_family_resumes(family_alone, tmp_path, monkeypatch):
    """Stopped at 41, every member (padded or not) holds its step-40 state; the family resumes as one program."""
    out = tmp_path / "interrupted"
    write = stop_after_resume_state(monkeypatch, 41)
    config = load_config("tiny", FAMILY + ["train.together=true", "train.together_sizes=true"])[1]
    with pytest.raises(KeyboardInterrupt):
        train_run(config, out, progress=False)
    assert max(CheckpointStore(out).steps("w24")) == 40
    monkeypatch.setattr(ResumeCallback, "on_step_end", write)
    train_run(config, out, progress=False)
    assert_same_series(family_alone, out, FAMILY_MODELS, FAMILY_SEEDS)


def test_groups_are_families_with_together_sizes():
    plan = Plan(load_config("tiny", FAMILY + ['ladder.models=["d16-l2", "d32-l2", "d8-l1", "d64-l2"]'])[1])
    todo = [(s, seed) for s in plan.shapes for seed in plan.seeds]
    names = [sorted({s.name for s, _ in g}) for g in together_groups(todo, sizes=True)]
    assert names == [["d16-l2", "d16-l2-up5", "d32-l2"], ["d8-l1"], ["d64-l2"]]  # head widths 8, 4 and 16


def test_together_sizes_needs_together():
    from mechrare.errors import ConfigError

    with pytest.raises(ConfigError, match="train.together_sizes"):
        load_config("tiny", ["train.together_sizes=true"])
