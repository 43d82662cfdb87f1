"""A text background from a Hugging Face dataset saved with save_to_disk: each row one document."""

import json
import shutil

import numpy as np
import pytest

from mechrare.config import BackgroundConfig, MixtureConfig, TaskConfig
from mechrare.data.mixture import Mixture
from mechrare.data.text_prep import background_key, train_bpe
from mechrare.errors import ConfigError
from mechrare.examples.corpus import write_corpus, write_dataset

TASKS = [TaskConfig("compare", 8, 0.2), TaskConfig("modadd", 5, 0.2)]


@pytest.fixture()
def saved(tmp_path, monkeypatch):
    """(the rows' texts in order, with None where a row has no text) of a saved dataset in tmp_path/saved."""
    from datasets import Dataset
    from pydoc_data.topics import topics

    monkeypatch.setenv("MECHRARE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    names = sorted(topics)[:40]
    texts = [topics[n].strip() for n in names]
    texts[3] = None  # a row without text is left out
    Dataset.from_dict({"title": names, "body": texts, "n": list(range(len(names)))}).save_to_disk("saved")
    return texts


def mixture(data_dirs=None, **bg):
    cfg = BackgroundConfig(**{"kind": "text", "dataset": "saved", "text_field": "body", "tokenizer": "bpe:512", **bg})
    cfg.validate("mixture.background")
    return Mixture(MixtureConfig(sequence_length=24, tasks=TASKS, background=cfg), seed=3, data_dirs=data_dirs)


def test_each_row_is_tokenized_then_eos(saved, tmp_path):
    mix = mixture()
    folder = mix.background.prepared.folder
    rows = [t for t in saved if t is not None]
    tok = train_bpe(rows, 512)  # an independent computation: the tokenizer and the ids from the rows
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(folder / "tokenizer.json")).to_str() == tok.to_str()
    expect = np.concatenate([tok.encode(t, add_special_tokens=False).ids + [tok.token_to_id("<eos>")] for t in rows])
    np.testing.assert_array_equal(np.load(folder / "tokens.npy"), expect)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["dataset"] == str(tmp_path / "saved") and meta["text_field"] == "body" and meta["documents"] == 40
    assert meta["files"] and all(f["path"].endswith(".arrow") and f["sha256"] for f in meta["files"])
    batch = mix.batch(2, 16)  # windows of the text, tasks injected, a pure function of the step
    np.testing.assert_array_equal(batch.input_ids, mixture().batch(2, 16).input_ids)
    assert batch.input_ids.max() < 512


def test_rows_give_what_files_of_the_same_texts_give(saved, tmp_path):
    rows = [t for t in saved if t is not None]
    (tmp_path / "docs").mkdir()
    for k, text in enumerate(rows):
        (tmp_path / "docs" / f"{k:03d}.txt").write_text(text, encoding="utf-8")
    mix = mixture()
    from_files = Mixture(MixtureConfig(sequence_length=24, tasks=TASKS, background=BackgroundConfig(
        kind="text", files=["docs/*.txt"], tokenizer="bpe:512")), seed=3)
    a, b = mix.background.prepared.folder, from_files.background.prepared.folder
    assert a != b and (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    np.testing.assert_array_equal(np.load(a / "tokens.npy"), np.load(b / "tokens.npy"))
    np.testing.assert_array_equal(mix.batch(4, 16).input_ids, from_files.batch(4, 16).input_ids)


def test_the_key_of_a_files_background_is_what_it_was():
    """Backgrounds prepared before datasets were read are found again: their key leaves the new settings out."""
    cfg = BackgroundConfig(kind="text", files=["corpus/*.txt"], tokenizer="bpe:512")
    assert background_key(cfg) == "d70b478b85c86649"  # the key this config had before (a run trained then)
    assert background_key(BackgroundConfig(kind="text", dataset="corpus", tokenizer="bpe:512")) != background_key(cfg)
    one, other = (background_key(BackgroundConfig(kind="text", dataset="d", text_field=f, tokenizer="bpe:512")) for f in ("a", "b"))
    assert one != other


def test_a_changed_dataset_is_refused_and_the_run_copy_needs_no_dataset(saved, tmp_path):
    from datasets import Dataset

    mix = mixture()
    run_data = tmp_path / "run" / "data"
    mix.background.install(run_data)
    shutil.rmtree(tmp_path / "saved")
    Dataset.from_dict({"body": [t or "" for t in saved] + ["one more row"]}).save_to_disk("saved")
    with pytest.raises(ConfigError, match=r"^mixture.background.dataset: .*\.arrow changed since the background was prepared"):
        mixture()
    shutil.rmtree(tmp_path / "saved")
    shutil.rmtree(tmp_path / "cache")
    again = mixture(data_dirs=[run_data])  # the run folder's copy: no dataset, no cache needed
    np.testing.assert_array_equal(again.batch(3, 16).input_ids, mix.batch(3, 16).input_ids)


@pytest.mark.parametrize(
    "bg, match",
    [
        (dict(files=["docs/*.txt"]), r"mixture.background.files: a text background needs files .* or dataset .*, one of them"),
        (dict(dataset=""), r"mixture.background.files: a text background needs files .* or dataset"),
        (dict(text_field=""), r"mixture.background.text_field: must name the dataset's column of text"),
        (dict(kind="tokens", tokenizer="t.json", files=["x.npy"]), r"mixture.background.dataset: a saved dataset is text"),
        (dict(kind="markov", tokenizer=""), r"mixture.background.files: a markov background takes no files, dataset"),
        (dict(text_field="text"), r"mixture.background.text_field: saved has no column 'text'; columns: title, body, n"),
        (dict(text_field="n"), r"mixture.background.text_field: column 'n' of saved holds .*int64.*, not text"),
        (dict(dataset="nothing"), r"mixture.background.dataset: cannot load a saved dataset from nothing .*save_to_disk"),
    ],
)
def test_bad_dataset_settings_are_one_line_and_write_nothing(saved, tmp_path, bg, match):
    with pytest.raises(ConfigError, match=match) as err:
        mixture(**bg)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_a_dataset_without_any_text_is_refused(saved, tmp_path):
    from datasets import Dataset

    from datasets import Features, Value

    Dataset.from_dict({"body": [None, None]}, features=Features({"body": Value("string")})).save_to_disk("empty")
    with pytest.raises(ConfigError, match=r"^mixture.background.dataset: empty has no rows with text in column 'body'$"):
        mixture(dataset="empty")


def test_the_example_dataset_holds_the_example_corpus_topics(tmp_path):
    from datasets import load_from_disk

    ds = load_from_disk(str(write_dataset(tmp_path / "topics")))
    files = write_corpus(tmp_path / "corpus", n_files=1)
    assert ds.column_names == ["title", "text"] and len(ds) > 50
    assert files[0].read_text(encoding="utf-8") == "\n\n".join(ds["text"]) + "\n"


def test_a_dataset_dict_gives_its_first_split(saved, tmp_path):
    from datasets import Dataset, DatasetDict, load_from_disk

    rows = load_from_disk("saved")
    DatasetDict({"train": rows, "test": Dataset.from_dict({"title": ["x"], "body": ["other text"], "n": [0]})}).save_to_disk("dict")
    one = mixture(dataset="dict").background.prepared.folder
    two = mixture().background.prepared.folder
    np.testing.assert_array_equal(np.load(one / "tokens.npy"), np.load(two / "tokens.npy"))
