"""analyses/probes.nc on the tiny run: contract, agreement with an independent
computation (Hugging Face forward hooks + scikit-learn), resume, CLI."""

import os

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from mechrare.analyses.probes import ProbesConfig, run_probes
from mechrare.checkpoints import CheckpointStore, open_dataset
from mechrare.cli import main
from mechrare.runs import open_run
from mechrare.probes.targets import build_probe_data

MODEL = "d16-l2"


@pytest.fixture(scope="module")
def probes_ds(tiny_run):
    return run_probes(tiny_run.path, ProbesConfig(), models=[MODEL], progress=False)


def hf_residuals(model, ids, positions):
    """Residual stream after the embedding and after every decoder layer, via HF hooks."""
    captured = []
    handles = [model.model.embed_tokens.register_forward_hook(lambda m, i, o: captured.append(o))]
    for layer in model.model.layers:
        handles.append(layer.register_forward_hook(lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o)))
    with torch.no_grad():
        model(input_ids=torch.as_tensor(ids))
    for h in handles:
        h.remove()
    rows = np.arange(len(ids))
    return [c[rows, positions].numpy() for c in captured]


def test_contract(probes_ds, tiny_run):
    ds = probes_ds
    assert ds.probe_score.dims == ("model", "seed", "step", "layer", "target")
    assert list(ds.model.values) == [MODEL] and list(ds.layer.values) == [0, 1, 2]
    assert ds.target.values[0] == "task" and "lookup:2/answer" in ds.target.values
    assert np.allclose(ds.selectivity, ds.probe_score - ds.control_score, equal_nan=True)
    assert float(ds.probe_score.min()) >= 0 and float(ds.probe_score.max()) <= 1
    assert (tiny_run.path / "analyses" / "probes.nc").is_file()
    assert open_dataset(tiny_run.path / "analyses" / "probes.nc").equals(ds)
    # a trained model decodes its in-context lookup answer better than at initialisation
    final = ds.probe_score.sel(step=300, target="lookup:2/query_key").max()
    assert float(final) > 0.9


@pytest.mark.parametrize("step", [16, 300])
def test_within_one_point_of_sklearn_on_every_layer_and_target(probes_ds, tiny_run, step):
    store = CheckpointStore(tiny_run.path)
    data = build_probe_data(open_run(tiny_run.path).tasks)
    acts = hf_residuals(store.load(MODEL, step), data.ids, data.positions)
    for layer, x_all in enumerate(acts):
        for tgt in data.targets:
            x = x_all[tgt.rows]
            x = (x - x[tgt.train].mean(0)) / (x[tgt.train].std(0) + 1e-6)
            ref = LogisticRegression(C=1.0, max_iter=5000).fit(x[tgt.train], tgt.labels[tgt.train])
            expected = ref.score(x[~tgt.train], tgt.labels[~tgt.train])
            ours = float(probes_ds.probe_score.sel(model=MODEL, seed=0, step=step, layer=layer, target=tgt.name))
            assert abs(ours - expected) <= 0.01, (layer, tgt.name, ours, expected)


def test_resumes_per_checkpoint(probes_ds, tiny_run):
    parts = next((tiny_run.path / "analyses" / "probes.parts").iterdir()) / MODEL / "seed_0"
    files = sorted(parts.iterdir())
    assert len(files) == len(CheckpointStore(tiny_run.path).steps(MODEL))
    (victim,) = parts.glob("step_64-*.npz")  # named by the step and the sha256 of its weights
    victim.unlink()
    before = {f.name: os.stat(f).st_mtime_ns for f in parts.iterdir()}
    again = run_probes(tiny_run.path, ProbesConfig(), models=[MODEL], progress=False)
    assert victim.is_file()
    assert {f.name: os.stat(f).st_mtime_ns for f in parts.iterdir() if f != victim} == before
    assert again.equals(probes_ds)


def test_cli_analyze(probes_ds, tiny_run, capsys):
    assert main(["analyze", str(tiny_run.path), "--only", "probes", "--models", MODEL, "--no-progress"]) == 0
    assert "probes: up to date" in capsys.readouterr().out  # probes_ds was made from the same inputs
    assert not (tiny_run.path / "analyses" / "probes.parts").exists()  # a completed analysis leaves no parts
    assert main(["analyze", str(tiny_run.path), "--only", "sae-ish"]) == 2
    assert "unknown analysis 'sae-ish'" in capsys.readouterr().err
    assert main(["analyze", str(tiny_run.path), "--set", "probes.train_fraction=1.5"]) == 2
    assert "probes.train_fraction: must be in (0, 1)" in capsys.readouterr().err
