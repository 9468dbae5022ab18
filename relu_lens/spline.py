"""Continuous piecewise-linear splines on the line, in the form a ReLU unit computes (numpy only).

A spline here is

    S(x) = alpha + beta x + sum_j lambda_j relu(x - t_j),          t_1 < t_2 < ... < t_K,

an affine part plus right-facing ReLU "one-sided bases" (Huang 2024, arXiv 2411.06728): the
slope of S jumps by lambda_j at the knot t_j. Every one-hidden-layer ReLU net on a 1-D input is
such a spline (``relu_lens.knots`` does the reading), and every such spline is a one-hidden-layer
net with one unit per knot (:func:`to_net_params`).

The constructive solution (:func:`constructive_interpolant`): for a target g on [a, b] and a
budget of k units, take nodes a = x_0 < x_1 < ... < x_k = b, let s_j = (g(x_{j+1}) - g(x_j)) /
(x_{j+1} - x_j) be the slope on the j-th cell, and write the interpolant as

    S(x) = g(x_0) + s_0 relu(x - x_0) + sum_{j=1}^{k-1} (s_j - s_{j-1}) relu(x - x_j),

i.e. k units (knots x_0 .. x_{k-1}; the unit at x_0 = a supplies the slope on the first cell)
and the output bias g(a). It equals g at every node and is linear between nodes, so on [a, b]
it is the piecewise-linear interpolant with k cells. Nodes are uniform (x_j = a + j (b - a) / k)
or adaptive (:func:`adaptive_nodes`: equidistribute |g''|^(1/2)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Rule = Literal["uniform", "adaptive"]
Target = Callable[[NDArray[np.float64]], NDArray[np.float64]]
# g'' on an equally spaced grid, given when it is known exactly (e.g. from an expression)
SecondDerivative = Callable[[NDArray[np.float64]], NDArray[np.float64]]


@dataclass(frozen=True)
class Spline:
    """S(x) = alpha + beta x + sum_j jumps[j] relu(x - knots[j]).

    ``knots`` (knot,) strictly increasing, ``jumps`` (knot,) the slope jumps lambda_j, float64.
    """

    alpha: float
    beta: float
    knots: NDArray[np.float64]
    jumps: NDArray[np.float64]

    def __post_init__(self) -> None:
        knots = np.asarray(self.knots, dtype=np.float64).reshape(-1)
        jumps = np.asarray(self.jumps, dtype=np.float64).reshape(-1)
        if knots.shape != jumps.shape:
            raise ValueError(f"knots {knots.shape} and jumps {jumps.shape} differ in shape")
        if not (np.all(np.isfinite(knots)) and np.all(np.isfinite(jumps))):
            raise ValueError("knots and jumps must be finite")
        if np.any(np.diff(knots) <= 0):
            raise ValueError("knots must be strictly increasing; build with make_spline to merge")
        object.__setattr__(self, "knots", knots)
        object.__setattr__(self, "jumps", jumps)
        object.__setattr__(self, "alpha", float(self.alpha))
        object.__setattr__(self, "beta", float(self.beta))

    def __call__(self, x: ArrayLike) -> NDArray[np.float64]:
        """S(x) for any array of inputs (same shape out)."""
        x = np.asarray(x, dtype=np.float64)
        hinge = np.maximum(x[..., None] - self.knots, 0.0)
        return self.alpha + self.beta * x + hinge @ self.jumps

    def slope(self, x: ArrayLike) -> NDArray[np.float64]:
        """Local slope S'(x) = beta + sum_{j: t_j < x} lambda_j (the left derivative at a knot)."""
        x = np.asarray(x, dtype=np.float64)
        return self.beta + (x[..., None] > self.knots).astype(np.float64) @ self.jumps

    def intercept(self, x: ArrayLike) -> NDArray[np.float64]:
        """Local intercept S(x) - S'(x) x: the affine piece through x is slope * x + intercept."""
        x = np.asarray(x, dtype=np.float64)
        return self(x) - self.slope(x) * x

    @property
    def n_knots(self) -> int:
        return int(self.knots.size)

    def pruned(self, jump_tol: float) -> Spline:
        """The spline without the knots whose |lambda_j| <= jump_tol.

        It differs from S by at most sum_{dropped} |lambda_j| (x - t_j)_+ on any interval.
        """
        keep = np.abs(self.jumps) > jump_tol
        return Spline(self.alpha, self.beta, self.knots[keep], self.jumps[keep])


def make_spline(
    alpha: float,
    beta: float,
    knots: ArrayLike,
    jumps: ArrayLike,
    knot_tol: float = 0.0,
    jump_tol: float = 0.0,
) -> Spline:
    """A Spline from unsorted, possibly coincident knots: merge, then drop negligible jumps.

    Knots are sorted and grouped single-linkage: consecutive knots at most ``knot_tol`` apart
    share a group. A group becomes one knot at the mean of its members' positions with the sum
    of their jumps (for ``knot_tol = 0`` only exactly equal knots merge, and the function is
    unchanged). Merged knots with |lambda| <= ``jump_tol`` are dropped (``jump_tol = 0`` drops
    exact cancellations only).
    """
    if knot_tol < 0 or jump_tol < 0:
        raise ValueError(f"tolerances must be >= 0, got knot_tol={knot_tol}, jump_tol={jump_tol}")
    knots = np.asarray(knots, dtype=np.float64).reshape(-1)
    jumps = np.asarray(jumps, dtype=np.float64).reshape(-1)
    if knots.shape != jumps.shape:
        raise ValueError(f"knots {knots.shape} and jumps {jumps.shape} differ in shape")
    order = np.argsort(knots, kind="stable")
    knots, jumps = knots[order], jumps[order]
    if knots.size:
        group = np.concatenate([[0], np.cumsum(np.diff(knots) > knot_tol)])
        n_groups = int(group[-1]) + 1
        counts = np.bincount(group, minlength=n_groups)
        # the mean as first member + mean offset: exact for equal members, so rounding can
        # never move a merged knot past its neighbour
        first = knots[np.flatnonzero(np.diff(group, prepend=-1))]
        offsets = np.bincount(group, weights=knots - first[group], minlength=n_groups)
        knots = first + offsets / counts
        jumps = np.bincount(group, weights=jumps, minlength=n_groups)
    keep = np.abs(jumps) > jump_tol
    return Spline(alpha, beta, knots[keep], jumps[keep])


def uniform_nodes(a: float, b: float, k: int) -> NDArray[np.float64]:
    """k + 1 equally spaced nodes x_j = a + j (b - a) / k, j = 0..k."""
    _check_interval(a, b, k)
    return np.linspace(a, b, k + 1)


def curvature_density(
    g: Target,
    a: float,
    b: float,
    n_grid: int = 4097,
    floor: float = 1e-3,
    g2: SecondDerivative | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The adaptive rule's node density rho(x) = |g''(x)|^(1/2) + floor * mean |g''|^(1/2).

    g'' is estimated by central second differences on ``n_grid`` equally spaced points of
    [a, b] (copied to the end points), or is ``g2(x)`` on that grid when given (exact values,
    e.g. from an expression). A kink of g shows up as a spike of height |jump| / h at the grid
    cell containing it, so its |g''|^(1/2)-mass is about sqrt(|jump| h); a ``g2`` should put
    its kinks on the grid the same way. The small relative ``floor`` keeps every stretch where
    g is linear at a finite node spacing; if g'' vanishes everywhere rho is constant (the rule
    becomes uniform). Returns the grid x (n_grid,) and rho (n_grid,).
    """
    if n_grid < 3:
        raise ValueError(f"n_grid must be >= 3, got {n_grid}")
    x = np.linspace(a, b, n_grid)
    if g2 is None:
        y = np.asarray(g(x), dtype=np.float64)
        h = x[1] - x[0]
        second = np.empty_like(y)
        second[1:-1] = (y[2:] - 2 * y[1:-1] + y[:-2]) / h**2
        second[0], second[-1] = second[1], second[-2]
    else:
        second = np.broadcast_to(np.asarray(g2(x), dtype=np.float64), x.shape)
    root = np.sqrt(np.abs(second))
    mean = root.mean()
    rho = root + floor * mean if mean > 0 else np.ones_like(root)
    return x, rho


def adaptive_nodes(
    g: Target,
    a: float,
    b: float,
    k: int,
    n_grid: int = 4097,
    floor: float = 1e-3,
    g2: SecondDerivative | None = None,
) -> NDArray[np.float64]:
    """k + 1 nodes that equidistribute rho = |g''|^(1/2) (+ a small floor, see
    :func:`curvature_density`, which also says what ``g2`` is): with R(x) = int_a^x rho,
    node x_j solves R(x_j) = (j / k) R(b).

    Every cell then carries the same share of int rho. For linear interpolation the error on a
    cell of width h is about h^2 |g''| / 8, and equidistributing |g''|^(1/2) makes these equal
    across cells, the asymptotically best placement for the sup error (de Boor's rule).
    """
    _check_interval(a, b, k)
    x, rho = curvature_density(g, a, b, n_grid, floor, g2)
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])
    nodes = np.interp(np.linspace(0.0, cum[-1], k + 1), cum, x)
    nodes[0], nodes[-1] = a, b
    return nodes


def interpolant(g: Target, nodes: ArrayLike) -> Spline:
    """The piecewise-linear interpolant of g at ``nodes`` (x_0 < ... < x_k), as a Spline with
    alpha = g(x_0), beta = 0 and one knot per node x_0 .. x_{k-1}: lambda_0 = s_0,
    lambda_j = s_j - s_{j-1} (module docstring). Zero jumps are kept: one unit per knot."""
    nodes = np.asarray(nodes, dtype=np.float64).reshape(-1)
    if nodes.size < 2 or np.any(np.diff(nodes) <= 0):
        raise ValueError("nodes must be at least two strictly increasing points")
    y = np.asarray(g(nodes), dtype=np.float64)
    s = np.diff(y) / np.diff(nodes)
    jumps = np.concatenate([[s[0]], np.diff(s)])
    return Spline(alpha=y[0], beta=0.0, knots=nodes[:-1], jumps=jumps)


def constructive_interpolant(
    g: Target, a: float, b: float, k: int, rule: Rule, g2: SecondDerivative | None = None
) -> Spline:
    """The constructive solution with a budget of k units: the interpolant of g on k + 1
    uniform or adaptive nodes of [a, b] (module docstring), a Spline with k knots. ``g2``:
    exact g'' for the adaptive rule (:func:`curvature_density`)."""
    if rule == "uniform":
        nodes = uniform_nodes(a, b, k)
    elif rule == "adaptive":
        nodes = adaptive_nodes(g, a, b, k, g2=g2)
    else:
        raise ValueError(f"unknown knot rule {rule!r}; use 'uniform' or 'adaptive'")
    return interpolant(g, nodes)


@dataclass(frozen=True)
class NetParams:
    """Parameters of f(x) = sum_i a_i relu(w_i x + b_i) + c; w, b, a of shape (unit,)."""

    w: NDArray[np.float64]
    b: NDArray[np.float64]
    a: NDArray[np.float64]
    c: float

    def __call__(self, x: ArrayLike) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        return np.maximum(x[..., None] * self.w + self.b, 0.0) @ self.a + self.c


def to_net_params(spline: Spline) -> NetParams:
    """A one-hidden-layer ReLU net computing ``spline`` on all of R: one unit per knot
    (w = 1, b = -t_j, a = lambda_j) and output bias c = alpha. A nonzero beta costs two more
    units, beta x = beta relu(x) - beta relu(-x)."""
    w, b, a = np.ones(spline.n_knots), -spline.knots, spline.jumps.copy()
    if spline.beta != 0.0:
        w = np.concatenate([w, [1.0, -1.0]])
        b = np.concatenate([b, [0.0, 0.0]])
        a = np.concatenate([a, [spline.beta, -spline.beta]])
    return NetParams(w=w, b=b, a=a, c=spline.alpha)


def error_norms(x: ArrayLike, residual: ArrayLike) -> tuple[float, float]:
    """Sup and L2 errors of a residual f - g sampled on an increasing grid x covering [a, b]:

        sup = max_i |r(x_i)|,    L2 = ( (1 / (b - a)) int_a^b r(x)^2 dx )^(1/2)

    (the L2 norm divided by sqrt(b - a), a root-mean-square; trapezoid rule).
    """
    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(residual, dtype=np.float64)
    if x.shape != r.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x {x.shape} and residual {r.shape} must be equal 1-D arrays (>= 2)")
    l2 = np.sqrt(np.trapezoid(r**2, x) / (x[-1] - x[0]))
    return float(np.max(np.abs(r))), float(l2)


def _check_interval(a: float, b: float, k: int) -> None:
    if not b > a:
        raise ValueError(f"need a < b, got [{a}, {b}]")
    if k < 1:
        raise ValueError(f"need a budget of k >= 1 units, got {k}")
