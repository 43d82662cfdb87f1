"""Loading a run folder never runs code from it: a crafted pickle planted as the resume state is
refused with one line (exit 2) and its payload does not run; a truncated state is refused the same way."""

import pickle

import pytest

from mechrare.checkpoints import RunFolder
from mechrare.cli import main
from mechrare.training.callbacks import RESUME_FILE

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
    return out, run.resume_dir("d8-l1", 0) / RESUME_FILE


def test_a_planted_pickle_is_refused_and_does_not_run(unfinished, tmp_path, capsys):
    out, state = unfinished
    marker = tmp_path / "payload_ran"
    state.write_bytes(pickle.dumps({"step": Payload(marker)}))
    capsys.readouterr()
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert len(err.splitlines()) == 1 and "not a training state mechrare can load safely" in err and str(state) in err
    assert state.is_file()  # left where it is


def test_a_truncated_state_is_refused(unfinished, capsys):
    out, state = unfinished
    state.write_bytes(state.read_bytes()[:100])
    capsys.readouterr()
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a training state mechrare can load safely" in err


def test_an_intact_state_still_resumes(unfinished):
    out, _ = unfinished
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 0  # loads the state (step 20 of 20) and finishes
    assert RunFolder(out).read_manifest().model("d8-l1").seeds_done == [0]


def test_a_pickled_object_array_in_an_analysis_part_is_refused(tmp_path):
    import numpy as np

    from mechrare.analyses.driver import load_part
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
    state = run.resume_dir("d8-l1", 0) / RESUME_FILE
    if state.is_file():
        saved = torch.load(state, weights_only=True)["model"]
        assert all(bool(torch.isfinite(w).all()) for w in saved.values())
    assert main(["train", "tiny", "--out", str(tmp_path / "r2"), *ARGS, "--set", "train.lr=inf"]) == 2
    assert "train.lr: must be finite and > 0, got inf" in capsys.readouterr().err
    assert not (tmp_path / "r2").exists()
