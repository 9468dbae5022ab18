"""gdln.closed_form and gdln.symbolic: Saxe-McClelland-Ganguli solutions against the exact flow,
gradient descent, the sympy derivations and their invariances."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import gdln
from gdln import symbolic


def mode_problem(depth: int, s: np.ndarray, d: np.ndarray, seed: int = 0, P: int = 30):
    """A chain of ``depth`` matrices on 3 inputs and outputs whose data have exactly
    Sigma_yx = U diag(s) V^T and Sigma_x = V diag(d) V^T, so sigma_yy = sum s^2 / d."""
    rng = np.random.default_rng(seed)
    n = len(s)
    Q = np.linalg.qr(rng.normal(size=(P, n)))[0]
    V = np.linalg.qr(rng.normal(size=(n, n)))[0]
    U = np.linalg.qr(rng.normal(size=(n, n)))[0]
    X = np.sqrt(P) * Q @ np.diag(np.sqrt(d)) @ V.T
    Y = np.sqrt(P) * Q @ np.diag(s / np.sqrt(d)) @ U.T
    net = gdln.chain([n] + [n + 1] * (depth - 1) + [n])
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y))
    return net, X, Y, modes


S = np.array([3.0, 1.5, 0.6])


@pytest.mark.parametrize(
    ("depth", "d"),
    [
        (2, np.ones(3)),
        (2, np.array([0.5, 2.0, 1.3])),
        (3, np.ones(3)),
        (4, np.ones(3)),
        (3, np.array([0.7, 1.0, 1.8])),
    ],
)
def test_closed_form_matches_integrate(depth: int, d: np.ndarray) -> None:
    net, X, Y, modes = mode_problem(depth, S, d)
    np.testing.assert_allclose(modes.S[:, 0] / modes.D[:, 0, 0], S / d, rtol=1e-12)
    u0 = 1e-3
    times = np.linspace(0.0, 12.0, 41)
    init = gdln.aligned_init(net, modes, u0 ** (1.0 / depth))
    exact = gdln.integrate(net, X, Y, init, times, modes=modes, rtol=1e-12, atol=1e-14)
    closed = gdln.closed_form(S, u0, times, depth=depth, d=d)
    np.testing.assert_allclose(closed.mode_strength, exact.mode_strength, rtol=1e-6)
    np.testing.assert_allclose(closed.loss, exact.loss, rtol=1e-6, atol=1e-12)
    # edges stay balanced at u^(1/D)
    np.testing.assert_allclose(closed.edge_strength, exact.edge_strength, rtol=1e-6)


@pytest.mark.parametrize("depth", [2, 3])
def test_closed_form_matches_gradient_descent_with_small_steps(depth: int) -> None:
    net, X, Y, modes = mode_problem(depth, S, np.ones(3), seed=1)
    u0, eta, n_steps = 1e-2, 2e-3, 5000
    init = gdln.aligned_init(net, modes, u0 ** (1.0 / depth))
    gd = gdln.gradient_descent(net, X, Y, init, eta, n_steps, record_every=50, modes=modes)
    closed = gdln.closed_form(S, u0, gd.time, depth=depth)
    err = np.linalg.norm(closed.loss - gd.loss) / np.linalg.norm(gd.loss)
    assert err < 1e-2
    assert np.max(np.abs(closed.mode_strength - gd.mode_strength)) < 1e-2 * S.max()


def test_two_layer_hand_formulas() -> None:
    s, u0, tau = 2.0, 0.01, 1.5
    t = np.linspace(0, 5, 11)
    e = np.exp(2 * s * t / tau)
    hand = s * e / (e - 1 + s / u0)  # SMG 2014, whitened input
    np.testing.assert_allclose(gdln.mode_strength(t, s, u0, tau=tau), hand, rtol=1e-13)
    uf = 1.2
    assert gdln.time_to_reach(uf, s, u0, tau=tau) == pytest.approx(
        tau / (2 * s) * np.log(uf * (s - u0) / (u0 * (s - uf))), rel=1e-13
    )


@pytest.mark.parametrize("depth", [2, 3, 4, 6])
def test_limits_and_time_to_learn(depth: int) -> None:
    s, u0, d = 1.7, 1e-4, 0.8
    assert gdln.mode_strength(0.0, s, u0, depth, d) == pytest.approx(u0, rel=1e-12)
    assert gdln.mode_strength(1e4, s, u0, depth, d) == pytest.approx(s / d, rel=1e-12)
    t_half = gdln.time_to_learn(s, u0, 0.5, depth, d)
    assert gdln.mode_strength(t_half, s, u0, depth, d) == pytest.approx(0.5 * s / d, rel=1e-10)
    u = np.array([1e-3, 0.3, 1.5, 2.1])
    t = gdln.time_to_reach(u, s, u0, depth, d)
    np.testing.assert_allclose(gdln.mode_strength(t, s, u0, depth, d), u, rtol=1e-10)
    assert np.all(np.diff(t) > 0)


def test_two_layer_decays_from_above() -> None:
    s, u0 = 1.0, 3.0
    t = np.array([0.0, 0.3, 30.0])
    u = gdln.mode_strength(t, s, u0)
    assert u[0] == pytest.approx(u0) and u[1] < u0 and u[2] == pytest.approx(s)


@settings(max_examples=60, deadline=None)
@given(
    s=st.floats(0.1, 10.0),
    frac=st.floats(1e-4, 0.9),
    d=st.floats(0.2, 5.0),
    tau=st.floats(0.1, 10.0),
    c=st.floats(0.2, 5.0),
    depth=st.sampled_from([2, 3, 4]),
)
def test_time_rescaling(s: float, frac: float, d: float, tau: float, c: float, depth: int) -> None:
    """u(t; s, u0, d, tau) = u(t / tau; s, u0, d, 1), and scaling s and d by c speeds time by c."""
    u0 = frac * s / d
    t = np.linspace(0.0, 3.0, 7) * tau / s
    u = gdln.mode_strength(t, s, u0, depth, d, tau)
    np.testing.assert_allclose(u, gdln.mode_strength(t / tau, s, u0, depth, d, 1.0), rtol=1e-9)
    np.testing.assert_allclose(
        gdln.mode_strength(t, c * s, u0, depth, c * d, tau),
        gdln.mode_strength(c * t, s, u0, depth, d, tau),
        rtol=1e-9,
    )
    assert np.all(np.diff(u) >= -1e-12 * s / d) and np.all(u <= s / d * (1 + 1e-12))


def test_sympy_two_layer_solution_equals_hand_formula() -> None:
    x = symbolic
    hand = (x.s / x.d) / (1 - (1 - x.s / (x.d * x.u0)) * sp.exp(-2 * x.s * x.t / x.tau))
    assert sp.simplify(x.two_layer_solution() - hand) == 0


def test_sympy_time_for_depth_two_equals_hand_formula() -> None:
    x = symbolic
    expr = x.time_to_reach(2)
    hand = x.tau / (2 * x.s) * sp.log(x.u * (x.s - x.d * x.u0) / (x.u0 * (x.s - x.d * x.u)))
    rng = np.random.default_rng(0)
    for _ in range(5):
        s, d, tau = rng.uniform(0.5, 3, size=3)
        u0, u = np.sort(rng.uniform(0.01, 0.99, size=2)) * s / d
        point = {x.s: s, x.d: d, x.tau: tau, x.u0: u0, x.u: u}
        assert float(expr.subs(point)) == pytest.approx(float(hand.subs(point)), rel=1e-12)


@pytest.mark.parametrize("depth", [2, 3, 4, 5])
def test_sympy_antiderivative_differentiates_back(depth: int) -> None:
    z = symbolic.z
    F = symbolic.antiderivative(depth)
    assert sp.simplify(sp.diff(F, z) - 1 / (z ** (depth - 1) * (1 - z**depth))) == 0
    assert F.subs(z, sp.Rational(1, 3)).evalf().is_real


def test_closed_form_errors() -> None:
    with pytest.raises(ValueError, match="depth"):
        gdln.mode_strength(1.0, 1.0, 0.1, depth=1)
    with pytest.raises(ValueError, match="positive"):
        gdln.mode_strength(1.0, -1.0, 0.1)
    with pytest.raises(ValueError, match="u0"):
        gdln.mode_strength(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="u0 < s/d"):
        gdln.mode_strength(1.0, 1.0, 2.0, depth=3)
    with pytest.raises(ValueError, match="fraction"):
        gdln.time_to_learn(1.0, 0.1, fraction=1.0)


@pytest.mark.parametrize("depth", [3, 4])
def test_numeric_time_to_reach_equals_the_sympy_expression(depth: int) -> None:
    x = symbolic
    expr = x.time_to_reach(depth)
    s, d, tau, u0, u = 1.3, 0.9, 2.0, 0.01, 1.2
    point = {x.s: s, x.d: d, x.tau: tau, x.u0: u0, x.u: u}
    assert gdln.time_to_reach(u, s, u0, depth, d, tau) == pytest.approx(
        float(expr.subs(point).evalf()), rel=1e-10
    )
