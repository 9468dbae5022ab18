"""Tests of the batched two-layer ReLU net and its training (relu_lens.two_layer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gdln.tasks import separable_binary
from relu_lens import alignment as al
from relu_lens import two_layer as tl


def batch(n: int, D: int, mu: float, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    tasks = [separable_binary(n, D, mu, seed=s) for s in seeds]
    X = torch.as_tensor(np.stack([t.X for t in tasks]))
    y = torch.as_tensor(np.stack([t.y for t in tasks]))
    return X, y


@pytest.mark.parametrize("kind", ["exp", "logistic"])
def test_gradients_match_autograd(kind: str) -> None:
    X, y = batch(9, 4, 0.3, [0, 1, 2])
    W, v = tl.init_gaussian(3, 6, 4, std=0.7, seed=5)
    gW, gv, _, _, L = tl.gradients(W, v, X, y, kind)
    Wr, vr = W.clone().requires_grad_(), v.clone().requires_grad_()
    _, f = tl.forward(Wr, vr, X)
    tl.summed_loss(f, y, kind).sum().backward()
    torch.testing.assert_close(gW, Wr.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gv, vr.grad, rtol=1e-10, atol=1e-12)
    # the summed loss, by a plain loop
    for r in range(3):
        f_loop = [sum(float(v[r, j]) * max(float(W[r, j] @ X[r, i]), 0.0) for j in range(6))
                  for i in range(9)]  # fmt: skip
        q = np.asarray(f_loop) * y[r].numpy()
        ref = np.exp(-q).sum() if kind == "exp" else np.log1p(np.exp(-q)).sum()
        assert float(L[r]) == pytest.approx(ref, rel=1e-12)


def test_batched_training_equals_single_runs() -> None:
    X, y = batch(8, 5, 0.4, [0, 1, 2, 3])
    W, v = tl.init_balanced(4, 6, 5, eps=1e-3, seed=1)
    together = tl.train(W, v, X, y, eta=5e-3, steps=300, record_every=100)
    for r in range(4):
        alone = tl.train(W[r : r + 1], v[r : r + 1], X[r : r + 1], y[r : r + 1], 5e-3, 300,
                         record_every=100)  # fmt: skip
        np.testing.assert_allclose(together.W[:, r], alone.W[:, 0], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(together.loss[:, r], alone.loss[:, 0], rtol=1e-12)


def test_balanced_init_and_gaussian_init() -> None:
    W, v = tl.init_balanced(3, 8, 50, eps=1e-2, seed=0)
    torch.testing.assert_close(v.abs(), W.norm(dim=2))
    assert (torch.sign(v[0]) == torch.as_tensor(tl.balanced_signs(8))).all()
    # W0 entries N(0, 1/D): squared row norms of W/eps average to about 1
    assert float((W / 1e-2).pow(2).sum(2).mean()) == pytest.approx(1.0, abs=0.15)
    Wg, vg = tl.init_gaussian(2, 50, 200, std=1e-6, seed=0)
    assert float(Wg.std()) == pytest.approx(1e-6, rel=0.05)
    assert float(vg.std()) == pytest.approx(1e-6, rel=0.2)


def test_balance_conserved_and_signs_fixed_under_training() -> None:
    X, y = batch(10, 6, 0.3, [0, 1])
    W, v = tl.init_balanced(2, 8, 6, eps=1e-2, seed=3)
    signs0 = torch.sign(v)

    def monitor(pre, W, v):
        return {"same_sign": (torch.sign(v) == signs0).all(1)}

    traj = tl.train(W, v, X, y, eta=2e-3, steps=4000, record_every=200, monitor=monitor)
    assert traj.monitors["same_sign"].all()
    assert traj.loss[-1].max() < 0.2 * traj.loss[0].min()  # it did train
    gap = traj.v**2 - (traj.W**2).sum(-1)
    scale = (traj.W**2).sum(-1).max()
    assert scale > 1e-2  # weights grew far beyond the init (eps^2 = 1e-4)
    assert np.abs(gap).max() < 1e-3 * scale
    # the drift is a discretisation effect: a larger step drifts more
    big = tl.train(W, v, X, y, eta=8e-3, steps=1000, record_every=1000)
    gap_big = np.abs(big.v[-1] ** 2 - (big.W[-1] ** 2).sum(-1)).max()
    assert gap_big > np.abs(gap[-1]).max()


def test_worst_case_init_is_active_on_one_own_point() -> None:
    task = separable_binary(10, 12, 0.3, seed=2)
    W, v = tl.init_worst_case(task.X, task.y, hidden=8, eps=1e-5, seed=0)
    active = W[0].numpy() @ task.X.T > 0
    assert (active.sum(1) == 1).all()
    own = task.y[active.argmax(1)]
    np.testing.assert_array_equal(own, tl.balanced_signs(8))
    torch.testing.assert_close(W[0].norm(dim=1), torch.full((8,), 1e-5, dtype=torch.float64))
    torch.testing.assert_close(v[0].abs(), W[0].norm(dim=1))


def test_single_point_family_isolates_every_point() -> None:
    task = separable_binary(9, 12, 0.3, seed=4)
    dirs, points = tl.single_point_family(task.X)
    np.testing.assert_array_equal(points, np.arange(9))  # n <= D: every point can be isolated
    active = dirs @ task.X.T > 0
    np.testing.assert_array_equal(active, np.eye(9, dtype=bool))
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    # a point inside the cone of the others is left out
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert tl.single_point_family(X)[1].tolist() == [0, 1]


def test_single_point_direction_none_when_inside_cone() -> None:
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # x_3 is in the cone of x_1, x_2
    assert tl.single_point_direction(X, 2) is None
    w = tl.single_point_direction(X, 0)
    assert w is not None
    assert (X @ w > 0).tolist() == [True, False, False]


def test_halving_the_step_barely_moves_alignment_times() -> None:
    """GD as a stand-in for gradient flow: t_align at eta and eta/2 differ by < 3%."""
    n, h, eps = 8, 10, 1e-30
    tasks = [separable_binary(n, n, 0.3, seed=s) for s in range(3)]
    W, _ = tl.init_balanced(3, h, n, eps, seed=0)
    W = torch.cat([W] + [tl.init_worst_case(t.X, t.y, h, eps, s)[0] for s, t in enumerate(tasks)])
    W, v = tl.balance(W)
    X = torch.as_tensor(np.stack([t.X for t in tasks] * 2))
    y = torch.as_tensor(np.stack([t.y for t in tasks] * 2))
    times = []
    for eta in (0.04 / (2 * n), 0.02 / (2 * n)):
        steps = round(0.8 / eta)
        traj = tl.train(W, v, X, y, eta, steps, record_every=steps, monitor=al.aligned_monitor(y))
        times.append(al.t_align(traj.monitors["aligned"], eta))
    assert np.isfinite(times[0]).all()
    rel = np.abs(times[0] - times[1]) / times[1]
    assert rel.max() < 0.03, rel


def test_diverging_training_raises() -> None:
    X, y = batch(8, 4, 0.3, [0])
    W, v = tl.init_gaussian(1, 4, 4, std=3.0, seed=0)
    with pytest.raises(FloatingPointError, match="smaller eta"):
        tl.train(W, v, X * 50, y, eta=10.0, steps=50, record_every=1)
