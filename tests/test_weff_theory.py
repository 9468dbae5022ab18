"""Frozen-gate GDLN vs the ReLU net it was read from: exact identities and a smoke test."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import gdln
from relu_lens import read_mlp
from relu_lens.models import mlp
from studies import weff_theory as wt


def test_cross_entropy_matches_torch():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((7, 4))
    labels = rng.integers(0, 4, 7)
    Y = np.eye(4)[labels]
    logits = torch.tensor(h, requires_grad=True)
    value = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
    value.backward()
    ce = gdln.CrossEntropy()
    assert ce.value({"y": h}, {"y": Y}) == pytest.approx(float(value.detach()), rel=1e-12)
    np.testing.assert_allclose(
        ce.gradient({"y": h}, {"y": Y})["y"], logits.grad.numpy(), rtol=1e-10, atol=1e-14
    )


def test_prediction_at_its_own_snapshot_is_the_measurement():
    """k at the snapshot, zero further time: sum_p g_p(x) W_p = W_eff(x) exactly, on held-out
    samples whose gates are read from the same snapshot."""
    torch.manual_seed(0)
    model = mlp(30, (9, 7), 4, dtype=torch.float64)
    x_train, x_test = (
        torch.randn(20, 30, dtype=torch.float64),
        torch.randn(13, 30, dtype=torch.float64),
    )
    train_arrays = read_mlp(model, x_train)
    twin = gdln.ReLN.from_gates(train_arrays.weights, train_arrays.gates)
    test_gates = twin.gates_from(read_mlp(model, x_test).gates)
    pred = twin.network.effective_map(twin.initial, test_gates)[("y", "x")]
    meas = wt.measured_weff(train_arrays.weights, x_test)
    np.testing.assert_allclose(pred, meas, rtol=0, atol=1e-14)
    assert wt.rel_error(pred, meas) < 1e-14


@pytest.fixture(scope="module")
def small_run():
    config = dataclasses.replace(
        wt.PRESETS["quick"],
        widths=(32, 32),
        n_train=200,
        n_test=100,
        steps=120,
        n_snapshots=6,
        n_k=3,
    )
    return wt.run(config)


def test_smoke_dataset(small_run):
    ds = small_run
    assert ds.weff_rel_error.dims == ("k", "time")
    assert ds.gate_flip_fraction.dims == ("time", "layer")
    assert ds.ratio_inter_intra_measured.dims == ("time",)
    assert ds.ratio_inter_intra_predicted.dims == ("k", "time")
    for name, var in ds.data_vars.items():
        assert var.attrs["long_name"] and "units" in var.attrs, name
    for i, k in enumerate(ds.k.values):
        j = int(np.flatnonzero(ds.step.values == k)[0])
        assert ds.weff_rel_error[i, j] < 1e-12  # prediction starts at the measurement
        assert np.isnan(ds.weff_rel_error[i, :j]).all()
        assert (ds.weff_rel_error[i, j + 1 :] > 0).all()
    np.testing.assert_allclose(ds.loss_theory[0, 0], ds.loss_relu[0], rtol=1e-10)
    assert np.isnan(ds.gate_flip_fraction.isel(time=0)).all()  # no earlier snapshot
    assert 0 <= float(ds.gate_flip_fraction.max()) <= 1
    assert (ds.gate_flip_to_final.isel(time=-1) == 0).all()
    assert np.isfinite(ds.step_halving_weff_change).all()
    # the class-metric gap of the last k covers only its own later snapshots
    last = int(np.flatnonzero(ds.step.values == ds.k.values[-1])[0])
    gap = np.abs(ds.ratio_inter_intra_predicted[-1, last:] - ds.ratio_inter_intra_measured[last:])
    np.testing.assert_allclose(
        ds.ratio_rel_gap[-1], float((gap / ds.ratio_inter_intra_measured[last:]).max())
    )
    assert wt.summary(ds)["weff_rel_error_end_k0"] == float(ds.weff_rel_error[0, -1])


def test_flow_theory_starts_at_the_measurement_and_stays_near_the_steps(small_run):
    """theory="flow": the exact frozen-gate flow instead of the ReLU net's steps; it starts at
    the measurement and, at this step size, stays within a few percent of the steps' twin."""
    config = dataclasses.replace(
        wt.PRESETS["quick"], widths=(32, 32), n_train=200, n_test=100, steps=120,
        n_snapshots=6, n_k=3, theory="flow", check_step=False,
    )  # fmt: skip
    ds = wt.run(config)
    assert ds.attrs["theory"] == "flow"
    for i, k in enumerate(ds.k.values):
        j = int(np.flatnonzero(ds.step.values == k)[0])
        assert ds.weff_rel_error[i, j] < 1e-12
    gap = np.abs(ds.weff_rel_error - small_run.weff_rel_error).max()
    assert 0 < float(gap) < 0.05


def test_float32_twin_steps_change_nothing_the_study_reports(small_run):
    """The default float32 twin gradients against float64 on the same run: the predictions
    agree far below the step-halving change; an unknown dtype is refused."""
    assert small_run.attrs["twin_dtype"] == "float32"
    config = dataclasses.replace(
        wt.PRESETS["quick"], widths=(32, 32), n_train=200, n_test=100, steps=120,
        n_snapshots=6, n_k=3, twin_dtype="float64",
    )  # fmt: skip
    ds = wt.run(config)
    assert ds.attrs["twin_dtype"] == "float64"
    np.testing.assert_array_equal(ds.loss_relu, small_run.loss_relu)
    gap = float(np.abs(ds.weff_rel_error - small_run.weff_rel_error).max())
    assert 0 < gap < 1e-4 < float(small_run.step_halving_weff_change[1:].min())
    np.testing.assert_allclose(ds.loss_theory, small_run.loss_theory, rtol=1e-5)
    with pytest.raises(ValueError, match="twin_dtype"):
        dataclasses.replace(config, twin_dtype="float16")
