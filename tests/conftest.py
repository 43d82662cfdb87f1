"""Shared fixtures: offline settings and one tiny trained run per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from _helpers import small_mixture  # noqa: E402
from mechrare.config import RunConfig, from_dict, load_config  # noqa: E402


@pytest.fixture
def mixture_cfg():
    from mechrare.config import MixtureConfig

    return from_dict(MixtureConfig, small_mixture(), "mixture")


@pytest.fixture(scope="session")
def tiny_config() -> RunConfig:
    return load_config("tiny")[1]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config):
    """The `tiny` preset (3 models x 300 steps), trained once per session."""
    from mechrare.training import train_run

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return train_run(tiny_config, out, name="tiny", progress=False)


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path):
    """A copy of the session's tiny run without its analyses and report, for a test that writes datasets
    of its own (a few models or steps, other settings): the shared run's datasets stay those of a full
    `mechrare analyze`, so later tests find them up to date instead of recomputing them."""
    import shutil

    out = tmp_path / "tiny-copy"
    shutil.copytree(tiny_run.path, out, ignore=shutil.ignore_patterns("analyses", "report"))
    return out


@pytest.fixture(scope="session")
def example_series(tmp_path_factory):
    """``make(architecture, style)`` -> the SERIES.toml of a tiny locally trained series (built once per key)."""
    from mechrare.examples.series import make_example_series

    built = {}

    def make(architecture: str = "gpt_neox", style: str = "step{step}"):
        key = (architecture, style)
        if key not in built:
            folder = tmp_path_factory.mktemp(f"series-{architecture}")
            built[key] = make_example_series(folder, architecture, sizes=(("tiny", 16, 1), ("small", 24, 2)),
                                             steps=(0, 10, 20, 40), style=style)
        return built[key]

    return make
