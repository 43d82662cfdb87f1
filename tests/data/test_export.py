"""The built-in task families exported to JSONL in another tokenizer's ids, and read back."""

import json

import numpy as np
import pytest

from mechrare.data.export import export_tasks, token_map
from mechrare.data.jsonl_tasks import JsonlTaskSet
from mechrare.data.mixture import Mixture
from mechrare.data.taskset import MixtureTaskSet
from mechrare.errors import ConfigError


def word_tokenizer(n: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, "<unk>": 1, **{f"t{i}": i + 2 for i in range(n)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


def test_exported_tasks_are_the_mixtures_instances_in_the_other_vocabulary(tiny_config, tmp_path):
    mixture = Mixture(tiny_config.mixture, tiny_config.seed)
    tok = word_tokenizer(500)
    files = export_tasks(mixture, tok, tmp_path, train_examples=64)
    mapping = json.loads((tmp_path / "mapping.json").read_text())
    assert len(set(mapping.values())) == len(mapping) and not {0, 1} & set(mapping.values())  # one to one, no specials
    ts = JsonlTaskSet([str(f) for f in files], tok, len(tok))
    ours = MixtureTaskSet(mixture)
    assert ts.names == ours.names == ["facts:8", "compare:4", "lookup:2"]
    back = {i: w for w, i in mapping.items()}
    cmp_ours, cmp_theirs = ours.eval_instances("compare:4"), ts.eval_instances("compare:4")
    assert len(cmp_theirs) == len(cmp_ours)  # a held-out task keeps its eval set as the test split
    assert {tuple(mixture.vocab.ids([back[int(i)] for i in row])) for row in cmp_theirs.input_ids} == {tuple(r) for r in cmp_ours.input_ids}
    assert "rank_a" in cmp_theirs.targets
    lines = [json.loads(x) for x in files[0].read_text().splitlines()]
    assert all("split" not in x for x in lines)  # facts is a recall task: the series' test_fraction splits it


def test_a_vocabulary_too_small_for_the_tasks_is_one_line():
    with pytest.raises(ConfigError, match="fewer than the 5 words the tasks use"):
        token_map(["a", "b", "c", "d", "e"], word_tokenizer(2))
    assert token_map(["a", "b"], word_tokenizer(10), seed=1) == token_map(["a", "b"], word_tokenizer(10), seed=1)


def test_cli_export_tasks_feeds_a_series(tmp_path, capsys):
    from mechrare.cli import main

    word_tokenizer(300).save_pretrained(tmp_path / "tok")
    assert main(["export-tasks", "tiny", "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "tasks"), "--examples", "32"]) == 0
    assert "wrote 3 task files and mapping.json" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == ["compare-4.jsonl", "facts-8.jsonl", "lookup-2.jsonl", "mapping.json"]
    assert main(["export-tasks", "tiny", "--tokenizer", str(tmp_path / "nothing"), "--out", str(tmp_path / "t2")]) == 2
    err = capsys.readouterr().err
    assert "tokenizer: cannot load a tokenizer from" in err and "\n" not in err.strip()
    assert not (tmp_path / "t2").exists()
