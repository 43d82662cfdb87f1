import numpy as np

from _helpers import small_mixture
from mechrare.config import MixtureConfig, from_dict
from mechrare.data import Mixture
from mechrare.data.taskset import MixtureTaskSet
from mechrare.probes.targets import TASK_TARGET, build_probe_data


def mixture():
    data = small_mixture()
    data["tasks"].append({"family": "lookup", "complexity": 2, "frequency": 0.1, "params": {"keys": 4, "values": 4}})
    return Mixture(from_dict(MixtureConfig, data, "mixture"), 0)


def test_targets_split_by_distinct_instance_with_readout_at_last_prompt_token():
    m = mixture()
    data = build_probe_data(MixtureTaskSet(m), examples_per_task=200, train_fraction=0.6)
    names = [t.name for t in data.targets]
    assert names[0] == TASK_TARGET and "lookup:2/answer" in names and "lookup:2/query_position" in names
    assert "facts:8/key" in data.skipped  # 8 facts cannot train an 8-class probe
    rows = [tuple(r) for r in data.ids]
    assert len(set(rows)) == len(rows), "duplicate instance"
    for t in data.targets:
        train_rows = {rows[r] for r in t.rows[t.train]}
        test_rows = {rows[r] for r in t.rows[~t.train]}
        assert not train_rows & test_rows
        assert t.labels.max() < t.n_classes
    lookup = m.task_names.index("lookup:2")
    tgt = next(t for t in data.targets if t.name == "lookup:2/answer")
    for r, label in zip(tgt.rows[:20], tgt.labels[:20]):
        toks = m.vocab.decode(data.ids[r])
        assert toks[data.positions[r]].startswith("key") and data.row_task[r] == lookup
        pairs = dict(zip(toks[1:5:2], toks[2:5:2]))
        assert pairs[toks[data.positions[r]]] == f"val{label}"
