"""The public Python API: numbers agree with the analyses and with independent computations,
bad arguments are one ConfigError naming the argument, and nothing is written then."""

import numpy as np
import pytest
import torch

import mechrare
from mechrare.analyses.interference import InterferenceConfig, run_interference
from mechrare.analyses.probes import ProbesConfig, run_probes
from mechrare.cli import main
from mechrare.errors import ConfigError, RunFolderError

MODEL = "d16-l2"


def files(path):
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_import_is_lazy_and_exports_the_api():
    import subprocess
    import sys

    code = "import sys, mechrare; print(sorted(m for m in ('torch', 'transformers', 'xarray', 'sae_lens') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    for name in ("open_run", "train", "analyze", "report", "get_activations", "fit_probe", "gradient_interference"):
        assert callable(getattr(mechrare, name))
    with pytest.raises(AttributeError):
        mechrare.nope  # noqa: B018


def test_open_run_and_datasets(tiny_run):
    run = mechrare.open_run(tiny_run.path)
    assert run.models == ["d8-l1", "d16-l2", "d24-l2", "d8-l1-up5"] and run.steps(MODEL)[-1] == 300
    assert run.tasks.names == ["facts:8", "compare:4", "lookup:2"]
    assert float(run.dataset("metrics").accuracy.sel(model=MODEL, seed=0, step=300, task="facts:8")) >= 0
    assert "metrics" in run.datasets
    with pytest.raises(RunFolderError, match="no such run folder"):
        mechrare.open_run(tiny_run.path / "nope")
    with pytest.raises(ConfigError, match="no dataset 'nope'"):
        run.dataset("nope")


def test_fit_probe_matches_the_probes_analysis(tiny_run_copy):
    ds = run_probes(tiny_run_copy, ProbesConfig(), models=[MODEL], steps=[300], progress=False)
    for target in ("lookup:2/query_key", "task"):
        fit = mechrare.fit_probe(tiny_run_copy, MODEL, 300, target)
        expected = ds.probe_score.sel(model=MODEL, seed=0, step=300, target=target).values
        n_test = int(ds.n_test.sel(target=target))
        assert np.abs(fit.probe_score - expected).max() <= 1 / n_test + 1e-9, (target, fit.probe_score, expected)
        assert fit.layers == [0, 1, 2] and fit.best_layer in fit.layers
        assert np.abs(fit.control_score - ds.control_score.sel(model=MODEL, seed=0, step=300, target=target).values).max() <= 1 / n_test + 1e-9
    # any scikit-learn classifier, one chosen layer
    from sklearn.tree import DecisionTreeClassifier

    tree = mechrare.fit_probe(tiny_run_copy, MODEL, 300, "task", probe=DecisionTreeClassifier(max_depth=3), layer=2)
    assert tree.layers == [2] and isinstance(tree.estimators[2], DecisionTreeClassifier)


def test_gradient_interference_matches_the_dataset(tiny_run_copy):
    ds = run_interference(tiny_run_copy, InterferenceConfig(), models=[MODEL], progress=False)
    gi = mechrare.gradient_interference(tiny_run_copy, MODEL, 200)
    ref = ds.sel(model=MODEL, seed=0, step=200)
    np.testing.assert_allclose(gi.grad_cosine.values, ref.grad_cosine.values, atol=1e-6)
    np.testing.assert_allclose(gi.grad_norm.values, ref.grad_norm.values, rtol=1e-5)
    # your own task set: the run's compare instances under another name are the same gradient
    run = mechrare.open_run(tiny_run_copy)
    mine = mechrare.gradient_interference(run, MODEL, 200, tasks={"mine": run.tasks.eval_instances("compare:4"), "compare:4": "compare:4"})
    assert float(mine.grad_cosine.sel(task="mine", other_task="compare:4")) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ConfigError, match="at least two task sets"):
        mechrare.gradient_interference(run, MODEL, 200, tasks=["facts:8"])


def test_get_activations_from_text_and_masked_ids(tiny_run):
    run = mechrare.open_run(tiny_run.path)
    bridge = run.bridge(MODEL, 300)
    tok = run.series.tokenizer()
    texts = ["<compare:4> w6 w5", "<facts:8> facts8_k3", "<lookup:2> key0 val1 key2 val3"]
    hook = "blocks.1.hook_resid_post"
    batched = mechrare.get_activations(bridge, texts, [hook], positions="last")[hook]
    for i, text in enumerate(texts):  # each text alone, unpadded: the same last-token activation
        ids = np.array([tok(text, add_special_tokens=False)["input_ids"]])
        alone = mechrare.get_activations(bridge, ids, [hook], positions=[-1])[hook]
        np.testing.assert_allclose(batched[i], alone[0], atol=1e-5)
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts[:2]]
    ids = np.array([r + [0] * (6 - len(r)) for r in rows])  # right-padded with <pad> (id 0)
    mask = (ids != 0).astype(int)
    full = mechrare.get_activations(bridge, ids, [hook], attention_mask=mask)[hook]
    assert full.shape == (2, 6, 16)
    with pytest.raises(ConfigError, match="hooks: unknown hook 'blocks.9.nope'"):
        mechrare.get_activations(bridge, ids, ["blocks.9.nope"])
    with pytest.raises(ConfigError, match="attention_mask: shape"):
        mechrare.get_activations(bridge, ids, [hook], attention_mask=mask[:, :3])
    with pytest.raises(ConfigError, match="positions: must be"):
        mechrare.get_activations(bridge, ids, [hook], positions="first")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(only=["probes", "nope"]), "unknown analysis 'nope'"),
        (dict(only=["probes"], models=["d99"]), "models: no model 'd99'"),
        (dict(only=["probes"], steps=[7]), "steps: no checkpoint at step 7"),
        (dict(only=["probes"], sae={"k": 2}), "sae: settings given, but sae is not an analysis being run"),
        (dict(only=["probes"], probes={"probe": "logistic", "params": {"colour": 1}}), "probes.params: not parameters of probe 'logistic'"),
        (dict(only=["probes"], probes={"params": {"C": -1}}), "probes.params: The 'C' parameter"),
        (dict(only=["probes"], probes={"examples": 3}), "probes.examples: unknown key"),
        (dict(only=["probes"], nope={}), "analyses.nope: unknown analysis"),
    ],
)
def test_analyze_bad_arguments_write_nothing(tiny_run, kwargs, message):
    before = files(tiny_run.path)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mechrare.analyze(tiny_run.path, progress=False, **kwargs)
    assert files(tiny_run.path) == before


def test_cli_probe_params_are_validated_before_any_work(tiny_run, capsys):
    before = files(tiny_run.path)
    if not torch.cuda.is_available():
        assert main(["analyze", str(tiny_run.path), "--only", "probes", "--set", "probes.params.device=cuda"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mechrare: error: probes.params.device: 'cuda' asked for") and "\n" not in err
    assert main(["analyze", str(tiny_run.path), "--only", "probes", "--steps", "0,x"]) == 2
    assert "--steps: expected comma-separated checkpoint steps" in capsys.readouterr().err
    assert files(tiny_run.path) == before


def test_analysis_settings_in_the_config(tiny_run, tmp_path):
    from mechrare.api import load_run_config

    _, cfg = load_run_config("tiny", ["probes.probe=ridge", "analyses.sae.k=4"])
    assert cfg.analyses == {"probes": {"probe": "ridge"}, "sae": {"k": 4}}
    with pytest.raises(ConfigError, match="analyses.nope: unknown analysis"):
        load_run_config("tiny", ["analyses.nope.x=1"])
    with pytest.raises(ConfigError, match="probes.site: must be one of"):
        load_run_config("tiny", ["probes.site=attn"])
    # settings that do not change the weights never block resuming the trained folder
    run = mechrare.train("tiny", out=tiny_run.path, overrides=["probes.probe=ridge"], progress=False)
    assert run.path == tiny_run.path
    with pytest.raises(ConfigError, match="train.stepz: unknown key"):
        mechrare.train("tiny", out=tmp_path / "x", overrides=["train.stepz=1"], progress=False)
    assert not (tmp_path / "x").exists()


def test_plotting_and_loading_leave_the_users_settings_alone(tiny_run):
    import matplotlib
    from transformers.utils import logging as hf_logging

    from mechrare.reports.data import RunData
    from mechrare.reports.figures import draw_accuracy

    backend = matplotlib.get_backend()
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    fig = draw_accuracy(RunData.load(tiny_run.path))
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_before
    assert fig.axes and fig.savefig  # a Figure the caller owns
    hf_logging.enable_progress_bar()
    mechrare.open_run(tiny_run.path).load(MODEL, 0)
    assert hf_logging.is_progress_bar_enabled()
