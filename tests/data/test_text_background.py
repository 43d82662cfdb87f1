"""A real-text background: a corpus tokenized once, windows, held-out tail, tasks on random tokens."""

import json

import numpy as np
import pytest

from mechrare.config import BackgroundConfig, MixtureConfig, TaskConfig
from mechrare.data.mixture import Mixture
from mechrare.data.text_prep import prepare, train_bpe
from mechrare.errors import ConfigError
from mechrare.examples.corpus import write_corpus

TASKS = [TaskConfig("compare", 8, 0.2), TaskConfig("modadd", 5, 0.2), TaskConfig("facts", 8, 0.1, placement="sequence")]


@pytest.fixture()
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHRARE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    write_corpus(tmp_path / "corpus", n_files=3)
    return tmp_path


def text_mixture(tokenizer="bpe:512", length=24, tasks=TASKS, data_dirs=None, **bg):
    background = BackgroundConfig(kind="text", files=["corpus/*.txt"], tokenizer=tokenizer, **bg)
    return Mixture(MixtureConfig(sequence_length=length, tasks=list(tasks), background=background), seed=3, data_dirs=data_dirs)


def test_the_corpus_is_each_file_tokenized_then_eos(corpus):
    mix = text_mixture()
    folder = mix.background.prepared.folder
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.get_vocab_size() == 512 and [tok.id_to_token(i) for i in range(3)] == ["<pad>", "<eos>", "<unk>"]
    expect = []
    for path in sorted((corpus / "corpus").glob("*.txt")):
        expect += tok.encode(path.read_text(encoding="utf-8"), add_special_tokens=False).ids + [1]
    np.testing.assert_array_equal(np.load(folder / "tokens.npy"), expect)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n_tokens"] == len(expect) and len(meta["files"]) == 3
    # the same trainer on the same text gives the same tokenizer (a rebuilt cache is the same background)
    texts = [p.read_text(encoding="utf-8") for p in sorted((corpus / "corpus").glob("*.txt"))]
    assert train_bpe(texts, 512).to_str() == tok.to_str()


def test_batches_are_windows_of_the_training_text_with_tasks_injected(corpus):
    mix = text_mixture()
    tokens = np.load(mix.background.prepared.folder / "tokens.npy").astype(np.int64)
    train_end = mix.background.corpus.train_ends[-1]
    train_text = " ".join(map(str, tokens[:train_end]))
    batch = mix.batch(7, 64)
    again = text_mixture().batch(7, 64)  # a pure function of (config, seed, step), also from the cache
    np.testing.assert_array_equal(batch.input_ids, again.input_ids)
    assert not np.array_equal(batch.input_ids, mix.batch(8, 64).input_ids)
    eos, n_checked = mix.vocab.eos_id, 0
    for row in range(64):
        ids, k = batch.input_ids[row], int(batch.task[row])
        if k < 0:
            window = ids
        else:
            n = int(batch.task_mask[row].sum())
            assert ids[n - 1] == eos and ids[0] == mix.vocab.id(mix.tasks[k].marker)
            if mix.specs[k].placement == "sequence":
                assert (ids[n:] == mix.vocab.pad_id).all() and (batch.labels[row, n:] == -100).all()
                continue
            window = ids[n:]
        assert " " + " ".join(map(str, window)) + " " in " " + train_text + " "
        n_checked += 1
    assert n_checked > 30
    held = mix.background_eval(32)
    tail = " ".join(map(str, tokens[train_end:]))
    assert all(" ".join(map(str, r)) in tail for r in held)


def test_task_symbols_sit_on_distinct_ordinary_tokens(corpus):
    mix = text_mixture()
    symbols = {s for t in mix.tasks for s in [t.marker] + t.tokens()}
    ids = [mix.vocab.id(s) for s in symbols]
    assert len(set(ids)) == len(ids)  # one to one
    assert not set(ids) & {0, 1, 2}  # never a special token
    for inst in mix.eval_sets:
        assert inst.input_ids.max() < len(mix.vocab)
    hf = mix.vocab.to_hf_tokenizer()
    assert hf.eos_token == "<eos>" and hf.pad_token == "<pad>" and len(hf) == 512


def test_tokens_files_raw_or_npy_give_the_same_windows(corpus):
    text_mixture()  # prepares the text corpus and its tokenizer
    prepared = next((corpus / "cache").glob("background-*"))
    tokens = np.load(prepared / "tokens.npy")
    (corpus / "tok").mkdir()
    tokens.astype(np.uint16).tofile(corpus / "tok" / "part-0.npy")  # OLMo style: raw, no header
    np.save(corpus / "tok" / "header.npy", tokens.astype(np.uint32))
    mixes = []
    for files, dtype in ((["tok/part-0.npy"], "uint16"), (["tok/header.npy"], "uint16")):
        bg = BackgroundConfig(kind="tokens", files=files, dtype=dtype, tokenizer=str(prepared / "tokenizer.json"))
        mixes.append(Mixture(MixtureConfig(sequence_length=24, tasks=TASKS[:2], background=bg), seed=3))
    np.testing.assert_array_equal(mixes[0].batch(2, 16).input_ids, mixes[1].batch(2, 16).input_ids)
    # ids beyond the tokenizer's vocabulary are refused when read
    (tokens.astype(np.uint16) + 600).tofile(corpus / "tok" / "big.npy")
    bg = BackgroundConfig(kind="tokens", files=["tok/big.npy"], tokenizer=str(prepared / "tokenizer.json"))
    with pytest.raises(ConfigError, match="outside the tokenizer's vocabulary of 512"):
        Mixture(MixtureConfig(sequence_length=24, tasks=TASKS[:2], background=bg), seed=3).batch(0, 8)


def test_a_changed_corpus_is_refused_and_the_run_copy_needs_no_corpus(corpus, tmp_path):
    mix = text_mixture()
    run_data = tmp_path / "run" / "data"
    mix.background.install(run_data)
    path = corpus / "corpus" / "topics-01.txt"
    path.write_text(path.read_text() + "one more line\n")
    with pytest.raises(ConfigError, match="topics-01.txt changed since the background was prepared"):
        text_mixture()
    for p in (corpus / "corpus").glob("*.txt"):
        p.unlink()
    import shutil

    shutil.rmtree(corpus / "cache")
    again = text_mixture(data_dirs=[run_data])  # the run folder's copy: no corpus, no cache needed
    np.testing.assert_array_equal(again.batch(3, 16).input_ids, mix.batch(3, 16).input_ids)


@pytest.mark.parametrize(
    "bg, match",
    [
        (dict(kind="text", files=["nothing/*.txt"], tokenizer="bpe:512"), r"files\[0\]: 'nothing/\*.txt' matches no file"),
        (dict(kind="text", files=["corpus/*.txt"], tokenizer="bpe:12"), r"tokenizer: bpe:<vocab size> needs a size"),
        (dict(kind="text", files=["corpus/*.txt"]), r"tokenizer: needs a tokenizer"),
        (dict(kind="text", files=["corpus/*.txt"], tokenizer="no/such/tokenizer.json"), r"is not a tokenizer.json or a folder"),
        (dict(kind="markov", files=["corpus/*.txt"]), r"a markov background takes no files"),
        (dict(kind="tokens", files=["corpus/*.txt"], tokenizer="bpe:512"), r"tokens\\\" needs the tokenizer|needs the tokenizer its ids"),
        (dict(kind="words"), r"kind: must be one of markov, text, tokens"),
        (dict(kind="text", files=["corpus/*.txt"], tokenizer="bpe:512", held_out=0.7), r"held_out: must be in \(0, 0.5\)"),
    ],
)
def test_bad_background_settings_are_one_line(corpus, bg, match):
    with pytest.raises(ConfigError, match=match) as err:
        cfg = BackgroundConfig(**bg)
        cfg.validate("mixture.background")
        Mixture(MixtureConfig(sequence_length=24, tasks=TASKS[:2], background=cfg), seed=0)
    assert "\n" not in str(err.value) and str(err.value).startswith("mixture.background")


def test_too_little_text_and_a_tokenizer_without_eos(corpus):
    (corpus / "small").mkdir()
    (corpus / "small" / "a.txt").write_text("tiny text\n")
    with pytest.raises(ConfigError, match="too few for windows of 24"):
        Mixture(MixtureConfig(sequence_length=24, tasks=TASKS[:2],
                              background=BackgroundConfig(kind="text", files=["small/*.txt"], tokenizer="bpe:300")), seed=0)
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"a": 0, "b": 1, "<unk>": 2}, unk_token="<unk>")).save(str(corpus / "noeos.json"))
    with pytest.raises(ConfigError, match="has no end-of-text token"):
        text_mixture(tokenizer=str(corpus / "noeos.json"))
