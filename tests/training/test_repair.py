"""Repair by rerunning: `mechrare train` on a run with missing, damaged or half-written checkpoints
regenerates them bit-identical (their recorded sha256), rebuilds metrics.nc to match, and leaves
nothing aside; `ls --verify` names every bad file first."""

import json
import shutil

import netCDF4
import pytest

from mechrare.checkpoints import RunFolder, open_dataset
from mechrare.checkpoints.verify import verify_run
from mechrare.cli import main

ARGS = ["--set", 'ladder.models=["d8-l1"]', "--set", "train.steps=30", "--set", "checkpoints.every=10",
        "--set", "checkpoints.log_spaced=false", "--set", "ladder.interventions=[]", "--no-progress"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("repair") / "run"
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 0
    return out


def shas(out):
    run = RunFolder(out)
    return {s: json.loads((run.step_dir("d8-l1", s) / "mechrare.json").read_text()) for s in run.complete_steps("d8-l1")}


def flip(path, offset=-9):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_verify_names_every_bad_file_and_train_repairs_them(pristine, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(pristine, out)
    run = RunFolder(out)
    before = shas(out)
    assert sorted(before) == [0, 10, 20, 30]
    flip(run.step_dir("d8-l1", 10) / "model.safetensors")           # a bit flip in the weights
    shutil.rmtree(run.step_dir("d8-l1", 20))                          # a lost checkpoint
    (run.step_dir("d8-l1", 0) / "mechrare.json").unlink()            # a half-written one
    flip(run.resume_dir("d8-l1") / "state.json", offset=-40)         # a damaged resume state
    with netCDF4.Dataset(run.metrics_path, "a") as nc:               # and a value in a dataset
        nc.variables["train_loss"][0, 0, -1] = 1.5

    capsys.readouterr()
    assert main(["ls", str(out), "--verify", "--no-progress"]) == 1
    text = capsys.readouterr().out
    listed = [line.strip() for line in text.split("bad file(s)")[1].splitlines()[1:] if line.strip()]
    assert len(listed) == 5, text
    for where, what in [("step_0", "no mechrare.json"), ("step_10", "model.safetensors does not match"),
                        ("step_20", "missing"), ("state.json", "damaged"), ("metrics.nc", "")]:
        assert any(where in line and what in line for line in listed), (where, text)

    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 0
    after = shas(out)
    assert {s: r["sha256"] for s, r in after.items()} == {s: r["sha256"] for s, r in before.items()}
    assert after == before  # eval metrics and train loss too
    assert not list(run.seed_dir("d8-l1").glob(".damaged-*"))  # bit-identical: nothing kept aside
    assert open_dataset(run.metrics_path).equals(open_dataset(pristine / "metrics.nc"))
    problems, _ = verify_run(out)
    assert problems == []  # the resume state was regenerated too


def test_a_clean_run_verifies(pristine, capsys):
    capsys.readouterr()
    assert main(["ls", str(pristine), "--verify", "--no-progress"]) == 0
    assert "every file matches its checksum" in capsys.readouterr().out


def test_weights_that_come_back_different_are_kept_aside(pristine, tmp_path):
    """A recorded sha256 the replay does not reproduce (here: a forged record) keeps the old folder."""
    out = tmp_path / "run"
    shutil.copytree(pristine, out)
    run = RunFolder(out)
    record_path = run.step_dir("d8-l1", 10) / "mechrare.json"
    record = json.loads(record_path.read_text())
    record["sha256"]["model.safetensors"] = "0" * 64
    record_path.write_text(json.dumps(record))
    assert main(["train", "tiny", "--out", str(out), *ARGS]) == 0
    (kept,) = run.seed_dir("d8-l1").glob(".damaged-step_10-*")
    assert json.loads((kept / "mechrare.json").read_text())["sha256"]["model.safetensors"] == "0" * 64
    assert verify_run(out)[0] == []


def test_analyze_takes_finished_models_only_and_says_so(pristine, tmp_path, caplog):
    import mechrare
    from mechrare.atomic import sealed

    out = tmp_path / "run"
    shutil.copytree(pristine, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["models"]["d8-l1"].update(status="training", seeds_done=[])  # stopped before the end
    (out / "manifest.json").write_text(json.dumps(sealed(manifest)))
    with pytest.raises(mechrare.ConfigError, match="not finished, so not analysed: d8-l1"):
        with caplog.at_level("WARNING", logger="mechrare"):
            mechrare.analyze(out, only=["probes"], progress=False)
    assert "analysing finished models only: d8-l1 not finished" in caplog.text
    assert not (out / "analyses" / "probes.nc").exists()
