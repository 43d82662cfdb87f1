"""A run on a real-text background: the run folder keeps its tokenizer and tokens, and needs no corpus after."""

import json
import shutil

import numpy as np
import pytest

from mechrare import open_run
from mechrare.cli import main
from mechrare.config import load_config
from mechrare.examples.corpus import write_corpus
from mechrare.training import train_run

TEXT = 'mixture.background={kind="text", files=["corpus/*.txt"], tokenizer="bpe:1024"}'
SMALL = ["ladder.models=[\"d8-l1\"]", "ladder.interventions=[]", "train.steps=20", "checkpoints.every=10", TEXT]


@pytest.mark.slow
def test_a_text_run_keeps_its_background_and_analyses_need_no_corpus(tmp_path, monkeypatch, capsys):
    from transformers import AutoTokenizer

    monkeypatch.setenv("MECHRARE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus", n_files=4)
    run = tmp_path / "run"
    train_run(load_config("tiny", SMALL)[1], run, progress=False)
    data = list((run / "data").glob("background-*"))
    assert len(data) == 1 and {p.name for p in data[0].iterdir()} == {"meta.json", "tokenizer.json", "tokens.npy"}
    tok = AutoTokenizer.from_pretrained(run / "models" / "d8-l1" / "seed_0" / "step_20")
    assert len(tok) == 1024 and tok.eos_token == "<eos>"
    assert tok.decode(tok("def f(x): return x").input_ids) == "def f(x): return x"  # the corpus BPE, not word-level
    assert main(["ls", str(run), "--verify", "--no-progress"]) == 0
    assert "vocab 1024" in capsys.readouterr().out
    tokens = data[0] / "tokens.npy"
    good = tokens.read_bytes()
    tokens.write_bytes(good[:-4] + bytes(4))  # same size, other ids
    assert main(["ls", str(run), "--verify", "--no-progress"]) == 1
    assert "tokens.npy: sha256 differs" in capsys.readouterr().out
    tokens.write_bytes(good)
    first = open_run(run).tasks.batches().batch(5, 8).input_ids
    shutil.rmtree(tmp_path / "corpus")
    shutil.rmtree(tmp_path / "cache")
    tasks = open_run(run).tasks  # from the run folder's own copy
    np.testing.assert_array_equal(tasks.batches().batch(5, 8).input_ids, first)
    assert main(["analyze", str(run), "--only", "probes", "--no-progress"]) == 0
    # training the same config again resumes from the run folder's copy, without the corpus
    capsys.readouterr()
    assert main(["train", "tiny", "--out", str(run), *sum((["--set", s] for s in SMALL), []), "--no-progress"]) == 0
    assert "done already" in capsys.readouterr().out
    # a new run folder cannot: it needs the corpus, and says so in one line
    assert main(["train", "tiny", "--out", str(tmp_path / "new"), *sum((["--set", s] for s in SMALL), []), "--no-progress"]) == 2
    assert "mixture.background.files[0]: 'corpus/*.txt' matches no file" in capsys.readouterr().err


def test_a_run_on_a_saved_dataset_from_the_command_line(tmp_path, monkeypatch, capsys):
    """`[mixture.background] dataset = ...` through the CLI: the run keeps the prepared rows and needs no dataset after."""
    from mechrare.examples.corpus import write_dataset

    monkeypatch.setenv("MECHRARE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "topics")
    settings = ["ladder.models=[\"d8-l1\"]", "ladder.interventions=[]", "train.steps=10", "checkpoints.every=5",
                'mixture.background={kind="text", dataset="topics", tokenizer="bpe:600"}']
    args = ["train", "tiny", "--out", "run", *sum((["--set", s] for s in settings), []), "--no-progress"]
    assert main(args) == 0
    (data,) = (tmp_path / "run" / "data").glob("background-*")
    meta = json.loads((data / "meta.json").read_text())
    assert meta["dataset"] == str(tmp_path / "topics") and meta["text_field"] == "text" and meta["vocab_size"] == 600
    shutil.rmtree(tmp_path / "topics")
    shutil.rmtree(tmp_path / "cache")
    capsys.readouterr()
    assert main(args) == 0 and "done already" in capsys.readouterr().out
    assert main(["train", "tiny", "--out", "new", *args[4:]]) == 2
    assert "mixture.background.dataset: cannot load a saved dataset from topics" in capsys.readouterr().err
