"""gdln.reduction: the neural-race ODE against the exact flow, its checks, and the shared
Trajectory type of closed_form, reduce and integrate."""

from __future__ import annotations

import numpy as np
import pytest

import gdln
from gdln.reduction import NotAlignedError, NotDiagonalisableError

TARGET = np.array([[4.0, 4.0, 4.0], [3.0, 3.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])


def mini_routing(M: int = 3, hidden: int = 5):
    """M input modules 3 -> hidden, a shared hidden -> hidden layer, M output modules
    hidden -> 4; input m routed to outputs m and m + 1 (mod M); the same target on every route."""
    n_items, n_feat = TARGET.shape[1], TARGET.shape[0]
    nodes = {f"x{m}": n_items for m in range(M)} | {"h1": hidden, "h2": hidden}
    nodes |= {f"y{o}": n_feat for o in range(M)}
    edges = {f"in{m}": (f"x{m}", "h1") for m in range(M)} | {"shared": ("h1", "h2")}
    edges |= {f"out{o}": ("h2", f"y{o}") for o in range(M)}
    net = gdln.Network(nodes, edges)
    domain = np.repeat(np.arange(M), n_items)
    item = np.tile(np.arange(n_items), M)
    X = {f"x{m}": np.eye(n_items)[item] for m in range(M)}
    gates = {f"x{m}": (domain == m).astype(float) for m in range(M)}
    Y = {}
    for o in range(M):
        on = (domain == o) | ((domain + 1) % M == o)
        gates[f"y{o}"] = on.astype(float)
        Y[f"y{o}"] = TARGET.T[item] * on[:, None]
    return net, X, Y, gates


def test_reduce_matches_integrate_on_an_aligned_problem() -> None:
    net, X, Y, gates = mini_routing()
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y, gates))
    assert modes.n_modes == 3 and modes.residual < 1e-12
    init = gdln.aligned_init(net, modes, 0.3)
    times = np.linspace(0.0, 20.0, 41)
    reduced = gdln.reduce(net, modes, init, times, rtol=1e-12, atol=1e-14)
    exact = gdln.integrate(net, X, Y, init, times, gates, modes=modes, rtol=1e-12, atol=1e-14)
    assert exact.loss[-1] < 1e-3 * exact.loss[0]  # the problem is learned within the window
    np.testing.assert_allclose(reduced.loss, exact.loss, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(reduced.mode_strength, exact.mode_strength, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(reduced.edge_strength, exact.edge_strength, rtol=1e-6, atol=1e-10)
    for e in net.edges:
        np.testing.assert_allclose(reduced.weights[e], exact.weights[e], rtol=1e-6, atol=1e-9)


def test_reduce_limit_reaches_the_target_strengths() -> None:
    net, X, Y, gates = mini_routing()
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y, gates))
    traj = gdln.reduce(net, modes, 0.3, [0.0, 500.0])
    routed = [k for k, s in enumerate(modes.S[0]) if s > 0]
    target = np.linalg.svd(TARGET, compute_uv=False)
    final = traj.mode_strength[-1][:, routed]
    np.testing.assert_allclose(final, np.broadcast_to(target[:, None], final.shape), rtol=1e-7)
    assert abs(traj.loss[-1]) < 1e-9
    assert traj.loss[0] == pytest.approx(
        gdln.correlation_loss(
            net, gdln.gated_correlations(net, X, Y, gates), gdln.aligned_init(net, modes, 0.3)
        ),
        rel=1e-12,
    )


def test_aligned_init_has_the_given_scale() -> None:
    net, X, Y, gates = mini_routing()
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y, gates))
    edge, path = gdln.project(net, modes, gdln.aligned_init(net, modes, 0.2))
    np.testing.assert_allclose(edge, 0.2, rtol=1e-12)
    np.testing.assert_allclose(path, 0.2**3, rtol=1e-12)


def test_mismatch_check_fires_on_non_diagonalisable_correlations() -> None:
    """Two gated pathways that see different random datasets share no singular vectors."""
    rng = np.random.default_rng(0)
    net = gdln.Network(
        {"x": 3, "h1": 3, "h2": 3, "y": 3},
        {"a1": ("x", "h1"), "b1": ("h1", "y"), "a2": ("x", "h2"), "b2": ("h2", "y")},
    )
    P = 20
    X, Y = rng.normal(size=(P, 3)), rng.normal(size=(P, 3))
    first = np.arange(P) < P // 2
    gates = {"h1": first.astype(float), "h2": (~first).astype(float)}
    corr = gdln.gated_correlations(net, X, Y, gates)
    with pytest.raises(NotDiagonalisableError, match=r"residual \S+ exceeds tolerance 1e-06"):
        gdln.shared_modes(net, corr)


def test_unaligned_initial_weights_are_rejected() -> None:
    net, X, Y, gates = mini_routing()
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y, gates))
    rng = np.random.default_rng(1)
    W = {e: 0.1 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    with pytest.raises(NotAlignedError, match="not aligned"):
        gdln.reduce(net, modes, W, [0.0, 1.0])


def test_one_trajectory_type_and_dataset() -> None:
    net, X, Y, gates = mini_routing()
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y, gates))
    times = [0.0, 1.0, 2.0]
    init = gdln.aligned_init(net, modes, 0.3)
    trajectories = [
        gdln.reduce(net, modes, init, times),
        gdln.integrate(net, X, Y, init, times, gates, modes=modes),
        gdln.closed_form([2.0, 1.0], 0.01, times, depth=3),
    ]
    for traj in trajectories:
        assert isinstance(traj, gdln.Trajectory)
        ds = traj.to_dataset(include_weights=True)
        assert {"time", "mode", "path", "edge"} <= set(ds.dims)
        for name, var in ds.data_vars.items():
            assert {"long_name", "units"} <= set(var.attrs), name
        assert ds.loss.dims == ("time",)
        assert ds.mode_strength.dims == ("time", "mode", "path")
        np.testing.assert_array_equal(ds.time, times)
    a, b = (t.to_dataset() for t in trajectories[:2])
    np.testing.assert_allclose(a.mode_strength, b.mode_strength, rtol=1e-5, atol=1e-8)


def test_check_fires_when_input_correlations_leave_the_mode_subspace() -> None:
    """Sigma_x couples the mode direction e1 to e2 while V^T Sigma_x V is a 1x1 (diagonal)
    matrix: the reduction would plateau at a wrong loss, so the check must refuse it."""
    sigma_x = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]])
    w, v = np.linalg.eigh(sigma_x)
    X = np.sqrt(3.0) * (v * np.sqrt(w)) @ v.T  # X^T X / 3 = Sigma_x
    Y = (2.0 * 3.0 * np.linalg.solve(X.T, np.array([1.0, 0.0, 0.0])))[:, None]
    net = gdln.chain([3, 4, 1])
    corr = gdln.gated_correlations(net, X, Y, None)
    np.testing.assert_allclose(corr.sigma_yx[0], [[2.0, 0.0, 0.0]], atol=1e-12)
    with pytest.raises(NotDiagonalisableError, match="exceeds tolerance"):
        gdln.shared_modes(net, corr)
