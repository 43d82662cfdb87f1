import numpy as np

from mechrare.data import MarkovSource, Vocabulary
from mechrare.config import BackgroundConfig


def test_hf_tokenizer_round_trip(tmp_path):
    from transformers import AutoTokenizer

    vocab = Vocabulary(["w0", "w1", "<copy:2>", "SEP"])
    vocab.save(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = "<copy:2> w1 SEP w0 <eos>"
    assert tok(text)["input_ids"] == vocab.ids(text.split()).tolist()
    assert tok.pad_token_id == vocab.pad_id == 0 and tok.eos_token_id == vocab.eos_id == 1
    assert tok.decode(vocab.ids(["w1", "SEP"])) == "w1 SEP"


def test_background_transitions_match_the_chain():
    src = MarkovSource(BackgroundConfig(vocab_size=12, branching=3, zipf=1.0), seed=3)
    seqs = src.sample(np.random.default_rng(0), 2000, 30)
    counts = np.zeros((12, 12))
    np.add.at(counts, (seqs[:, :-1].ravel(), seqs[:, 1:].ravel()), 1)
    n = counts.sum(1, keepdims=True)
    empirical = counts / n
    p = src.transition_matrix()
    assert (counts[p == 0] == 0).all(), "a transition the chain does not allow occurred"
    sigma = np.sqrt(p * (1 - p) / n)
    assert (np.abs(empirical - p) <= 5 * sigma + 1e-12).all()
    assert np.allclose(src.transition_matrix().sum(1), 1)


def test_background_entropy_is_the_floor_of_a_perfect_bigram_model():
    src = MarkovSource(BackgroundConfig(vocab_size=10, branching=4, zipf=1.0), seed=0)
    p = src.transition_matrix()
    seqs = src.sample(np.random.default_rng(1), 500, 40)
    nll = -np.log(p[seqs[:, :-1], seqs[:, 1:]]).mean()
    assert abs(nll - src.entropy()) < 0.02
