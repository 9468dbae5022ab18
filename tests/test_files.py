"""Files left or met by a run: leftovers of killed processes, and bad result files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from studies import io

# saves a Dataset into argv[1] after making a scratch folder under $TMPDIR, and sleeps between
# writing the temporary file and renaming it, so that it can be killed with the file there
KILLED_SAVER = """
import os, sys, time
import numpy as np, xarray as xr
from studies import io
io.scratch_path("stream.nc").write_bytes(b"partial stream")
def slow_replace(src, dst):
    time.sleep(60)
os.replace = slow_replace
ds = xr.Dataset({"x": ("i", np.arange(1000.0), {"long_name": "x", "units": "1"})})
io.save_dataset(ds, os.path.join(sys.argv[1], "r.nc"))
"""


@dataclass(frozen=True)
class Demo:
    n: int = 3


def result_dataset() -> xr.Dataset:
    ds = xr.Dataset(
        {"loss": ("time", np.linspace(1, 0, 50), {"long_name": "loss", "units": "1"})},
        coords={"time": ("time", np.arange(50.0), {"long_name": "time", "units": "1"})},
    )
    return io.finalize(ds, "demo", Demo())


def this_host() -> str:
    return io.owner_tag().split("@", 1)[1]


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_sigkill_during_a_save_leaves_nothing_after_the_next_run(tmp_path, monkeypatch):
    out, scratch_root = tmp_path / "out", tmp_path / "scratch"
    out.mkdir()
    scratch_root.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch_root)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(out)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob(".r.nc.tmp*")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the saver ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (partial,) = out.glob(".r.nc.tmp*")
    (scratch,) = scratch_root.iterdir()
    assert partial.name == f".r.nc.tmp{proc.pid}@{this_host()}"
    assert scratch.name.startswith(f"{io.SCRATCH_PREFIX}{proc.pid}@{this_host()}_")
    io.save_dataset(result_dataset(), out / "next.nc")
    assert sorted(p.name for p in out.iterdir()) == ["next.nc"]
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    mine = io.scratch_path("mine.nc")
    try:
        assert [p.name for p in scratch_root.iterdir()] == [mine.parent.name]
    finally:
        io.cleanup_scratch()
    assert not list(scratch_root.iterdir())


def test_remove_stale_removes_only_leftovers_of_dead_processes_of_this_host(tmp_path):
    host, dead = this_host(), dead_pid()
    live = subprocess.Popen(["sleep", "30"])
    try:
        names = {
            "dead_partial": f".r.nc.tmp{dead}@{host}",
            "own_partial": f".s.nc.tmp{io.owner_tag()}",
            "live_partial": f".t.nc.tmp{live.pid}@{host}",
            "other_host_partial": f".u.nc.tmp{dead}@another-host",
            "foreign_file": f".v.nc.tmp{dead}",
            "result": "w.nc",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"x")
        folders = {
            "dead_scratch": f"{io.SCRATCH_PREFIX}{dead}@{host}_abc",
            "live_scratch": f"{io.SCRATCH_PREFIX}{live.pid}@{host}_def",
            "old_scratch": f"{io.SCRATCH_PREFIX}{dead}_ghi",
        }
        for name in folders.values():
            (tmp_path / name).mkdir()
            (tmp_path / name / "stream.nc").write_bytes(b"x")
        removed = io.remove_stale(tmp_path)
        assert sorted(p.name for p in removed) == sorted(
            [names["dead_partial"], folders["dead_scratch"]]
        )
        left = {p.name for p in tmp_path.iterdir()}
        assert left == (set(names.values()) | set(folders.values())) - {
            names["dead_partial"],
            folders["dead_scratch"],
        }
    finally:
        live.kill()
        live.wait()
    assert io.remove_stale(tmp_path / "missing") == []


def test_owner_alive() -> None:
    assert io.owner_alive(io.owner_tag())
    assert not io.owner_alive(f"{dead_pid()}@{this_host()}")
    assert io.owner_alive(f"{dead_pid()}@another-host")  # cannot be checked from here
    assert not io.owner_alive("not a tag")


def text_file(path: Path) -> Path:
    path.write_text("loss,time\n1,0\n")
    return path


def truncated_result(path: Path) -> Path:
    whole = io.save_dataset(result_dataset(), path.with_name("whole.nc")).read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    return path


def foreign_netcdf(path: Path) -> Path:
    ds = xr.Dataset({"temperature": ("x", np.arange(4.0))}, attrs={"study": "weff_mnist"})
    ds.to_netcdf(path, engine="netcdf4")
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (text_file, "it cannot be read"),
        (truncated_result, "it cannot be read"),
        (foreign_netcdf, "lacks the provenance attrs"),
    ],
)
@pytest.mark.parametrize("reader", [io.open_result, io.load_dataset])
def test_bad_result_files_raise_one_line_errors(tmp_path, make, problem, reader):
    path = make(tmp_path / "x.nc")
    with pytest.raises(io.ResultFileError) as info:
        reader(path)
    message = str(info.value)
    assert message.startswith(f"{path} is not ") and problem in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_a_good_result_file_still_opens(tmp_path):
    path = io.save_dataset(result_dataset(), tmp_path / "r.nc")
    with io.open_result(path) as ds:
        assert ds.attrs["study"] == "demo"
    with pytest.raises(FileNotFoundError):
        io.open_result(tmp_path / "missing.nc")
