"""Result files: provenance attrs, atomic netCDF writes, and loading.

Every study result is one netCDF file ``OUT/<study>/<UTC timestamp>.nc`` with figures (PNG)
beside it. Files are written to a temporary name in the same folder and renamed, so an
interrupted run never leaves a half-written result (docs/design.md, section "Datasets").

Leftovers of killed processes. A partial file is named ``.<name>.tmp<pid>@<host>`` and a
scratch folder ``relu_gdln_stream_<pid>@<host>_<random>``: the owner tag ``<pid>@<host>``
(:func:`owner_tag`) names the process that writes it. A process killed by SIGKILL cannot
remove them, so :func:`remove_stale` removes those whose owner is a process of this host that
is no longer running; it is called on a folder whenever a result is saved into it, by a sweep
on its cache folder, and on the scratch root when a scratch folder is made. Files of a live
process, and of processes on other hosts (whose liveness cannot be checked from here), are
never removed.

Reading. :func:`open_result` and :func:`load_dataset` raise :class:`ResultFileError` (one
line naming the file and the problem) for a file that is not readable netCDF or that lacks
the provenance attrs of a result.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as _dt
import functools
import json
import os
import re
import shutil
import socket
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
SCRATCH_PREFIX = "relu_gdln_stream_"
# host names may hold characters that are not file-safe; '_' is kept out (it ends the tag)
_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"
_TAG = r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9.-]+)"
_PARTIAL = re.compile(rf"\..+\.tmp{_TAG}")
_SCRATCH_DIR = re.compile(rf"{SCRATCH_PREFIX}{_TAG}_.+")


class ResultFileError(ValueError):
    """A file given as a result cannot be read as one; the message is one line naming the file
    and the problem."""


def owner_tag() -> str:
    """``<pid>@<host>`` of this process: names the partial files, scratch folders and sweep
    claims it owns."""
    return f"{os.getpid()}@{_HOST}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID runs on this host (a process of another user counts;
    a zombie counts until its parent reaps it). Off POSIX every PID counts as alive."""
    if pid <= 0:
        return False
    if os.name != "posix":  # os.kill would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    return True


def owner_alive(tag: str) -> bool:
    """False only if ``tag`` is not an owner tag, or names a process of this host that is not
    running: an owner on another host may be alive and counts as alive."""
    match = re.fullmatch(_TAG, tag.strip())
    if match is None:
        return False
    return match["host"] != _HOST or pid_alive(int(match["pid"]))


def partial_path(path: Path) -> Path:
    """The temporary name ``.<name>.tmp<pid>@<host>`` under which ``path`` is written before it
    is renamed (:class:`relu_lens.recorders.EffectiveWeightStream` uses the same pattern)."""
    return path.with_name(f".{path.name}.tmp{owner_tag()}")


def remove_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the partial files (``.<name>.tmp<pid>@<host>``) and scratch folders
    (``relu_gdln_stream_<pid>@<host>_*``) in ``folder`` whose owner is a process of this host
    that is no longer running; returns what was removed.

    Never removes anything of a live process or of another host, nor any other file. A
    missing folder, an entry removed meanwhile by another process, or one this user may not
    remove, is not an error (and is not in the returned list).
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        is_dir = entry.is_dir(follow_symlinks=False)
        match = (_SCRATCH_DIR if is_dir else _PARTIAL).fullmatch(entry.name)
        if match is None or match["host"] != _HOST or pid_alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        try:
            if is_dir:
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def scratch_path(name: str) -> Path:
    """A fresh path for a streamed array that a study's Dataset reads lazily.

    Large per-sample tensors are streamed to such files while a run goes on, then opened
    lazily into the returned Dataset, so saving it copies them chunk by chunk. The files are
    removed by :func:`cleanup_scratch` (called by the CLI after saving, and at exit); the
    folder's name holds :func:`owner_tag`, so if this process is killed the next scratch
    folder made on this host removes it (:func:`remove_stale`).
    """
    root = Path(tempfile.gettempdir())
    remove_stale(root)
    folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{owner_tag()}_", dir=root))
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
    """The netCDF-safe provenance attrs every study Dataset carries (docs/design.md, section
    "Datasets")."""
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
    ``path``; if the process is killed, the next save into the folder removes it
    (:func:`remove_stale`, also run here).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    tmp = partial_path(path)
    try:
        ds.to_netcdf(tmp, engine="netcdf4", encoding=_encoding(ds))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically as PNG (as :func:`save_dataset` does: partial files
    of killed processes in the folder are removed first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    tmp = partial_path(path)
    try:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _reason(err: BaseException) -> str:
    """An error as one line: type and the first line of its message."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def open_result(path: str | os.PathLike[str], require_provenance: bool = True) -> xr.Dataset:
    """Open a saved result lazily (variables are read when used); use as a context manager.

    Raises FileNotFoundError if there is no file at ``path``, and :class:`ResultFileError` if
    it cannot be opened as netCDF (a text file, a truncated file) or, with
    ``require_provenance``, lacks one of :data:`REQUIRED_ATTRS` (a file from elsewhere).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}")
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError) as err:
        raise ResultFileError(
            f"{path} is not a netCDF result file (it cannot be read): {_reason(err)}"
        ) from err
    absent = [key for key in REQUIRED_ATTRS if key not in ds.attrs]
    if require_provenance and absent:
        ds.close()
        raise ResultFileError(
            f"{path} is not a relu-gdln result file: it lacks the provenance attrs {absent}"
        )
    return ds


def load_dataset(path: str | os.PathLike[str], require_provenance: bool = True) -> xr.Dataset:
    """Read a saved result fully into memory (the file is closed on return).

    Raises as :func:`open_result` does, and :class:`ResultFileError` if reading the values
    fails (a damaged file).
    """
    with open_result(path, require_provenance) as ds:
        try:
            return ds.load()
        except (OSError, ValueError, RuntimeError) as err:
            raise ResultFileError(
                f"{path} is not a netCDF result file (its values cannot be read): {_reason(err)}"
            ) from err


def config_from_attrs(ds: xr.Dataset) -> Mapping[str, Any]:
    """The run's Config fields as a dict, read back from the ``config`` attr."""
    return json.loads(ds.attrs.get("config", "{}"))


def finalize(ds: xr.Dataset, study: str, config: Any) -> xr.Dataset:
    """Attach provenance attrs to a study's Dataset and check it is self-describing."""
    ds.attrs.update(provenance_attrs(study, config))
    check_dataset(ds)
    return ds
