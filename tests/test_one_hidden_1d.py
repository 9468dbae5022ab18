"""Smoke and property tests of the one_hidden_1d study (a reduced sweep; quick preset is slow)."""

from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest

from studies import io, one_hidden_1d
from studies.config import ConfigError, apply_overrides

matplotlib.use("Agg")

SMALL = dataclasses.replace(
    one_hidden_1d.PRESETS["quick"],
    targets=("sin3x", "square", "pwl"),
    widths=(8, 16, 64),
    n_seeds=1,
    steps=1500,
    n_eval=801,
)


@pytest.fixture(scope="module")
def ds():
    return one_hidden_1d.run(SMALL)


def test_dataset_dims_units_and_provenance(ds, tmp_path):
    assert dict(ds.sizes) == {
        "target": 3, "width": 3, "seed": 1, "unit": 64, "node": 66, "rule": 3, "x": 801
    }  # fmt: skip
    assert ds.target.values.tolist() == ["sin3x", "square", "pwl"]
    for name in ("sup_error_trained", "l2_error_trained", "n_distinct_knots", "redundancy"):
        assert ds[name].dims == ("target", "width", "seed")
    assert ds.sup_error_constructed.dims == ("target", "width", "seed", "rule")
    for var in ds.data_vars.values():
        assert {"long_name", "units"} <= set(var.attrs)
    io.check_dataset(ds)
    back = io.load_dataset(io.save_dataset(ds, tmp_path / "r.nc"))
    assert back.target.values.tolist() == ds.target.values.tolist()
    figures = one_hidden_1d.plot(back)
    assert set(figures) == {"units", "knots", "trained_vs_constructed"}
    numbers = one_hidden_1d.summary(back)
    assert all(np.isfinite(v) for v in numbers.values() if isinstance(v, float))


def test_units_are_padded_counted_and_reproduce_the_stored_net(ds):
    counts = ds.n_units_inside + ds.n_units_affine + ds.n_units_dead
    np.testing.assert_array_equal(counts.values[..., 0], np.broadcast_to(ds.width.values, (3, 3)))
    assert np.all(ds.n_units_affine_init + ds.n_units_dead_init <= ds.width)
    assert np.all(ds.n_distinct_knots <= ds.n_units_inside)
    for width in ds.width.values:
        cell = ds.sel(width=width)
        assert np.all(np.isnan(cell.unit_a.values[..., width:]))
        assert np.all(np.isfinite(cell.unit_a.values[..., :width]))
    cell = ds.sel(target="sin3x", width=16).isel(seed=0)
    a, w, b = (cell[v].values[:16] for v in ("unit_a", "unit_w", "unit_b"))
    x = ds.x.values
    f = np.maximum(np.outer(x, w) + b, 0.0) @ a + float(cell.output_bias)
    np.testing.assert_allclose(cell.f_trained.values, f, atol=1e-12)
    assert float(cell.sup_error_trained) == pytest.approx(
        np.max(np.abs(f - cell.target_value.values)), rel=1e-9
    )


def test_trained_error_falls_with_width_on_sin3x(ds):
    err = ds.sup_error_trained.sel(target="sin3x").isel(seed=0)
    assert float(err.sel(width=64)) < 0.3 * float(err.sel(width=8))


def test_constructed_error_on_square_falls_fourfold_per_doubling(ds):
    err = ds.sup_error_constructed.sel(target="square", rule="uniform").isel(seed=0)
    assert float(err.sel(width=8) / err.sel(width=16)) == pytest.approx(4.0, rel=0.01)
    assert float(err.sel(width=8)) == pytest.approx((2 / 8) ** 2 / 4, rel=1e-6)


def test_construction_is_exact_on_the_piecewise_linear_target(ds):
    # uniform nodes at widths 8, 16, 64 contain the known knots -0.5, 0.25, 0.5
    err = ds.sup_error_constructed.sel(target="pwl", rule="uniform")
    assert float(err.max()) < 1e-12


def test_config_rejects_unknown_targets():
    with pytest.raises(ConfigError, match="unknown targets"):
        apply_overrides(SMALL, ["targets=abs,cosh"])


def test_quick_preset_runs():
    ds = one_hidden_1d.run(one_hidden_1d.PRESETS["quick"])
    assert ds.sizes["target"] == 5
    assert np.all(np.isfinite(ds.sup_error_trained.values))
