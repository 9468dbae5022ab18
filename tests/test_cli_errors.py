"""Bad settings, folders and runs through the command line: one line on stderr, exit code 2, no
result file; and runs whose records are honest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from studies import cli


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and the error report: the lines of stderr from the first 'relu-gdln: error'
    on (progress bars before it are not part of it), so that a one-line report has one
    newline."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    start = err.find("relu-gdln: error:")
    return code, err[start:] if start >= 0 else err


def results(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.nc")) if folder.exists() else []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["alignment_mnist", "--set", "eta=-2e-3"], "eta must be finite and > 0"),
        (["alignment_mnist", "--set", "init_scale=0"], "init_scale must be finite and > 0"),
        (["alignment_mnist", "--set", "hidden=0"], "hidden must be >= 1"),
        (["weff_mnist", "--set", "widths=0"], "widths must be >= 1"),
        (["race", "--seed", "-1"], "seed must be >= 0"),
        (["race", "--set", "eta=nan"], "eta must be finite and > 0"),
        (["race", "--set", "t_max=inf"], "t_max must be finite and > 0"),
        (["race", "--set", "t_max=2.01", "--set", "eta=0.1"], "not a whole number of steps"),
        (["weff_mnist", "--device", "cuda"], "no CUDA device"),
    ],
)
def test_bad_settings_stop_before_any_work(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "cuda" in argv:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: --device cuda is valid here")
    code, err = run_cli(["run", *argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("relu-gdln: error:")
    assert results(tmp_path) == []


def test_out_must_be_a_writable_folder_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "results.nc"
    a_file.write_text("not a folder")
    code, err = run_cli(["run", "race", "--out", str(a_file)], capsys)
    assert code == 2 and "is a file, not a folder" in err and err.count("\n") == 1
    code, err = run_cli(["run", "race", "--out", str(a_file / "below")], capsys)
    assert code == 2 and "not a writable folder" in err and err.count("\n") == 1
    assert results(tmp_path) == [a_file]  # only the file that was there


def test_runs_that_diverge_end_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    race = ["run", "race", "--set", "eta=5", "--set", "t_max=500", "--set", "n_times=11"]
    code, err = run_cli([*race, "--set", "init_scales=2", "--out", out], capsys)
    assert code == 2 and "diverged" in err and err.count("\n") == 1  # DivergenceError
    code, err = run_cli(
        ["run", "alignment_mnist", "--set", "eta=1e6", "--set", "init_scale=1",
         "--set", "iterations=20", "--set", "snapshots=2", "--set", "per_class=20",
         "--out", out],
        capsys,
    )  # fmt: skip
    assert code == 2 and "diverged" in err and err.count("\n") == 1  # FloatingPointError
    code, err = run_cli(
        ["run", "one_hidden_1d", "--set", "lr=1e6", "--set", "targets=sin3x",
         "--set", "widths=8", "--set", "n_seeds=1", "--set", "steps=200", "--out", out],
        capsys,
    )  # fmt: skip
    assert code == 2 and ("dead" in err or "diverged" in err) and err.count("\n") == 1
    assert results(tmp_path) == []


def test_race_records_end_at_the_configured_horizon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """eta = 0.1, t_max = 2 and 41 records asked: 20 steps, so 21 records, the last at 2.0
    (the grid used to run on to t = 4.0)."""
    argv = ["run", "race", "--set", "eta=0.1", "--set", "t_max=2", "--set", "n_times=41"]
    code, _ = run_cli([*argv, "--set", "init_scales=0.08", "--out", str(tmp_path)], capsys)
    assert code == 0
    (path,) = results(tmp_path)
    with xr.open_dataset(path) as ds:
        assert float(ds.time[-1]) == pytest.approx(2.0) and ds.sizes["time"] == 21


def test_bad_result_files_for_show_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.nc"
    text.write_text("not netCDF")
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}, attrs={"study": "race"}).to_netcdf(foreign)
    for command in ("show", "plot"):
        for path in (text, foreign, tmp_path / "missing.nc"):
            code, err = run_cli([command, str(path)], capsys)
            assert code == 2 and str(path.name) in err and err.count("\n") == 1, (command, err)
    assert not list(tmp_path.glob("*.png"))


def test_bad_mnist_data_stops_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt IDX folder and a held-out split too small to hold every class: one line
    before any training (the split used to fail only after training)."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # fmt: skip
        (folder / f"{name}.gz").write_bytes(b"\x1f\x8b not really gzip")
    out = str(tmp_path / "out")
    code, err = run_cli(["run", "weff_mnist", "--mnist-dir", str(folder), "--out", out], capsys)
    assert code == 2 and "gzip" in err and err.count("\n") == 1
    code, err = run_cli(["run", "weff_mnist", "--set", "n_test=3", "--out", out], capsys)
    assert code == 2 and "no sample of class" in err and err.count("\n") == 1
    assert results(tmp_path) == []


def write_mnist_folder(folder: Path, side: int, labels: np.ndarray, n_test: int) -> Path:
    """An IDX folder of random side x side images with the given train labels (test labels:
    0, 1, ..., cycling) in the layout of the full MNIST."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    test_labels = np.arange(n_test) % 10
    for split, y in (("train", labels), ("t10k", test_labels)):
        images = rng.integers(0, 256, (len(y), side, side))
        for kind, array in (("images-idx3", images), ("labels-idx1", y)):
            header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">i4").tobytes()
            (folder / f"{split}-{kind}-ubyte").write_bytes(
                header + array.astype(np.uint8).tobytes()
            )
    return folder


def test_architecture_attr_is_read_from_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """14 x 14 images: the net and its attr start at 196 inputs (the attr said 784 before)."""
    folder = write_mnist_folder(tmp_path / "mnist", 14, np.arange(200) % 10, 60)
    argv = ["run", "weff_mnist", "--mnist-dir", str(folder), "--set", "n_train=100",
            "--set", "n_test=50", "--set", "epochs=1", "--set", "widths=16",
            "--set", "n_snapshots=2", "--out", str(tmp_path / "out")]  # fmt: skip
    code, _ = run_cli(argv, capsys)
    assert code == 0
    (path,) = results(tmp_path / "out")
    with xr.open_dataset(path) as ds:
        assert ds.attrs["architecture"] == "196-16-10"


def test_labels_out_of_range_stop_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_mnist_folder(tmp_path / "mnist", 28, np.arange(200) % 13, 60)
    argv = ["run", "weff_mnist", "--mnist-dir", str(folder), "--out", str(tmp_path / "out")]
    code, err = run_cli(argv, capsys)
    assert code == 2 and "labels must be digits 0..9" in err and err.count("\n") == 1
    assert results(tmp_path) == []
