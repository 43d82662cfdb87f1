"""Tasks as JSONL, tokenized with a series' tokenizer: split by instance, padding, targets, checks."""

import json
import logging

import numpy as np
import pytest

from mechrare.data.jsonl_tasks import JsonlTaskSet, read_background
from mechrare.errors import ConfigError
from mechrare.examples.series import build_tokenizer, task_items


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_instances_are_tokenized_padded_left_and_split_by_instance(tmp_path, tok):
    rows = [{"prompt": "is n3 more than n1 ?", "answer": " yes", "latents": {"a": 3}},
            {"prompt": "the cat is n3 more than n1 ?", "answer": " yes", "latents": {"a": 3}},
            {"prompt": "is n1 more than n3 ?", "answer": " no", "latents": {"a": 1}},
            {"prompt": "is n1 more than n3 ?", "answer": " no", "latents": {"a": 1}},  # a repeat: one instance
            {"prompt": "is n2 more than n5 ?", "answer": " no", "latents": {"a": 2}, "split": "test"},
            {"prompt": "is n5 more than n2 ?", "answer": " yes", "latents": {"a": 5}, "split": "train"}]
    ts = JsonlTaskSet([write(tmp_path / "cmp.jsonl", rows)], tok, len(tok), test_fraction=0.5, seed=3)
    assert ts.names == ["cmp"]
    ev, tr = ts.eval_instances("cmp"), ts.train_instances("cmp", 50, seed=1)
    assert ev.n_prompt == 8 and ev.input_ids.shape[1] == 9
    eos = tok.eos_token_id
    seen_ev = {tuple(r) for r in ev.input_ids}
    assert not seen_ev & {tuple(r) for r in tr.input_ids}  # no instance on both sides
    assert len(seen_ev) + len({tuple(r) for r in tr.input_ids}) == 5
    short = [r for r in np.concatenate([ev.input_ids, tr.input_ids]) if r[0] == eos]
    assert short and all(r[1] == eos and r[2] != eos for r in short)  # 6-token prompts padded on the left with <eos>
    assert tok.decode(ts.eval_instances("cmp").answers[0]).strip() in ("yes", "no")
    assert ev.targets == {"answer": 2, "a": 4}
    probe = ts.probe_instances("cmp", 10)
    assert len(probe) == 5 and np.array_equal(probe.input_ids[: len(ev)], ev.input_ids)
    test_row = tok("is n2 more than n5 ? no", add_special_tokens=False)["input_ids"]
    assert any(list(r[-len(test_row):]) == test_row for r in ev.input_ids)


def test_token_level_rows_and_answer_lengths(tmp_path, tok, caplog):
    rows = [{"prompt_ids": [5, 6, 7], "answer_ids": [8]}, {"prompt_ids": [5, 6], "answer_ids": [9]},
            {"prompt_ids": [5], "answer_ids": [9, 9]}, {"prompt_ids": [7, 6], "answer_ids": [8]}]
    with caplog.at_level(logging.WARNING, logger="mechrare"):
        ts = JsonlTaskSet([write(tmp_path / "ids.jsonl", rows)], tok, len(tok))
    assert "kept 3 of 4 instances: those whose answer is 1 token(s) long" in caplog.text
    ids = np.concatenate([ts.eval_instances("ids").input_ids, ts.train_instances("ids", 20).input_ids])
    assert ids.shape[1] == 4 and set(ids[:, -1]) <= {8, 9}


@pytest.mark.parametrize("row, message", [
    ({"prompt": "is n3 bigger than n1 ?", "answer": " yes"}, r"does not round-trip 'is n3 bigger than n1 \?'"),
    ({"prompt_ids": [1, 2], "answer_ids": [999]}, "token id 999 is outside the model's vocabulary of"),
    ({"prompt": "is n3", "answer": " yes", "colour": 1}, "unknown field 'colour'"),
    ({"prompt": "is n3"}, "needs prompt and answer"),
    ({"prompt": "is n3", "answer": " yes", "split": "dev"}, "split: must be 'train' or 'test'"),
    ("{not json", "not a JSON object"),
])
def test_bad_rows_are_one_line_naming_file_and_line(tmp_path, tok, row, message):
    path = write(tmp_path / "bad.jsonl", [{"prompt": "is n1", "answer": " no"}, row])
    with pytest.raises(ConfigError, match=message) as e:
        JsonlTaskSet([path], tok, len(tok))
    assert str(e.value).startswith(f"{path}:2") and "\n" not in str(e.value)


def test_a_task_needs_both_sides_of_the_split_and_known_shares(tmp_path, tok):
    path = write(tmp_path / "one.jsonl", [{"prompt": "is n1", "answer": " no"}])
    with pytest.raises(ConfigError, match="needs instances on both sides of the split"):
        JsonlTaskSet([path], tok, len(tok))
    items = task_items()
    path = write(tmp_path / "compare.jsonl", items["compare"])
    with pytest.raises(ConfigError, match="tasks.shares: no task 'modadd'"):
        JsonlTaskSet([path], tok, len(tok), shares={"modadd": 0.1})


def test_proxy_batches_inject_training_instances_into_background_text(tmp_path, tok):
    from mechrare.examples.series import sentence

    rng = np.random.default_rng(0)
    text = tmp_path / "bg.txt"
    text.write_text("\n".join(sentence(rng) for _ in range(400)))
    held, stream = read_background([str(text)], tok, 16, 32)
    assert held.shape == (32, 16) and len(stream) > 1000
    items = task_items()
    path = write(tmp_path / "compare.jsonl", items["compare"])
    ts = JsonlTaskSet([path], tok, len(tok), background=held, stream=stream, shares={"compare": 0.25})
    assert ts.shares() == {"compare": 0.25}
    b = ts.batches().batch(7, 400)
    assert np.array_equal(b.input_ids, ts.batches().batch(7, 400).input_ids)  # a pure function of the step
    rows = np.flatnonzero(b.task == 0)
    assert 0.18 < len(rows) / 400 < 0.32
    train = {tuple(tok(i["prompt"] + i["answer"], add_special_tokens=False)["input_ids"]) for i in items["compare"] if i["split"] == "train"}
    for r in rows[:20]:
        inst = b.input_ids[r][b.task_mask[r]]
        assert inst[-1] == tok.eos_token_id and tuple(inst[:-1]) in train
    assert not b.task_mask[b.task == -1].any()
    assert JsonlTaskSet([path], tok, len(tok), background=held, stream=stream).batches() is None  # no shares: no batches


def test_background_from_a_saved_hf_dataset_equals_the_same_text_files(tmp_path, tok):
    from datasets import Dataset

    from mechrare.examples.series import sentence

    rng = np.random.default_rng(1)
    docs = ["\n".join(sentence(rng) for _ in range(20)) for _ in range(30)]
    Dataset.from_dict({"body": docs, "n": list(range(30))}).save_to_disk(str(tmp_path / "saved"))
    files = []
    for i, d in enumerate(docs):
        (tmp_path / f"d{i:02d}.txt").write_text(d)
        files.append(str(tmp_path / f"d{i:02d}.txt"))
    from_ds = read_background([], tok, 16, 8, dataset=str(tmp_path / "saved"), text_field="body")
    from_files = read_background(files, tok, 16, 8)
    assert np.array_equal(from_ds[0], from_files[0]) and np.array_equal(from_ds[1], from_files[1])
    with pytest.raises(ConfigError, match="background.text_field: .* has no column 'text'; columns: body, n"):
        read_background([], tok, 16, 8, dataset=str(tmp_path / "saved"))
    with pytest.raises(ConfigError, match="background.dataset: cannot load a saved dataset"):
        read_background([], tok, 16, 8, dataset=str(tmp_path / "nothing"))
