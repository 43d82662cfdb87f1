"""Task families: latents agree with an independent reading of the tokens; no leakage."""

import numpy as np
import pytest

from mechrare.data.tasks import TASK_FAMILIES
from mechrare.errors import ConfigError

WORDS = [f"w{i}" for i in range(32)]
BUILTINS = ["copy", "reverse", "sparse_parity", "lookup", "compare", "modadd", "facts"]


def make(family, complexity, **params):
    return TASK_FAMILIES.get(family)(complexity, params, 0, WORDS, f"mixture.tasks[0]")


def test_builtins_registered():
    assert set(BUILTINS) <= set(TASK_FAMILIES.names())


@pytest.mark.parametrize(
    "family, complexity", [("copy", 3), ("reverse", 4), ("sparse_parity", 3), ("lookup", 3), ("compare", 6), ("modadd", 2), ("modadd", 3), ("facts", 10)]
)
def test_instances_are_consistent(family, complexity):
    task = make(family, complexity)
    evals = task.eval_examples(50)
    rng = np.random.default_rng(1)
    train = [task.train_sample(rng) for _ in range(300)]
    for ex in evals + train:
        assert len(ex.tokens) == task.length
        assert ex.tokens[0] == task.marker
        assert set(ex.latents) == set(task.targets())
        for name, value in ex.latents.items():
            assert 0 <= value < task.targets()[name]
        assert set(ex.tokens[1:]) <= set(task.tokens()) | set(WORDS)
    if task.split == "halves":
        assert not {e.tokens for e in evals} & {e.tokens for e in train}, "a test instance was trained on"
    else:
        assert {e.tokens for e in evals} == {e.tokens for e in train}


def _sym(tok):
    return int(tok[3:])


def test_copy_and_reverse_answers():
    for family, fn in (("copy", lambda xs: xs), ("reverse", lambda xs: xs[::-1])):
        task = make(family, 4)
        for ex in task.eval_examples(20):
            xs = [_sym(t) for t in ex.tokens[1:5]]
            assert ex.tokens[5] == "SEP"
            assert [_sym(t) for t in ex.answer] == fn(xs)
            assert ex.latents["answer"] == fn(xs)[0] and ex.latents["last_input"] == xs[-1]


def test_sparse_parity_answer_is_parity_of_relevant_bits():
    task = make("sparse_parity", 3, n_bits=10)
    for ex in task.eval_examples(40):
        bits = [int(t[-1]) for t in ex.tokens[1:11]]
        rel = [bits[i] for i in task.relevant]
        assert int(ex.answer[0][-1]) == sum(rel) % 2 == ex.latents["answer"]
        assert ex.latents["partial_1"] == rel[0] and ex.latents["partial_2"] == (rel[0] + rel[1]) % 2


def test_lookup_answer_is_the_queried_value():
    task = make("lookup", 4)
    for ex in task.eval_examples(40):
        pairs = dict(zip(ex.tokens[1:9:2], ex.tokens[2:9:2]))
        query = ex.tokens[10]
        assert ex.tokens[9] == "SEP" and ex.answer[0] == pairs[query]
        assert ex.tokens[1 + 2 * ex.latents["query_position"]] == query


def test_compare_follows_a_hidden_total_order():
    task = make("compare", 6)
    rank = {w: i for i, w in enumerate(task.items)}
    pool = task.train_pool + task.test_pool
    assert len(pool) == 6 * 5 and len(task.train_pool) == 15
    for ex in pool:
        a, b = ex.tokens[1], ex.tokens[2]
        assert ex.answer[0] == ("LT" if rank[a] < rank[b] else "GT")
        assert (ex.latents["rank_a"], ex.latents["rank_b"]) == (rank[a], rank[b])


def test_modadd_sums_modulo_p():
    task = make("modadd", 3, p=5)
    value = {w: i for i, w in enumerate(task.numbers)}
    pool = task.train_pool + task.test_pool
    assert len(pool) == 125
    for ex in pool:
        ops = [value[t] for t in ex.tokens[1:4]]
        assert value[ex.answer[0]] == sum(ops) % 5 == ex.latents["answer"]
        assert ex.latents["partial_2"] == (ops[0] + ops[1]) % 5


def test_facts_are_fixed_and_seeded():
    a, b = make("facts", 12), make("facts", 12)
    assert [e.tokens for e in a.eval_examples(99)] == [e.tokens for e in b.eval_examples(99)]
    c = TASK_FAMILIES.get("facts")(12, {}, 1, WORDS, "t")
    assert not np.array_equal(a.mapping, c.mapping)


@pytest.mark.parametrize(
    "family, complexity, params, message",
    [
        ("copy", 2, {"alphabet": 1}, "params.alphabet: must be an integer >= 2"),
        ("copy", 2, {"colour": 1}, "params.colour: unknown parameter of copy"),
        ("sparse_parity", 9, {"n_bits": 8}, "complexity: must be <= params.n_bits=8"),
        ("compare", 40, {}, "raise mixture.background.vocab_size"),
        ("modadd", 7, {"p": 11}, "exceeds"),
    ],
)
def test_bad_parameters(family, complexity, params, message):
    with pytest.raises(ConfigError) as err:
        make(family, complexity, **params)
    assert message in str(err.value) and str(err.value).startswith("mixture.tasks[0].")


def test_small_space_caps_the_test_set():
    task = make("copy", 1, alphabet=4)  # 4 instances in all
    assert len(task.eval_examples(100)) == 2
    rng = np.random.default_rng(0)
    assert {task.train_sample(rng).tokens for _ in range(50)}.isdisjoint({e.tokens for e in task.eval_examples(100)})
