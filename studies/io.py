"""Result files: provenance attrs, atomic netCDF writes, and loading.

Every study result is one netCDF file ``OUT/<study>/<UTC timestamp>.nc`` with figures (PNG)
beside it. Files are written to a temporary name in the same folder and renamed, so an
interrupted run never leaves a half-written result (DESIGN.md, "Datasets").
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as _dt
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

REQUIRED_ATTRS = ("study", "created", "git_commit", "config", "versions", "command")
_PACKAGES = ("torch", "numpy", "scipy", "sympy", "xarray", "netCDF4", "matplotlib", "scikit-learn")


_SCRATCH: list[Path] = []


def scratch_path(name: str) -> Path:
    """A fresh path for a streamed array that a study's Dataset reads lazily.

    Large per-sample tensors are streamed to such files while a run goes on, then opened
    lazily into the returned Dataset, so saving it copies them chunk by chunk. The files are
    removed by :func:`cleanup_scratch` (called by the CLI after saving, and at exit).
    """
    folder = Path(tempfile.mkdtemp(prefix="relu_gdln_stream_"))
    _SCRATCH.append(folder)
    return folder / name


def cleanup_scratch() -> None:
    """Delete every scratch file made by :func:`scratch_path` in this process."""
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


atexit.register(cleanup_scratch)


def utc_timestamp() -> str:
    """Current UTC time as ``YYYYmmddTHHMMSSffffffZ`` (sortable, safe in file names)."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the source tree this package runs from (``-dirty`` if it has uncommitted
    changes), or ``"unknown"``; read once per process."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=here,
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers."""
    found = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def config_json(config: Any) -> str:
    """A study Config (frozen dataclass) as JSON."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)


def provenance_attrs(study: str, config: Any, command: str | None = None) -> dict[str, str]:
    """The netCDF-safe provenance attrs every study Dataset carries (DESIGN.md)."""
    return {
        "study": study,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "config": config_json(config),
        "versions": json.dumps(versions(), sort_keys=True),
        "command": command if command is not None else " ".join(sys.argv),
    }


def check_dataset(ds: xr.Dataset) -> None:
    """Raise ValueError unless every variable and coordinate has ``long_name`` and ``units`` and the
    provenance attrs are present and netCDF-safe (strings and numbers only)."""
    missing = [
        name
        for name, var in {**ds.data_vars, **ds.coords}.items()
        if var.ndim > 0 and not {"long_name", "units"} <= set(var.attrs)
    ]
    if missing:
        raise ValueError(f"variables without long_name/units: {sorted(map(str, missing))}")
    absent = [key for key in REQUIRED_ATTRS if key not in ds.attrs]
    if absent:
        raise ValueError(f"Dataset lacks provenance attrs {absent}")
    for key, value in ds.attrs.items():
        if not isinstance(value, str | int | float | np.integer | np.floating):
            raise ValueError(f"attr {key!r} is {type(value).__name__}; netCDF needs str or number")


def _encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """zlib compression for float variables (W_eff snapshots compress poorly but losslessly)."""
    enc: dict[str, dict[str, Any]] = {}
    for name, var in ds.data_vars.items():
        if var.dtype.kind == "f" and var.size > 10_000:
            enc[str(name)] = {"zlib": True, "complevel": 1}
    return enc


def save_dataset(ds: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` to ``path`` atomically: temporary name in the same folder, then rename.

    If writing fails or is interrupted, the temporary file is removed and no file appears at
    ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=_encoding(ds))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def open_result(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a saved result lazily (variables are read when used); use as a context manager."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}")
    return xr.open_dataset(path)


def load_dataset(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a saved result fully into memory (so the file is not held open)."""
    with open_result(path) as ds:
        return ds.load()


def config_from_attrs(ds: xr.Dataset) -> Mapping[str, Any]:
    """The run's Config fields as a dict, read back from the ``config`` attr."""
    return json.loads(ds.attrs.get("config", "{}"))


def finalize(ds: xr.Dataset, study: str, config: Any) -> xr.Dataset:
    """Attach provenance attrs to a study's Dataset and check it is self-describing."""
    ds.attrs.update(provenance_attrs(study, config))
    check_dataset(ds)
    return ds
