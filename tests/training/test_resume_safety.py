"""Loading a run folder never runs code from it: a crafted pickle planted as the resume state is
refused with one line (exit 2) and its payload does not run; a truncated state is refused the same way."""

import json
import pickle

import pytest
import torch

from mechrare.checkpoints import RunFolder
from mechrare.cli import main
from mechrare.checkpoints.train_state import LEGACY_STATE, STATE_JSON, has_state, load_state, save_state

ARGS = ["--set", 'ladder.models=["d8-l1"]', "--set", "train.steps=20", "--set", "checkpoints.every=10",
        "--set", "ladder.interventions=[]", "--no-progress"]


class Payload:
    """Unpickling this calls open(marker, "w"): code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def unfinished(tmp_path):
    """A trained one-model run whose model is marked unfinished, so that `train` loads its resume state."""
    out = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 0
    run = RunFolder(out)
    run.update_model("d8-l1", status="training", seeds_done=[])
    return out, run.resume_dir("d8-l1", 0)


def refused(out, capsys, *what):
    capsys.readouterr()
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a training state mechrare can load safely" in err, err
    for text in what:
        assert text in err, err
    return err


def test_the_state_is_safetensors_and_json(unfinished):
    _, folder = unfinished
    assert sorted(p.name for p in folder.iterdir()) == ["state-20.safetensors", STATE_JSON]
    assert json.loads((folder / STATE_JSON).read_text())["tensors"] == "state-20.safetensors"


@pytest.mark.parametrize("target", [STATE_JSON, "state-20.safetensors"])
def test_a_planted_pickle_is_refused_and_does_not_run(unfinished, tmp_path, capsys, target):
    out, folder = unfinished
    marker = tmp_path / "payload_ran"
    (folder / target).write_bytes(pickle.dumps({"step": Payload(marker)}))
    refused(out, capsys, str(folder / target))
    assert not marker.exists()
    assert (folder / target).is_file()  # left where it is


def test_a_pickled_legacy_state_is_refused_and_does_not_run(unfinished, tmp_path, capsys):
    """A run folder from before the safetensors format has state.pt: read with weights_only=True."""
    out, folder = unfinished
    for p in folder.iterdir():
        p.unlink()
    marker = tmp_path / "payload_ran"
    (folder / LEGACY_STATE).write_bytes(pickle.dumps({"step": Payload(marker)}))
    refused(out, capsys, str(folder / LEGACY_STATE))
    assert not marker.exists()


def test_a_legacy_state_still_loads(unfinished):
    out, folder = unfinished
    state = load_state(folder, "cpu")
    for p in folder.iterdir():
        p.unlink()
    torch.save(state, folder / LEGACY_STATE)
    back = load_state(folder, "cpu")
    assert back["step"] == 20 and all(torch.equal(back["model"][k], v) for k, v in state["model"].items())
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 0
    assert RunFolder(out).read_manifest().model("d8-l1").seeds_done == [0]


@pytest.mark.parametrize("target", [STATE_JSON, "state-20.safetensors"])
def test_a_flipped_bit_in_the_state_is_refused(unfinished, capsys, target):
    """The state carries its own checksums: a bit flip anywhere is named, never resumed from."""
    out, folder = unfinished
    data = bytearray((folder / target).read_bytes())
    where = data.index(b'"step"') + 9 if target == STATE_JSON else len(data) - 7  # a value, not the syntax
    data[where] ^= 0x01
    (folder / target).write_bytes(bytes(data))
    refused(out, capsys, "damaged")


@pytest.mark.parametrize("target", [STATE_JSON, "state-20.safetensors"])
def test_a_truncated_state_is_refused(unfinished, capsys, target):
    out, folder = unfinished
    (folder / target).write_bytes((folder / target).read_bytes()[:100])
    refused(out, capsys, str(folder / target))


def test_an_intact_state_still_resumes(unfinished):
    out, _ = unfinished
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 0  # loads the state (step 20 of 20) and finishes
    assert RunFolder(out).read_manifest().model("d8-l1").seeds_done == [0]


def test_the_state_round_trips_every_kind_of_value(tmp_path):
    state = {"a": torch.arange(6.0).reshape(2, 3), 3: (1, 2.5, None), "b": [float("inf"), float("nan"), True, "x"],
             "nested": {0: {"step": torch.tensor(4.0), "m": torch.zeros(0)}}, "shared": None}
    t = torch.ones(3)
    state["shared"] = [t, t]  # one storage twice: written twice, read back as equal tensors
    save_state(tmp_path, state, 7)
    back = load_state(tmp_path, "cpu")
    assert set(back) == {"a", 3, "b", "nested", "shared"}
    assert torch.equal(back["a"], state["a"]) and back[3] == (1, 2.5, None)
    assert back["b"][0] == float("inf") and back["b"][1] != back["b"][1] and back["b"][2:] == [True, "x"]
    assert torch.equal(back["nested"][0]["step"], torch.tensor(4.0)) and back["nested"][0]["m"].shape == (0,)
    assert all(torch.equal(x, t) for x in back["shared"])
    save_state(tmp_path, state, 8)  # the older tensor file goes once the new record names its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state-8.safetensors", STATE_JSON]


def test_a_pickled_object_array_in_an_analysis_part_is_refused(tmp_path):
    import numpy as np

    from mechrare.checkpoints.parts import load_part
    from mechrare.errors import RunFolderError

    marker = tmp_path / "payload_ran"
    path = tmp_path / "part.npz"
    np.savez(path, x=np.array([Payload(marker)], dtype=object))
    with pytest.raises(RunFolderError, match="damaged analysis part"):
        load_part(path)
    assert not marker.exists()


def test_divergence_stops_training_before_a_non_finite_checkpoint(tmp_path, capsys):
    """A learning rate that blows the weights up: one line naming the model and step, exit 2, and no
    checkpoint or resume state with NaN or inf on disk."""
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(out), *ARGS, "--set", "train.lr=1e9"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "d8-l1: training diverged by step" in err and "lower train.lr" in err
    run = RunFolder(out)
    for step in run.complete_steps("d8-l1"):
        weights = load_file(str(run.seed_dir("d8-l1", 0) / f"step_{step}" / "model.safetensors"))
        assert all(bool(torch.isfinite(w).all()) for w in weights.values()), step
    if has_state(run.resume_dir("d8-l1", 0)):
        saved = load_state(run.resume_dir("d8-l1", 0), "cpu")["model"]
        assert all(bool(torch.isfinite(w).all()) for w in saved.values())
    assert main(["train", "tiny", "--out", str(tmp_path / "r2"), *ARGS, "--set", "train.lr=inf"]) == 2
    assert "train.lr: must be finite and > 0, got inf" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()


@pytest.mark.parametrize("override, what", [
    ('ladder.models=[{ name = "big", d_model = 8192, n_layers = 64, n_heads = 64 }]', "needs at least"),
    ("train.batch_size=100000000", "needs at least"),
    ("mixture.sequence_length=100000000", "must be in [4, 65536]"),
    ("mixture.background.vocab_size=1000000000", "must be in [2, 1048576]"),
    ("mixture.tasks.0.complexity=100000000", "must be in [1, 1048576]"),
])
def test_sizes_that_cannot_fit_or_would_hang_are_refused_before_anything_is_written(tmp_path, capsys, override, what):
    out = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(out), *ARGS, "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err, err
    assert not out.exists()


def test_models_that_fit_alone_but_not_together_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch):
    """train.together holds a group's models at once (each as large as the group's largest): with memory for
    one d16-l2 and a half, three seeds together are refused in one line, one at a time they pass."""
    from mechrare.config import load_config
    from mechrare.models.ladder import LADDER
    from mechrare.training import memory
    from mechrare.training.plan import Plan

    sets = ['ladder.models=["d16-l2"]', "ladder.seeds=3", "ladder.interventions=[]"]
    cfg = load_config("tiny", sets)[1]
    vocab, batch, seq = len(Plan(cfg).mixture.vocab), cfg.train.batch_size, cfg.mixture.sequence_length
    one = memory.training_bytes(LADDER["d16-l2"], vocab, batch, seq)
    monkeypatch.setattr(memory, "machine_bytes", lambda device: int(1.5 * one))
    memory.check_memory([LADDER["d16-l2"]], vocab, batch, seq, "cpu")  # one at a time: fits
    out = tmp_path / "run"
    args = ["train", "tiny", "--out", str(out), *ARGS, *[x for s in sets for x in ("--set", s)]]
    assert main([*args, "--set", "train.together=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.together: 3 models as one program (d16-l2) need at least" in err, err
    assert "set train.together = false" in err and not out.exists()
