"""Tests of the alignment measurements (relu_lens.alignment)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gdln.tasks import separable_binary
from relu_lens import alignment as al


def brute_region(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> int:
    signs = [float(X[i] @ w) > 0 for i in range(len(X))]
    if not any(signs):
        return al.S_DEAD
    if all(s == (y[i] > 0) for i, s in enumerate(signs)):
        return al.S_PLUS
    if all(s == (y[i] < 0) for i, s in enumerate(signs)):
        return al.S_MINUS
    return al.NEITHER


def test_regions_on_hand_made_data() -> None:
    X = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    y = np.array([1.0, 1.0, -1.0])
    W = np.array([[1.0, 0.2], [-1.0, -0.1], [0.0, -1.0], [0.0, 1.0], [-1.0, 0.0]])
    np.testing.assert_array_equal(
        al.regions(W, X, y), [al.S_PLUS, al.S_MINUS, al.S_DEAD, al.NEITHER, al.S_MINUS]
    )
    v = np.array([1.0, 1.0, -1.0, 1.0, -1.0])
    np.testing.assert_array_equal(
        al.allowed(al.regions(W, X, y), v), [True, False, True, False, True]
    )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 8), h=st.integers(1, 6))
def test_regions_and_monitor_match_brute_force(seed: int, n: int, h: int) -> None:
    task = separable_binary(n, 3, 0.2, seed=seed)
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((2, h, 3))
    W[0, 0] = task.X[0]  # a neuron exactly on a data direction
    v = rng.standard_normal((2, h))
    codes = al.regions(W, task.X, task.y)
    for r in range(2):
        for j in range(h):
            assert codes[r, j] == brute_region(W[r, j], task.X, task.y)
    v[1, 0] = 0.0  # v_j = 0 is allowed only in S_dead
    monitor = al.aligned_monitor(torch.as_tensor(np.stack([task.y] * 2)), per_neuron=True)
    X = torch.as_tensor(np.stack([task.X] * 2))
    pre = torch.bmm(X, torch.as_tensor(W).transpose(1, 2))
    out = monitor(pre, torch.as_tensor(W), torch.as_tensor(v))
    np.testing.assert_array_equal(out["aligned"].numpy(), al.allowed(codes, v).all(-1))
    np.testing.assert_array_equal(out["allowed"].numpy(), al.allowed(codes, v))
    f = [[sum(v[r, j] * max(W[r, j] @ task.X[i], 0) for j in range(h)) for i in range(n)]
         for r in range(2)]  # fmt: skip
    np.testing.assert_allclose(out["max_abs_f"].numpy(), np.abs(f).max(1), rtol=1e-12)


def test_t_align_first_time_aligned_for_good() -> None:
    flags = np.array(
        [[0, 1, 1, 0], [1, 1, 1, 0], [0, 1, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1]], dtype=bool
    )  # (step, run)
    np.testing.assert_allclose(al.t_align(flags, 0.5), [1.5, 0.0, 2.0, 1.0])
    flags[-1, 0] = False
    assert np.isnan(al.t_align(flags, 0.5)[0])


def test_stable_rank_and_spectral_norm() -> None:
    rng = np.random.default_rng(0)
    u, w = rng.standard_normal(7), rng.standard_normal(5)
    assert al.stable_rank(np.outer(u, w)) == pytest.approx(1.0)
    assert al.stable_rank(np.eye(4)) == pytest.approx(4.0)
    A = rng.standard_normal((3, 6, 5))
    np.testing.assert_allclose(al.spectral_norm_sq(A), [np.linalg.norm(a, 2) ** 2 for a in A])
    np.testing.assert_allclose(
        al.stable_rank(A), [np.linalg.norm(a) ** 2 / np.linalg.norm(a, 2) ** 2 for a in A]
    )


def test_cosine() -> None:
    W = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    c = al.cosine(W, np.array([3.0, 3.0]))
    np.testing.assert_allclose(c[:2], [np.sqrt(0.5), np.sqrt(0.5)])
    assert np.isnan(c[2])


def test_inverse_rate_fit_recovers_slope() -> None:
    t = np.linspace(0, 20, 200)
    L = 1.0 / (0.5 + 0.3 * t)
    L[t < 5] = 10.0  # a plateau before the O(1/t) phase is excluded by t_start
    b, r2 = al.inverse_rate_fit(t, L, t_start=5.0)
    assert b == pytest.approx(0.3)
    assert r2 == pytest.approx(1.0)
    _, r2_all = al.inverse_rate_fit(t, L, t_start=0.0)
    assert r2_all < 0.99
    assert np.isnan(al.inverse_rate_fit(t, L, np.nan)[0])


def test_first_time_held_and_own_class_cosine() -> None:
    flags = np.array([[0, 1], [1, 0], [1, 1]], dtype=bool)
    np.testing.assert_allclose(al.first_time_held(flags, np.array([0.0, 5.0, 7.0])), [5.0, 7.0])
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    c = al.own_class_cosine(
        W, np.array([1.0, -2.0, 0.0]), np.array([2.0, 0.0]), np.array([0.0, -1.0])
    )
    np.testing.assert_allclose(c[:2], [1.0, -1.0])
    assert np.isnan(c[2])
