"""A training state saved under torchrun is sharded: every process writes its own shards (DCP's
safetensors writer), nothing is gathered; it loads on another number of processes and whole in one;
every shard file is verified before it is read, so a damaged, missing, extra or crafted one is refused."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mechrare.checkpoints.train_state import load_state, save_state, verify_state
from mechrare.errors import RunFolderError

JOB = Path(__file__).with_name("_sharded_job.py")


def torchrun(n: int, mode: str, folder: Path) -> str:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), str(JOB), mode, str(folder)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A state saved by 2 processes, with the gathered reference beside it."""
    folder = tmp_path_factory.mktemp("sharded")
    torchrun(2, "save", folder)
    return folder


def resume_copy(saved: Path, tmp_path: Path) -> Path:
    shutil.copytree(saved / "resume", tmp_path / "resume")
    return tmp_path / "resume"


def shard_folder(resume: Path) -> Path:
    return resume / json.loads((resume / "state.json").read_text())["shards"]["folder"]


@pytest.mark.slow
def test_each_process_writes_its_own_shards(saved):
    record, _ = verify_state(saved / "resume")
    assert record["version"] == 2
    files = sorted(p.name for p in shard_folder(saved / "resume").iterdir())
    assert files == sorted(record["shards"]["sha256"]) and len(files) == 2  # one per process
    # nothing gathered: each file holds a part of the first layer's weight (7 rows over 2 processes)
    rows = [load_file(str(shard_folder(saved / "resume") / f))["model/0.weight"].shape[0] for f in files]
    assert rows == [4, 3]
    assert not list((saved / "resume").rglob(".metadata"))  # no pickled DCP metadata anywhere


@pytest.mark.slow
def test_a_two_process_state_loads_on_three(saved):
    out = torchrun(3, "load", saved)
    assert out.count("the state loaded equal") == 3


@pytest.mark.slow
def test_a_full_disk_or_a_save_cut_short_leaves_the_last_state_whole(saved, tmp_path):
    resume_copy(saved, tmp_path)
    out = torchrun(2, "crash", tmp_path)
    assert out.count("the cut-short save left the state whole") == 2
    assert verify_state(tmp_path / "resume")[0]["state"]["__dict__"][0] == ["step", 7]


@pytest.mark.slow
def test_under_torchrun_a_damaged_shard_is_refused_by_every_process(saved, tmp_path):
    shards = shard_folder(resume_copy(saved, tmp_path))
    target = shards / "shard-00002-model-00001-of-00001.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    torchrun(3, "damaged", tmp_path)
    refusals = [(tmp_path / f"refused-{rank}.txt").read_text() for rank in range(3)]
    assert len(set(refusals)) == 1 and "\n" not in refusals[0]  # the same line on every process
    assert "shard-00002-model-00001-of-00001.safetensors: not a training state" in refusals[0]


@pytest.mark.slow
def test_a_two_process_state_loads_whole_in_one_process(saved):
    state = load_state(saved / "resume", "cpu")
    reference = load_file(str(saved / "reference.safetensors"))
    for name, value in state["model"].items():
        assert type(value) is torch.Tensor and torch.equal(value, reference[f"model/{name}"]), name
    for i, moments in state["optimizer"]["state"].items():
        for n, value in moments.items():
            assert torch.equal(value, reference[f"opt/{i}/{n}"]), (i, n)
    assert state["step"] == 3 and state["pair"] == (1.5, float("inf"))
    # the whole tensors load into the unsharded model, as a one-process state's do
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    model.load_state_dict(state["model"])
    opt = torch.optim.AdamW(model.parameters())
    opt.load_state_dict(state["optimizer"])


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    ("flip", r"shard-00002-model-00001-of-00001\.safetensors: .*sha256 does not match the one in state\.json"),
    ("pickle", r"sha256 does not match the one in state\.json"),
    ("remove", r"shard files missing \['shard-00001"),
    ("extra", r"not recorded \['shard-00003"),
    ("folder", r"its shard folder 'state-3-\w+\.shards' is missing"),
])
def test_a_bad_shard_is_refused_before_it_is_read(saved, tmp_path, damage, message):
    resume = resume_copy(saved, tmp_path)
    shards = shard_folder(resume)
    marker = tmp_path / "payload_ran"
    if damage == "flip":
        target = shards / "shard-00002-model-00001-of-00001.safetensors"
        data = bytearray(target.read_bytes())
        data[-1] ^= 1
        target.write_bytes(bytes(data))
    elif damage == "pickle":
        class Payload:
            def __reduce__(self):
                return (open, (str(marker), "w"))
        (shards / "shard-00001-model-00001-of-00001.safetensors").write_bytes(pickle.dumps(Payload()))
    elif damage == "remove":
        (shards / "shard-00001-model-00001-of-00001.safetensors").unlink()
    elif damage == "extra":
        shutil.copy(shards / "shard-00001-model-00001-of-00001.safetensors", shards / "shard-00003-model-00001-of-00001.safetensors")
    else:
        shutil.rmtree(shards)
    before = sorted(p.relative_to(resume) for p in resume.rglob("*"))
    with pytest.raises(RunFolderError, match=message) as err:
        load_state(resume, "cpu")
    assert "\n" not in str(err.value) and "move the resume folder away" in str(err.value)
    assert sorted(p.relative_to(resume) for p in resume.rglob("*")) == before  # nothing removed or changed
    assert not marker.exists()


@pytest.mark.slow
def test_a_sharded_record_without_its_version_is_refused(saved, tmp_path):
    resume = resume_copy(saved, tmp_path)
    record = json.loads((resume / "state.json").read_text())
    record.pop("sha256")
    record["version"] = 1  # a version-1 reader would not know the shards: the pair must agree
    from mechrare.checkpoints.train_state import _digest

    (resume / "state.json").write_text(json.dumps({**record, "sha256": _digest(record)}))
    with pytest.raises(RunFolderError, match="its version and its shard folder do not go together"):
        load_state(resume, "cpu")


@pytest.mark.slow
def test_a_later_one_process_save_removes_the_shards(saved, tmp_path):
    resume = resume_copy(saved, tmp_path)
    stray = resume / "state-2-0badc0de.shards"  # left by a save cut short
    stray.mkdir()
    state = load_state(resume, "cpu")
    save_state(resume, {**state, "step": 4}, 4)
    assert sorted(p.name for p in resume.iterdir()) == ["state-4.safetensors", "state.json"]
    assert verify_state(resume)[0]["version"] == 1
    torch.testing.assert_close(load_state(resume, "cpu")["model"], state["model"])
