"""Result files and the command line: atomic writes, provenance, --set parsing, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import xarray as xr

from studies import cli, io
from studies.config import ConfigError, apply_overrides


@dataclass(frozen=True)
class Demo:
    n: int = 3
    lr: float = 0.1
    flag: bool = False
    widths: tuple[int, ...] = (4, 4)
    path: str | None = None
    name: str = "a"


def demo_dataset() -> xr.Dataset:
    ds = xr.Dataset(
        {"loss": ("time", np.linspace(1, 0, 5), {"long_name": "loss", "units": "1"})},
        coords={"time": ("time", np.arange(5.0), {"long_name": "time", "units": "1"})},
    )
    return io.finalize(ds, "demo", Demo())


def test_overrides_parse_types():
    cfg = apply_overrides(
        Demo(), ["n=7", "lr=1e-3", "flag=true", "widths=8,16,32", "path=/x", "name=b"]
    )
    assert cfg == Demo(7, 1e-3, True, (8, 16, 32), "/x", "b")
    assert apply_overrides(cfg, ["path=none"]).path is None


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("m=3", "has no field 'm'"),
        ("n=three", "expected int"),
        ("flag=maybe", "boolean"),
        ("widths=4,x", "expected int"),
        ("n", "FIELD=VALUE"),
    ],
)
def test_bad_overrides(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Demo(), [item])


def test_provenance_and_roundtrip(tmp_path):
    ds = demo_dataset()
    for key in io.REQUIRED_ATTRS:
        assert isinstance(ds.attrs[key], str) and ds.attrs[key]
    assert json.loads(ds.attrs["config"])["widths"] == [4, 4]
    path = io.save_dataset(ds, tmp_path / "a" / "r.nc")
    back = io.load_dataset(path)
    xr.testing.assert_identical(back, ds)


def test_missing_units_rejected():
    ds = xr.Dataset({"x": ("t", [1.0, 2.0], {"long_name": "x"})})
    with pytest.raises(ValueError, match="long_name/units"):
        io.finalize(ds, "demo", Demo())


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    ds = demo_dataset()

    def broken(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"CDF half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(KeyboardInterrupt):
        io.save_dataset(ds, tmp_path / "r.nc")
    assert list(tmp_path.iterdir()) == []


def test_cli_errors(capsys):
    assert cli.main(["run", "no_such_study"]) == 2
    assert "unknown study" in capsys.readouterr().err
    assert cli.main(["run", "weff_mnist", "--set", "nonsense=1"]) == 2
    assert "has no field 'nonsense'" in capsys.readouterr().err
    assert cli.main(["run", "weff_mnist", "--set", "epochs=two"]) == 2
    assert "expected int" in capsys.readouterr().err
    assert cli.main(["run", "weff_mnist", "--preset", "huge"]) == 2
    assert "no preset 'huge'" in capsys.readouterr().err
    assert cli.main(["show", "/nonexistent.nc"]) == 2


def test_cli_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "weff_mnist" in out and "quick" in out


def test_cli_reports_a_bad_mnist_folder(tmp_path, capsys):
    code = cli.main(["run", "weff_mnist", "--mnist-dir", str(tmp_path / "missing")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
