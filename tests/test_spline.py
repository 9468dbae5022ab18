"""Tests of relu_lens.spline: representation, merging, the constructive interpolant, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relu_lens.spline import (
    Spline,
    adaptive_nodes,
    constructive_interpolant,
    curvature_density,
    error_norms,
    interpolant,
    make_spline,
    to_net_params,
    uniform_nodes,
)

finite = st.floats(-5, 5, allow_nan=False, allow_infinity=False)


def brute_force(alpha: float, beta: float, knots: np.ndarray, jumps: np.ndarray, x: np.ndarray):
    """S(x) term by term, one Python loop per knot."""
    out = alpha + beta * x
    for t, lam in zip(knots, jumps, strict=True):
        out = out + lam * np.where(x > t, x - t, 0.0)
    return out


@settings(max_examples=60, deadline=None)
@given(
    alpha=finite,
    beta=finite,
    terms=st.lists(st.tuples(st.sampled_from([-1.0, -0.5, 0.0, 0.25, 2.0]), finite), max_size=10),
)
def test_make_spline_merges_coincident_knots_without_changing_s(alpha, beta, terms):
    knots = np.array([t for t, _ in terms])
    jumps = np.array([lam for _, lam in terms])
    s = make_spline(alpha, beta, knots, jumps)
    x = np.linspace(-3, 3, 1201)
    np.testing.assert_allclose(s(x), brute_force(alpha, beta, knots, jumps, x), atol=1e-11)
    totals: dict[float, float] = {}
    for t, lam in terms:
        totals[t] = totals.get(t, 0.0) + lam
    assert s.n_knots == sum(1 for total in totals.values() if total != 0)
    assert np.all(np.diff(s.knots) > 0)
    assert np.all(s.jumps != 0)


def test_make_spline_merged_knot_stays_between_its_neighbours():
    """Seven equal knots next to one an ulp below: the merged knot must stay where they are
    (sum / count rounds 7 x t / 7 down by 2 ulp here, onto or past the neighbour; found by
    hypothesis in test_knots)."""
    t = -9.180529521276107
    below = np.nextafter(t, -np.inf)
    s = make_spline(0.0, 0.0, [t] * 7 + [below], [1.0] * 8)
    np.testing.assert_array_equal(s.knots, [below, t])
    np.testing.assert_array_equal(s.jumps, [1.0, 7.0])


def test_make_spline_tolerance_merges_near_knots_and_drops_small_jumps():
    s = make_spline(0.0, 0.0, [0.5, 0.0, 1e-9, 2.0], [1.0, 2.0, 3.0, 1e-8], 1e-6, 1e-6)
    np.testing.assert_allclose(s.knots, [0.5e-9, 0.5])
    np.testing.assert_allclose(s.jumps, [5.0, 1.0])


def test_spline_rejects_unsorted_knots():
    with pytest.raises(ValueError, match="strictly increasing"):
        Spline(0.0, 0.0, np.array([1.0, 0.0]), np.array([1.0, 1.0]))


def test_slope_and_intercept_match_finite_differences():
    s = make_spline(0.3, -1.0, [-0.5, 0.1, 0.7], [2.0, -3.0, 1.5])
    x = np.array([-0.9, -0.2, 0.4, 0.95])
    eps = 1e-6
    fd = (s(x + eps) - s(x - eps)) / (2 * eps)
    np.testing.assert_allclose(s.slope(x), fd, atol=1e-8)
    np.testing.assert_allclose(s.slope(x) * x + s.intercept(x), s(x), atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(alpha=finite, beta=finite, terms=st.lists(st.tuples(finite, finite), max_size=8))
def test_to_net_params_computes_the_same_function(alpha, beta, terms):
    s = make_spline(alpha, beta, [t for t, _ in terms], [lam for _, lam in terms])
    net = to_net_params(s)
    assert net.w.size == s.n_knots + (2 if beta != 0 else 0)
    x = np.linspace(-7, 7, 701)
    np.testing.assert_allclose(net(x), s(x), atol=1e-11)


def test_interpolant_passes_through_nodes_and_is_linear_between():
    nodes = np.array([-1.0, -0.3, 0.2, 0.9, 1.0])
    s = interpolant(np.sin, nodes)
    assert s.n_knots == nodes.size - 1
    np.testing.assert_allclose(s(nodes), np.sin(nodes), atol=1e-15)
    mid = 0.5 * (nodes[1:] + nodes[:-1])
    np.testing.assert_allclose(s(mid), 0.5 * (np.sin(nodes[1:]) + np.sin(nodes[:-1])), atol=1e-15)


@pytest.mark.parametrize("k", [4, 8, 16, 32])
def test_uniform_interpolant_of_square_has_the_textbook_errors(k):
    # Linear interpolation of x^2 on cells of width h: error s (h - s), max h^2 / 4, and
    # mean square (1/h) int_0^h s^2 (h - s)^2 ds = h^4 / 30.
    h = 2.0 / k
    s = constructive_interpolant(np.square, -1.0, 1.0, k, "uniform")
    x = np.linspace(-1, 1, 64 * k + 1)
    sup, l2 = error_norms(x, s(x) - x**2)
    assert sup == pytest.approx(h**2 / 4, rel=1e-12)
    assert l2 == pytest.approx(h**2 / np.sqrt(30), rel=1e-3)


def test_uniform_interpolant_converges_at_second_order():
    def g(x):
        return np.sin(3 * x)

    x = np.linspace(-1, 1, 40001)
    sups = [
        error_norms(x, constructive_interpolant(g, -1, 1, k, "uniform")(x) - g(x))[0]
        for k in (16, 32, 64, 128)
    ]
    ratios = np.array(sups[:-1]) / np.array(sups[1:])
    np.testing.assert_allclose(ratios, 4.0, rtol=0.05)


def test_adaptive_nodes_equidistribute_root_curvature():
    def g(x):
        return np.exp(-(((x - 0.2) / 0.1) ** 2))

    k = 12
    nodes = adaptive_nodes(g, -1, 1, k)
    x, rho = curvature_density(g, -1, 1)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])
    shares = np.diff(np.interp(nodes, x, cum)) / cum[-1]
    np.testing.assert_allclose(shares, 1 / k, atol=1e-9)


def test_adaptive_beats_uniform_on_a_sharp_bump_and_matches_it_on_a_parabola():
    def bump(x):
        return np.exp(-(((x - 0.2) / 0.1) ** 2))

    x = np.linspace(-1, 1, 20001)
    k = 32
    err = {
        rule: error_norms(x, constructive_interpolant(bump, -1, 1, k, rule)(x) - bump(x))[0]
        for rule in ("uniform", "adaptive")
    }
    assert err["adaptive"] < 0.5 * err["uniform"]
    # constant curvature: the adaptive rule is the uniform one (up to the grid's rounding)
    np.testing.assert_allclose(
        adaptive_nodes(np.square, -1, 1, k), uniform_nodes(-1, 1, k), atol=1e-9
    )


def test_an_exact_second_derivative_replaces_the_finite_differences():
    def bump(x):
        return np.exp(-(((x - 0.2) / 0.1) ** 2))

    def bump2(x):  # d^2/dx^2 exp(-u^2), u = (x - 0.2) / 0.1
        u = (x - 0.2) / 0.1
        return (4 * u**2 - 2) * np.exp(-(u**2)) / 0.1**2

    x, rho_fd = curvature_density(bump, -1, 1)
    x_exact, rho = curvature_density(bump, -1, 1, g2=bump2)
    np.testing.assert_array_equal(x_exact, x)
    np.testing.assert_allclose(rho, rho_fd, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        adaptive_nodes(bump, -1, 1, 16, g2=bump2), adaptive_nodes(bump, -1, 1, 16), atol=1e-4
    )
    # the given g2 is what is used: a zero one makes the adaptive rule uniform
    spline = constructive_interpolant(bump, -1, 1, 8, "adaptive", g2=np.zeros_like)
    np.testing.assert_allclose(np.append(spline.knots, 1.0), uniform_nodes(-1, 1, 8), atol=1e-12)


def test_linear_target_gives_uniform_adaptive_nodes():
    np.testing.assert_allclose(
        adaptive_nodes(lambda x: 2 * x + 1, 0.0, 3.0, 6), uniform_nodes(0.0, 3.0, 6), atol=1e-12
    )


def test_error_norms_on_a_known_residual():
    x = np.linspace(0.0, 1.0, 10001)
    sup, l2 = error_norms(x, x)
    assert sup == 1.0
    assert l2 == pytest.approx(1 / np.sqrt(3), rel=1e-7)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="rule"):
        constructive_interpolant(np.square, -1, 1, 4, "chebyshev")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k >= 1"):
        uniform_nodes(0, 1, 0)
    with pytest.raises(ValueError, match="a < b"):
        uniform_nodes(1, 0, 3)
