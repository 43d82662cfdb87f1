"""Helpers shared by tests (importable: tests/ is on pytest's pythonpath)."""


def small_mixture(**overrides) -> dict:
    """A raw mixture table for unit tests (no training)."""
    data = {
        "sequence_length": 24,
        "eval_examples": 32,
        "tasks": [
            {"family": "facts", "complexity": 8, "frequency": 0.2},
            {"family": "compare", "complexity": 5, "frequency": 0.1},
            {"family": "copy", "complexity": 3, "frequency": 0.1},
        ],
        "background": {"vocab_size": 24, "branching": 3},
    }
    data.update(overrides)
    return data
