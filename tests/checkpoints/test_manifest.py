"""The typed run model: one writer, a validating reader, one clear line for a bad manifest."""

import json

import pytest

from mechrare.checkpoints import Manifest, ModelRecord, RunFolder, TaskRecord
from mechrare.atomic import RECORD_SHA, seal_ok
from mechrare.checkpoints.manifest import InterventionRecord, new_manifest
from mechrare.errors import RunFolderError


def sample() -> Manifest:
    return new_manifest(
        "unit",
        {"seed": 3, "train": {"steps": 10}},
        tokens_per_step=64,
        checkpoint_steps=[0, 5, 10],
        tasks=[TaskRecord("facts:8", 0.2, family="facts", complexity=8, eval_examples=8, targets={"answer": 8}),
               TaskRecord("compare:4", 0.05)],
        models={
            "small": ModelRecord(n_params=100, shares={"facts:8": 0.2, "compare:4": 0.05}),
            "small-up": ModelRecord(n_params=100, shares={"facts:8": 0.18, "compare:4": 0.15},
                                    intervention=InterventionRecord("small", {"compare:4": 3.0})),
        },
    )


def test_round_trip_through_the_one_writer(tmp_path):
    run = RunFolder(tmp_path)
    m = sample()
    run.write_manifest(m)
    back = run.read_manifest()
    assert back == m and back.seed == 3 and back.kind == "ladder"
    assert back.shares() == {"facts:8": 0.2, "compare:4": 0.05}
    assert back.shares("small-up")["compare:4"] == 0.15
    assert back.model("small-up").intervention.upsample == {"compare:4": 3.0}
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert "intervention" not in raw["models"]["small"]  # unset fields are left out of the file
    run.update_model("small", status="done", final_step=10)
    assert run.read_manifest().models["small"].status == "done"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d["models"]["small"].update(n_params="many"), "models.small.n_params: expected an integer"),
        (lambda d: d["models"]["small"].pop("n_params"), "models.small.n_params: required key is missing"),
        (lambda d: d["tasks"][0].update(share=3), "tasks[0].share: must be in [0, 1]"),
        (lambda d: d.update(colour="red"), "colour: unknown key"),
        (lambda d: d.update(schema=9), "schema: is 9, this mechrare reads 1"),
        (lambda d: d["models"].update({"../../elsewhere": d["models"]["small"]}), "is not a plain folder name"),
        (lambda d: d["models"]["small"].update(status="half"), "models.small.status: must be one of"),
        (lambda d: d["models"]["small"]["shares"].update(nope=0.1), "models.small.shares: unknown task 'nope'"),
    ],
)
def test_a_malformed_manifest_is_one_line_naming_the_key(tmp_path, damage, message):
    data = sample().to_dict()
    damage(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(RunFolderError) as err:
        RunFolder(tmp_path).read_manifest()
    text = str(err.value)
    assert message in text and "manifest.json: malformed manifest" in text and "\n" not in text


def test_damaged_json_and_foreign_folders(tmp_path):
    with pytest.raises(RunFolderError, match="no such run folder"):
        RunFolder(tmp_path / "nope").read_manifest()
    with pytest.raises(RunFolderError, match="not a mechrare run folder"):
        RunFolder(tmp_path).read_manifest()
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="damaged manifest"):
        RunFolder(tmp_path).read_manifest()


def test_a_manifest_written_before_the_typed_model_still_reads(tiny_run):
    """The tiny run's file, as training writes it, reads back into the same records."""
    raw = json.loads((tiny_run.path / "manifest.json").read_text())
    assert seal_ok(raw) is True  # it carries the sha256 of its content
    raw.pop(RECORD_SHA)
    m = Manifest.from_dict(raw)
    assert m.to_dict() == raw


def test_a_changed_manifest_is_named_and_the_way_to_accept_an_edit_is_given(tiny_run, tmp_path):
    import shutil

    from mechrare.checkpoints import RunFolder
    from mechrare.errors import RunFolderError

    shutil.copy(tiny_run.path / "manifest.json", tmp_path / "manifest.json")
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["tasks"][0]["share"] += 0.001  # a bit flip or an edit that still parses
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(RunFolderError, match="damaged or edited manifest .*delete the record_sha256 line"):
        RunFolder(tmp_path).read_manifest()
    raw.pop(RECORD_SHA)  # an edit made on purpose
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    assert RunFolder(tmp_path).read_manifest().tasks[0].share == raw["tasks"][0]["share"]
