"""Smoke and property tests of the one_hidden_1d study (a reduced sweep; quick preset is slow),
and of targets given as expressions in x (parsing, kinks, g'', refusals, a run, the CLI)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import xarray as xr

from studies import cli, io, one_hidden_1d
from studies.config import ConfigError, apply_overrides
from studies.one_hidden_1d import TargetError, parse_target

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
        "target": 3, "width": 3, "seed": 1, "unit": 64, "node": 66, "rule": 3, "x": 801, "kink": 3
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
    assert "pwl: largest distance kink to nearest knot (w=64)" in numbers
    older = back.drop_vars(["target_kink", "kink_knot_distance", "kink"])  # files from before
    assert set(one_hidden_1d.plot(older)) == set(figures)
    assert len(one_hidden_1d.summary(older)) == len(numbers) - 1


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
    with pytest.raises(ConfigError, match="'cosh' is neither a built-in target"):
        apply_overrides(SMALL, ["targets=abs,cosh"])


TWO_KINKS = "abs(x-0.3)+abs(x+0.5)"


def test_expression_target_values_kinks_and_second_derivative():
    g = parse_target(TWO_KINKS)
    x = np.linspace(-1, 1, 1000)  # even: no grid point on a kink
    np.testing.assert_allclose(g(x), np.abs(x - 0.3) + np.abs(x + 0.5), rtol=0, atol=1e-15)
    t, jumps = g.kinks(-1.0, 1.0)
    np.testing.assert_allclose(t, [-0.5, 0.3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(jumps, [2.0, 2.0], rtol=1e-12)
    assert g.kinks(-0.4, 1.0)[0].tolist() == pytest.approx([0.3])  # inside (lo, hi) only
    # g'' as central second differences see it: the kinks' discrete deltas, exact elsewhere
    y, h = g(x), x[1] - x[0]
    second_differences = (y[2:] - 2 * y[1:-1] + y[:-2]) / h**2
    np.testing.assert_allclose(g.second_derivative(x)[1:-1], second_differences, atol=1e-6)
    # smooth part: g'' of sin(7x)/2 from the expression; a constant is broadcast
    wavy = parse_target("abs(x-0.3)+0.5*sin(7*x)")
    far = np.abs(x - 0.3) > 2 * h
    np.testing.assert_allclose(
        wavy.second_derivative(x)[far], -24.5 * np.sin(7 * x[far]), rtol=1e-12, atol=1e-12
    )
    assert parse_target("2").__call__(x).shape == x.shape


@pytest.mark.parametrize(
    ("text", "kinks"),
    [
        ("Max(x;0.2)", [0.2]),  # ';' separates arguments on the command line
        ("Max(x, 0.2)", [0.2]),  # ',' works in Python
        ("relu(x-0.3) - relu(-x-0.5)", [-0.5, 0.3]),
        ("abs(abs(x)-0.5)", [-0.5, 0.0, 0.5]),
        ("(x-0.2)*Heaviside(x-0.2) + x^2", [0.2]),
        ("Max(x^2; 0.1)", [-np.sqrt(0.1), np.sqrt(0.1)]),
        ("abs(x*exp(x)-0.2)", [0.16891597349910956]),  # no closed form: bracketed and refined
        ("exp(-x**2)*cos(pi*x)+E", []),
    ],
)
def test_kinks_come_from_the_expression(text, kinks):
    np.testing.assert_allclose(parse_target(text).kinks(-1.0, 1.0)[0], kinks, atol=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo(x)", "unknown name 'foo'; allowed names: x, pi, E, abs"),
        ("__import__('os')", "unknown name '__import__'"),
        ("os", "unknown name 'os'"),
        ("x.real", "'.' is not allowed"),
        ("lambda: 1", "unknown name 'lambda'"),
        ("'x'", "is not allowed"),
        ("sin", "needs its argument"),
        ("abs(x", "cannot read it"),
        ("1j*x", "imaginary"),
        ("sqrt(-1)*x", "not finite and real"),
    ],
)
def test_expressions_outside_the_allowed_names_are_refused(text, message):
    with pytest.raises(TargetError, match=message):
        parse_target(text)
    with pytest.raises(ConfigError, match=message) as err:
        apply_overrides(SMALL, [f"targets={text}"])
    assert f"target {text!r} is neither a built-in target" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Heaviside(x-0.2)", "jumps by 1 at x = 0.2"),
        ("sqrt(abs(x))", "slope is infinite or undefined at x = 0"),
        ("log(x)", "value is not finite at x = -1"),
        ("sqrt(x+1)", "second derivative is not finite at x = -1"),
    ],
)
def test_targets_a_relu_net_cannot_follow_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(SMALL, [f"targets={text}"])


def test_a_run_on_an_expression_finds_trained_knots_at_its_kinks():
    config = dataclasses.replace(
        SMALL, targets=(TWO_KINKS, "abs"), widths=(16,), steps=1000, n_eval=801
    )
    ds = one_hidden_1d.run(config)
    assert ds.target_formula.values.tolist() == ["Abs(x - 3/10) + Abs(x + 1/2)", "|x|"]
    np.testing.assert_allclose(ds.target_kink.sel(target=TWO_KINKS), [-0.5, 0.3])
    assert ds.target_kink.sel(target="abs").values[0] == 0.0
    assert float(ds.kink_knot_distance.sel(target=TWO_KINKS).max()) < 0.05
    cell = ds.sel(target=TWO_KINKS).isel(width=0, seed=0)
    assert float(cell.w1_knots_curvature) < 0.5 * float(cell.w1_knots_uniform)
    # the adaptive rule (exact g'') puts nodes at the kinks, the uniform one cannot at k = 16
    err = cell.sup_error_constructed
    assert float(err.sel(rule="adaptive")) < 0.2 * float(err.sel(rule="uniform"))
    numbers = one_hidden_1d.summary(ds)
    assert numbers[f"{TWO_KINKS}: largest distance kink to nearest knot (w=16)"] < 0.05


def test_cli_takes_an_expression_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    base = ["run", "one_hidden_1d", "--set", "widths=8", "--set", "n_seeds=1"]
    base += ["--set", "steps=200", "--set", "n_eval=201", "--out", str(tmp_path)]
    assert cli.main([*base, "--set", f"targets={TWO_KINKS},Max(x;0.2)"]) == 0
    (path,) = tmp_path.rglob("*.nc")
    with xr.open_dataset(path) as ds:
        assert ds.target.values.tolist() == [TWO_KINKS, "Max(x;0.2)"]
        np.testing.assert_allclose(ds.target_kink.isel(target=1), [0.2, np.nan])
    capsys.readouterr()
    assert cli.main([*base, "--set", "targets=foo(x)"]) == 2
    err = capsys.readouterr().err
    assert "unknown name 'foo'" in err and err.count("\n") == 1
    assert list(tmp_path.rglob("*.nc")) == [path]


def test_quick_preset_runs():
    ds = one_hidden_1d.run(one_hidden_1d.PRESETS["quick"])
    assert ds.sizes["target"] == 5
    assert np.all(np.isfinite(ds.sup_error_trained.values))
