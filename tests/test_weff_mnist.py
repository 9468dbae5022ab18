"""Smoke test of the weff_mnist study at its quick preset, through the command line."""

from __future__ import annotations

import numpy as np
import pytest

from studies import cli, io


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    assert cli.main(["run", "weff_mnist", "--preset", "quick", "--out", str(out)]) == 0
    (path,) = (out / "weff_mnist").glob("*.nc")
    return path


def test_quick_preset_dataset(result):
    ds = io.load_dataset(result)
    assert {"time", "sample", "class", "component"} <= set(ds.dims)
    assert ds.label.dims == ("sample",)
    for name in ("loss", "accuracy", "ratio_inter_intra"):
        assert ds[name].dims == ("time",)
    assert ds.tsne.dims == ("time", "sample", "component")
    for name, var in ds.data_vars.items():
        assert var.attrs["long_name"] and "units" in var.attrs, name
    assert ds.time[0] == 0 and np.all(np.diff(ds.time) > 0)
    ratio = ds.ratio_inter_intra.values
    assert ratio[-1] > ratio[0] + 0.1, ratio
    assert ds.silhouette[-1] > ds.silhouette[0]
    assert ds.accuracy[-1] > 0.8
    assert np.isfinite(ds.tsne.isel(time=0)).all() and np.isfinite(ds.tsne.isel(time=-1)).all()
    assert sorted(p.name.split("_")[-1] for p in result.parent.glob("*.png")) == [
        "metrics.png",
        "tsne.png",
    ]


def test_show_and_plot(result, tmp_path, capsys):
    assert cli.main(["show", str(result)]) == 0
    text = capsys.readouterr().out
    assert "ratio_inter_intra_end" in text and "git_commit" in text
    assert cli.main(["plot", str(result), "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == 2


@pytest.mark.parametrize("store", ["W_eff", "Z"])
def test_streamed_maps_in_the_result(tmp_path, store):
    """A tiny run that stores W_eff (or Z and Q): reloaded, they reproduce W_eff exactly."""
    import dataclasses

    from studies import weff_mnist

    config = dataclasses.replace(
        weff_mnist.PRESETS["quick"],
        widths=(16,),
        n_train=200,
        n_test=60,
        epochs=1,
        n_snapshots=3,
        store=store,
    )
    ds = weff_mnist.run(config)
    path = io.save_dataset(ds, tmp_path / "r.nc")
    io.cleanup_scratch()
    back = io.load_dataset(path)
    if store == "W_eff":
        assert back.W_eff.dims == ("time", "sample", "out", "in")
        W = back.W_eff.isel(time=-1).values
    else:
        assert back.Z.dims == ("time", "sample", "out", "rank")
        W = np.einsum("sor,ir->soi", back.Z.isel(time=-1).values, back.Q.isel(time=-1).values)
    assert W.shape == (60, 10, 784) and back.b_eff.dims == ("time", "sample", "out")
    assert np.linalg.norm(W) > 0
