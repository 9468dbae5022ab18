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
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from studies import io

CellFunc = Callable[..., xr.Dataset]

# HDF5 (under netCDF4) is not thread-safe: threaded workers in one process must not write
# files at the same time (concurrent writes crash the process with a bus error).
_WRITE_LOCK = threading.Lock()


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


def cache_dir(study: str, config: Any, not_cell: set[str], folder: str | None) -> Path:
    """The cache folder of a study's finished cells: ``folder`` (else $RELU_GDLN_CACHE, else
    ~/.cache/relu-gdln) / study / fingerprint of the Config fields that shape a cell."""
    base = folder or os.environ.get("RELU_GDLN_CACHE") or Path.home() / ".cache" / "relu-gdln"
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in not_cell}
    return Path(base) / study / fingerprint(settings)


def fingerprint(settings: Mapping[str, Any]) -> str:
    """Short hash of the settings that determine a cell's result and of the code's git commit
    (names a cache folder, so cells computed by other code are never reused)."""
    keyed = {"settings": dict(settings), "code": io.git_commit()}
    return hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _run_cell(func: CellFunc, cell: dict[str, Any], fixed: dict[str, Any], path: str) -> str:
    """Worker side: compute one cell and write it atomically; returns the file path."""
    ds = func(**cell, **fixed)
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"cell function returned {type(ds).__name__}, expected xarray.Dataset")
    with _WRITE_LOCK:
        io.save_dataset(ds, path)
    return path


def _client(scheduler: str | None, n_workers: int, processes: bool) -> tuple[Any, Any]:
    """(client, cluster): a client on an existing scheduler (cluster None), or on a new
    LocalCluster that the caller closes."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


def _with_cell_coords(ds: xr.Dataset, cell: Mapping[str, Any]) -> xr.Dataset:
    return ds.expand_dims({dim: [value] for dim, value in cell.items()})


def run_sweep(
    func: CellFunc,
    grid: Mapping[str, Sequence[Any]],
    cache_dir: str | Path,
    fixed: Mapping[str, Any] | None = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    processes: bool = False,
) -> SweepResult:
    """Run every unfinished cell of ``grid`` on dask.distributed and combine all cells.

    Args:
        func: module-level cell function ``func(**cell, **fixed) -> Dataset`` (importable by
            name, so process workers and remote schedulers can run it).
        grid: ``{dim: values}``; the combined Dataset has these dims, in this order, first.
        cache_dir: folder of finished cells. Use one folder per set of ``fixed`` settings
            (e.g. named by :func:`fingerprint`): files are matched by cell only.
        fixed: keyword arguments shared by all cells.
        scheduler: address of an existing dask scheduler; None starts a LocalCluster.
        n_workers: LocalCluster workers (one thread each).
        processes: LocalCluster with worker processes (True) or threads in this process.

    Returns:
        SweepResult with the Dataset (failed cells NaN) and the computed / reused / failed
        cells. Raises RuntimeError if every cell failed.
    """
    from distributed import as_completed

    fixed = dict(fixed or {})
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    cells = grid_cells(grid)
    paths = {cell_id(c): cache / f"{cell_id(c)}.nc" for c in cells}
    todo = [c for c in cells if not paths[cell_id(c)].is_file()]
    result = SweepResult(dataset=xr.Dataset())
    result.reused = [c for c in cells if paths[cell_id(c)].is_file()]
    if todo:
        client, cluster = _client(scheduler, n_workers, processes)
        try:
            futures = {
                client.submit(
                    _run_cell, func, c, fixed, str(paths[cell_id(c)]), pure=False,
                    key=f"cell-{cell_id(c)}-{fingerprint({'dir': str(cache)})}",
                ): c
                for c in todo
            }  # fmt: skip
            for future in as_completed(futures):
                cell = futures[future]
                if future.status == "finished":
                    result.computed.append(cell)
                else:
                    err = future.exception()
                    tb = "".join(traceback.format_exception(err)[-3:]).strip()
                    result.failures.append(CellFailure(cell, f"{type(err).__name__}: {err}\n{tb}"))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    done = [c for c in cells if paths[cell_id(c)].is_file()]
    if not done:
        msgs = "; ".join(f"{f.cell}: {f.error.splitlines()[0]}" for f in result.failures)
        raise RuntimeError(f"every cell of the sweep failed: {msgs}")
    parts = [(c, io.load_dataset(paths[cell_id(c)])) for c in done]
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
