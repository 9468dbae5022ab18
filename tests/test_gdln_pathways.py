"""gdln.pathways: the exact flow of parallel pathways, and the cut aligned start."""

from __future__ import annotations

import numpy as np
import pytest

import gdln
from gdln.network import GraphError

RTOL = 1e-11


def _parallel_task(seed: int = 0) -> tuple[gdln.Network, np.ndarray, np.ndarray, dict]:
    """Three two-layer pathways x -> h_k -> y gated by the context of each sample (as a ReLN of
    a one-hidden-layer net), on 4 objects x 3 contexts with random targets."""
    rng = np.random.default_rng(seed)
    objects, n_ctx = 4, 3
    X = np.array(
        [np.r_[np.eye(objects)[o], np.eye(n_ctx)[c]] for c in range(n_ctx) for o in range(objects)]
    )
    context = np.repeat(np.arange(n_ctx), objects)
    Y = rng.normal(size=(len(X), 5))
    sets = [{0, 1, 2}, {0, 1}, {1, 2}]
    nodes = {"x": X.shape[1], "y": 5, "a": 6, "b": 4, "c": 5}
    edges = {}
    gates = {}
    for name, S in zip("abc", sets, strict=True):
        edges[f"in_{name}"] = ("x", name)
        edges[f"out_{name}"] = (name, "y")
        gates[name] = np.isin(context, sorted(S)).astype(float)
    return gdln.Network(nodes, edges), X, Y, gates


def test_pathway_flow_equals_integrate_from_a_random_start() -> None:
    net, X, Y, gates = _parallel_task()
    rng = np.random.default_rng(1)
    W0 = {e: 0.3 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    times = np.linspace(0.0, 3.0, 7)
    fast = gdln.pathway_flow(net, X, Y, W0, times, gates, rtol=RTOL, atol=1e-12)
    ref = gdln.integrate(net, X, Y, W0, times, gates=gates, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(fast.loss, ref.loss, rtol=1e-8)
    assert fast.loss[0] == pytest.approx(
        0.5 * np.mean(np.sum((Y - net.forward(W0, X, gates)["y"]) ** 2, axis=1)), rel=1e-12
    )
    for e in net.edges:
        np.testing.assert_allclose(fast.weights[e], ref.weights[e], rtol=1e-7, atol=1e-9)
    assert fast.loss[-1] < 0.6 * fast.loss[0]  # it learns (random targets: not all)


def test_pathway_flow_with_a_time_constant_follows_integrate() -> None:
    """tau dW/dt = -dL/dW: the same flow on a clock stretched by tau."""
    net, X, Y, gates = _parallel_task()
    rng = np.random.default_rng(2)
    W0 = {e: 0.3 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    times, tau = np.linspace(0.0, 6.0, 5), 2.5
    fast = gdln.pathway_flow(net, X, Y, W0, times, gates, tau=tau, rtol=RTOL, atol=1e-12)
    ref = gdln.integrate(net, X, Y, W0, times, gates=gates, tau=tau, rtol=RTOL, atol=1e-12)
    unit = gdln.pathway_flow(net, X, Y, W0, times / tau, gates, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(fast.loss, ref.loss, rtol=1e-8)
    np.testing.assert_allclose(fast.loss, unit.loss, rtol=1e-8)
    assert fast.loss[-1] < 0.9 * fast.loss[0]


def test_cut_aligned_start_has_the_dynamics_of_the_full_network() -> None:
    """Cutting hidden nodes to the pathways' mode counts changes nothing for an aligned start:
    the full-width network started in the same modes (hidden basis padded by zeros) follows
    the same loss curve under the exact flow."""
    net, X, Y, gates = _parallel_task()
    small, W0 = gdln.aligned_pathways(net, X, Y, gates, strength=1e-3)
    for p in net.paths:
        assert small.sizes[p.nodes[1]] <= net.sizes[p.nodes[1]]
        Wp = W0[p.edges[1]] @ W0[p.edges[0]]
        s = np.linalg.svd(Wp, compute_uv=False)
        r = small.sizes[p.nodes[1]]
        np.testing.assert_allclose(s[:r], 1e-3, rtol=1e-12)  # strength in every mode
    full = {}
    for e, w in W0.items():
        src, tgt = net.edges[e].source, net.edges[e].target
        padded = np.zeros(net.weight_shape(e))
        padded[: w.shape[0], : w.shape[1]] = w
        full[e] = padded
        assert small.sizes[tgt if src == "x" else src] == (w.shape[0] if src == "x" else w.shape[1])
    times = np.linspace(0.0, 40.0, 9)
    fast = gdln.pathway_flow(small, X, Y, W0, times, gates, rtol=RTOL, atol=1e-14)
    ref = gdln.integrate(net, X, Y, full, times, gates=gates, rtol=RTOL, atol=1e-14)
    np.testing.assert_allclose(fast.loss, ref.loss, rtol=1e-7)
    assert fast.loss[-1] < 0.1 * fast.loss[0]  # it learns: the comparison is not trivial


def test_path_strength_per_pathway() -> None:
    net, X, Y, gates = _parallel_task()
    strength = {0: 1e-2, 1: 1e-4, 2: 1e-6}
    _, W0 = gdln.aligned_pathways(net, X, Y, gates, strength)
    for k, p in enumerate(net.paths):
        Wp = W0[p.edges[1]] @ W0[p.edges[0]]
        assert np.linalg.norm(Wp, 2) == pytest.approx(strength[k], rel=1e-12)


def test_not_parallel_pathways_are_refused() -> None:
    shared = gdln.Network(
        {"x": 2, "h": 3, "g": 3, "y": 2},
        {"a": ("x", "h"), "b": ("h", "y"), "c": ("x", "g"), "d": ("g", "y"), "e": ("h", "g")},
    )
    with pytest.raises(GraphError, match="has 3 edges"):
        gdln.check_parallel(shared)
    fan = gdln.Network(
        {"x": 2, "h": 3, "y": 2}, {"a": ("x", "h"), "b": ("h", "y"), "c": ("h", "y")}
    )
    with pytest.raises(GraphError, match="edge 'a' lies on paths"):
        gdln.check_parallel(fan)
    two_out = gdln.Network(
        {"x": 2, "h": 3, "y": 2, "z": 1}, {"a": ("x", "h"), "b": ("h", "y"), "c": ("h", "z")}
    )
    with pytest.raises(GraphError, match="one input and one output"):
        gdln.check_parallel(two_out)
    mixed = gdln.Network(
        {"x": 2, "h": 3, "y": 2}, {"a": ("x", "h"), "b": ("h", "y"), "c": ("x", "y")}
    )
    with pytest.raises(GraphError, match="has 1 edges"):
        gdln.check_parallel(mixed)


def test_rkc_solver_follows_the_tight_flow() -> None:
    net, X, Y, gates = _parallel_task()
    small, W0 = gdln.aligned_pathways(net, X, Y, gates, strength=1e-4)
    times = np.linspace(0.0, 60.0, 31)
    tight = gdln.pathway_flow(small, X, Y, W0, times, gates, rtol=RTOL, atol=1e-14)
    fast = gdln.pathway_flow(small, X, Y, W0, times, gates, solver="RKC", rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(fast.loss, tight.loss, rtol=1e-3)
    assert tight.loss[-1] < 0.2 * tight.loss[0]


def test_per_unit_gates_are_refused() -> None:
    net, X, Y, _ = _parallel_task()
    unit_gates = {"a": np.ones((len(X), net.sizes["a"]))}
    W0 = {e: np.zeros(net.weight_shape(e)) for e in net.edges}
    with pytest.raises(gdln.GateError, match="per-sample node gates"):
        gdln.pathway_flow(net, X, Y, W0, [0.0, 1.0], unit_gates)
