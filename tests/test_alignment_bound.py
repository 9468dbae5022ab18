"""Tests of the bound's ingredients (gdln.alignment_bound) and the separable data generator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdln import alignment_bound as ab
from gdln.tasks import separability, separable_binary
from relu_lens import alignment as al


def brute_mu(X: np.ndarray, y: np.ndarray) -> float:
    best = np.inf
    for i in range(len(X)):
        for j in range(len(X)):
            c = y[i] * y[j] * float(X[i] @ X[j]) / (np.linalg.norm(X[i]) * np.linalg.norm(X[j]))
            best = min(best, c)
    return best


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 9), D=st.integers(2, 5), seed=st.integers(0, 10_000))
def test_separability_equals_brute_force(n: int, D: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    y = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
    assert separability(X, y) == pytest.approx(brute_mu(X, y), abs=1e-12)


@pytest.mark.parametrize("mu", [0.05, 0.3, 0.8, -0.2])
def test_generator_hits_target_mu_exactly(mu: float) -> None:
    task = separable_binary(40, 6, mu, seed=3, norm_range=(0.5, 1.5))
    assert task.mu == pytest.approx(mu, abs=1e-10)
    assert task.mu == pytest.approx(brute_mu(task.X, task.y), abs=1e-12)
    norms = np.linalg.norm(task.X, axis=1)
    # both ends of the norm range are attained (up to rounding of the unit directions)
    assert norms.min() == pytest.approx(0.5, rel=1e-12)
    assert norms.max() == pytest.approx(1.5, rel=1e-12)
    assert set(np.unique(task.y)) == {-1.0, 1.0}


def hand_data() -> tuple[np.ndarray, np.ndarray]:
    X = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    return X, np.array([1.0, 1.0, -1.0])


def test_hand_made_ingredients() -> None:
    X, y = hand_data()
    x_plus, x_minus = ab.class_sums(X, y)
    np.testing.assert_allclose(x_plus, [1.6, 0.8])
    np.testing.assert_allclose(x_minus, [-1.0, 0.0])
    assert separability(X, y) == pytest.approx(0.6)
    # cos^2((0.6, 0.8), x-) = 0.36 is the smallest squared cosine to x+ or x-
    assert ab.zeta1(X, y) == pytest.approx(0.36)
    assert ab.norm_extremes(X) == (1.0, 1.0)
    assert ab.alpha_rate(0.6, 1.0, 1.0) == pytest.approx(0.36 / 32)
    b = ab.bound_ingredients(X, y, h=4)
    assert b.applicable
    expected = 16 * np.log(3) / (min(b.zeta, b.xi) * np.sqrt(0.6) * 1.0)
    assert b.t1 == pytest.approx(expected)
    assert b.log_eps_max == pytest.approx(-0.5 * np.log(4) - 4 * 3 * 1.0 * expected)


def _rotate_towards_plane(u: np.ndarray, normal: np.ndarray, cos_phi: float) -> np.ndarray:
    """The unit vector at cos_phi from u, turned in the plane of u and normal towards the
    hyperplane <normal, z> = 0."""
    c = float(normal @ u)
    p = normal - c * u
    p /= np.linalg.norm(p)
    phi = np.arccos(cos_phi)
    return np.cos(phi) * u - np.sign(c) * np.sin(phi) * p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zeta1_is_the_largest_cap_inside_S_plus(seed: int) -> None:
    task = separable_binary(12, 4, 0.3, seed=seed)
    X, y = task.X, task.y
    z1 = ab.zeta1(X, y)
    x_plus, x_minus = ab.class_sums(X, y)
    rng = np.random.default_rng(seed)
    for centre, code in ((x_plus, al.S_PLUS), (x_minus, al.S_MINUS)):
        u = centre / np.linalg.norm(centre)
        # brute force: random directions inside the cap are all in the region
        Z = rng.standard_normal((20_000, 4))
        Z /= np.linalg.norm(Z, axis=1, keepdims=True)
        inside = Z @ u > np.sqrt(1 - z1) + 1e-9
        assert inside.any()
        assert (al.regions(Z[inside], X, y) == code).all()
    # tightness: just outside the cap towards the nearest hyperplane the region is left
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    for centre, code in ((x_plus, al.S_PLUS), (x_minus, al.S_MINUS)):
        u = centre / np.linalg.norm(centre)
        cos2 = (U @ u) ** 2
        if cos2.min() > z1 + 1e-12:
            continue
        z = _rotate_towards_plane(u, U[np.argmin(cos2)], np.sqrt(1 - z1) - 1e-6)
        assert al.regions(z[None], X, y)[0] != code


def test_zeta_init_and_min() -> None:
    X, y = hand_data()
    x_plus, x_minus = ab.class_sums(X, y)
    W0 = np.array([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    signs = np.array([1.0, 1.0, -1.0])
    # V+ rows: cos to x+ = 0.9487, 0.4472; V- row: cos to x- = 1 -> zeta_init = 0
    assert ab.zeta_init(W0, signs, x_plus, x_minus) == pytest.approx(0.0, abs=1e-12)
    W0[2] = [0.0, -1.0]  # now orthogonal to x-
    cos = (W0[0] @ x_plus) / (np.linalg.norm(W0[0]) * np.linalg.norm(x_plus))
    assert ab.zeta_init(W0, signs, x_plus, x_minus) == pytest.approx(1 - cos**2)
    b = ab.bound_ingredients(X, y, h=3, W0=W0, signs=signs)
    assert b.zeta == pytest.approx(min(b.zeta1, b.zeta_init))


def test_xi_estimate_matches_a_dense_circle_scan() -> None:
    """In D = 2 the sphere is a circle: scan it densely, point by point, as the reference."""
    task = separable_binary(7, 2, 0.3, seed=4)
    X, y = task.X, task.y
    mu, X_min = task.mu, np.linalg.norm(X, axis=1).min()
    best = np.inf
    for a in np.linspace(0, 2 * np.pi, 20_000, endpoint=False):
        w = np.array([np.cos(a), np.sin(a)])
        act = [i for i in range(len(X)) if X[i] @ w > 0]
        pos = {i for i in range(len(X)) if y[i] > 0}
        if not act or set(act) == pos or set(act) == set(range(len(X))) - pos:
            continue
        x_a = sum(y[i] * X[i] for i in act)
        perp = x_a - (x_a @ w) * w
        best = min(best, np.linalg.norm(perp) / (len(act) * np.sqrt(mu) * X_min))
    xi = ab.xi_estimate(X, y, samples=60_000, seed=0)
    assert xi == pytest.approx(best, rel=0.05)


def test_mu_not_positive_is_flagged() -> None:
    task = separable_binary(20, 4, -0.1, seed=0)
    assert task.mu < 0
    b = ab.bound_ingredients(task.X, task.y, h=10)
    assert not b.applicable
    assert "mu" in b.reason
    for value in (b.t1, b.xi, b.alpha, b.log_eps_max):
        assert np.isnan(value)
    assert not ab.eps_condition_holds(1e-300, b)
    assert np.isnan(ab.t1_bound(20, -0.1, 1.0, 0.5, 0.5))


def test_loss_bound_after_alignment() -> None:
    t = np.linspace(0, 10, 11)
    L = ab.loss_bound_after_alignment(t, t2=2.0, L2=3.0, alpha=0.5)
    assert np.isnan(L[:2]).all()
    np.testing.assert_allclose(1 / L[2:], 1 / 3.0 + 0.5 * (t[2:] - 2.0))


def test_generator_attains_the_norm_range() -> None:
    for seed in range(3):
        task = separable_binary(9, 5, 0.4, seed=seed, norm_range=(0.25, 3.0))
        norms = np.linalg.norm(task.X, axis=1)
        assert norms.min() == pytest.approx(0.25, rel=1e-12)
        assert norms.max() == pytest.approx(3.0, rel=1e-12)
        assert ab.norm_extremes(task.X) == pytest.approx((0.25, 3.0), rel=1e-12)


def test_xi_passed_in_is_used() -> None:
    task = separable_binary(10, 4, 0.3, seed=1)
    estimated = ab.bound_ingredients(task.X, task.y, 4, xi_samples=3000, seed=2)
    assert estimated.xi == pytest.approx(ab.xi_estimate(task.X, task.y, 3000, 2))
    given = ab.bound_ingredients(task.X, task.y, 4, xi=estimated.xi / 10)
    assert given.xi == pytest.approx(estimated.xi / 10)
    if given.xi < given.zeta:
        assert given.t1 == pytest.approx(
            ab.t1_bound(10, task.mu, given.X_min, given.zeta, given.xi)
        )


def test_drift_time_is_the_exact_flow_in_norm_rescaled_time() -> None:
    """Integrate the alignment-phase flow dw/dt = s ||w|| x_a(w) in real time with small Euler
    steps and accumulate tau = int ||w|| / ||w(0)|| dt: tau at alignment is drift_time, while
    the real time differs (in D = 3 neurons rotate far, so the norms change)."""
    task = separable_binary(8, 3, 0.3, seed=0, norm_range=(0.5, 2.0))
    X, y = task.X, task.y
    rng = np.random.default_rng(1)
    W0 = rng.standard_normal((12, 3))
    signs = np.where(np.arange(12) < 6, 1.0, -1.0)
    predicted = ab.drift_time(X, y, W0, signs)
    W = W0 / np.linalg.norm(W0, axis=1, keepdims=True)
    tau, t_real = np.full(12, np.nan), np.full(12, np.nan)
    elapsed, clock, dt = 0.0, np.zeros(12), 1e-5
    own = (y[None, :] * signs[:, None]) > 0
    for _ in range(200_000):
        active = W @ X.T > 0
        done = (~active).all(1) | (active == own).all(1)
        fresh = done & np.isnan(tau)
        tau[fresh], t_real[fresh] = clock[fresh], elapsed
        if not np.isnan(tau).any():
            break
        norm = np.linalg.norm(W, axis=1)
        W = W + dt * signs[:, None] * norm[:, None] * ((active * y) @ X)
        clock += dt * norm
        elapsed += dt
    assert np.isfinite(tau).all()
    np.testing.assert_allclose(tau, predicted, rtol=2e-3, atol=3e-5)
    moved = tau > 0  # some neurons start aligned (time 0 on both clocks)
    assert moved.sum() >= 6
    assert np.max(np.abs(t_real - tau)[moved] / tau[moved]) > 0.05  # the rescaling matters
    # the logistic loss (-l'(0) = 1/2) halves every speed
    np.testing.assert_allclose(ab.drift_time(X, y, W0, signs, 0.5), 2 * predicted)


def test_aligned_drift_time_by_hand() -> None:
    """x1 = (1, 0) (+1), x2 = (0.6, 0.8) (+1), x3 = (-1, 0) (-1): x+ = (1.6, 0.8),
    x- = (-1, 0). A V+ neuron u = (0, -1) has x2 inactive (wrong): p2 = -0.8, its drift
    <x2, x+> = 1.6, so t = 0.5 (x1 at p = 0 is also inactive: p1 = 0 crosses at once)."""
    X = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    y = np.array([1.0, 1.0, -1.0])
    W0 = np.array([[0.0, -1.0], [1.0, 0.2], [-1.0, 0.1]])
    signs = np.array([1.0, 1.0, -1.0])
    t = ab.aligned_drift_time(X, y, W0, signs)
    assert t[0] == pytest.approx(0.8 / 1.6)
    assert t[1] == 0.0  # starts in S+
    assert t[2] == 0.0  # starts in S- (only x3 active)
    # the active-set drift: neuron 0 starts dead (S_dead), so it is aligned at once
    np.testing.assert_allclose(ab.drift_time(X, y, W0, signs), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="nonzero"):
        ab.drift_time(X, y, np.zeros((1, 2)), np.array([1.0]))
