import pytest

from mechrare.config import (
    RunConfig,
    apply_overrides,
    dump_toml,
    load_config,
    parse_value,
    preset_names,
)
from mechrare.errors import ConfigError


def base() -> dict:
    return {
        "seed": 1,
        "mixture": {"tasks": [{"family": "facts", "complexity": 4, "frequency": 1.0}]},
        "ladder": {"models": ["d8-l1"]},
        "train": {"steps": 10},
    }


def test_defaults_and_nested_types():
    cfg = RunConfig.from_dict(base())
    assert cfg.seed == 1
    assert cfg.mixture.tasks[0].name == "facts:4"
    assert cfg.mixture.tasks[0].placement == "inject"
    assert cfg.train.steps == 10 and cfg.train.lr == 1e-3
    assert cfg.checkpoints.log_spaced is True


def test_custom_model_entry_and_schedule():
    data = base()
    data["ladder"]["models"] = ["d8-l1", {"d_model": 12, "n_layers": 1, "n_heads": 3}]
    data["mixture"]["tasks"][0]["schedule"] = {"every": 5}
    cfg = RunConfig.from_dict(data)
    assert cfg.ladder.models[1].d_model == 12
    assert cfg.mixture.tasks[0].schedule.every == 5


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.update(bogus=1), "bogus: unknown key"),
        (lambda d: d["train"].update(stepz=3), "train.stepz: unknown key"),
        (lambda d: d["train"].update(steps=0), "train.steps: must be >= 1"),
        (lambda d: d["train"].update(loss_chunk=0), "train.loss_chunk: must be >= 1"),
        (lambda d: d["mixture"]["tasks"][0].update(frequency=-0.1), "mixture.tasks[0].frequency: must be finite and > 0"),
        (lambda d: d["mixture"]["tasks"][0].update(extra=1), "mixture.tasks[0].extra: unknown key"),
        (lambda d: d["mixture"]["tasks"][0].pop("family"), "mixture.tasks[0].family: required key is missing"),
        (lambda d: d["mixture"]["tasks"][0].update(placement="middle"), "mixture.tasks[0].placement"),
        (lambda d: d["train"].update(lr="fast"), "train.lr: expected a number"),
        (lambda d: d["train"].update(device="tpu"), "train.device"),
        (lambda d: d["checkpoints"].update(log_spaced="yes"), "checkpoints.log_spaced: expected true or false"),
        (lambda d: d["ladder"].update(models=[{"d_model": 10, "n_layers": 1, "n_heads": 3}]), "ladder.models[0].n_heads"),
        (lambda d: d["mixture"].update(tasks=[]), "mixture.tasks: needs at least one task"),
        (lambda d: d["mixture"]["tasks"].append(dict(d["mixture"]["tasks"][0])), "appears twice"),
    ],
)
def test_bad_values_name_the_key(mutate, key):
    data = base()
    data.setdefault("checkpoints", {})
    mutate(data)
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(data)
    assert key in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides():
    data = apply_overrides(base(), ["train.steps=20", "mixture.tasks.0.frequency=0.5", "train.device=cpu"])
    cfg = RunConfig.from_dict(data)
    assert cfg.train.steps == 20 and cfg.mixture.tasks[0].frequency == 0.5 and cfg.train.device == "cpu"
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides(base(), ["train.steps"])
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides(base(), ["mixture.tasks.3.frequency=1"])
    with pytest.raises(ConfigError, match="train.stepz: unknown key"):
        RunConfig.from_dict(apply_overrides(base(), ["train.stepz=1"]))


def test_parse_value():
    assert parse_value("3") == 3 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("[1, 2]") == [1, 2] and parse_value("cpu") == "cpu"


def test_presets_load_and_toml_round_trip(tmp_path):
    assert {"quickstart", "tiny"} <= set(preset_names())
    for name in preset_names():
        _, cfg = load_config(name)
        path = tmp_path / f"{name}.toml"
        path.write_text(dump_toml(cfg))
        _, again = load_config(str(path))
        assert again == cfg


def test_unknown_source():
    with pytest.raises(ConfigError, match="neither a TOML file nor a preset"):
        load_config("no-such-preset")
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("missing.toml")


def test_upsample_override_and_interventions():
    data = apply_overrides(base(), ["mixture.upsample.facts:4=10"])
    cfg = RunConfig.from_dict(data)
    assert cfg.mixture.upsample == {"facts:4": 10.0}
    data = base()
    data["ladder"]["interventions"] = [{"model": "d8-l1", "upsample": {"facts:9": 3}}]
    with pytest.raises(ConfigError, match=r"ladder.interventions\[0\].upsample.facts:9: no such task"):
        RunConfig.from_dict(data)
    data["ladder"]["interventions"] = [{"model": "d8-l1", "upsample": {}}]
    with pytest.raises(ConfigError, match=r"ladder.interventions\[0\].upsample: name at least one task"):
        RunConfig.from_dict(data)
    data["ladder"]["interventions"] = [{"model": "d8-l1", "upsample": {"facts:4": 3}, "colour": 1}]
    with pytest.raises(ConfigError, match=r"ladder.interventions\[0\].colour: unknown key"):
        RunConfig.from_dict(data)


@pytest.mark.parametrize("text, message", [
    ("", "mixture.tasks: needs at least one task"),
    ('[mixture]\ntasks = [{ family = "facts", complexity = 8, frequency = 0.3 }]\n', "ladder.models: needs at least one model"),
    ('seed = 99999999999999999999\n[mixture]\ntasks = [{ family = "facts", complexity = 8, frequency = 0.3 }]\n[ladder]\nmodels = ["d8-l1"]\n',
     r"seed: must be in \[0, 2\*\*63\)"),
    ('[mixture]\ntasks = [{ family = "facts", complexity = 8, frequency = inf }]\n[ladder]\nmodels = ["d8-l1"]\n',
     r"mixture.tasks\[0\].frequency: must be finite and > 0, got inf"),
])
def test_configs_that_would_train_nothing_or_overflow_are_refused(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_non_utf8_config_and_setting_under_a_value_are_one_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"--set train.steps.x=5: train.steps is a value, not a table"):
        load_config("tiny", ["train.steps.x=5"])
