"""A pickle payload planted in every kind of file mechrare reads from a run folder never runs: each
command that reads the folder (ls --verify, analyze, report, train) refuses or repairs, and the
payload's marker file never appears."""

import pickle
import shutil

import pytest

from mechrare.cli import main

SMALL = ["--set", 'ladder.models=["d8-l1"]', "--set", "train.steps=10", "--set", "checkpoints.every=5",
         "--set", "ladder.interventions=[]", "--no-progress"]
STEP = "models/d8-l1/seed_0/step_5"
FILES = ["manifest.json", f"{STEP}/mechrare.json", f"{STEP}/model.safetensors", f"{STEP}/config.json",
         f"{STEP}/tokenizer.json", f"{STEP}/tokenizer_config.json", "models/d8-l1/seed_0/resume/state.json",
         "models/d8-l1/seed_0/resume/state-10.safetensors", "metrics.nc", "analyses/probes.nc", "PART"]


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    out = tmp_path_factory.mktemp("pickles") / "run"
    assert main(["train", "tiny", "--out", str(out), *SMALL]) == 0
    assert main(["analyze", str(out), "--only", "probes", "--keep-parts", "--no-progress"]) == 0  # a part to plant in
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_a_pickle_in_any_file_never_runs(analysed, tmp_path, capsys, name):
    run = tmp_path / "run"
    shutil.copytree(analysed, run)
    target = next((run / "analyses" / "probes.parts").rglob("*.npz")) if name == "PART" else run / name
    assert target.is_file()
    marker = tmp_path / "payload_ran"
    target.write_bytes(pickle.dumps({"x": Payload(marker)}))
    codes = {}
    for command in (["ls", str(run), "--verify", "--no-progress"], ["analyze", str(run), "--only", "probes", "--no-progress"],
                    ["report", str(run), "--no-progress"], ["train", "tiny", "--out", str(run), *SMALL]):
        capsys.readouterr()
        codes[command[0]] = main(command)
        err = capsys.readouterr().err.strip()
        assert codes[command[0]] in (0, 1, 2) and "Traceback" not in err, (command, err)
        assert not marker.exists(), command
    assert codes["ls"] in (1, 2)  # named as bad by --verify (or the manifest refused outright)
