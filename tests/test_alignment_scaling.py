"""The scaling analysis of the alignment study: power-law fits with bootstrap intervals, the
one-factor grids and their data, the predictor comparison (studies.alignment)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from gdln import alignment_bound as ab
from gdln.tasks import separable_binary
from relu_lens import alignment as al
from relu_lens import two_layer as tl
from studies import alignment
from studies.config import ConfigError, apply_overrides
from studies.sweep import grid_cells


def test_power_law_fit_recovers_known_exponents() -> None:
    """t = 0.3 n^-1.2 D^-0.5 with log-normal noise (sd 0.1) on a grid of 5 x 5 cells and 10
    seeds: the fit returns both exponents, and each 95% interval holds the true value."""
    rng = np.random.default_rng(0)
    n, D, seed = np.meshgrid([8, 16, 32, 64, 128], [32, 64, 128, 256, 512], np.arange(10))
    log_t = np.log(0.3) - 1.2 * np.log(n) - 0.5 * np.log(D) + 0.1 * rng.standard_normal(n.shape)
    log_x = np.column_stack([np.log(n).ravel(), np.log(D).ravel()])
    p, low, high = alignment.power_law_fit(log_t.ravel(), log_x, seed.ravel(), 500, seed=1)
    np.testing.assert_allclose(p, [-1.2, -0.5], atol=0.03)
    assert (low < [-1.2, -0.5]).all() and ([-1.2, -0.5] < high).all()
    assert (high - low < 0.15).all() and (high - low > 0.005).all()
    # without noise the exponents are exact and the interval collapses onto them
    exact = np.log(0.3) - 1.2 * np.log(n) - 0.5 * np.log(D)
    p, low, high = alignment.power_law_fit(exact.ravel(), log_x, seed.ravel(), 50)
    np.testing.assert_allclose([p, low, high], [[-1.2, -0.5]] * 3, atol=1e-10)


def test_power_law_fit_drops_missing_runs_and_constant_columns() -> None:
    log_n = np.log(np.repeat([4.0, 8.0, 16.0], 4))
    log_t = 2.0 - 0.7 * log_n
    log_t[0] = np.nan  # a run that did not align
    log_x = np.column_stack([log_n, np.full(12, np.log(0.5))])  # the second factor is fixed
    p, low, high = alignment.power_law_fit(log_t, log_x, np.tile(np.arange(4), 3), 20)
    np.testing.assert_allclose(p[0], -0.7)
    assert np.isnan(p[1]) and np.isnan(low[1]) and np.isnan(high[1])


def synthetic(p_n: float = -0.8, seeds: int = 6) -> xr.Dataset:
    """A Dataset shaped like the study's with t_align = 0.2 n^p_n (noise-free), the bound
    t1 = 16 log n / 0.05, and a drift prediction equal to t_align."""
    n = np.array([8, 16, 32, 64])
    shape = (4, 1, 1, 1, seeds)
    t = 0.2 * n.reshape(-1, 1, 1, 1, 1, 1) ** p_n * np.ones((1, 1, 1, 1, seeds, 2))
    t1 = 16 * np.log(n).reshape(-1, 1, 1, 1, 1, 1) / 0.05 * np.ones_like(t)
    grid = ("n", "D", "mu_target", "X_min_target")
    sd = (*grid, "seed", "init")
    shape_value = np.log(n).reshape(-1, 1, 1, 1, 1) / (0.2**0.5 * 0.5)
    return xr.Dataset(
        {
            "t_align": (sd, t),
            "t1_bound": (sd, t1),
            "t_drift": (sd, t),
            "t_drift_aligned": (sd, 2 * t),
            "mu": ((*grid, "seed"), np.full(shape, 0.2)),
            "X_min": ((*grid, "seed"), np.full(shape, 0.5)),
            "theorem_shape": ((*grid, "seed"), shape_value * np.ones(shape)),
        },
        coords={"n": n, "D": [128], "mu_target": [0.2], "X_min_target": [0.5],
                "seed": np.arange(seeds), "init": ["random", "worst_case"]},
    )  # fmt: skip


def test_exponents_per_factor_and_clock() -> None:
    """n exponent on the summed clock, one more on the mean clock (t_mean = n t); the bound
    16 log n / c is exactly (log n)^1; factors that do not vary are NaN."""
    ds = synthetic(p_n=-0.8)
    fit = alignment.exponents(ds, "t_align", 100, 0)
    np.testing.assert_allclose(fit.estimate.sel(factor="n", clock="summed"), -0.8)
    np.testing.assert_allclose(fit.estimate.sel(factor="n", clock="mean"), 0.2)
    assert np.isnan(fit.estimate.sel(factor=["D", "mu", "X_min"])).all()
    bound = alignment.exponents(ds, "t1_bound", 100, 0)
    np.testing.assert_allclose(bound.estimate.sel(factor="log_n", clock="summed"), 1.0)
    assert float(bound.estimate.sel(factor="n", clock="summed", init="random")) < 0.5


def test_predictor_scores() -> None:
    """A predictor equal to t_align has R^2 = 1 and C = 1, a constant multiple keeps R^2 = 1
    with its C, and the theorem's shape (log n) against n^-0.8 does worse than a constant."""
    scores = alignment.predictor_scores(synthetic(p_n=-0.8))
    r2 = scores.r2.sel(clock="summed", init="random")
    np.testing.assert_allclose(r2.sel(predictor=["t_drift", "t_drift_aligned"]), 1.0)
    np.testing.assert_allclose(scores.constant.sel(predictor="t_drift"), 1.0)
    np.testing.assert_allclose(scores.constant.sel(predictor="t_drift_aligned"), 0.5)
    assert float(r2.sel(predictor="theorem_shape")) < 0
    np.testing.assert_allclose(scores.slope.sel(predictor="t_drift"), 1.0)
    assert (scores.runs == 24).all()


def test_scaling_presets_vary_one_factor_around_one_centre() -> None:
    arms = {"scaling_n": "n", "scaling_D": "D", "scaling_mu": "mu_target",
            "scaling_X_min": "X_min_target"}  # fmt: skip
    centre = dict(zip(alignment.GRID, alignment.PRESETS["scaling"].centre, strict=True))
    union = set()
    for name, dim in arms.items():
        (grid,) = alignment._sweeps(alignment.PRESETS[name])
        assert [d for d, values in grid.items() if len(values) > 1] == [dim]
        assert all(np.isclose(v[0], centre[d]) for d, v in grid.items() if d != dim)
        assert any(np.isclose(v, centre[dim]) for v in grid[dim])
        union |= {tuple(c.values()) for c in grid_cells(grid)}
    star = alignment._sweeps(alignment.PRESETS["scaling"])
    assert {tuple(c.values()) for g in star for c in grid_cells(g)} == union
    assert len(union) == 17
    # D >= n in every cell, so the worst-case init can isolate every point
    assert all(c[1] >= c[0] for c in union)


def test_D_grid_builds_data_with_the_requested_mu_and_norms() -> None:
    config = alignment.PRESETS["scaling_D"]
    (grid,) = alignment._sweeps(config)
    seeds = config.seed + np.arange(3)
    for cell in grid_cells(grid):
        tasks = alignment.cell_data(**cell, seeds=seeds, norm_high=config.norm_high)
        for task in tasks:
            assert task.X.shape == (cell["n"], cell["D"])
            assert task.mu == pytest.approx(cell["mu_target"], abs=1e-10)
            norms = np.linalg.norm(task.X, axis=1)
            assert norms.min() == pytest.approx(cell["X_min_target"], rel=1e-12)
            assert norms.max() == pytest.approx(config.norm_high, rel=1e-12)
        assert not np.allclose(tasks[0].X, tasks[1].X)  # seeds differ


def test_bad_grid_settings_are_refused_in_one_line() -> None:
    base = alignment.PRESETS["scaling"]
    for override, message in (
        ("centre=32,100,0.2,0.5", "centre must be"),
        ("centre=32,128,0.2", "centre must be"),
        ("x_min_values=0.5,3", "x_min_values must be <= norm_high"),
        ("input_dims=1", "input_dims must all be >= 2"),
        ("bootstrap=0", "bootstrap must be >= 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            apply_overrides(base, [override])


def test_drift_time_predicts_the_trained_alignment_time() -> None:
    """In D = 64 with n = 16 the active-set drift gives t_align within 5% for both inits
    (the sign-pattern path is exact; the norm-rescaled clock is the approximation)."""
    h, eps, n, D = 10, 1e-30, 16, 64
    tasks = [separable_binary(n, D, 0.3, seed=s, norm_range=(0.5, 2.0)) for s in range(3)]
    W_rand, _ = tl.init_balanced(3, h, D, eps, seed=0)
    W_worst = torch.cat([tl.init_worst_case(t.X, t.y, h, eps, s)[0] for s, t in enumerate(tasks)])
    W, v = tl.balance(torch.cat([W_rand, W_worst]))
    X = torch.as_tensor(np.stack([t.X for t in tasks] * 2))
    y = torch.as_tensor(np.stack([t.y for t in tasks] * 2))
    eta = 0.005 / (n * 2.0)
    steps = round(1.0 / eta)
    traj = tl.train(W, v, X, y, eta, steps, record_every=steps, monitor=al.aligned_monitor(y))
    measured = al.t_align(traj.monitors["aligned"], eta)
    signs = tl.balanced_signs(h)
    predicted = [
        ab.drift_time(tasks[r % 3].X, tasks[r % 3].y, traj.W[0, r], signs).max() for r in range(6)
    ]
    np.testing.assert_allclose(measured, predicted, rtol=0.05)


def test_search_init_covers_the_family(tmp_path: Path) -> None:
    """worst_case_all has one neuron per isolatable point, with the point's sign; its run's
    t_align is the largest per-neuron time, and the slowest point's norm rank is stored."""
    config = dataclasses.replace(
        alignment.PRESETS["quick"], n_values=(6,), input_dims=(10,), mu_values=(0.4,),
        x_min_values=(0.5,), seeds=2, hidden=4, horizon=60.0, snapshots=10, search=True,
        xi_samples=500, bootstrap=10, cache_dir=str(tmp_path),
    )  # fmt: skip
    ds = alignment.run(config).squeeze(["n", "D", "mu_target", "X_min_target"])
    t = ds.t_align.sel(init="worst_case_all")
    assert np.isfinite(t).all()
    assert ((ds.slowest_norm_rank >= 0) & (ds.slowest_norm_rank < 6)).all()
    # a 4-neuron worst-case net covers only some points: not slower than the whole family
    # (up to one step: its neurons carry a 1% random tilt)
    assert (ds.t_align.sel(init="worst_case") <= t + ds.eta + 1e-12).all()
