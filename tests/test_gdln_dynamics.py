"""gdln.dynamics and gdln.correlations: gradients, the exact flow, its limits, its Euler steps."""

from __future__ import annotations

import numpy as np
import pytest

import gdln
from gdln.dynamics import DivergenceError, _Layout, _Problem
from gdln.network import GateError


def branching_problem(seed: int = 0, P: int = 12):
    """Two inputs, a shared hidden node, a skip edge and two outputs, with pathway gates."""
    rng = np.random.default_rng(seed)
    net = gdln.Network(
        {"x": 3, "x2": 2, "h": 4, "h2": 3, "y": 2, "z": 1},
        {
            "A": ("x", "h"),
            "B": ("x2", "h"),
            "C": ("h", "y"),
            "D": ("x", "h2"),
            "E": ("h2", "y"),
            "F": ("h", "h2"),
            "G": ("h2", "z"),
        },
    )
    X = {"x": rng.normal(size=(P, 3)), "x2": rng.normal(size=(P, 2))}
    Y = {"y": rng.normal(size=(P, 2)), "z": rng.normal(size=(P, 1))}
    gates = {
        "h": rng.uniform(size=P),
        "A": (rng.random(P) < 0.6).astype(float),
        "y": rng.uniform(size=P),
        "x2": rng.uniform(size=P),
    }
    W = {e: 0.5 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    return net, X, Y, gates, W


def finite_difference(net, X, Y, gates, W, h: float = 1e-6) -> dict:
    problem = _Problem(net, X, Y, gates, gdln.SquaredError(), "layers")
    out = {}
    for name, w in W.items():
        grad = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            plus = {k: v.copy() for k, v in W.items()}
            minus = {k: v.copy() for k, v in W.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            grad[idx] = (problem.loss_value(plus) - problem.loss_value(minus)) / (2 * h)
        out[name] = grad
    return out


def test_layer_gradient_equals_path_sum_and_finite_differences() -> None:
    net, X, Y, gates, W = branching_problem()
    layers = gdln.loss_gradient(net, W, X, Y, gates)
    paths = gdln.loss_gradient(net, W, X, Y, gates, form="paths")
    fd = finite_difference(net, X, Y, gates, W)
    for e in net.edges:
        np.testing.assert_allclose(layers[e], paths[e], rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(layers[e], fd[e], rtol=1e-6, atol=1e-8)


def test_layer_gradient_with_per_unit_gates_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    net = gdln.chain([4, 5, 3, 2])
    P = 7
    X, Y = rng.normal(size=(P, 4)), rng.normal(size=(P, 2))
    gates = {"h1": (rng.random((P, 5)) < 0.5).astype(float), "h2": rng.uniform(size=(P, 3))}
    W = {e: rng.normal(size=net.weight_shape(e)) for e in net.edges}
    grad = gdln.loss_gradient(net, W, X, Y, gates)
    fd = finite_difference(net, X, Y, gates, W)
    for e in net.edges:
        np.testing.assert_allclose(grad[e], fd[e], rtol=1e-6, atol=1e-8)
    with pytest.raises(GateError, match="per-unit"):
        gdln.loss_gradient(net, W, X, Y, gates, form="paths")


def test_correlation_loss_equals_sample_loss() -> None:
    net, X, Y, gates, W = branching_problem(seed=5)
    corr = gdln.gated_correlations(net, X, Y, gates)
    problem = _Problem(net, X, Y, gates, gdln.SquaredError(), "layers")
    assert gdln.correlation_loss(net, corr, W) == pytest.approx(problem.loss_value(W), rel=1e-12)


def test_integrate_starts_at_the_initial_condition_and_forms_agree() -> None:
    net, X, Y, gates, W = branching_problem(seed=1)
    times = [0.0, 0.5, 1.0]
    a = gdln.integrate(net, X, Y, W, times, gates, rtol=1e-10, atol=1e-12)
    b = gdln.integrate(net, X, Y, W, times, gates, form="paths", rtol=1e-10, atol=1e-12)
    for e in net.edges:
        np.testing.assert_array_equal(a.weights[e][0], W[e])
        np.testing.assert_allclose(a.weights[e], b.weights[e], rtol=1e-7, atol=1e-9)
    assert np.all(np.diff(a.loss) < 0)  # gradient flow decreases the loss


def test_long_time_limit_is_the_gated_least_squares_minimum() -> None:
    """Two gated pathways x -> h_k -> y; their maps are free, so the flow's limit is the
    minimum of sum_i ||y_i - g1_i W1 x_i - g2_i W2 x_i||^2, solved by lstsq."""
    rng = np.random.default_rng(2)
    P, n_x, n_y = 40, 3, 2
    net = gdln.Network(
        {"x": n_x, "h1": 3, "h2": 3, "y": n_y},
        {"a1": ("x", "h1"), "b1": ("h1", "y"), "a2": ("x", "h2"), "b2": ("h2", "y")},
    )
    X, Y = rng.normal(size=(P, n_x)), rng.normal(size=(P, n_y))
    g1, g2 = rng.uniform(size=P), (rng.random(P) < 0.5).astype(float)
    gates = {"h1": g1, "h2": g2}
    W0 = {e: 0.3 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    traj = gdln.integrate(net, X, Y, W0, [0.0, 400.0], gates, rtol=1e-10, atol=1e-12)
    features = np.hstack([g1[:, None] * X, g2[:, None] * X])
    theta = np.linalg.lstsq(features, Y, rcond=None)[0]
    best = np.sum((Y - features @ theta) ** 2) / (2 * P)
    assert traj.loss[-1] == pytest.approx(best, rel=1e-8)
    W = traj.weights_at(1)
    np.testing.assert_allclose(W["b1"] @ W["a1"], theta[:n_x].T, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(W["b2"] @ W["a2"], theta[n_x:].T, rtol=1e-5, atol=1e-7)


def test_gradient_descent_converges_to_the_flow_at_first_order() -> None:
    """GD is the Euler scheme of the flow: halving eta halves the error at fixed t."""
    net, X, Y, gates, W = branching_problem(seed=4)
    T = 1.0
    flow = gdln.integrate(net, X, Y, W, [T], gates, rtol=1e-12, atol=1e-14)
    errors = []
    for eta in (0.02, 0.01, 0.005):
        gd = gdln.gradient_descent(net, X, Y, W, eta, round(T / eta), gates, round(T / eta))
        assert gd.time[-1] == pytest.approx(T)
        errors.append(
            np.sqrt(sum(np.sum((gd.weights[e][-1] - flow.weights[e][-1]) ** 2) for e in W))
        )
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 2.0, atol=0.1)


def test_tau_rescales_time() -> None:
    net, X, Y, gates, W = branching_problem(seed=6)
    a = gdln.integrate(net, X, Y, W, [0.0, 0.4, 0.8], gates, tau=1.0, rtol=1e-11, atol=1e-13)
    b = gdln.integrate(net, X, Y, W, [0.0, 1.2, 2.4], gates, tau=3.0, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-8)


def test_per_unit_gated_flow_runs_and_decreases_the_loss() -> None:
    rng = np.random.default_rng(0)
    net = gdln.chain([20, 16, 16, 4])
    P = 50
    X, Y = rng.normal(size=(P, 20)), rng.normal(size=(P, 4))
    gates = {h: (rng.random((P, 16)) < 0.5).astype(float) for h in ("h1", "h2")}
    W0 = {e: rng.normal(size=net.weight_shape(e)) / np.sqrt(16) for e in net.edges}
    traj = gdln.integrate(net, X, Y, W0, np.linspace(0, 2, 5), gates, rtol=1e-8)
    assert np.all(np.diff(traj.loss) < 0)
    # the trajectory's W_eff reproduces its outputs
    maps = traj.effective_map(gates)[("y", "x")]
    outs = traj.function(X, gates)["y"]
    np.testing.assert_allclose(np.einsum("tpij,pj->tpi", maps, X), outs, rtol=1e-10, atol=1e-12)


def test_gradient_descent_divergence_is_reported() -> None:
    net, X, Y, gates, W = branching_problem(seed=7)
    with pytest.raises(DivergenceError, match="smaller step"):
        gdln.gradient_descent(net, X, Y, {e: 10 * w for e, w in W.items()}, 50.0, 200, gates)


def test_bad_time_grids_and_sample_counts() -> None:
    net, X, Y, gates, W = branching_problem()
    with pytest.raises(ValueError, match="increasing"):
        gdln.integrate(net, X, Y, W, [1.0, 0.5], gates)
    with pytest.raises(ValueError, match="numbers of samples"):
        gdln.integrate(net, X, {k: v[:-1] for k, v in Y.items()}, W, [1.0], gates)


@pytest.mark.parametrize("sizes", [[10, 7, 3], [10, 7, 5, 3], [10, 7, 5, 4, 3]])
@pytest.mark.parametrize("first_layer", ["run", "ungated"])
def test_always_on_first_layer_units_factor_through_the_inputs(
    sizes: list[int], first_layer: str
) -> None:
    """With fewer inputs than samples (10 < 40), the first-layer units active on every sample
    (here units 2-4, or the whole ungated layer) run through the inputs: the same loss and
    gradient as the edge-by-edge form, at every depth."""
    rng = np.random.default_rng(9)
    n_samples = 40
    net = gdln.chain(sizes)
    X, Y = rng.normal(size=(n_samples, 10)), rng.normal(size=(n_samples, sizes[-1]))
    gates = {f"h{k}": (rng.random((n_samples, n)) < 0.6).astype(float)
             for k, n in enumerate(sizes[1:-1], start=1)}  # fmt: skip
    if first_layer == "run":
        gates["h1"][:, 2:5] = 1.0
        expected = (slice(2, 5), [slice(0, 2), slice(5, 7)])
    else:
        del gates["h1"]
        expected = (slice(0, 7), [])
    W = {e: 0.5 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    problem = _Problem(net, X, Y, gates, gdln.SquaredError(), "layers")
    assert problem.layout.dense and problem.factor == expected
    plain = {**gates, "W1": np.ones(n_samples)}  # an edge gate: edge by edge, no factor
    assert _Problem(net, X, Y, plain, gdln.SquaredError(), "layers").layout.dense is False
    fast = gdln.loss_gradient(net, W, X, Y, gates)
    slow = gdln.loss_gradient(net, W, X, Y, plain)
    for e in net.edges:
        np.testing.assert_allclose(fast[e], slow[e], rtol=1e-12, atol=1e-13)
    theta = problem.pack(W)
    assert problem.loss_at(theta) == pytest.approx(problem.loss_value(W), rel=1e-13)


@pytest.mark.parametrize("n_samples", [6, 40])
def test_dense_and_kernel_forms_are_the_edge_by_edge_flow(n_samples: int) -> None:
    """A chain runs as dense layers, with the input kernel W_1 = W_1(0) + Phi X when the
    samples are few (6 <= 1.5 x 10 inputs); an edge gate of ones forces the edge-by-edge form.
    All are the same flow and the same gradient descent."""
    rng = np.random.default_rng(8)
    net = gdln.chain([10, 7, 5, 3])
    X, Y = rng.normal(size=(n_samples, 10)), rng.normal(size=(n_samples, 3))
    gates = {
        "h1": (rng.random((n_samples, 7)) < 0.6).astype(float),
        "h2": rng.uniform(size=(n_samples, 5)),
    }
    W0 = {e: 0.5 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    plain = {**gates, "W2": np.ones(n_samples)}
    assert _Problem(net, X, Y, plain, gdln.SquaredError(), "layers").layout.dense is False
    layout = _Layout.choose(net, {"x": X}, set(gates), "layers", W0)
    assert layout.dense and layout.kernel == (n_samples == 6)
    times = [0.0, 0.3, 1.0]
    a = gdln.integrate(net, X, Y, W0, times, gates, rtol=1e-11, atol=1e-13)
    b = gdln.integrate(net, X, Y, W0, times, plain, rtol=1e-11, atol=1e-13)
    c = gdln.gradient_descent(net, X, Y, W0, 0.05, 20, gates, record_every=10)
    d = gdln.gradient_descent(net, X, Y, W0, 0.05, 20, plain, record_every=10)
    for e in net.edges:
        np.testing.assert_allclose(a.weights[e], b.weights[e], rtol=1e-8, atol=1e-11)
        np.testing.assert_allclose(c.weights[e], d.weights[e], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-9)


@pytest.mark.parametrize("n_samples", [6, 40])
def test_float32_gradient_descent_follows_float64(n_samples: int) -> None:
    """dtype=np.float32 (dense form, with and without the input kernel): float64 weights,
    exact at step 0, within float32 rounding of the float64 run after 300 cross-entropy steps;
    an unknown dtype and a network without a dense form are refused."""
    rng = np.random.default_rng(9)
    net = gdln.chain([10, 7, 5, 3])
    X = rng.normal(size=(n_samples, 10))
    Y = np.eye(3)[rng.integers(0, 3, n_samples)]
    gates = {v: (rng.random((n_samples, n)) < 0.6).astype(float) for v, n in (("h1", 7), ("h2", 5))}
    W0 = {e: 0.5 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    run = {"loss": gdln.CrossEntropy(), "record_every": 100}
    a = gdln.gradient_descent(net, X, Y, W0, 0.05, 300, gates, **run)
    b = gdln.gradient_descent(net, X, Y, W0, 0.05, 300, gates, dtype=np.float32, **run)
    assert b.attrs["dtype"] == "float32" and a.attrs["dtype"] == "float64"
    for e in net.edges:
        assert b.weights[e].dtype == np.float64
        np.testing.assert_array_equal(b.weights[e][0], W0[e])
        scale = np.abs(a.weights[e][-1]).max()
        np.testing.assert_allclose(b.weights[e], a.weights[e], rtol=0, atol=1e-5 * scale)
        assert not np.array_equal(b.weights[e][-1], a.weights[e][-1])  # float32 did run
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-5)
    assert a.loss[-1] < 0.5 * a.loss[0]
    with pytest.raises(ValueError, match="dtype"):
        gdln.gradient_descent(net, X, Y, W0, 0.05, 3, gates, dtype=np.float16)
    edge_gated = {**gates, "W2": np.ones(n_samples)}
    with pytest.raises(ValueError, match="dense layer form"):
        gdln.gradient_descent(net, X, Y, W0, 0.05, 3, edge_gated, dtype=np.float32)
