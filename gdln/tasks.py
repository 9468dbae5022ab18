"""Synthetic binary tasks with a known separability mu (Min, Mallada & Vidal, ICLR 2024).

Synthetic tasks are plain numpy generators and live on the theory side (``gdln.tasks``,
``gdln.context_task``): the theory needs them (mu is an ingredient of the alignment bound) and
must never import the torch side, while studies and benchmarks import them from here for their
ReLU runs. Every generator is a plain function of its sizes and a seed that returns arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BinaryTask:
    """Labelled binary data.

    Attributes:
        X: inputs, shape (sample, in).
        y: labels in {-1, +1}, shape (sample,).
        mu: the measured separability (:func:`separability`), computed from X and y.
    """

    X: np.ndarray
    y: np.ndarray
    mu: float


def check_binary(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """X (sample, in) and y (sample,) as float arrays, or ValueError naming what is wrong:
    shapes that disagree, NaN or inf, labels other than -1 and +1."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.shape != (X.shape[0],) or X.shape[0] == 0:
        raise ValueError(f"need X (sample, in) and y (sample,), got {X.shape} and {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must be finite (they hold NaN or inf)")
    bad = y[(y != 1.0) & (y != -1.0)]
    if bad.size:
        raise ValueError(f"labels must be -1 or +1, got {bad[0]:g}")
    return X, y


def separability(X: np.ndarray, y: np.ndarray) -> float:
    """Exact separability of Min, Mallada & Vidal (ICLR 2024, Assumption 1):

        mu = min_{i, j} <x_i y_i, x_j y_j> / (||x_i|| ||x_j||).

    Same-label pairs must be positively and opposite-label pairs negatively correlated for
    mu > 0. Computed over all pairs (a Gram matrix of the signed unit vectors); exact.
    """
    X, y = check_binary(X, y)
    norms = np.linalg.norm(X, axis=1)
    if np.any(norms == 0):
        raise ValueError("separability: an input x_i is zero; mu is undefined")
    Z = y[:, None] * X / norms[:, None]
    return float((Z @ Z.T).min())


def separable_binary(
    n: int,
    D: int,
    mu: float,
    seed: int,
    norm_range: tuple[float, float] = (1.0, 2.0),
    positive_fraction: float = 0.5,
) -> BinaryTask:
    """Binary data in two opposite cones with separability exactly ``mu``.

    Construction: u = e_1. Every signed point y_i x_i / ||x_i|| lies in the cap of half-angle
    theta = arccos(mu) / 2 around u: y_i x_i / ||x_i|| = cos(a_i) u + sin(a_i) z_i with z_i a
    unit vector orthogonal to u and a_i in [0, theta]. Two signed points in the cap make an
    angle of at most 2 theta, so mu >= cos(2 theta) = mu_target. The first two signed points are
    placed on the cap's rim with z_2 = -z_1 (one positive, one negative point), so the bound is
    attained and the measured mu equals ``mu`` up to rounding. The other angles a_i are drawn
    with a_i = theta * sqrt(U) (uniform in the cap's cross-section). Norms are drawn uniformly
    in ``norm_range = (lo, hi)``, then the smallest draw is set to lo and the largest to hi, so
    X_min = min_i ||x_i|| and X_max = max_i ||x_i|| are exactly lo and hi (the quantities of the
    alignment bound, which a grid over X_min varies; which points carry them stays random).
    ``mu <= 0`` is allowed (theta >= pi/4): such data violate the paper's assumption, and the
    returned ``mu`` says so.

    Args:
        n: number of samples (>= 2).
        D: input dimension (>= 2).
        mu: target separability in (-1, 1].
        seed: seed of the numpy generator.
        norm_range: (X_min, X_max) of the input norms, both attained.
        positive_fraction: share of positive labels (at least one of each label).

    Returns:
        BinaryTask with X (sample, in), y (sample,) in {-1, +1} and the measured mu.
    """
    if n < 2 or D < 2:
        raise ValueError(f"separable_binary needs n >= 2 and D >= 2, got n={n}, D={D}")
    if not -1.0 < mu <= 1.0:
        raise ValueError(f"separable_binary: mu must lie in (-1, 1], got {mu}")
    lo, hi = norm_range
    if not 0 < lo <= hi:
        raise ValueError(
            f"separable_binary: norm_range must satisfy 0 < lo <= hi, got {norm_range}"
        )
    rng = np.random.default_rng(seed)
    n_pos = min(max(round(positive_fraction * n), 1), n - 1)
    y = np.concatenate([np.ones(n_pos), -np.ones(n - n_pos)])
    theta = np.arccos(mu) / 2.0
    angles = theta * np.sqrt(rng.uniform(size=n))
    Z = rng.standard_normal((n, D))
    Z[:, 0] = 0.0
    Z[n_pos] = -Z[0]
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    angles[0] = angles[n_pos] = theta
    signed = np.cos(angles)[:, None] * np.eye(D)[0] + np.sin(angles)[:, None] * Z
    norms = rng.uniform(lo, hi, size=n)
    norms[np.argmin(norms)], norms[np.argmax(norms)] = lo, hi
    X = y[:, None] * signed * norms[:, None]
    return BinaryTask(X=X, y=y, mu=separability(X, y))
