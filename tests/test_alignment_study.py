"""Smoke and consistency tests of the studies ``alignment`` and ``alignment_mnist``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib
import matplotlib.pyplot
import numpy as np
import pytest

from studies import alignment, io, registry

matplotlib.use("Agg")


def tiny(tmp_path: Path, **changes: object) -> alignment.Config:
    settings = {
        "n_values": (4, 6),
        "input_dims": (8,),
        "mu_values": (-0.1, 0.5),
        "seeds": 1,
        "hidden": 6,
        "horizon": 150.0,
        "snapshots": 20,
        "xi_samples": 2000,
        "bootstrap": 50,
        "cache_dir": str(tmp_path / "cache"),
    }
    return dataclasses.replace(alignment.PRESETS["quick"], **{**settings, **changes})


def test_alignment_tiny_sweep(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    config = tiny(tmp_path)
    ds = alignment.run(config)
    io.check_dataset(ds)
    for dim in ("n", "D", "mu_target", "X_min_target", "seed", "init"):
        assert dim in ds.dims
    assert list(ds.init.values) == ["random", "worst_case"]
    for name in ("mu", "t_align", "t1_bound", "assumptions_hold", "ratio", "loss", "stable_rank",
                 "t_align_mean", "t_drift", "t_align_exponent", "predictor_r2"):  # fmt: skip
        assert name in ds
    # the two clocks differ by the factor n of summing
    np.testing.assert_allclose(ds.t_align_mean, ds.n * ds.t_align)
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
    assert set(figs) == {"scaling", "predictors", "ratio", "training"}
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


def test_star_reuses_the_cells_of_its_arms(tmp_path: Path) -> None:
    """A star (centre set) is the union of one-at-a-time grids: run after one of its arms it
    reuses that arm's cells, stores the cells along ``cell`` and fits each arm's factor."""
    arm = tiny(tmp_path, mu_values=(0.5,), x_min_values=(1.0,), seeds=3, search=True)
    first = alignment.run(arm)
    assert first.attrs["cells_computed"] == 2
    assert list(first.init.values) == ["random", "worst_case", "worst_case_all"]
    star = alignment.run(dataclasses.replace(arm, x_min_values=(0.5, 1.0), centre=(4, 8, 0.5, 1)))
    io.check_dataset(star)
    assert star.attrs["cells_reused"] == 3 and star.attrs["cells_computed"] == 1
    assert star.sizes["cell"] == 3 and star.attrs["design"] == "star"
    keys = {
        (int(n), float(x)) for n, x in zip(star.n.values, star.X_min_target.values, strict=True)
    }
    assert keys == {(4, 1.0), (6, 1.0), (4, 0.5)}
    exps = star.t_align_exponent.sel(clock="summed", init="random")
    assert np.isfinite(exps.sel(factor=["n", "log_n", "X_min"])).all()
    assert np.isnan(exps.sel(factor=["D", "mu"])).all()
    # the search over the whole family is as slow as the worst-case init, up to one step
    # (the worst-case neurons carry a 1% random tilt, the family's do not)
    t = star.t_align
    assert (t.sel(init="worst_case_all") >= t.sel(init="worst_case") - star.eta - 1e-12).all()
    for fig in alignment.plot(io.load_dataset(io.save_dataset(star, tmp_path / "s.nc"))).values():
        matplotlib.pyplot.close(fig)


def test_alignment_sweep_resumes_after_a_kill(tmp_path: Path, run_and_kill) -> None:
    """Kill an alignment sweep part-way (SIGKILL); run again, it computes only the rest."""
    cache = tmp_path / "cache"
    script = (
        "from studies import alignment\n"
        "import dataclasses\n"
        f"c = dataclasses.replace(alignment.PRESETS['quick'], n_values=(4, 5, 6, 7, 8), "
        f"input_dims=(8,), mu_values=(0.5,), seeds=1, hidden=6, snapshots=10, "
        f"xi_samples=500, bootstrap=10, workers=1, cache_dir={str(cache)!r})\n"
        "alignment.run(c)\n"
    )
    run_and_kill(script, lambda: bool(list(cache.rglob("*.nc"))), 120)
    done = len(list(cache.rglob("*.nc")))
    assert 1 <= done < 5, "the sweep should have been interrupted part-way"
    config = dataclasses.replace(
        alignment.PRESETS["quick"], n_values=(4, 5, 6, 7, 8), input_dims=(8,), mu_values=(0.5,),
        seeds=1, hidden=6, snapshots=10, xi_samples=500, bootstrap=10, workers=1,
        cache_dir=str(cache),
    )  # fmt: skip
    ds = alignment.run(config)
    assert ds.attrs["cells_reused"] == done and ds.attrs["cells_computed"] == 5 - done
    assert np.isfinite(ds.t_align).all()


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


def test_alignment_mnist_several_pairs(tmp_path: Path) -> None:
    """Pairs in a row: stacked along ``pair``; a pair that does not align directionally in
    the iterations is named with why; one pair keeps the single-pair layout."""
    import matplotlib.pyplot as plt

    from studies import alignment_mnist as am

    config = dataclasses.replace(
        am.PRESETS["quick"], digits=(0, 1, 3, 8), per_class=30, iterations=200, snapshots=10
    )
    ds = am.run(config)
    io.check_dataset(ds)
    assert list(ds.pair.values) == ["0 vs 1", "3 vs 8"]
    assert ds.cos_plus.dims == ("pair", "snapshot", "hidden")
    assert ds.time.dims == ("pair", "snapshot") and (ds.samples == 60).all()
    clock = (ds.iteration * config.eta / ds.samples).transpose("pair", "snapshot")
    np.testing.assert_allclose(ds.time, clock)  # the paper's summed clock t = k eta / n
    # 200 iterations are far too few: the loss has not moved, and the study says so per pair
    assert np.isnan(ds.iteration_cos_align).all()
    note = ds.attrs["cells_not_learned"]
    assert "digits 0 vs 1" in note and "digits 3 vs 8" in note and "alignment phase" in note
    back = io.load_dataset(io.save_dataset(ds, tmp_path / "pairs.nc"))
    assert "iteration_cos_align_3_vs_8" in am.summary(back)
    for fig in am.plot(back).values():
        plt.close(fig)
    with pytest.raises(ValueError, match="pairs of two different digits"):
        dataclasses.replace(config, digits=(0, 1, 3))


@pytest.mark.slow
def test_alignment_mnist_pairs_preset_aligns_every_pair() -> None:
    """At the paper's 15,000 iterations every pair of the ``pairs`` preset reaches
    directional alignment, and nothing is flagged."""
    from studies import alignment_mnist as am

    ds = am.run(am.PRESETS["pairs"])
    assert list(ds.pair.values) == ["0 vs 1", "3 vs 8", "1 vs 7"]
    assert np.isfinite(ds.iteration_cos_align).all()
    assert ds.attrs["cells_not_learned"] == ""


def test_alignment_mnist_quick_preset() -> None:
    from studies import alignment_mnist as am

    ds = am.run(am.PRESETS["quick"])
    assert np.isfinite(ds.iteration_cos_align)
    assert float(ds.stable_rank[-1]) < 2.0
