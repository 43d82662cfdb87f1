"""Every dataset of a run reads well in xarray: CF conventions, one name per quantity,
one meaning per dimension, relative paths, declared sentinels."""

import os

import numpy as np
import pytest
import xarray as xr

import mechrare
from mechrare.checkpoints.datasets import check_conventions
from mechrare.checkpoints import open_dataset


@pytest.fixture(scope="module")
def datasets(tiny_run):
    mechrare.analyze(tiny_run.path, progress=False)  # resumes whatever other tests computed
    return mechrare.open_run(tiny_run.path).datasets


def test_every_analysis_is_there(datasets):
    assert set(datasets) == {"metrics", "probes", "sae", "neurons", "interference", "retention", "ablation"}


def test_cf_attributes_and_relative_paths(datasets, tiny_run):
    for name, ds in datasets.items():
        assert ds.attrs["Conventions"] == "CF-1.10", name
        assert ds.attrs["run"] == ("." if name == "metrics" else ".."), name
        for var in ds.data_vars.values():
            assert var.attrs.get("long_name"), (name, var.name)
            if var.dtype.kind in "biufc":
                assert "units" in var.attrs, (name, var.name)
        for obj in [ds, *ds.variables.values()]:
            for key, value in obj.attrs.items():
                text = str(value)
                assert str(tiny_run.path) not in text and not os.path.isabs(text), (name, key, text)
        for coord in ("n_params", "step", "tokens", "share"):
            if coord in ds.coords:
                assert ds[coord].attrs.get("long_name") and ds[coord].attrs.get("units") == "1", (name, coord)


def test_one_name_per_quantity_and_one_meaning_per_dimension(datasets):
    for name, ds in datasets.items():
        assert "frequency" not in ds.variables, name  # the task's share is `share` everywhere
        if "task" in ds.dims and name != "retention":
            assert "share" in ds.coords, name
    assert "layer" in datasets["probes"].dims and "layer" in datasets["sae"].dims  # residual depths
    assert "block" in datasets["neurons"].dims and "layer" not in datasets["neurons"].dims
    assert datasets["probes"].layer.attrs["long_name"].startswith("residual-stream depth")
    shares = {name: ds.share.sel(task="compare:4").item() for name, ds in datasets.items() if "share" in ds.coords}
    assert len(set(shares.values())) == 1, shares


def test_sentinels_are_declared(datasets):
    owner = datasets["neurons"].owner
    assert owner.attrs["flag_values"] == -1 and owner.attrs["flag_meanings"] == "unowned"
    assert int(owner.min()) >= -1


def test_a_dataset_without_descriptions_is_refused():
    ds = xr.Dataset({"x": (("a",), np.zeros(2))})
    with pytest.raises(ValueError, match="'x' has no long_name or units"):
        check_conventions(ds)


def test_an_unreadable_dataset_is_one_line(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file")
    with pytest.raises(mechrare.RunFolderError, match="unreadable dataset"):
        open_dataset(bad)


def small_dataset():
    ds = xr.Dataset({"x": (("step",), np.arange(50, dtype=np.float64)), "name": (("step",), np.array([f"t{i}" for i in range(50)]))},
                    coords={"step": np.arange(50)})
    ds["x"].attrs.update(long_name="x", units="1")
    ds["name"].attrs.update(long_name="a label")
    return ds


def test_a_dataset_carries_its_checksum_and_reads_back_verified(tmp_path):
    from mechrare.checkpoints.datasets import CHECKSUM_ATTR, check_dataset, content_sha256, write_dataset

    path = tmp_path / "x.nc"
    write_dataset(small_dataset(), path)
    back = open_dataset(path)
    assert back.attrs[CHECKSUM_ATTR] == content_sha256(back) and check_dataset(path) is None
    write_dataset(back, tmp_path / "again.nc")  # a dataset read back writes a fresh checksum of its own
    assert check_dataset(tmp_path / "again.nc") is None


def test_a_changed_value_that_still_decodes_is_named(tmp_path):
    """A flipped bit in a value (an uncompressed variable here) is caught by the checksum, not used."""
    import netCDF4

    from mechrare.checkpoints.datasets import write_dataset

    path = tmp_path / "x.nc"
    write_dataset(small_dataset(), path)
    with netCDF4.Dataset(path, "a") as nc:  # as a bit flip in the file would: the value changes, the file reads
        nc.variables["x"][7] = 7.000000000000001
    with pytest.raises(mechrare.RunFolderError, match="damaged dataset"):
        open_dataset(path)
    assert open_dataset(path, verify=False).x.values[7] != 7


def test_a_dataset_from_before_checksums_reads_and_is_reported(tmp_path):
    from mechrare.checkpoints.datasets import check_dataset

    path = tmp_path / "old.nc"
    small_dataset().to_netcdf(path, engine="netcdf4")
    assert open_dataset(path).x.values[3] == 3
    assert "written before checksums" in check_dataset(path)
