"""Training seeds: layout, what a seed changes, extending a run with more seeds, bad input, old folders."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from mechrare.checkpoints.metrics import build_metrics
from mechrare.checkpoints.run import RunFolder
from mechrare.checkpoints.store import CheckpointStore
from mechrare.cli import main
from mechrare.config import load_config
from mechrare.reports.listing import describe_run
from mechrare.training import train_run

SMALL = ["ladder.models=[\"d8-l1\"]", "ladder.interventions=[]", "train.steps=20", "checkpoints.every=10"]


def config(*extra):
    return load_config("tiny", SMALL + list(extra))[1]


def weights(run, model, step, seed):
    return load_file(str(RunFolder(run).step_dir(model, step, seed) / "model.safetensors"))


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "two"
    train_run(config("ladder.seeds=2"), out, progress=False)
    return out


def test_each_seed_has_its_folder_and_metrics_have_a_seed_dimension(two_seeds):
    store = CheckpointStore(two_seeds)
    assert store.seeds() == [0, 1] and store.seeds("d8-l1") == [0, 1]
    assert (two_seeds / "models" / "d8-l1" / "seed_1" / "step_20" / "mechrare.json").is_file()
    assert json.loads((two_seeds / "models" / "d8-l1" / "seed_1" / "step_20" / "mechrare.json").read_text())["seed"] == 1
    ds = build_metrics(two_seeds)
    assert ds.accuracy.dims == ("model", "seed", "step", "task") and list(ds.seed.values) == [0, 1]
    assert store.manifest.model("d8-l1").status == "done" and store.manifest.model("d8-l1").seeds_done == [0, 1]
    text = describe_run(two_seeds)
    assert "2 training seeds: 0, 1" in text and "2/2" in text


def test_seed_zero_is_the_one_seed_run_and_other_seeds_differ(two_seeds, tmp_path):
    one = tmp_path / "one"
    train_run(config(), one, progress=False)
    a, b = weights(one, "d8-l1", 20, 0), weights(two_seeds, "d8-l1", 20, 0)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = weights(two_seeds, "d8-l1", 0, 1)
    assert not all(np.array_equal(weights(two_seeds, "d8-l1", 0, 0)[k], other[k]) for k in other)  # initialisation
    # the data order differs too: the same init trained on seed 1's stream ends elsewhere than seed 0
    from mechrare.data.mixture import Mixture

    mix = Mixture(config().mixture, 0)
    assert not np.array_equal(mix.batch(3, 16).input_ids, mix.with_order(1).batch(3, 16).input_ids)
    assert np.array_equal(mix.eval_sets[0].input_ids, mix.with_order(1).eval_sets[0].input_ids)


def test_more_seeds_extend_a_run_and_keep_what_it_has(two_seeds, tmp_path):
    run = tmp_path / "grow"
    shutil.copytree(two_seeds, run)
    before = (run / "models" / "d8-l1" / "seed_0" / "step_20" / "mechrare.json").stat().st_mtime_ns
    train_run(config("ladder.seeds=[0, 1, 5]"), run, progress=False)
    store = CheckpointStore(run)
    assert store.seeds() == [0, 1, 5] and store.steps("d8-l1", 5)[-1] == 20
    assert (run / "models" / "d8-l1" / "seed_0" / "step_20" / "mechrare.json").stat().st_mtime_ns == before
    assert store.manifest.model("d8-l1").seeds_done == [0, 1, 5]


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "ladder.seeds: a count of seeds must be >= 1, got 0"),
        ("-2", "ladder.seeds: a count of seeds must be >= 1, got -2"),
        ("[1, 1]", "ladder.seeds: seed 1 appears twice"),
        ("[0, -1]", "ladder.seeds: seeds must be >= 0, got -1"),
        ("[]", "ladder.seeds: needs at least one seed"),
    ],
)
def test_bad_seeds_are_one_line_exit_2_and_nothing_written(value, message, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["train", "tiny", "--out", str(out), "--set", f"ladder.seeds={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


def test_a_folder_from_before_seeds_reads_as_seed_zero(two_seeds, tmp_path):
    """Layout 1: checkpoints at models/<model>/step_<N>, a manifest without seeds or layout."""
    old = tmp_path / "old"
    shutil.copytree(two_seeds, old)
    folder = old / "models" / "d8-l1"
    shutil.rmtree(folder / "seed_1")
    for child in list((folder / "seed_0").iterdir()):
        child.rename(folder / child.name)
    (folder / "seed_0").rmdir()
    raw = json.loads((old / "manifest.json").read_text())
    for key in ("seeds", "layout", "record_sha256"):  # an old manifest has none of these
        raw.pop(key)
    raw["models"]["d8-l1"].pop("seeds_done")
    (old / "manifest.json").write_text(json.dumps(raw))
    store = CheckpointStore(old)
    assert store.seeds() == [0] and store.steps("d8-l1")[-1] == 20
    store.verify("d8-l1", 20)
    assert build_metrics(old).accuracy.sizes["seed"] == 1
    # it resumes as it was (done) and cannot grow seeds
    train_run(config(), old, progress=False)
    with pytest.raises(Exception, match="predates seeds"):
        train_run(config("ladder.seeds=2"), old, progress=False)
