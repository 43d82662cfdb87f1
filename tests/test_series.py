"""Series trained elsewhere: open_series, the CLI, every analysis on three architectures, the checks."""

import json
import shutil

import numpy as np
import pytest

import mechrare
from mechrare.cli import main
from mechrare.errors import ConfigError


def copy(example_series, tmp_path, architecture="gpt_neox", style="step{step}"):
    dst = tmp_path / "series"
    shutil.copytree(example_series(architecture, style).parent, dst)
    return dst / "SERIES.toml"


def tree(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else None


def test_open_series_records_it_and_it_reads_like_a_run(example_series, tmp_path):
    toml = example_series()
    run = mechrare.open_series(toml, out=tmp_path / "out", progress=False)
    assert run.manifest.kind == "series" and run.models == ["tiny", "small"]
    assert run.steps("small") == [0, 10, 20, 40] and run.series.tokens_per_step() == 768
    assert run.series.n_params("small") > run.series.n_params("tiny") > 0
    assert run.tasks.names == ["compare", "modadd"] and run.tasks.shares() == {"compare": 0.3, "modadd": 0.05}
    record = json.loads((tmp_path / "out" / "series.json").read_text())
    assert "record_sha256" in record and record["models"]["tiny"]["checkpoints"]["0"]["path"].endswith("tiny/step0")
    again = mechrare.open_series(toml, out=tmp_path / "out", progress=False)  # reopening reuses the record
    assert again.series.record == run.series.record
    other = tmp_path / "other.toml"
    other.write_text(toml.read_text().replace("test_fraction", "test_fraction").replace("[tasks]", "[tasks]\nseed = 4"))
    shutil.copytree(toml.parent / "tasks", tmp_path / "tasks", dirs_exist_ok=True)
    shutil.copytree(toml.parent / "text", tmp_path / "text", dirs_exist_ok=True)
    shutil.copytree(toml.parent / "checkpoints", tmp_path / "checkpoints", dirs_exist_ok=True)
    with pytest.raises(ConfigError, match="holds another series"):
        mechrare.open_series(other, out=tmp_path / "out", progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("architecture, style", [("gpt_neox", "step{step}"), ("llama", "step_{step}"), ("olmo2", "global_step{step}")])
def test_every_analysis_runs_on_each_architecture(example_series, tmp_path, architecture, style):
    toml = example_series(architecture, style)
    out = tmp_path / "out"
    ds = mechrare.analyze(toml, out=out, progress=False, jobs=1, sae={"train_steps": 200, "sequences": 256})
    assert set(ds) == {"evaluation", "probes", "neurons", "interference", "sae", "retention", "ablation"}
    ev = ds["evaluation"]
    assert ev.accuracy.dims == ("model", "seed", "step", "task") and np.isfinite(ev.accuracy).all()
    assert np.isfinite(ev.background_loss).all()
    inter = ds["interference"]
    assert inter.attrs["batches"].startswith("proxy")
    assert np.isfinite(inter.grad_norm.sel(task="modadd")).all()
    assert sorted(inter.param_group.values) == ["embed", "head", "layer0", "layer1"]
    small = inter.grad_norm_layer.sel(model="small")
    assert np.isfinite(small).all() and (small > 0).all()  # every group non-empty (embedding, blocks, head)
    assert np.isnan(inter.grad_norm_layer.sel(model="tiny", param_group="layer1")).all()  # one block: padding
    assert list(inter.param_kind.values) == ["embed", "attn", "mlp", "norm", "head"]
    kinds = inter.grad_norm_kind.sel(model="small")
    assert np.isfinite(kinds).all() and (kinds > 0).all()  # every kind found on this architecture
    np.testing.assert_allclose((kinds**2).sum("param_kind"), inter.grad_norm.sel(model="small") ** 2, rtol=1e-4)
    assert np.isfinite(inter.cos_nontask_ref.sel(task="modadd")).all()
    assert np.isfinite(inter.neuron_grad.sel(model="small", task="modadd").isel(step=0).values).all()
    assert np.isfinite(ds["probes"].probe_score).any() and float(ds["probes"].probe_score.max()) <= 1
    assert ds["sae"].attrs["batches"].startswith("proxy")
    ab = ds["ablation"]
    ablated = np.isfinite(ab.rise_owned.values)
    np.testing.assert_allclose(ab.excess.values[ablated], (ab.rise_owned - ab.rise_random.mean("draw")).values[ablated])
    from mechrare.analyses.ablation import zeroed_loss
    from mechrare.analyses.neurons import task_inputs

    run = mechrare.open_series(toml, out=out, progress=False)
    bridge = run.series.load_bridge("small", run.series.steps("small")[-1])
    ids, answer = task_inputs(run.tasks, "modadd", 32)
    base = zeroed_loss(bridge, ids, answer, {})
    assert zeroed_loss(bridge, ids, answer, {0: np.arange(4), 1: np.arange(4)}) != pytest.approx(base, abs=1e-7)  # the hook bites
    rep = mechrare.report(out, progress=False)
    assert rep.summary.read_text().count("Series trained elsewhere") == 1
    assert {f.key for f in rep.findings} == {"a", "b", "c", "d", "e", "f"}


def test_cli_analyze_ls_and_report_on_a_series(example_series, tmp_path, capsys):
    toml = copy(example_series, tmp_path)
    out = tmp_path / "out"
    assert main(["ls", str(toml), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "series series" in text and "GPTNeoXForCausalLM" in text and "suspect checkpoints: none" in text
    assert not out.exists()  # ls writes nothing
    assert main(["analyze", str(toml), "--out", str(out), "--only", "evaluation,probes", "--no-progress"]) == 0
    assert (out / "analyses" / "evaluation.nc").is_file() and (out / "analyses" / "probes.nc").is_file()
    capsys.readouterr()
    assert main(["ls", str(out), "--steps"]) == 0
    text = capsys.readouterr().out
    assert "final held-out accuracy (mean of the last 3 checkpoints, as in the report)" in text and "small: 0 10 20 40" in text
    assert main(["report", str(out), "--no-progress"]) == 0
    summary = (out / "report" / "summary.md").read_text()
    assert "Series trained elsewhere, checkpoints from tiny:" in summary
    assert "analyze RUN" not in summary and "set ladder.seeds" not in summary  # commands name this series' folder
    assert f"`mechrare analyze SERIES.toml --out {out} --only interference`" in summary
    assert main(["ls", str(toml), "--out", str(out), "--verify", "--no-progress"]) == 0
    weights = toml.parent / "checkpoints" / "small" / "step20" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["ls", str(toml), "--out", str(out), "--verify", "--no-progress"]) == 1
    assert "step20/model.safetensors: changed since the series was first opened" in capsys.readouterr().out
    assert main(["ls", str(out), "--verify", "--no-progress"]) == 1  # the output folder verifies the series too
    assert "step20/model.safetensors: changed since the series was first opened" in capsys.readouterr().out
    assert [p.path.name for p in mechrare.verify(out, progress=False)] == ["model.safetensors"]
    assert main(["analyze", str(out), "--only", "evaluation", "--no-progress"]) == 0  # parts made before: no reload
    assert main(["analyze", str(out), "--only", "probes", "--set", "probes.seed=1", "--no-progress"]) == 2
    assert "changed since the series was first opened" in capsys.readouterr().err


def unrelated_tokenizer(folder):
    """A word-level tokenizer of 100 made-up words, saved over the checkpoint's own."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, "<unk>": 1, **{f"x{i}": i + 2 for i in range(98)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>").save_pretrained(folder)


def test_a_mismatched_tokenizer_is_refused_with_one_line_and_nothing_written(example_series, tmp_path, capsys):
    toml = copy(example_series, tmp_path)
    for folder in (toml.parent / "checkpoints").glob("*/step*"):
        unrelated_tokenizer(folder)
    out = tmp_path / "out"
    assert main(["analyze", str(toml), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "compare.jsonl:1.prompt: the series' tokenizer does not round-trip 'is n0 more than n1 ?'" in err
    assert not out.exists()


def test_models_with_different_tokenizers_and_ids_outside_the_vocabulary_are_refused(example_series, tmp_path, capsys):
    toml = copy(example_series, tmp_path)
    for folder in (toml.parent / "checkpoints" / "small").glob("step*"):
        unrelated_tokenizer(folder)
    assert main(["ls", str(toml), "--no-progress"]) == 2
    assert "small: another tokenizer than tiny" in capsys.readouterr().err
    shutil.rmtree(toml.parent / "checkpoints" / "small")
    toml.write_text(toml.read_text().split("[[models]]\nname = \"small\"")[0] + toml.read_text().split("tokens_per_step = 768\n", 2)[-1])
    (toml.parent / "tasks" / "compare.jsonl").write_text(json.dumps({"prompt_ids": [3, 4], "answer_ids": [5000]}) + "\n")
    out = tmp_path / "out"
    assert main(["analyze", str(toml), "--out", str(out), "--no-progress"]) == 2
    assert "token id 5000 is outside the model's vocabulary of" in capsys.readouterr().err
    assert not out.exists()


def test_a_planted_duplicate_is_flagged_in_ls_and_the_report_and_can_be_left_out(example_series, tmp_path, capsys):
    toml = copy(example_series, tmp_path)
    root = toml.parent / "checkpoints" / "small"
    shutil.copytree(root / "step20", root / "step30")
    assert main(["ls", str(toml), "--no-progress"]) == 0
    assert "  small step 30: identical weights to step 20" in capsys.readouterr().out
    run = mechrare.open_series(toml, out=tmp_path / "out", progress=False)
    assert run.steps("small") == [0, 10, 20, 30, 40]
    rep = mechrare.report(run, progress=False)
    assert ("analysed (exclude_suspect = true leaves them out): small step 20 (identical weights to step 30); "
            "small step 30 (identical weights to step 20)") in rep.summary.read_text()
    toml.write_text("exclude_suspect = true\n" + toml.read_text())
    assert mechrare.open_series(toml, out=tmp_path / "out2", progress=False).steps("small") == [0, 10, 40]
