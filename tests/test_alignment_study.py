"""Smoke and consistency tests of the studies ``alignment`` and ``alignment_mnist``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import numpy as np

from studies import alignment, io, registry

matplotlib.use("Agg")


def tiny(tmp_path: Path) -> alignment.Config:
    return dataclasses.replace(
        alignment.PRESETS["quick"],
        n_values=(4, 6),
        mu_values=(-0.1, 0.5),
        seeds=1,
        hidden=6,
        horizon=150.0,
        snapshots=20,
        xi_samples=2000,
        cache_dir=str(tmp_path / "cache"),
    )


def test_alignment_tiny_sweep(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    config = tiny(tmp_path)
    ds = alignment.run(config)
    io.check_dataset(ds)
    for dim in ("n", "mu_target", "seed", "init"):
        assert dim in ds.dims
    assert list(ds.init.values) == ["random", "worst_case"]
    for name in ("mu", "t_align", "t1_bound", "assumptions_hold", "ratio", "loss", "stable_rank"):
        assert name in ds
    # mu <= 0: flagged, no bound
    bad = ds.sel(mu_target=-0.1)
    assert (bad.mu < 0).all()
    assert np.isnan(bad.t1_bound).all()
    assert (bad.assumptions_hold == 0).all()
    # mu > 0: the measured mu is the target, t1 is a number, and the ratio is consistent
    good = ds.sel(mu_target=0.5)
    np.testing.assert_allclose(good.mu, 0.5, atol=1e-9)
    assert np.isfinite(good.t1_bound).all()
    np.testing.assert_allclose(good.ratio, good.t_align / good.t1_bound)
    held = good.bound_held.where(good.assumptions_hold == 1)
    assert ((held == 1) | held.isnull()).all()
    assert (ds.stable_rank >= 1 - 1e-9).all()
    # saved and reloaded, the figures and the summary read only the Dataset
    path = io.save_dataset(ds, tmp_path / "al.nc")
    back = io.load_dataset(path)
    figs = alignment.plot(back)
    assert set(figs) == {"t_align", "ratio", "training"}
    for fig in figs.values():
        plt.close(fig)
    s = alignment.summary(back)
    # the bound held in every decided run of this easy sweep, and the summary counts agree
    assert s["bound_held_in_all_decided_runs"] == "True" and s["runs_bound_violated"] == 0
    hold = back.assumptions_hold == 1
    assert s["runs_undecided"] == float((np.isnan(back.bound_held) & hold).sum())
    # resumed: every cell comes from the cache, same numbers
    again = alignment.run(config)
    assert again.attrs["cells_reused"] == 4 and again.attrs["cells_computed"] == 0
    np.testing.assert_array_equal(again.t_align.values, ds.t_align.values)


def test_registry_lists_both() -> None:
    names = registry.available()
    assert "alignment" in names and "alignment_mnist" in names
    assert registry.load("alignment").NAME == "alignment"


def test_alignment_quick_preset(tmp_path: Path) -> None:
    config = dataclasses.replace(alignment.PRESETS["quick"], cache_dir=str(tmp_path))
    ds = alignment.run(config)
    hold = ds.assumptions_hold == 1
    assert int(hold.sum()) > 0
    assert (ds.bound_held.where(hold) == 1).sum() == hold.sum()
    assert float(ds.stable_rank.isel(snapshot=-1).max()) <= 2.0


def test_alignment_mnist_small(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    from studies import alignment_mnist as am

    config = dataclasses.replace(am.PRESETS["quick"], per_class=40, iterations=1500, snapshots=30)
    ds = am.run(config)
    io.check_dataset(ds)
    assert ds.attrs["samples"] == 80
    assert ds.cos_plus.dims == ("time", "hidden")
    # the class sums of the centred data balance: n+ x+_mean + n- x-_mean = 0
    X, y = am.digit_pair(config)
    np.testing.assert_allclose(X.sum(0), 0, atol=1e-9)
    x_plus = X[y > 0].sum(0)
    np.testing.assert_allclose(ds.class_mean_plus, x_plus / np.linalg.norm(x_plus))
    if ds.mu <= 0:
        assert np.isnan(ds.t1_bound) and ds.attrs["bound_applicable"] == 0
    # directional alignment happens: the live neurons turn towards their class sum
    assert float(ds.min_cos_own[-1]) > float(ds.min_cos_own[0])
    figs = am.plot(io.load_dataset(io.save_dataset(ds, tmp_path / "m.nc")))
    assert set(figs) == {"dynamics", "neurons"}
    for fig in figs.values():
        plt.close(fig)
    assert set(am.summary(ds)) >= {"iteration_cos_align", "final_stable_rank"}


def test_alignment_mnist_quick_preset() -> None:
    from studies import alignment_mnist as am

    ds = am.run(am.PRESETS["quick"])
    assert np.isfinite(ds.iteration_cos_align)
    assert float(ds.stable_rank[-1]) < 2.0
