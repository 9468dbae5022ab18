"""studies.race: the routing-network neural race, reduced theory vs gradient descent."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr

import gdln
from gdln.routing_task import HIERARCHY
from studies import cli, io, race


@pytest.fixture(scope="module")
def small_ds() -> xr.Dataset:
    config = race.Config(init_scales=(0.08, 2.0), t_max=30.0, eta=0.02, n_times=151)
    return race.run(config)


def test_task_matches_the_paper_setup() -> None:
    task = race.routing(race.PRESETS["paper"])
    net, X, Y, gates = task.network, task.X, task.Y, task.gates
    assert len(net.paths) == 49
    assert task.routes.sum() == 28 and np.all(task.routes.sum(axis=1) == 4)
    assert next(iter(X.values())).shape == (28, 4)
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y, gates))
    # one mode per singular value of the hierarchy, learned to that strength (s / d)
    target = np.linalg.svd(HIERARCHY, compute_uv=False)
    first = task.routed_paths()[0]
    np.testing.assert_allclose(modes.S[:, first] / modes.D[:, first, first], target, rtol=1e-12)


def test_dataset_is_self_describing(small_ds: xr.Dataset, tmp_path) -> None:
    ds = small_ds
    assert ds.loss_gd.dims == ("init", "init_scale", "time")
    assert ds.loss_theory.dims == ("init_scale", "time")
    assert list(ds.init.values) == ["aligned", "orthogonal"]
    np.testing.assert_allclose(ds.init_scale, [0.08, 2.0])
    io.check_dataset(ds)
    # at t = 0 theory and GD from the aligned init start from the same loss
    np.testing.assert_allclose(
        ds.loss_theory.isel(time=0), ds.loss_gd.sel(init="aligned").isel(time=0), rtol=1e-10
    )
    # both end near zero loss (every route learns its target)
    assert float(ds.loss_theory.isel(time=-1).max()) < 1e-6 * float(ds.loss_theory[0, 0])
    back = io.load_dataset(io.save_dataset(ds, tmp_path / "race.nc"))
    xr.testing.assert_allclose(back.loss_gd, ds.loss_gd)
    summary = race.summary(back)
    assert {
        f"rel_l2_{i}_scale_{b:g}" for i in ("aligned", "orthogonal") for b in (0.08, 2.0)
    } <= set(summary)
    # theory and GD from the aligned init halve their loss at the same time (to a few steps)
    assert abs(summary["t_half_gd_aligned_scale_0.08"] - summary["t_half_theory_scale_0.08"]) < 0.3
    # from the aligned init GD is the Euler scheme of the theory's flow: close at eta = 0.02
    assert summary["rel_l2_aligned_scale_0.08"] < 0.06
    figures = race.plot(back)
    assert set(figures) == {"loss", "modes"}


def test_cli_quick_preset_writes_dataset_and_figures(tmp_path) -> None:
    assert cli.main(["run", "race", "--preset", "quick", "--out", str(tmp_path)]) == 0
    files = sorted((tmp_path / "race").iterdir())
    assert len([f for f in files if f.suffix == ".nc"]) == 1
    assert len([f for f in files if f.suffix == ".png"]) == 2
    ds = io.load_dataset(next(f for f in files if f.suffix == ".nc"))
    assert ds.attrs["study"] == "race" and "loss_theory" in ds


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="n_routes"):
        race.Config(n_routes=9)
    with pytest.raises(ValueError, match="init_scales"):
        race.Config(init_scales=(0.0,))


@pytest.mark.slow
def test_paper_preset_theory_matches_gradient_descent() -> None:
    ds = race.run(race.PRESETS["paper"])
    summary = race.summary(ds)
    print(summary)
    assert summary["rel_l2_aligned_scale_0.08"] <= 0.02
