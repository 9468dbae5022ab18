"""Tests of the dask.distributed sweep runner (studies.sweep)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from studies import io, sweep


def toy_cell(a: int, b: float, calls: str, scale: float = 1.0, fail_on: int = -1,
             pause: float = 0.0) -> xr.Dataset:  # fmt: skip
    """A cell: records its call in ``calls`` (a folder), optionally fails or pauses."""
    Path(calls, f"{a}_{b}_{uuid.uuid4().hex}").touch()
    time.sleep(pause)
    if a == fail_on:
        raise ValueError(f"cell a={a} fails on purpose")
    k = np.arange(3)
    return xr.Dataset(
        {
            "value": ("k", scale * (a * 10 + b) + k, {"long_name": "value", "units": "1"}),
            "total": ((), a + b, {"long_name": "a + b", "units": "1"}),
        },
        coords={"k": k},
    )


def calls_in(folder: Path) -> list[str]:
    return sorted(p.name.rsplit("_", 1)[0] for p in folder.iterdir())


GRID = {"a": [1, 2, 3], "b": [0.5, 1.5]}


def test_sweep_on_two_workers_with_a_failing_cell(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    res = sweep.run_sweep(
        toy_cell, GRID, tmp_path / "cache", fixed={"calls": str(calls), "fail_on": 2},
        n_workers=2,
    )  # fmt: skip
    ds = res.dataset
    assert ds.value.dims == ("a", "b", "k")
    assert ds.sizes == {"a": 3, "b": 2, "k": 3}
    assert len(res.computed) == 4 and len(res.failures) == 2
    assert all(f.cell["a"] == 2 and "fails on purpose" in f.error for f in res.failures)
    assert np.isnan(ds.value.sel(a=2)).all()
    np.testing.assert_allclose(ds.value.sel(a=3, b=1.5), 31.5 + np.arange(3))
    np.testing.assert_allclose(ds.total.sel(a=1), [1.5, 2.5])
    # a second run recomputes only the failed cells
    res2 = sweep.run_sweep(toy_cell, GRID, tmp_path / "cache", fixed={"calls": str(calls)})
    assert sorted(c["a"] for c in res2.computed) == [2, 2]
    assert len(res2.reused) == 4
    assert np.isfinite(res2.dataset.value).all()
    assert len(calls_in(calls)) == 8


def scheduler_seen_cell(a: int) -> xr.Dataset:
    """A cell that records which scheduler xarray's netCDF writer sees in its worker, and
    whether that question opened a client from the worker."""
    from distributed import get_worker
    from xarray.backends.locks import get_dask_scheduler

    seen = get_dask_scheduler()
    opened = get_worker()._client is not None
    return xr.Dataset({"threaded": ((), float(seen == "threaded")), "opened": ((), float(opened))})


@pytest.mark.parametrize("processes", [False, True])
def test_cell_files_are_written_without_the_scheduler(tmp_path: Path, processes: bool) -> None:
    """Cell files are written under a lock of the worker's own process: xarray sees the
    synchronous scheduler in the worker, and no client is opened from a worker (inside a
    distributed task xarray would otherwise take a distributed lock through the scheduler,
    which can deadlock). The setting ends with the sweep."""
    import dask

    res = sweep.run_sweep(
        scheduler_seen_cell, {"a": [1, 2]}, tmp_path / "cache", n_workers=2, processes=processes
    )
    assert not res.failures
    np.testing.assert_array_equal(res.dataset.threaded, [1, 1])
    np.testing.assert_array_equal(res.dataset.opened, [0, 0])
    assert dask.config.get("scheduler", None) is None


def test_every_cell_failing_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="every cell"):
        sweep.run_sweep(
            toy_cell, {"a": [2], "b": [0.5]}, tmp_path / "c", fixed={"calls": str(tmp_path),
            "fail_on": 2}, n_workers=1,
        )  # fmt: skip


def test_resume_after_interrupted_sweep(tmp_path: Path, run_and_kill) -> None:
    """Kill a sweep process mid-way; the resumed sweep recomputes nothing and loses nothing."""
    calls, cache = tmp_path / "calls", tmp_path / "cache"
    calls.mkdir()
    grid = {"a": [1, 2, 3, 4, 5, 6], "b": [0.5]}
    tests = str(Path(__file__).parent)
    script = (
        f"import sys; sys.path.insert(0, {tests!r})\n"
        "from test_sweep import toy_cell\n"
        "from studies import sweep\n"
        f"sweep.run_sweep(toy_cell, {grid!r}, {str(cache)!r}, "
        f"fixed={{'calls': {str(calls)!r}, 'pause': 0.6}}, n_workers=2)\n"
    )
    run_and_kill(script, lambda: len(list(cache.glob("*.nc"))) >= 2, 60)
    finished = {p.name for p in cache.glob("*.nc")}
    assert 2 <= len(finished) < 6, "the sweep should have been interrupted part-way"
    before = len(calls_in(calls))
    res = sweep.run_sweep(toy_cell, grid, cache, fixed={"calls": str(calls)}, n_workers=2)
    assert len(res.reused) == len(finished)
    assert len(res.computed) == 6 - len(finished)
    assert len(calls_in(calls)) - before == 6 - len(finished)
    assert {p.name for p in cache.glob("*.nc")} >= finished
    np.testing.assert_allclose(res.dataset.total.sel(b=0.5), np.arange(1, 7) + 0.5)


def test_sweep_on_an_existing_scheduler(tmp_path: Path) -> None:
    from distributed import LocalCluster

    calls = tmp_path / "calls"
    calls.mkdir()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      scheduler_kwargs=sweep.LOCAL_SCHEDULER) as cluster:  # fmt: skip
        res = sweep.run_sweep(
            toy_cell, {"a": [1, 2], "b": [0.5]}, tmp_path / "cache",
            fixed={"calls": str(calls), "scale": 2.0}, scheduler=cluster.scheduler_address,
        )  # fmt: skip
        assert len(cluster.scheduler.workers) == 1  # the cluster was used and is still up
    np.testing.assert_allclose(res.dataset.value.sel(a=2, b=0.5), 2 * 20.5 + 2 * np.arange(3) / 2)


def test_local_cluster_leaves_the_dashboard_port_alone(recwarn) -> None:
    """A sweep's LocalCluster serves its health routes on a free local port: a second sweep, or
    a dashboard on 8787, neither blocks it nor makes it warn."""
    with socket.socket() as held:
        try:
            held.bind(("0.0.0.0", 8787))
        except OSError:
            pass  # something already holds 8787: the same situation
        client, cluster = sweep._client(None, 1, False)
        try:
            assert cluster.scheduler.http_server.port != 8787
        finally:
            client.close()
            cluster.close()
    assert not [w for w in recwarn if "already in use" in str(w.message)]


def test_cell_ids_are_stable_and_distinct() -> None:
    cells = sweep.grid_cells({"n": [8, 16], "mu": [0.1, 0.10000001]})
    ids = [sweep.cell_id(c) for c in cells]
    assert len(set(ids)) == 4
    assert sweep.cell_id({"n": 8, "mu": 0.1}) == sweep.cell_id({"n": 8, "mu": 0.1})
    assert "/" not in "".join(ids)


@dataclass(frozen=True)
class ProbeConfig:
    scale: float = 1.0
    cache_dir: str | None = None


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def this_host() -> str:
    return io.owner_tag().split("@", 1)[1]


def test_code_edit_gives_a_new_cache_key_and_recomputes(tmp_path: Path, monkeypatch) -> None:
    """A comment-only edit of hashed code gives a new cache folder: no stale cell is reused."""
    src = tmp_path / "src"
    package = src / f"sweep_probe_{uuid.uuid4().hex[:8]}"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("SCALE = 1.0\n")
    monkeypatch.syspath_prepend(str(src))
    packages = (package.name,)
    calls = tmp_path / "calls"
    calls.mkdir()
    grid = {"a": [1], "b": [0.5]}
    config = ProbeConfig(cache_dir=str(tmp_path / "cache"))

    def run() -> sweep.SweepResult:
        folder = sweep.cache_dir("probe", config, {"cache_dir"}, config.cache_dir, packages)
        return sweep.run_sweep(toy_cell, grid, folder, fixed={"calls": str(calls)}, n_workers=1)

    assert len(run().computed) == 1
    sweep.source_hash.cache_clear()  # as in a new process, with unchanged code
    assert len(run().reused) == 1
    (package / "__init__.py").write_text("SCALE = 1.0  # a comment\n")
    sweep.source_hash.cache_clear()  # a new process, after the edit
    again = run()
    assert len(again.computed) == 1 and not again.reused
    assert len(calls_in(calls)) == 2


def test_source_hash_covers_the_toolkit_packages() -> None:
    assert sweep.source_hash() == sweep.source_hash(sweep.CODE_PACKAGES)
    assert sweep.source_hash(("studies",)) != sweep.source_hash(("gdln",))
    assert sweep.fingerprint({"x": 1}) != sweep.fingerprint({"x": 1}, ("studies",))


def test_unreadable_cached_cell_is_recomputed_with_a_warning(tmp_path: Path) -> None:
    calls, cache = tmp_path / "calls", tmp_path / "cache"
    calls.mkdir()
    grid = {"a": [1, 2], "b": [0.5]}
    for a in (1, 2):
        io.save_dataset(
            toy_cell(a, 0.5, str(tmp_path)), cache / f"{sweep.cell_id({'a': a, 'b': 0.5})}.nc"
        )
    bad = cache / f"{sweep.cell_id({'a': 2, 'b': 0.5})}.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.warns(RuntimeWarning, match=f"{bad.name}.*computed again"):
        res = sweep.run_sweep(toy_cell, grid, cache, fixed={"calls": str(calls)}, n_workers=1)
    assert res.computed == [{"a": 2, "b": 0.5}] and res.reused == [{"a": 1, "b": 0.5}]
    assert calls_in(calls) == ["2_0.5"]
    np.testing.assert_allclose(res.dataset.total.sel(b=0.5), [1.5, 2.5])
    assert float(io.load_dataset(bad, require_provenance=False).total) == 2.5
    assert not list(cache.glob("*.claim"))


def test_live_claim_is_waited_for_not_recomputed(tmp_path: Path) -> None:
    """Another live process claims the cell: the sweep waits for its file and reuses it."""
    calls, cache = tmp_path / "calls", tmp_path / "cache"
    calls.mkdir()
    cache.mkdir()
    cell = {"a": 1, "b": 0.5}
    final = cache / f"{sweep.cell_id(cell)}.nc"
    ready = io.save_dataset(toy_cell(1, 0.5, str(tmp_path)), tmp_path / "ready.nc")
    other = subprocess.Popen(["sleep", "30"])
    try:
        claim = cache / f"{sweep.cell_id(cell)}.claim"
        claim.write_text(f"{other.pid}@{this_host()}")
        finisher = threading.Timer(0.8, os.replace, (ready, final))  # the other's atomic write
        start = time.monotonic()
        finisher.start()
        res = sweep.run_sweep(
            toy_cell, {"a": [1], "b": [0.5]}, cache, fixed={"calls": str(calls)}, n_workers=1
        )
        waited = time.monotonic() - start
        finisher.join()
        assert claim.read_text() == f"{other.pid}@{this_host()}"  # not ours to remove
    finally:
        other.kill()
        other.wait()
    assert waited >= 0.8
    assert res.reused == [cell] and not res.computed and calls_in(calls) == []
    np.testing.assert_allclose(res.dataset.value.sel(a=1, b=0.5), 10.5 + np.arange(3))


def test_claim_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    calls, cache = tmp_path / "calls", tmp_path / "cache"
    calls.mkdir()
    cache.mkdir()
    claim = cache / f"{sweep.cell_id({'a': 1, 'b': 0.5})}.claim"
    claim.write_text(f"{dead_pid()}@{this_host()}")
    res = sweep.run_sweep(
        toy_cell, {"a": [1], "b": [0.5]}, cache, fixed={"calls": str(calls)}, n_workers=1
    )
    assert res.computed == [{"a": 1, "b": 0.5}] and calls_in(calls) == ["1_0.5"]
    assert not claim.exists()


def test_waiting_for_a_claim_that_never_finishes_times_out(tmp_path: Path) -> None:
    calls, cache = tmp_path / "calls", tmp_path / "cache"
    calls.mkdir()
    cache.mkdir()
    other = subprocess.Popen(["sleep", "30"])
    try:
        claim = cache / f"{sweep.cell_id({'a': 2, 'b': 0.5})}.claim"
        claim.write_text(f"{other.pid}@{this_host()}")
        res = sweep.run_sweep(
            toy_cell,
            {"a": [1, 2], "b": [0.5]},
            cache,
            fixed={"calls": str(calls)},
            n_workers=1,
            wait_timeout=0.3,
        )
    finally:
        other.kill()
        other.wait()
    assert res.computed == [{"a": 1, "b": 0.5}] and calls_in(calls) == ["1_0.5"]
    (failure,) = res.failures
    assert failure.cell == {"a": 2, "b": 0.5}
    assert failure.error.startswith("TimeoutError") and str(other.pid) in failure.error
    assert np.isnan(res.dataset.value.sel(a=2)).all()
