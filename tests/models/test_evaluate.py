"""Held-out evaluation (mechrare.models.evaluate): against an independent computation in one process,
and under torchrun each process evaluates only its share of the rows, with the same numbers as one
process evaluating them all."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mechrare.data.instances import Instances
from mechrare.models.evaluate import _chunks, evaluate_sets
from mechrare.models.ladder import ModelShape, build_model, olmo2_config
from mechrare.ranks import SINGLE, Dist

JOB = Path(__file__).with_name("_eval_job.py")


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_every_row_once_in_the_same_number_of_batches(world, batch):
    for n in range(1, 23):
        parts = [list(_chunks(n, batch, Dist(rank=r, world=world))) for r in range(world)]
        assert len({len(p) for p in parts}) == 1  # every forward of a sharded model is collective
        rows = [i for p in parts for s, real in p if real for i in range(s.start, s.stop)]
        assert rows == list(range(n))
        assert all(s.stop - s.start <= batch for p in parts for s, _ in p)


def test_one_process_keeps_its_batches():
    assert [(s.start, s.stop, real) for s, real in _chunks(7, 3, SINGLE)] == [(0, 3, True), (3, 6, True), (6, 7, True)]


def test_against_an_independent_computation():
    rng = np.random.default_rng(1)
    sets = [Instances("a", rng.integers(0, 32, size=(7, 6)), n_prompt=4), Instances("b", rng.integers(0, 32, size=(3, 5)), n_prompt=2)]
    background = rng.integers(0, 32, size=(4, 9))
    model = build_model(olmo2_config(ModelShape("d16-l2", 16, 2, 2, 32), 32, 16, 0, 1), 0)
    got = evaluate_sets(model, sets, background, torch.device("cpu"), batch_size=2)
    with torch.no_grad():
        for es in sets:
            logp = torch.log_softmax(model(input_ids=torch.as_tensor(es.input_ids)).logits.double(), -1)
            answers = torch.as_tensor(es.answers)
            picked = logp[:, es.n_prompt - 1 : -1].gather(-1, answers[..., None])[..., 0]
            right = (logp[:, es.n_prompt - 1 : -1].argmax(-1) == answers).all(1)
            assert got["eval"][es.task]["loss"] == pytest.approx(float(-picked.mean()), rel=1e-5)
            assert got["eval"][es.task]["accuracy"] == float(right.double().mean())
        logp = torch.log_softmax(model(input_ids=torch.as_tensor(background)).logits.double(), -1)
        nll = -logp[:, :-1].gather(-1, torch.as_tensor(background)[:, 1:, None]).mean()
        assert got["background_loss"] == pytest.approx(float(nll), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])
def test_under_torchrun_each_process_evaluates_its_share(tmp_path, processes):
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), str(JOB), str(tmp_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(processes)]
    sizes, batch = ranks[0]["sizes"], ranks[0]["batch"]  # the eval sets' rows and the background's, as _eval_job.py made them

    def rows(n, r):  # rank r's contiguous share of ceil(n / processes) rows, in batches; out of rows, row 0 once
        per = -(-n // processes)
        lo, hi = min(n, r * per), min(n, (r + 1) * per)
        return [min(lo + i + batch, hi) - (lo + i) if lo + i < hi else 1 for i in range(0, per, batch)]

    for r, got in enumerate(ranks):
        assert got["result"] == ranks[0]["result"]  # every process returns the same numbers
        assert got["rows"] == [k for n in sizes for k in rows(n, r)]
    assert max(sum(got["rows"]) for got in ranks) <= -(-sum(sizes) // processes) + len(sizes)  # not every row on every rank
    reference, result = ranks[0]["reference"], ranks[0]["result"]
    for task, ref in reference["eval"].items():
        assert result["eval"][task]["accuracy"] == ref["accuracy"]
        assert result["eval"][task]["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert result["background_loss"] == pytest.approx(reference["background_loss"], rel=1e-6)
