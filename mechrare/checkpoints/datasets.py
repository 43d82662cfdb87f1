"""Datasets on disk: CF conventions, shared coordinates, atomic netCDF writes and verified reads.

Every dataset mechrare writes follows the same rules, so that files join
without glue and read well in xarray:

* ``Conventions = "CF-1.10"``; every data variable has ``long_name`` and
  ``units`` ("1" for counts, fractions and nats: all quantities here are
  dimensionless); sentinels are declared (``flag_values`` / ``flag_meanings``,
  or NaN as ``_FillValue``);
* one name per quantity across files (``share``: the fraction of training
  sequences that carry a task), one meaning per dimension name (``layer``: a
  residual-stream depth, 0 = embeddings; ``block``: a transformer block);
* provenance in attributes: mechrare version, the analysis and its settings,
  and ``run``, the run folder *relative to the file*;
* a checksum: ``mechrare_content_sha256``, the sha256 of every variable's name, dimensions, dtype,
  values and attributes and of the file's other attributes, as read back from the written file.
  :func:`open_dataset` recomputes it, so a changed byte that still decodes is named, not used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from mechrare._version import __version__
from mechrare.atomic import atomic_file
from mechrare.errors import RunFolderError

CONVENTIONS = "CF-1.10"
CHECKSUM_ATTR = "mechrare_content_sha256"

#: attributes of the coordinates shared by every dataset
COORD_ATTRS: dict[str, dict[str, str]] = {
    "model": {"long_name": "model name"},
    "n_params": {"long_name": "parameters of the model", "units": "1"},
    "seed": {"long_name": "training seed (initialisation and data order)", "units": "1"},
    "step": {"long_name": "optimizer updates done (checkpoint step)", "units": "1"},
    "tokens": {"long_name": "training tokens seen", "units": "1"},
    "task": {"long_name": "task name (<family>:<complexity>; background: every non-task token)"},
    "other_task": {"long_name": "task name (second task of a pair)"},
    "share": {"long_name": "share of training sequences that carry the task", "units": "1"},
    "complexity": {"long_name": "task complexity knob", "units": "1"},
    "family": {"long_name": "task family"},
    "layer": {"long_name": "residual-stream depth: 0 = embeddings, l + 1 = after block l", "units": "1"},
    "block": {"long_name": "transformer block (0 = first)", "units": "1"},
    "neuron": {"long_name": "MLP hidden unit within the block", "units": "1"},
    "target": {"long_name": "probe target (<task>/<latent>, or task)"},
    "param_group": {"long_name": "parameter group (embed, layer<l>, head)"},
    "param_kind": {"long_name": "parameter kind (embed, attn, mlp, norm, head), by the architecture's component names"},
    "signal": {"long_name": "retention signal"},
}


def series_coords(series, models: list[str], steps: list[int], seeds: list[int] | None = None) -> dict:
    """The coordinates every run-level dataset shares: model (+ n_params), step (+ tokens),
    and seed where given."""
    per = series.tokens_per_step()
    coords = {
        "model": models,
        "n_params": ("model", np.array([series.n_params(m) for m in models], dtype=np.int64)),
        "step": np.array(steps, dtype=np.int64),
    }
    if seeds is not None:
        coords["seed"] = np.array(seeds, dtype=np.int64)
    if per is not None:
        coords["tokens"] = ("step", np.array(steps, dtype=np.int64) * per)
    return coords


def provenance(analysis: str, config: dict | None = None, **extra) -> dict:
    attrs = {"Conventions": CONVENTIONS, "mechrare_version": __version__, "analysis": analysis}
    if config is not None:
        attrs["analysis_config"] = json.dumps(config, sort_keys=True)
    attrs.update(extra)
    return attrs


def describe(ds, variables: dict[str, tuple[str, str | None]]):
    """Set ``long_name`` and ``units`` of ``ds``'s variables from {name: (long_name, units)}
    (units None: a text variable, which has none)."""
    for name, (long_name, units) in variables.items():
        if name in ds.variables:
            ds[name].attrs["long_name"] = long_name
            if units is not None:
                ds[name].attrs["units"] = units
    return ds


def check_conventions(ds) -> None:
    """Raise ValueError when a data variable lacks long_name, or a numeric one lacks units
    (a programming error: every writer describes its variables)."""
    for name, var in ds.data_vars.items():
        wanted = ("long_name", "units") if var.dtype.kind in "biufc" else ("long_name",)
        missing = [k for k in wanted if k not in var.attrs]
        if missing:
            raise ValueError(f"dataset variable {name!r} has no {' or '.join(missing)}")


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)


def content_sha256(ds) -> str:
    """The sha256 of a dataset's content: each variable's name, dimensions, dtype, shape, values and
    attributes, and the dataset's attributes (except the checksum itself)."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        var = ds.variables[name]
        values = np.asarray(var.values)
        h.update(json.dumps([name, list(map(str, var.dims)), str(values.dtype), list(values.shape)]).encode())
        if values.dtype.kind == "O":
            h.update("\x00".join(map(str, values.ravel())).encode("utf-8", "surrogatepass"))
        else:
            h.update(np.ascontiguousarray(values).tobytes())
        h.update(json.dumps(var.attrs, sort_keys=True, default=_plain).encode())
    attrs = {k: v for k, v in ds.attrs.items() if k != CHECKSUM_ATTR}
    h.update(json.dumps(attrs, sort_keys=True, default=_plain).encode())
    return h.hexdigest()


def write_dataset(ds, path: str | Path, root: str | Path | None = None) -> None:
    """Write ``ds`` as compressed netCDF4, atomically, after finishing its CF attributes, with the
    checksum of what was written (``mechrare_content_sha256``, computed from the file read back).

    ``root``: the run folder; recorded in ``attrs["run"]`` relative to the file."""
    import netCDF4
    import xarray as xr

    path = Path(path)
    ds.attrs.pop(CHECKSUM_ATTR, None)
    ds.attrs.setdefault("Conventions", CONVENTIONS)
    ds.attrs.setdefault("mechrare_version", __version__)
    if root is not None:
        ds.attrs["run"] = os.path.relpath(Path(root).resolve(), path.parent.resolve())
    for name, attrs in COORD_ATTRS.items():
        if name in ds.coords:
            for key, value in attrs.items():
                ds[name].attrs.setdefault(key, value)
    check_conventions(ds)
    encoding = {name: {"zlib": True, "complevel": 4} for name in ds.data_vars}
    with atomic_file(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        with xr.open_dataset(tmp, engine="netcdf4") as back:
            checksum = content_sha256(back.load())
        with netCDF4.Dataset(tmp, "a") as nc:
            nc.setncattr(CHECKSUM_ATTR, checksum)


def open_dataset(path: str | Path, *, verify: bool = True):
    """Read a dataset fully into memory and check its checksum; an unreadable or damaged file is one
    clear line (RunFolderError). A file from before checksums (no ``mechrare_content_sha256``) is read
    as it is; :func:`check_dataset` reports it."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path}: no such dataset")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise RunFolderError(f"{path}: unreadable dataset ({str(exc)[:160]}); delete it and rerun the command that writes it") from None
    if verify and CHECKSUM_ATTR in ds.attrs and str(ds.attrs[CHECKSUM_ATTR]) != content_sha256(ds):
        raise RunFolderError(f"{path}: damaged dataset (its content does not match its {CHECKSUM_ATTR}); "
                             "delete it and rerun the command that writes it")
    return ds


def check_dataset(path: str | Path) -> str | None:
    """What is wrong with the dataset at ``path`` (None: it reads and matches its checksum)."""
    try:
        ds = open_dataset(path)
    except RunFolderError as exc:
        return str(exc)
    if CHECKSUM_ATTR not in ds.attrs:
        return f"{path}: no {CHECKSUM_ATTR} (written before checksums); rerun the command that writes it to add one"
    return None
