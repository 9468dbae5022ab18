"""Tests of relu_lens.knots: a 1-D one-hidden-layer ReLU net read as a spline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from relu_lens.knots import (
    AFFINE,
    DEAD,
    DEFAULT_KNOT_TOL,
    INSIDE,
    merged_spline,
    net_from_params,
    one_sided,
    read_net,
    read_params,
    redundancy,
)
from relu_lens.spline import constructive_interpolant, to_net_params

LO, HI = -1.0, 1.0
value = st.floats(-4, 4, allow_nan=False, allow_infinity=False)


def torch_f(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float64)[:, None]).numpy()[:, 0]


def scale_of(a, w, b, c, reach: float) -> float:
    """Size of the largest intermediate sum: the rounding level for exactness checks."""
    return float(np.sum(np.abs(a) * (np.abs(w) * reach + np.abs(b))) + abs(c) + 1.0)


@st.composite
def nets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Random (a, w, b, c) with units of every kind: generic, w = 0, copies of an earlier
    unit's knot (scaled by a positive or negative factor), or an all-dead net."""
    n = draw(st.integers(1, 12))
    all_dead = draw(st.booleans()) and draw(st.booleans())
    a, w, b = [], [], []
    for i in range(n):
        kind = draw(st.sampled_from(["generic", "flat", "copy"] if i else ["generic", "flat"]))
        if kind == "generic":
            wi, bi = draw(value), draw(value)
        elif kind == "flat":
            wi, bi = 0.0, draw(value)
        else:
            j = draw(st.integers(0, i - 1))
            s = draw(st.sampled_from([2.0, 0.5, 3.0, -1.0, -2.5]))
            wi, bi = w[j] * s, b[j] * s
        if all_dead:
            bi = -abs(wi) * max(abs(LO), abs(HI)) - abs(bi) - 0.1
        a.append(draw(value))
        w.append(wi)
        b.append(bi)
    return np.array(a), np.array(w), np.array(b), draw(value)


@settings(max_examples=120, deadline=None)
@given(params=nets())
def test_merged_spline_reproduces_the_net_on_the_interval(params):
    a, w, b, c = params
    model = net_from_params(w, b, a, c)
    reading = read_net(model, (LO, HI))
    x = np.linspace(LO, HI, 4001)
    f = torch_f(model, x)
    s = merged_spline(reading, knot_tol=0.0)
    tol = 1e-13 * scale_of(a, w, b, c, 1.0)
    np.testing.assert_allclose(s(x), f, rtol=0, atol=tol)
    # merging knots closer than knot_tol moves each by < n * knot_tol
    merged = merged_spline(reading, knot_tol=DEFAULT_KNOT_TOL)
    shift = a.size * DEFAULT_KNOT_TOL * np.sum(np.abs(reading.slope_jump))
    np.testing.assert_allclose(merged(x), f, rtol=0, atol=tol + shift)
    # coincident knots (copies of a unit with w, b scaled) merge: what is left is separated
    assert np.all(np.diff(merged.knots) > DEFAULT_KNOT_TOL)
    np.testing.assert_allclose(reading(x), f, rtol=0, atol=tol)
    assert np.all((s.knots > LO) & (s.knots < HI))
    assert np.all(np.diff(s.knots) > 0)
    assert s.n_knots <= int(reading.inside.sum())
    if np.all(reading.dead):
        assert s.n_knots == 0 and s.beta == 0 and s.alpha == c


@settings(max_examples=120, deadline=None)
@given(params=nets())
def test_one_sided_rewrite_is_exact_on_the_whole_line(params):
    a, w, b, c = params
    model = net_from_params(w, b, a, c)
    s = one_sided(read_net(model, (LO, HI)), knot_tol=0.0)
    x = np.linspace(-50, 50, 4001)
    tol = 1e-13 * scale_of(a, w, b, c, 50.0)
    np.testing.assert_allclose(s(x), torch_f(model, x), rtol=0, atol=tol)
    assert s.n_knots <= int(np.count_nonzero(w))


def test_unit_states_orientation_and_jumps_by_hand():
    # units: right-facing inside, left-facing inside, knot left of the interval facing right
    # (affine), knot right of it facing right (dead), w = 0 with b > 0 (constant), w = 0 with
    # b < 0 (dead), knot on the boundary facing right (affine), inside but a = 0 (dead)
    a = np.array([2.0, -1.0, 0.5, 3.0, 1.5, 1.0, 1.0, 0.0])
    w = np.array([1.0, -2.0, 1.0, 1.0, 0.0, 0.0, 2.0, 1.0])
    b = np.array([-0.5, 0.0, 3.0, -2.0, 0.7, -0.7, 2.0, 0.0])
    r = read_params(a, w, b, 0.0, (LO, HI))
    assert r.state.tolist() == [INSIDE, INSIDE, AFFINE, DEAD, AFFINE, DEAD, AFFINE, DEAD]
    assert r.orientation.tolist() == [1, -1, 1, 1, 0, 0, 1, 1]
    np.testing.assert_array_equal(r.knot[:4], [0.5, 0.0, -3.0, 2.0])
    assert np.isnan(r.knot[4]) and np.isnan(r.knot[5])
    np.testing.assert_array_equal(r.slope_jump, a * np.abs(w))
    s = merged_spline(r)
    np.testing.assert_array_equal(s.knots, [0.0, 0.5])
    np.testing.assert_array_equal(s.jumps, [-2.0, 2.0])
    # affine part on [-1, 1]: left unit -1*(-2x) = 2x, affine unit 0.5 (x + 3), constant 1.5 * 0.7,
    # boundary unit 2x + 2
    assert s.beta == pytest.approx(2.0 + 0.5 + 2.0)
    assert s.alpha == pytest.approx(1.5 + 1.5 * 0.7 + 2.0)


def test_coincident_knots_merge_into_one_with_summed_jump():
    # three units with knot 0.25: right-facing, right-facing scaled, left-facing
    a = np.array([1.0, 2.0, -1.0])
    w = np.array([2.0, 4.0, -1.0])
    b = np.array([-0.5, -1.0, 0.25])
    r = read_params(a, w, b, 0.0, (LO, HI))
    s = merged_spline(r)
    np.testing.assert_array_equal(s.knots, [0.25])
    assert s.jumps[0] == pytest.approx(1 * 2 + 2 * 4 + (-1) * 1)
    red = redundancy(r, resolution=1e-9, jump_rel_tol=1e-9)
    assert red.n_inside == 3 and red.n_distinct_knots == 1 and red.redundancy == 3.0


def test_redundancy_counts_split_units_and_ignores_negligible_jumps():
    # one unit split into two halves, another into two knots 1e-6 apart, one negligible unit
    a = np.array([0.5, 0.5, 1.0, 1.0, 1e-12, 1.0])
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0])
    b = np.array([0.0, 0.0, -0.5, -0.5 - 1e-6, 0.3, -5.0])
    red = redundancy(read_params(a, w, b, 0.1, (LO, HI)), resolution=1e-3, jump_rel_tol=1e-6)
    assert (red.n_inside, red.n_affine, red.n_dead) == (5, 0, 1)
    assert red.n_distinct_knots == 2
    assert red.redundancy == pytest.approx(2.5)
    np.testing.assert_allclose(red.needed.knots, [0.0, 0.5 + 5e-7])


def test_construction_on_a_piecewise_linear_target_recovers_its_knots_exactly():
    known = np.array([-0.5, 0.25, 0.5])

    def g(x):
        return np.interp(x, [-1.0, -0.5, 0.25, 0.5, 1.0], [0.0, 1.0, -0.5, 0.5, 0.2])

    spline = constructive_interpolant(g, LO, HI, 8, "uniform")
    p = to_net_params(spline)
    model = net_from_params(p.w, p.b, p.a, p.c)
    reading = read_net(model, (LO, HI))
    assert reading.width == 8
    red = redundancy(reading, resolution=0.0, jump_rel_tol=1e-9)
    np.testing.assert_array_equal(red.needed.knots, known)
    x = np.linspace(LO, HI, 2001)
    np.testing.assert_allclose(torch_f(model, x), g(x), atol=1e-14)


def test_bad_models_are_refused():
    with pytest.raises(TypeError, match=r"nn\.Sequential"):
        read_net(nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)), (LO, HI))
    with pytest.raises(TypeError, match="1-D"):
        read_net(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)), (LO, HI))
    with pytest.raises(TypeError, match="biases"):
        read_net(nn.Sequential(nn.Linear(1, 4, bias=False), nn.ReLU(), nn.Linear(4, 1)), (LO, HI))
    with pytest.raises(ValueError, match="NaN"):
        read_params([np.nan], [1.0], [0.0], 0.0, (LO, HI))


def test_effective_weights_are_the_local_slope_and_intercept_of_the_spline():
    from relu_lens.effective import effective_weights

    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(1, 24), nn.ReLU(), nn.Linear(24, 1)).double()
    s = merged_spline(read_net(model, (LO, HI)))
    x = np.linspace(LO, HI, 3001)
    gaps = np.min(np.abs(x[:, None] - s.knots), axis=1) if s.n_knots else np.inf
    x = x[gaps > 1e-9]  # the slope is one-sided at a knot
    eff = effective_weights(model, torch.as_tensor(x)[:, None])
    np.testing.assert_allclose(eff.W[:, 0, 0].detach().numpy(), s.slope(x), atol=1e-13)
    np.testing.assert_allclose(eff.b[:, 0].detach().numpy(), s.intercept(x), atol=1e-13)
