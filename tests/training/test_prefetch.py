"""Batches built ahead in a thread: the same batches, errors at their step, the same weights."""

import numpy as np
import pytest
from safetensors.numpy import load_file

from mechrare.checkpoints.run import RunFolder
from mechrare.config import load_config
from mechrare.data.mixture import Mixture
from mechrare.training import train_run
from mechrare.training.prefetch import Prefetcher

SMALL = ["ladder.models=[\"d8-l1\"]", "ladder.interventions=[]", "train.steps=30", "checkpoints.every=10", "train.jobs=1"]


def mixture():
    cfg = load_config("tiny")[1]
    return Mixture(cfg.mixture, cfg.seed)


def test_prefetched_batches_are_the_mixtures_in_order():
    mix = mixture()
    with Prefetcher(mix, 8, 5, 12, depth=3) as ahead:
        for step in range(5, 12):
            ids, labels = ahead.get(step)
            batch = mix.batch(step, 8)
            np.testing.assert_array_equal(ids.numpy(), batch.input_ids)
            np.testing.assert_array_equal(labels.numpy(), batch.labels)
        with pytest.raises(RuntimeError, match="no prefetched batch for step 12"):
            ahead.get(12)
    with Prefetcher(mix, 8, 0, 10) as ahead, pytest.raises(RuntimeError, match="expected step 0, asked for 3"):
        ahead.get(3)


def test_an_error_building_a_batch_is_raised_at_its_step_and_close_stops_the_thread():
    mix = mixture()

    class Broken:
        def batch(self, step, batch_size):
            if step == 3:
                raise ValueError("bad batch 3")
            return mix.batch(step, batch_size)

    ahead = Prefetcher(Broken(), 4, 0, 10)
    for step in range(3):
        ahead.get(step)
    with pytest.raises(ValueError, match="bad batch 3"):
        ahead.get(3)
    ahead.close()
    slow = Prefetcher(mix, 4, 0, 10_000, depth=1)  # blocked on a full queue
    slow.get(0)
    slow.close()
    assert not slow._thread.is_alive()


def test_training_with_and_without_prefetch_gives_the_same_weights(tmp_path):
    runs = {}
    for flag in ("true", "false"):
        runs[flag] = tmp_path / flag
        train_run(load_config("tiny", SMALL + [f"train.prefetch={flag}"])[1], runs[flag], progress=False)
    for step in (10, 30):
        a, b = (load_file(str(RunFolder(r).step_dir("d8-l1", step, 0) / "model.safetensors")) for r in runs.values())
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
