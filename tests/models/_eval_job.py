"""A torchrun job for test_evaluate.py (gloo, CPU): a small OLMo-2 model sharded with FSDP2 over the
job evaluates eval sets of uneven sizes with each process on its share of the rows; every process
writes its result, the rows its forwards saw, the sets' and the background's row counts and the batch size, and the result of the whole model in this process alone
(the reference) to ``FOLDER/rank<r>.json``."""

import gc
import json
import sys
from pathlib import Path

import numpy as np
import torch

from mechrare.data.instances import Instances
from mechrare.models.evaluate import evaluate_sets
from mechrare.models.ladder import ModelShape, build_model, olmo2_config
from mechrare.ranks import SINGLE, from_env, process_group
from mechrare.training.distributed import shard

BATCH = 2
SIZES = (7, 2, 5)  # rows per eval set: uneven over 2 and 3 processes, and one set with fewer rows than processes


def inputs():
    rng = np.random.default_rng(0)
    sets = [Instances(f"task{k}", rng.integers(0, 32, size=(n, 6)), n_prompt=4) for k, n in enumerate(SIZES)]
    return sets, rng.integers(0, 32, size=(5, 9))


def run(folder: Path) -> None:
    job = from_env()
    torch.set_num_threads(1)
    sets, background = inputs()
    config = olmo2_config(ModelShape("d16-l2", 16, 2, 2, 32), 32, 16, 0, 1)
    reference = evaluate_sets(build_model(config, 3), sets, background, torch.device("cpu"), batch_size=BATCH, dist=SINGLE)
    with process_group(job):
        model = shard(build_model(config, 3), job, torch.device("cpu"))
        seen = []
        model.register_forward_pre_hook(lambda m, args, kwargs: seen.append(int(kwargs["input_ids"].shape[0])), with_kwargs=True)
        result = evaluate_sets(model, sets, background, torch.device("cpu"), batch_size=BATCH, dist=job)
        (folder / f"rank{job.rank}.json").write_text(json.dumps({"result": result, "reference": reference, "rows": seen,
                                                                       "sizes": [*SIZES, len(background)], "batch": BATCH}))
        del model
        gc.collect()


if __name__ == "__main__":
    run(Path(sys.argv[1]))
