"""Sweeps: a grid of cells run on dask.distributed, resumable, one Dataset at the end.

A sweep is a grid (``{dim: values}``); a cell is one point of the grid. A cell function
``func(**cell, **fixed) -> xr.Dataset`` computes the cell's result without the grid dims (it
may batch seeds or other axes inside). Cells run on a dask.distributed cluster: a LocalCluster
by default, or an existing scheduler when ``scheduler`` gives its address
(e.g. ``tcp://10.0.0.5:8786``).

Every finished cell is written by the worker that computed it, at once, as one small netCDF
file ``<cache_dir>/<cell id>.nc`` (atomic: temporary name, then rename; see
:func:`studies.io.save_dataset`). A sweep started again with the same cache folder loads the
finished cells and computes only the others, so an interrupted sweep loses nothing and
recomputes nothing. A cell that raises is reported (cell and error) and does not stop or lose
the others; its values are NaN in the combined Dataset.

Cache keys. :func:`cache_dir` names the folder by :func:`fingerprint`: a hash of the settings
that shape a cell and of the source code that computes cells (:func:`source_hash`, every
``.py`` file of ``gdln``, ``relu_lens`` and ``studies``). Any edit of that code, even a
comment, gives a new folder, so cells computed by other code are never reused. A cached cell
file that cannot be read (truncated, corrupt) is removed with a warning naming it, and its
cell is computed again.

Claims. Sweeps in several processes may share a cache folder; a cell is computed by one of
them. Before computing a cell, the sweep's own process (not the worker) takes its claim file
``<cell id>.claim``: created with ``O_CREAT | O_EXCL`` (so one process wins) and holding the
owner's ``<pid>@<host>`` (:func:`studies.io.owner_tag`). It is removed once the cell's file
is written (or the cell failed), and when the sweep ends in any way but SIGKILL. A sweep that
finds a cell claimed by a live process polls for the cell's file and reuses it; if the claim
is released without a file (the cell failed there) or its owner is dead (a process of this
host that no longer runs: the claim is stale), it takes the claim over and computes the cell.
A claim of another host counts as live. If the sweep has nothing of its own left to run and no
waited-for cell comes in for ``wait_timeout`` seconds, the cells still waited for are reported
as failed (run the sweep again later to pick them up): a sweep never hangs on a claim. Two
sweeps that find the same stale claim at the same instant may both compute that cell; both
write the same result atomically, so this costs time only. A sweep starts by removing the
partial files of killed processes from its cache folder (:func:`studies.io.remove_stale`).

Writing without the scheduler. xarray picks the lock of a netCDF write by asking dask which
scheduler is active; inside a task of a distributed cluster that question opens a second client
to the scheduler from the worker (1.1 s at its first write, measured) and the write takes a
distributed lock held through the scheduler, a known source of deadlocks when files are written
from tasks. A sweep therefore runs under dask's synchronous scheduler setting (workers of a
LocalCluster started by the sweep inherit it) and its client is not made the default one: a
cell's file is written under a lock of its own process (:data:`_HDF5_LOCK` and xarray's),
never through the scheduler. Cells that compute dask collections run them in their own thread.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import itertools
import json
import logging
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import xarray as xr

from studies import io

CellFunc = Callable[..., xr.Dataset]

# HDF5 (under netCDF4) is not thread-safe: threaded workers and the sweep in one process must
# not read or write files at the same time (concurrent writes crash the process with a bus error).
_HDF5_LOCK = threading.Lock()
CODE_PACKAGES = ("gdln", "relu_lens", "studies")
_POLL = 0.1  # s between looks at running cells and at cells claimed by other sweeps
_EMPTY_CLAIM_GRACE = 10.0  # s: a claim file is empty only between its creation and its write


@dataclass(frozen=True)
class CellFailure:
    """A cell that raised: its grid values and the error (type, message, traceback tail)."""

    cell: dict[str, Any]
    error: str


@dataclass
class SweepResult:
    """The combined Dataset (grid dims first) and what happened to each cell."""

    dataset: xr.Dataset
    computed: list[dict[str, Any]] = field(default_factory=list)
    reused: list[dict[str, Any]] = field(default_factory=list)
    failures: list[CellFailure] = field(default_factory=list)


def grid_cells(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All cells of a grid, in row-major order of the dims as given."""
    dims = list(grid)
    return [dict(zip(dims, values, strict=True)) for values in itertools.product(*grid.values())]


def cell_id(cell: Mapping[str, Any]) -> str:
    """A file-safe, stable name for a cell: readable values plus a hash of their JSON."""
    text = json.dumps(dict(cell), sort_keys=True, default=str)
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    readable = "_".join(f"{k}-{v}" for k, v in cell.items())
    readable = "".join(c if c.isalnum() or c in "-._" else "_" for c in readable)[:80]
    return f"{readable}_{digest}"


def cache_dir(
    study: str,
    config: Any,
    not_cell: set[str],
    folder: str | None,
    packages: Sequence[str] = CODE_PACKAGES,
) -> Path:
    """The cache folder of a study's finished cells: ``folder`` (else $RELU_GDLN_CACHE, else
    ~/.cache/relu-gdln) / study / :func:`fingerprint` of the Config fields that shape a cell
    and of the source of ``packages``."""
    base = folder or os.environ.get("RELU_GDLN_CACHE") or Path.home() / ".cache" / "relu-gdln"
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in not_cell}
    return Path(base) / study / fingerprint(settings, packages)


@functools.cache
def source_hash(packages: tuple[str, ...] = CODE_PACKAGES) -> str:
    """SHA-1 (hex) of the source of the importable ``packages``: every ``.py`` file under each
    package's folder (found from its ``__file__``), in sorted order of path, as its path
    relative to the folder holding the package and its bytes. Equal for equal sources wherever
    they are installed; different after any edit. Computed once per process per ``packages``
    (call ``source_hash.cache_clear()`` to read the files again)."""
    files: list[tuple[str, Path]] = []
    for name in packages:
        folder = Path(importlib.import_module(name).__file__).resolve().parent
        files += [(p.relative_to(folder.parent).as_posix(), p) for p in folder.rglob("*.py")]
    digest = hashlib.sha1()
    for rel, path in sorted(files):
        data = path.read_bytes()
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def fingerprint(settings: Mapping[str, Any], packages: Sequence[str] = CODE_PACKAGES) -> str:
    """Short hash of the settings that determine a cell's result and of the source code of
    ``packages`` (:func:`source_hash`); names a cache folder, so cells computed by other code
    or other settings are never reused."""
    keyed = {"settings": dict(settings), "code": source_hash(tuple(packages))}
    return hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _run_cell(func: CellFunc, cell: dict[str, Any], fixed: dict[str, Any], path: str) -> str:
    """Worker side: compute one cell and write it atomically; returns the file path."""
    ds = func(**cell, **fixed)
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"cell function returned {type(ds).__name__}, expected xarray.Dataset")
    with _HDF5_LOCK:
        io.save_dataset(ds, path)
    return path


def _read_cell(path: Path) -> xr.Dataset | None:
    """The cell file at ``path`` in memory, or None if there is none; raises
    :class:`studies.io.ResultFileError` if it cannot be read."""
    try:
        with _HDF5_LOCK:
            return io.load_dataset(path, require_provenance=False)
    except FileNotFoundError:
        return None


def _load_claimed(path: Path) -> xr.Dataset | None:
    """The cell file at ``path`` (whose claim this sweep holds) in memory, or None if there is
    none or it cannot be read; an unreadable file is removed with a warning naming it."""
    try:
        return _read_cell(path)
    except io.ResultFileError as err:
        warnings.warn(f"{err}; the file is removed and its cell computed again", RuntimeWarning, 2)
        path.unlink(missing_ok=True)
        return None


def _live_owner(claim: Path) -> str | None:
    """The owner tag of the claim file if it is held by a live owner, else None (no claim, or a
    stale one). An empty claim counts as live for a grace time (its owner is writing it)."""
    try:
        owner = claim.read_text().strip()
        age = time.time() - claim.stat().st_mtime
    except FileNotFoundError:
        return None
    if owner:
        return owner if io.owner_alive(owner) else None
    return "an unknown process" if age < _EMPTY_CLAIM_GRACE else None


def _take_claim(claim: Path, tag: str) -> str | None:
    """Take the claim file for owner ``tag``: None once it is taken (a stale claim is removed
    and taken over), else the tag of the live owner that holds it."""
    while True:
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _live_owner(claim)
            if owner is not None:
                return owner
            claim.unlink(missing_ok=True)
            continue
        try:
            os.write(fd, tag.encode())
        finally:
            os.close(fd)
        return None


def _release_claim(claim: Path, tag: str) -> None:
    """Remove the claim file if ``tag`` holds it (a claim taken over by another is kept)."""
    try:
        if claim.read_text().strip() == tag:
            claim.unlink()
    except FileNotFoundError:
        return


#: the local scheduler serves its health routes even without a dashboard: on a free local
#: port, not on 8787 (which a second sweep, or any dashboard, may hold)
LOCAL_SCHEDULER = {"dashboard_address": "127.0.0.1:0"}


def _client(scheduler: str | None, n_workers: int, processes: bool) -> tuple[Any, Any]:
    """(client, cluster): a client on an existing scheduler (cluster None), or on a new
    LocalCluster that the caller closes."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s", set_as_default=False), None
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        scheduler_kwargs=LOCAL_SCHEDULER,
        silence_logs=logging.ERROR,
    )
    return Client(cluster, set_as_default=False), cluster


def _with_cell_coords(ds: xr.Dataset, cell: Mapping[str, Any]) -> xr.Dataset:
    return ds.expand_dims({dim: [value] for dim, value in cell.items()})


def _error_text(future: Any) -> str:
    """Type, message and traceback tail of a failed cell's task."""
    if future.status != "error":
        return f"RuntimeError: the cell's task ended as {future.status!r}"
    err = future.exception()
    tb = "".join(traceback.format_exception(err)[-3:]).strip()
    return f"{type(err).__name__}: {err}\n{tb}"


def run_sweep(
    func: CellFunc,
    grid: Mapping[str, Sequence[Any]],
    cache_dir: str | Path,
    fixed: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    processes: bool = False,
    wait_timeout: float = 3600.0,
) -> SweepResult:
    """Run every unfinished cell of ``grid`` on dask.distributed and combine all cells.

    Cells whose file is in ``cache_dir`` are reused; a cell claimed by another live sweep is
    waited for and reused, not computed twice (see the module docstring, "Claims").

    Args:
        func: module-level cell function ``func(**cell, **fixed) -> Dataset`` (importable by
            name, so process workers and remote schedulers can run it).
        grid: ``{dim: values}``; the combined Dataset has these dims, in this order, first.
        cache_dir: folder of finished cells. Use one folder per set of ``fixed`` settings
            (e.g. named by :func:`fingerprint`): files are matched by cell only.
        fixed: keyword arguments shared by all cells.
        scheduler: address of an existing dask scheduler; None starts a LocalCluster (only
            when a cell is to be computed).
        n_workers: LocalCluster workers (one thread each).
        processes: LocalCluster with worker processes (True) or threads in this process.
        wait_timeout: seconds this sweep waits, with no cell of its own running, for cells
            claimed by other sweeps without any of them coming in; the cells still waited for
            are then reported as failed.

    Returns:
        SweepResult with the Dataset (failed cells NaN) and the computed / reused (found
        finished, here or from another sweep) / failed cells. Raises RuntimeError if every
        cell failed.
    """
    # the module docstring: no cell file is written through the scheduler
    with dask.config.set(scheduler="synchronous"):
        return _sweep(func, grid, cache_dir, fixed, scheduler, n_workers, processes, wait_timeout)


def _sweep(
    func: CellFunc,
    grid: Mapping[str, Sequence[Any]],
    cache_dir: str | Path,
    fixed: Mapping[str, Any] | None,
    scheduler: str | None,
    n_workers: int,
    processes: bool,
    wait_timeout: float,
) -> SweepResult:
    """The work of :func:`run_sweep`, under its scheduler setting."""
    fixed = dict(fixed or {})
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    io.remove_stale(cache)
    tag = io.owner_tag()
    cells = {cell_id(c): c for c in grid_cells(grid)}
    path = {cid: cache / f"{cid}.nc" for cid in cells}
    claim = {cid: cache / f"{cid}.claim" for cid in cells}
    key_suffix = fingerprint({"dir": str(cache)})
    result = SweepResult(dataset=xr.Dataset())
    loaded: dict[str, xr.Dataset] = {}
    waiting = dict(cells)  # not finished, not claimed by this sweep
    owners: dict[str, str] = {}  # live owner of each cell waited for
    held: set[str] = set()  # claims this sweep holds
    running: dict[Any, str] = {}  # future -> cell id
    client = cluster = None
    idle_since = time.monotonic()  # since when this sweep only waits for other sweeps
    try:
        while waiting or running:
            for cid in list(waiting):
                try:
                    ds = _read_cell(path[cid])
                except io.ResultFileError:
                    ds = None  # unreadable: removed and recomputed under the claim below
                if ds is None:
                    owner = _take_claim(claim[cid], tag)
                    if owner is not None:
                        owners[cid] = owner
                        continue
                    held.add(cid)
                    ds = _load_claimed(path[cid])  # it may have come in meanwhile
                idle_since = time.monotonic()
                cell = waiting.pop(cid)
                if ds is not None:
                    loaded[cid] = ds
                    result.reused.append(cell)
                    if cid in held:
                        _release_claim(claim[cid], tag)
                        held.discard(cid)
                    continue
                if client is None:
                    client, cluster = _client(scheduler, n_workers, processes)
                key = f"cell-{cid}-{key_suffix}"
                future = client.submit(
                    _run_cell, func, cell, fixed, str(path[cid]), pure=False, key=key
                )
                running[future] = cid
            for future in [f for f in running if f.done()]:
                cid = running.pop(future)
                if future.status == "finished":
                    ds = _load_claimed(path[cid])
                    if ds is None:
                        error = f"ResultFileError: the cell's file {path[cid]} cannot be read"
                        result.failures.append(CellFailure(cells[cid], error))
                    else:
                        loaded[cid] = ds
                        result.computed.append(cells[cid])
                else:
                    result.failures.append(CellFailure(cells[cid], _error_text(future)))
                _release_claim(claim[cid], tag)
                held.discard(cid)
            if running:
                idle_since = time.monotonic()
            elif waiting and time.monotonic() - idle_since > wait_timeout:
                for cid, cell in waiting.items():
                    error = (
                        f"TimeoutError: this cell is claimed by {owners[cid]} ({claim[cid]}), "
                        f"which gave no result in {wait_timeout:g} s; run the sweep again to "
                        "reuse it"
                    )
                    result.failures.append(CellFailure(cell, error))
                waiting.clear()
            if waiting or running:
                time.sleep(_POLL)
    finally:
        for cid in held:
            _release_claim(claim[cid], tag)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    if not loaded:
        msgs = "; ".join(f"{f.cell}: {f.error.splitlines()[0]}" for f in result.failures)
        raise RuntimeError(f"every cell of the sweep failed: {msgs}")
    parts = [(cells[cid], loaded[cid]) for cid in cells if cid in loaded]
    result.dataset = combine_cells(parts, grid)
    return result


def combine_cells(
    parts: Sequence[tuple[Mapping[str, Any], xr.Dataset]], grid: Mapping[str, Sequence[Any]]
) -> xr.Dataset:
    """One Dataset from (cell, cell Dataset) pairs: grid dims first, in the grid's order,
    outer-joined on every other coordinate (values a cell lacks are NaN)."""
    expanded = [_with_cell_coords(ds, cell) for cell, ds in parts]
    combined = xr.merge(
        expanded, compat="no_conflicts", join="outer", combine_attrs="drop_conflicts"
    )
    combined = combined.reindex({dim: list(values) for dim, values in grid.items()})
    for var in combined.variables.values():  # a cell file's encodings (e.g. string widths)
        var.encoding = {}  # would truncate the merged labels when the sweep is saved
    return combined.transpose(*grid, ...)
