"""gdln.network: graph checks, path enumeration, gated forward pass vs the path-sum form."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gdln
from gdln.network import GateError, GraphError, ShapeError


def random_dag(rng: np.random.Generator) -> gdln.Network:
    """A random DAG over 2-6 nodes in a random topological order, every node on some path."""
    n = int(rng.integers(3, 7))
    names = [f"v{k}" for k in range(n)]
    sizes = {v: int(rng.integers(1, 4)) for v in names}
    edges = {}
    for k in range(1, n):
        # each node after the first gets at least one parent among earlier nodes
        parents = {int(rng.integers(0, k))} | {j for j in range(k) if rng.random() < 0.3}
        for j in parents:
            edges[f"e{j}_{k}"] = (names[j], names[k])
    return gdln.Network(sizes, edges)


def random_pathway_gates(net: gdln.Network, P: int, rng: np.random.Generator) -> dict:
    gates = {v: rng.uniform(size=P) for v in net.sizes if rng.random() < 0.6}
    gates |= {e: (rng.random(P) < 0.7).astype(float) for e in net.edges if rng.random() < 0.5}
    return gates


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_forward_equals_path_sum_on_random_graphs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    net = random_dag(rng)
    P = 5
    W = {e: rng.normal(size=net.weight_shape(e)) for e in net.edges}
    X = {u: rng.normal(size=(P, net.sizes[u])) for u in net.inputs}
    gates = random_pathway_gates(net, P, rng)
    h = net.forward(W, X, gates)
    gp = net.path_gates(net.check_gates(gates, P), P)
    for v in net.outputs:
        expected = np.zeros((P, net.sizes[v]))
        for k, p in enumerate(net.paths):
            if p.target == v:
                expected += gp[:, k, None] * (X[p.source] @ net.path_weight(W, p).T)
        np.testing.assert_allclose(h[v], expected, rtol=1e-12, atol=1e-12)
    # W_eff(x) x reproduces the outputs, input by input
    maps = net.effective_map(W, gates, n_samples=P)
    for v in net.outputs:
        total = sum(np.einsum("pij,pj->pi", maps[(v, u)], X[u]) for u in net.inputs)
        np.testing.assert_allclose(h[v], total, rtol=1e-12, atol=1e-12)


def test_per_unit_gates_match_masked_products() -> None:
    rng = np.random.default_rng(1)
    net = gdln.chain([5, 4, 3, 2])
    P = 6
    W = {e: rng.normal(size=net.weight_shape(e)) for e in net.edges}
    X = rng.normal(size=(P, 5))
    g1 = (rng.random((P, 4)) < 0.5).astype(float)
    g2 = rng.uniform(size=(P, 3))
    h = net.forward(W, X, {"h1": g1, "h2": g2})
    W_eff = net.effective_map(W, {"h1": g1, "h2": g2})[("y", "x")]
    for i in range(P):
        brute = W["W3"] @ np.diag(g2[i]) @ W["W2"] @ np.diag(g1[i]) @ W["W1"]
        np.testing.assert_allclose(W_eff[i], brute, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(h["y"][i], brute @ X[i], rtol=1e-12, atol=1e-13)


def test_paths_of_a_diamond_with_a_skip() -> None:
    net = gdln.Network(
        {"x": 2, "a": 3, "b": 3, "y": 1},
        {"xa": ("x", "a"), "xb": ("x", "b"), "ay": ("a", "y"), "by": ("b", "y"), "xy": ("x", "y")},
    )
    assert net.inputs == ("x",) and net.outputs == ("y",)
    assert sorted(p.name for p in net.paths) == ["xa>ay", "xb>by", "xy"]


def test_cycle_is_rejected() -> None:
    with pytest.raises(GraphError, match="cycle"):
        gdln.Network(
            {"x": 1, "a": 1, "b": 1}, {"e1": ("x", "a"), "e2": ("a", "b"), "e3": ("b", "a")}
        )


def test_unknown_node_is_rejected() -> None:
    with pytest.raises(GraphError, match="unknown node 'z'"):
        gdln.Network({"x": 1, "y": 1}, {"e": ("x", "z")})


def test_bad_sizes_and_duplicate_names() -> None:
    with pytest.raises(GraphError, match="size"):
        gdln.Network({"x": 0, "y": 1}, {"e": ("x", "y")})
    with pytest.raises(GraphError, match="unique"):
        gdln.Network({"x": 1, "y": 1}, {"x": ("x", "y")})


@pytest.fixture
def small() -> tuple[gdln.Network, dict, np.ndarray]:
    net = gdln.chain([3, 4, 2])
    W = {"W1": np.ones((4, 3)), "W2": np.ones((2, 4))}
    return net, W, np.ones((5, 3))


def test_gate_shape_mismatch(small) -> None:
    net, W, X = small
    with pytest.raises(GateError, match="shape"):
        net.forward(W, X, {"h1": np.ones((5, 3))})
    with pytest.raises(GateError, match="shape"):
        net.forward(W, X, {"W1": np.ones((5, 4))})  # edge gates are per sample only
    with pytest.raises(GateError, match="shape"):
        net.forward(W, X, {"h1": np.ones(4)})


def test_gate_values_outside_unit_interval(small) -> None:
    net, W, X = small
    for bad in (1.5, -0.1, np.nan):
        g = np.ones(5)
        g[2] = bad
        with pytest.raises(GateError, match=r"outside \[0, 1\]"):
            net.forward(W, X, {"h1": g})


def test_unknown_gate_name(small) -> None:
    net, W, X = small
    with pytest.raises(GateError, match="unknown"):
        net.forward(W, X, {"nope": np.ones(5)})


def test_input_and_weight_shape_mismatch(small) -> None:
    net, W, X = small
    with pytest.raises(ShapeError, match="expected \\(sample, 3\\)"):
        net.forward(W, np.ones((5, 4)), None)
    with pytest.raises(ShapeError, match="W2"):
        net.forward({"W1": W["W1"], "W2": np.ones((4, 2))}, X, None)
    with pytest.raises(ShapeError, match="missing"):
        net.forward({"W1": W["W1"]}, X, None)


def test_path_gates_refuse_per_unit_gates(small) -> None:
    net, _, _ = small
    with pytest.raises(GateError, match="per-unit"):
        net.path_gates(net.check_gates({"h1": np.ones((5, 4))}, 5), 5)


def test_gdln_never_imports_torch() -> None:
    code = "import sys, gdln; gdln.integrate; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
