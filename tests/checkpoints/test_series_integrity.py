"""series.json: sha256 of every file, one architecture and tokenizer per model, suspect checkpoints."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from mechrare.checkpoints.folders import FolderSeries, discover
from mechrare.checkpoints.series_integrity import OUT_OF_PLACE, scan, scan_model
from mechrare.checkpoints.series_spec import read_series_spec
from mechrare.errors import ChecksumError, ConfigError


def copy_series(example_series, tmp_path, architecture="gpt_neox"):
    src = example_series(architecture).parent
    dst = tmp_path / "s"
    shutil.copytree(src, dst)
    return dst / "SERIES.toml"


def steps_of(toml, model="small"):
    spec = read_series_spec(toml)
    return discover(next(m for m in spec.models if m.name == model))


def test_a_trained_series_has_no_suspect_and_every_file_hashed(example_series):
    record = scan({"small": (steps_of(example_series()), 768)}, progress=False)
    entries = record["models"]["small"]["checkpoints"]
    assert list(entries) == ["0", "10", "20", "40"]
    assert not any("suspect" in e for e in entries.values())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(entries["10"]["files"])
    # the rule's margin on a real series: every interior checkpoint is far from being flagged
    for s in ("10", "20"):
        e = entries[s]
        nearer = min(e["distance_prev"], entries[str({"10": 20, "20": 40}[s])]["distance_prev"])
        assert e["distance_skip"] > 2 * OUT_OF_PLACE * nearer


def test_a_duplicated_checkpoint_is_flagged_and_can_be_left_out(example_series, tmp_path):
    toml = copy_series(example_series, tmp_path)
    root = toml.parent / "checkpoints" / "small"
    shutil.copytree(root / "step20", root / "step30")  # a branch serving another step's weights
    record = scan({"small": (steps_of(toml), 0)}, progress=False)
    entries = record["models"]["small"]["checkpoints"]
    assert entries["30"]["suspect"] == "identical weights to step 20"
    assert entries["20"]["suspect"] == "identical weights to step 30"  # which of the two is right is unknown
    assert FolderSeries(record).steps("small") == [0, 10, 20, 30, 40]
    assert FolderSeries(record, exclude_suspect=True).steps("small") == [0, 10, 40]


def walk_series(root, n_steps=12, planted=None, seed=0):
    """{step: folder} of weights on a random walk with drift (training-like), the final weights
    planted under step ``planted`` where given."""
    g = torch.Generator().manual_seed(seed)
    theta = {"w": torch.randn(64, 32, generator=g), "b": torch.randn(32, generator=g)}
    drift = {k: 0.05 * torch.randn_like(v) for k, v in theta.items()}
    states = []
    for _ in range(n_steps):
        states.append({k: v.clone() for k, v in theta.items()})
        theta = {k: v + drift[k] + 0.05 * torch.randn(v.shape, generator=g) for k, v in theta.items()}
    if planted is not None:
        states[planted] = states[-1]
    out = {}
    for i, st in enumerate(states):
        folder = root / f"step{i * 100}"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"architectures": ["X"], "model_type": "x", "vocab_size": 10}))
        save_file(st, str(folder / "model.safetensors"))
        out[i * 100] = folder
    return out


def test_the_out_of_place_rule_fires_on_a_planted_final_model_only(tmp_path):
    for seed in range(5):  # the null: training-like walks, nothing flagged
        record = scan_model("walk", walk_series(tmp_path / f"null{seed}", seed=seed))
        assert not any("suspect" in e for e in record["checkpoints"].values())
    record = scan_model("walk", walk_series(tmp_path / "planted", planted=5))
    flags = {s: e.get("suspect", "") for s, e in record["checkpoints"].items()}
    assert flags["500"].startswith("out of place: steps 400 and 600")
    assert flags["500"].endswith("; identical weights to step 1100")
    assert flags["1100"] == "identical weights to step 500"
    assert [s for s, f in flags.items() if f] == ["500", "1100"]


def test_architecture_or_tokenizer_changing_within_a_model_is_refused(example_series, tmp_path):
    toml = copy_series(example_series, tmp_path)
    root = toml.parent / "checkpoints" / "small"
    cfg = json.loads((root / "step20" / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (root / "step20" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="small: step 20 .* has another architecture than step 0: config.json num_hidden_layers is 3, was 2"):
        scan_model("small", steps_of(toml))
    cfg["num_hidden_layers"] = 2
    (root / "step20" / "config.json").write_text(json.dumps(cfg))
    tok = json.loads((root / "step40" / "tokenizer.json").read_text())
    tok["model"]["vocab"]["zebra"] = len(tok["model"]["vocab"])
    (root / "step40" / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ConfigError, match="small: step 40 .* other tokenizer files than step 0"):
        scan_model("small", steps_of(toml))


def test_a_file_changed_after_recording_fails_verification(example_series, tmp_path):
    toml = copy_series(example_series, tmp_path)
    series = FolderSeries(scan({"small": (steps_of(toml), 0)}, progress=False))
    series.verify("small", 20)
    assert set(series.state_dict("small", 20)) == set(load_file(str(series.path("small", 20) / "model.safetensors")))
    weights = load_file(str(series.path("small", 20) / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3 * torch.ones_like(weights[name])
    save_file(weights, str(series.path("small", 20) / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ChecksumError, match=r"step20/model.safetensors: changed since the series was first opened"):
        series.load("small", 20)
    series.verify("small", 10)
