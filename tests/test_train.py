"""Training loop: snapshots, the clock, divergence, streamed recording."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from relu_lens import effective_weights
from relu_lens.models import mlp
from relu_lens.recorders import CallbackRecorder, EffectiveWeightStream
from relu_lens.train import TrainingDiverged, log_spaced_steps, train


def test_log_spaced_steps():
    steps = log_spaced_steps(1000, 12)
    assert steps[0] == 0 and steps[-1] == 1000
    assert steps == sorted(set(steps)) and 8 <= len(steps) <= 12
    gaps = np.diff(steps)
    assert gaps[-1] > gaps[0]  # denser early


def test_full_batch_gd_follows_the_flow_clock():
    """Full-batch SGD on the (1/2P) MSE equals W <- W - lr * grad, so the recorded time t =
    k * lr and the weights match a hand-written gradient descent on a linear model."""
    torch.manual_seed(0)
    X, Y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False, dtype=torch.float64))
    W = model[0].weight.detach().clone()
    rec = CallbackRecorder(lambda m: m[0].weight.detach().clone())
    out = train(
        model,
        X,
        Y,
        steps=5,
        lr=0.1,
        loss="mse",
        snapshot_steps=[0, 5],
        recorders=[rec],
        progress=False,
    )
    for _ in range(5):
        W = W - 0.1 * (-(Y - X @ W.T).T @ X / 10)
    torch.testing.assert_close(rec.values[-1], W)
    assert out.snapshot_times == [0.0, 0.5]


def test_diverging_run_stops_with_error_and_keeps_records(tmp_path):
    torch.manual_seed(0)
    X = torch.randn(32, 4)
    Y = 100 * torch.randn(32, 2)
    model = mlp(4, [16], 2)
    rec = CallbackRecorder(lambda m: 1)
    stream = EffectiveWeightStream(tmp_path / "w.nc", X[:5], model)
    with pytest.raises(TrainingDiverged, match="lower the step size"):
        train(
            model,
            X,
            Y,
            steps=200,
            lr=10.0,
            loss="mse",
            snapshot_steps=[0, 1, 2, 200],
            recorders=[rec, stream],
            progress=False,
        )
    assert len(rec.values) >= 1
    with xr.open_dataset(tmp_path / "w.nc") as ds:
        assert ds.sizes["time"] == len(rec.values)
        assert np.isfinite(ds.W_eff.isel(time=0)).all()


@pytest.mark.parametrize("representation", ["W", "Z"])
def test_stream_matches_direct_computation(tmp_path, representation):
    torch.manual_seed(1)
    X, y = torch.randn(40, 12), torch.randint(0, 3, (40,))
    model = mlp(12, [6, 5], 3, bias=True)
    path = tmp_path / "s.nc"
    stream = EffectiveWeightStream(
        path, X[:13], model, representation, chunk_size=4, time_per_step=0.05
    )
    rec = CallbackRecorder(lambda m: effective_weights(m, X[:13]))
    train(
        model,
        X,
        y,
        steps=6,
        lr=0.05,
        batch_size=8,
        snapshot_steps=[0, 3, 6],
        recorders=[stream, rec],
        progress=False,
    )
    assert not list(tmp_path.glob(".*tmp*"))
    with xr.open_dataset(path) as ds:
        np.testing.assert_allclose(ds.time.values, [0.0, 0.15, 0.3])
        for k, eff in enumerate(rec.values):
            W = ds.W_eff[k].values if representation == "W" else ds.Z[k].values @ ds.Q[k].values.T
            np.testing.assert_allclose(W, eff.W.numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(ds.b_eff[k].values, eff.b.numpy(), rtol=1e-5, atol=1e-6)


def test_bad_inputs():
    model = mlp(3, [2], 1)
    with pytest.raises(ValueError, match="samples"):
        train(model, torch.randn(4, 3), torch.randn(5, 1), steps=1, lr=0.1, progress=False)
    with pytest.raises(ValueError, match="optimizer must be"):
        train(model, torch.randn(4, 3), torch.randn(4, 1), steps=1, lr=0.1, optimizer="SGD")
    with pytest.raises(ValueError, match="lr > 0"):
        train(model, torch.randn(4, 3), torch.randn(4, 1), steps=1, lr=0.0, progress=False)


def test_torch_threads_restored_after_concurrent_use():
    """Threaded dask workers enter torch_threads concurrently; the outer count comes back."""
    import threading

    from relu_lens.train import torch_threads

    before = torch.get_num_threads()
    inside = threading.Barrier(2)

    def work() -> None:
        with torch_threads(1):
            inside.wait()
            assert torch.get_num_threads() == 1

    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), torch_threads(1):
        raise KeyError
    assert torch.get_num_threads() == before
