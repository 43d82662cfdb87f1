"""The per-checkpoint driver on an in-memory series: step selection, resume parts keyed by
settings and weights, stale parts, inputs of the next checkpoint, and bad arguments."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mechrare.analyses.driver import PerCheckpoint
from mechrare.checkpoints import CheckpointSeries, open_dataset
from mechrare.checkpoints.datasets import series_coords
from mechrare.errors import ConfigError
from mechrare.runs import Context


class FakeSeries(CheckpointSeries):
    """Two models with a few steps; the 'weights' are just fingerprints we control."""

    def __init__(self, seeds=(0,)):
        self.prints = {("a", s, k): f"a{s}/{k}" for s in (0, 1, 2, 4) for k in seeds}
        self.prints |= {("b", s, k): f"b{s}/{k}" for s in (0, 2, 4) for k in seeds[:1]}  # b: the first seed only
        self._seeds = list(seeds)

    def models(self):
        return ["a", "b"]

    def seeds(self, model=None):
        return [k for k in self._seeds if model is None or any(m == model and kk == k for m, _, kk in self.prints)]

    def steps(self, model, seed=0):
        return sorted(s for m, s, k in self.prints if m == model and k == seed)

    def n_params(self, model):
        return {"a": 10, "b": 20}[model]

    def tokens_per_step(self):
        return 8

    def path(self, model, step, seed=0):
        return Path("/nonexistent") / model / str(seed) / str(step)

    def fingerprint(self, model, step, seed=0):
        return self.prints[(model, step, seed)]

    def verify(self, model, step, seed=0):
        pass


@dataclass
class CountConfig:
    scale: float = 1.0
    label: str = "x"  # changes only the assembly
    device: str = "cpu"


class Count(PerCheckpoint):
    """x = scale * step, and the next analysed step (the interval's end), counting computes."""

    name = "count"
    config_class = CountConfig
    part_ignore = ("device", "label")
    needs_tasks = False

    def __init__(self):
        self.calls = []

    def inputs(self, model, step, steps):
        i = steps.index(step)
        return steps[i : i + 2]

    def compute(self, ctx, cfg, state, ckpt, device, steps):
        self.calls.append((ckpt.model, ckpt.step) if ckpt.seed == 0 else (ckpt.model, ckpt.step, ckpt.seed))
        i = steps.index(ckpt.step)
        return {"x": np.array(cfg.scale * ckpt.step + 100 * ckpt.seed), "next": np.array(steps[i + 1] if i + 1 < len(steps) else -1)}

    def assemble(self, ctx, cfg, state, parts):
        models = list(parts)
        steps = sorted({s for per in parts.values() for s in per})
        x = np.full((len(models), len(steps)), np.nan)
        nxt = np.full((len(models), len(steps)), np.nan)
        for mi, m in enumerate(models):
            for s, p in parts[m].items():
                x[mi, steps.index(s)], nxt[mi, steps.index(s)] = p["x"], p["next"]
        ds = xr.Dataset({"x": (("model", "step"), x), "next": (("model", "step"), nxt)}, coords=series_coords(ctx.series, models, steps))
        ds["x"].attrs.update(long_name=f"scaled step ({cfg.label})", units="1")
        ds["next"].attrs.update(long_name="next analysed step", units="1")
        return ds


@pytest.fixture
def ctx(tmp_path):
    return Context(FakeSeries(), None, tmp_path)


def test_resume_settings_and_weights(ctx):
    a = Count()
    ds = a.run(ctx, CountConfig(), progress=False)
    assert len(a.calls) == 7 and list(ds.step.values) == [0, 1, 2, 4] and ds.x.dims == ("model", "seed", "step")
    assert np.isnan(ds.x.sel(model="b", seed=0, step=1)) and float(ds.x.sel(model="a", seed=0, step=4)) == 4
    assert open_dataset(ctx.analysis_path("count")).equals(ds)
    assert ds.attrs["run"] == ".." and ds.attrs["Conventions"] == "CF-1.10"
    # a rerun computes nothing; a setting that only changes the assembly computes nothing either
    b = Count()
    again = b.run(ctx, CountConfig(label="y"), progress=False)
    assert b.calls == [] and again.x.equals(ds.x) and again.x.attrs["long_name"] == "scaled step (y)"
    # a setting that changes the parts starts afresh in its own folder
    c = Count()
    c.run(ctx, CountConfig(scale=2.0), progress=False)
    assert len(c.calls) == 7
    assert len(list((ctx.folder / "analyses" / "count.parts").iterdir())) == 2


def test_a_new_part_version_does_not_reuse_older_parts(ctx):
    Count().run(ctx, CountConfig(), progress=False)

    class Count2(Count):
        part_version = 2  # compute returns other numbers now

    newer = Count2()
    newer.run(ctx, CountConfig(), progress=False)
    assert len(newer.calls) == 7
    assert Count().parts_dir(ctx, CountConfig()) != newer.parts_dir(ctx, CountConfig())
    again = Count2()
    again.run(ctx, CountConfig(), progress=False)
    assert again.calls == []


def test_new_weights_recompute_their_part_and_the_previous_interval(ctx):
    a = Count()
    a.run(ctx, CountConfig(), progress=False)
    ctx.series.prints[("a", 2, 0)] = "a2-retrained"
    b = Count()
    b.run(ctx, CountConfig(), progress=False)
    assert sorted(b.calls) == [("a", 1), ("a", 2)]  # step 2's own part, and step 1's interval 1 -> 2
    parts = ctx.folder / "analyses" / "count.parts"
    (folder,) = parts.iterdir()
    assert len(list((folder / "a" / "seed_0").glob("step_2-*.npz"))) == 1  # the stale part was removed


def test_step_and_model_selection(ctx):
    a = Count()
    ds = a.run(ctx, CountConfig(), models=["a"], steps=[0, 2, 4], progress=False)
    assert list(ds.model.values) == ["a"] and list(ds.step.values) == [0, 2, 4]
    assert list(ds.next.sel(model="a", seed=0).values) == [2, 4, -1]  # intervals run between analysed steps
    with pytest.raises(ConfigError, match="models: no model 'c' in this series; models: a, b"):
        Count().run(ctx, CountConfig(), models=["c"], progress=False)
    with pytest.raises(ConfigError, match=r"count: nothing to analyse: no model has steps \[3\]"):
        Count().run(ctx, CountConfig(), steps=[3], progress=False)


def test_seeds_are_analysed_one_by_one_and_stacked(tmp_path):
    ctx = Context(FakeSeries(seeds=(0, 3)), None, tmp_path)
    a = Count()
    ds = a.run(ctx, CountConfig(), progress=False)
    assert ds.x.dims == ("model", "seed", "step") and list(ds.seed.values) == [0, 3]
    assert len(a.calls) == 4 + 3 + 4 and ("a", 4, 3) in a.calls
    assert float(ds.x.sel(model="a", seed=3, step=2)) == 302 and float(ds.x.sel(model="a", seed=0, step=2)) == 2
    assert np.isnan(ds.x.sel(model="b", seed=3)).all()  # b was trained under seed 0 only
    assert list(ds.next.sel(model="a", seed=3).values) == [1, 2, 4, -1]
    assert (tmp_path / "analyses" / "count.parts").is_dir()
    b = Count()
    b.run(ctx, CountConfig(), progress=False)
    assert b.calls == []  # every seed's parts resume


def test_parts_from_worker_processes_equal_the_sequential_ones(tmp_path):
    one, two = Context(FakeSeries(seeds=(0, 3)), None, tmp_path / "one"), Context(FakeSeries(seeds=(0, 3)), None, tmp_path / "two")
    ds1 = Count().run(one, CountConfig(), progress=False, jobs=1)
    ds2 = Count().run(two, CountConfig(), progress=False, jobs=2)
    assert ds2.equals(ds1) and len(list((tmp_path / "two").rglob("*.npz"))) == 11
    again = Count()
    again.run(two, CountConfig(), progress=False, jobs=2)
    assert again.calls == []  # the workers' parts resume like any other


def test_device_errors_name_the_analysis(ctx):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"^count.device: 'cuda' asked for, but torch sees no CUDA device"):
        Count().run(ctx, CountConfig(device="cuda"), progress=False)
    assert not (ctx.folder / "analyses").exists()  # nothing written


def flip_a_value(path):
    """Change one byte of the first array's data inside an npz (zip's CRC or the part's checksum names it)."""
    data = bytearray(path.read_bytes())
    where = data.index(b"NUMPY") + 128 + 2  # the .npy header is padded to 128 bytes; then the values
    data[where] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "truncate", "unchecked", "rewritten"])
def test_a_damaged_part_is_named_and_recomputed(ctx, caplog, damage):
    from mechrare.checkpoints.parts import load_part
    from mechrare.errors import RunFolderError

    first = Count().run(ctx, CountConfig(), progress=False)
    part = next((ctx.folder / "analyses" / "count.parts").rglob("step_2-*.npz"))
    if damage == "flip":
        flip_a_value(part)
    elif damage == "truncate":
        part.write_bytes(part.read_bytes()[:60])
    elif damage == "unchecked":  # a part written before checksums
        with np.load(part) as data:
            np.savez(part.with_suffix(""), **{k: data[k] for k in data.files if k != "__sha256__"})
    else:  # a whole, readable zip whose values changed (its CRCs match, its checksum does not)
        with np.load(part) as data:
            np.savez(part.with_suffix(""), **{k: data[k] + 1 if k == "x" else data[k] for k in data.files})
    with pytest.raises(RunFolderError, match="damaged analysis part|without a checksum"):
        load_part(part)
    rerun = Count()
    with caplog.at_level("WARNING", logger="mechrare"):
        again = rerun.run(ctx, CountConfig(), progress=False)
    assert rerun.calls == [(part.parent.parent.name, 2)]  # only the damaged part, from its checkpoint
    assert str(part) in caplog.text and "recomputing" in caplog.text
    assert again.x.equals(first.x) and load_part(part)["x"] == 2


def test_a_part_checksum_covers_names_dtypes_and_values():
    from mechrare.checkpoints.parts import arrays_sha256

    a = {"x": np.arange(3, dtype=np.int64)}
    assert arrays_sha256(a) == arrays_sha256({"x": np.arange(3, dtype=np.int64)})
    assert arrays_sha256(a) != arrays_sha256({"y": np.arange(3, dtype=np.int64)})
    assert arrays_sha256(a) != arrays_sha256({"x": np.arange(3, dtype=np.int32)})
    assert arrays_sha256(a) != arrays_sha256({"x": np.array([0, 1, 3])})
    assert arrays_sha256(a) != arrays_sha256({"x": np.arange(3, dtype=np.int64).reshape(3, 1)})
