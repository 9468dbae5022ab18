"""Frozen-gate GDLN vs the ReLU net it was read from: exact identities and a smoke test."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import gdln
from relu_lens.gates import activation_patterns
from relu_lens.models import mlp
from relu_lens.recorders import CallbackRecorder
from relu_lens.train import train
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
    """k at the snapshot, zero further time: sum_p g_p(x) W_p = W_eff(x) exactly."""
    torch.manual_seed(0)
    config = wt.Config(widths=(9, 7))
    model = mlp(784, config.widths, 10, dtype=torch.float64)
    x = torch.randn(13, 784, dtype=torch.float64)
    weights = [m.weight.detach().numpy() for m in model if isinstance(m, torch.nn.Linear)]
    gates = wt.gate_dict(activation_patterns(model, x))
    pred = wt.predicted_weff(wt.frozen_gate_network(config.widths), wt.weight_dict(weights), gates)
    meas = wt.measured_weff(config, weights, x)
    np.testing.assert_allclose(pred, meas, rtol=0, atol=1e-14)
    assert wt.rel_error(pred, meas) < 1e-14


def test_gdln_equals_relu_run_while_gates_stay_put():
    """Same discrete steps, float64: if no gate flips, the GDLN is the ReLU net (to 1e-8)."""
    torch.manual_seed(1)
    X = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    model = mlp(6, (8, 5), 3, dtype=torch.float64)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    W0 = {f"W{i + 1}": lin.weight.detach().numpy().copy() for i, lin in enumerate(linears)}
    gates0 = activation_patterns(model, X)
    rec = CallbackRecorder(lambda m: [lin.weight.detach().numpy().copy() for lin in linears])
    train(
        model,
        X,
        y,
        steps=30,
        lr=1e-3,
        loss="cross_entropy",
        snapshot_steps=[0, 30],
        recorders=[rec],
        progress=False,
    )
    assert all(
        torch.equal(a, b) for a, b in zip(gates0, activation_patterns(model, X), strict=True)
    ), "gates changed: pick a smaller lr"
    net = gdln.chain([6, 8, 5, 3])
    traj = gdln.gradient_descent(
        net,
        X.numpy(),
        np.eye(3)[y.numpy()],
        W0,
        1e-3,
        30,
        gates=wt.gate_dict(gates0),
        record_every=30,
        loss=gdln.CrossEntropy(),
    )
    for i, w in enumerate(rec.values[-1]):
        moved = np.abs(w - W0[f"W{i + 1}"]).max()
        assert moved > 1e-6  # the run did move the weights
        np.testing.assert_allclose(traj.weights_at(1)[f"W{i + 1}"], w, rtol=0, atol=1e-8 * moved)


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
