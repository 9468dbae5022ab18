"""Read a one-hidden-layer ReLU net on a 1-D input as a spline, unit by unit.

The net ``nn.Sequential(nn.Linear(1, h), nn.ReLU(), nn.Linear(h, 1))`` computes

    f(x) = sum_i a_i relu(w_i x + b_i) + c.

Unit i with w_i != 0 has its knot at t_i = -b_i / w_i and faces right (active for x > t_i) if
w_i > 0, left (active for x < t_i) if w_i < 0; the slope of f jumps by a_i |w_i| at t_i
(Huang 2024, arXiv 2411.06728). A unit with w_i = 0 is the constant a_i relu(b_i).

On a data interval [lo, hi] every unit is in one of three states, decided from its
pre-activation z_i(x) = w_i x + b_i at the two end points (z_i is affine, so no division):

- ``DEAD``: z_i <= 0 on all of [lo, hi], or a_i = 0: it contributes nothing there;
- ``AFFINE``: z_i >= 0 on all of [lo, hi] (knot outside or on the boundary, or w_i = 0 with
  b_i > 0): it contributes the affine term a_i (w_i x + b_i) there;
- ``INSIDE``: z_i changes sign strictly inside, so lo < t_i < hi: a real knot of f.

Two rewrites, both from relu(-z) = relu(z) - z, so a left-facing unit is
a_i relu(w_i x + b_i) = a_i |w_i| relu(x - t_i) + a_i (w_i x + b_i):

- :func:`one_sided`: the same function on all of R as alpha + beta x + sum_j lambda_j
  relu(x - t_j) with right-facing bases only (every unit with w_i != 0 keeps its knot);
- :func:`merged_spline`: the spline f is on [lo, hi]: only the INSIDE knots, coincident ones
  merged, AFFINE units folded into alpha + beta x, DEAD units gone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import nn

from relu_lens.spline import Spline, make_spline

DEAD, AFFINE, INSIDE = 0, 1, 2
STATE_NAMES = ("dead", "affine", "inside")
DEFAULT_KNOT_TOL = 1e-12


@dataclass(frozen=True)
class UnitReading:
    """Per-unit reading of f(x) = sum_i a_i relu(w_i x + b_i) + c on [lo, hi].

    Arrays have shape (unit,), float64: ``knot`` t_i (NaN where w_i = 0 or -b_i / w_i
    overflows), ``orientation`` +1 right-facing / -1 left-facing / 0 flat (no finite knot),
    ``slope_jump`` a_i |w_i|, ``state`` DEAD / AFFINE / INSIDE (module docstring).
    """

    a: NDArray[np.float64]
    w: NDArray[np.float64]
    b: NDArray[np.float64]
    c: float
    lo: float
    hi: float
    knot: NDArray[np.float64]
    orientation: NDArray[np.int8]
    slope_jump: NDArray[np.float64]
    state: NDArray[np.int8]

    @property
    def width(self) -> int:
        return int(self.a.size)

    @property
    def inside(self) -> NDArray[np.bool_]:
        return self.state == INSIDE

    @property
    def dead(self) -> NDArray[np.bool_]:
        return self.state == DEAD

    @property
    def affine(self) -> NDArray[np.bool_]:
        return self.state == AFFINE

    def contributions(self, x: ArrayLike) -> NDArray[np.float64]:
        """Each unit's term a_i relu(w_i x + b_i) on inputs x: shape (unit, *x.shape)."""
        x = np.asarray(x, dtype=np.float64)
        z = np.multiply.outer(self.w, x) + self.b.reshape((-1,) + (1,) * x.ndim)
        return self.a.reshape((-1,) + (1,) * x.ndim) * np.maximum(z, 0.0)

    def __call__(self, x: ArrayLike) -> NDArray[np.float64]:
        """f(x), evaluated unit by unit in float64."""
        return self.contributions(x).sum(axis=0) + self.c


def net_parameters(model: nn.Module) -> tuple[NDArray, NDArray, NDArray, float]:
    """(a, w, b, c) of ``nn.Sequential(nn.Linear(1, h), nn.ReLU(), nn.Linear(h, 1))`` as
    float64 arrays of shape (unit,) and a float; a clear error for any other model."""
    layers = list(model.children()) if isinstance(model, nn.Sequential) else []
    kinds = [type(m) for m in layers]
    if kinds != [nn.Linear, nn.ReLU, nn.Linear]:
        raise TypeError(
            "expected nn.Sequential(nn.Linear(1, h), nn.ReLU(), nn.Linear(h, 1)); got "
            f"{type(model).__name__} with children {[k.__name__ for k in kinds]}"
        )
    first, last = layers[0], layers[2]
    if first.in_features != 1 or last.out_features != 1:
        raise TypeError(
            f"the spline reading needs 1-D input and output; got Linear({first.in_features}, "
            f"{first.out_features}) ... Linear({last.in_features}, {last.out_features})"
        )
    if first.bias is None or last.bias is None:
        raise TypeError("both nn.Linear layers must have biases (knots come from the biases)")
    with torch.no_grad():

        def arr(t: torch.Tensor) -> NDArray[np.float64]:
            return t.detach().cpu().to(torch.float64).numpy().reshape(-1).copy()

        return arr(last.weight), arr(first.weight), arr(first.bias), float(last.bias.item())


def read_params(
    a: ArrayLike, w: ArrayLike, b: ArrayLike, c: float, interval: tuple[float, float]
) -> UnitReading:
    """Read f(x) = sum_i a_i relu(w_i x + b_i) + c on ``interval`` = (lo, hi)."""
    a, w, b = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (a, w, b))
    if not a.shape == w.shape == b.shape:
        raise ValueError(f"a {a.shape}, w {w.shape}, b {b.shape} must have one shape (unit,)")
    if not all(np.all(np.isfinite(v)) for v in (a, w, b)) or not np.isfinite(c):
        raise ValueError("net parameters contain NaN or inf (did training diverge?)")
    lo, hi = (float(v) for v in interval)
    if not hi > lo:
        raise ValueError(f"interval must have lo < hi, got ({lo}, {hi})")
    z_lo, z_hi = w * lo + b, w * hi + b
    state = np.full(a.shape, INSIDE, dtype=np.int8)
    state[np.minimum(z_lo, z_hi) >= 0] = AFFINE
    state[(np.maximum(z_lo, z_hi) <= 0) | (a == 0)] = DEAD
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        knot = -b / w
    flat = ~np.isfinite(knot)
    knot[flat] = np.nan
    return UnitReading(
        a=a,
        w=w,
        b=b,
        c=float(c),
        lo=lo,
        hi=hi,
        knot=knot,
        orientation=np.where(flat, 0, np.sign(w)).astype(np.int8),
        slope_jump=a * np.abs(w),
        state=state,
    )


def read_net(model: nn.Module, interval: tuple[float, float]) -> UnitReading:
    """Read a torch 1-D net (see :func:`net_parameters`) on ``interval`` = (lo, hi)."""
    return read_params(*net_parameters(model), interval=interval)


def one_sided(reading: UnitReading, knot_tol: float = DEFAULT_KNOT_TOL) -> Spline:
    """The net's function on all of R with right-facing bases only:

        f(x) = alpha + beta x + sum_j lambda_j relu(x - t_j),

    with lambda = a_i |w_i| at t_i for every unit with w_i != 0, alpha = c + sum_{w_i = 0}
    a_i relu(b_i) + sum_{w_i < 0} a_i b_i and beta = sum_{w_i < 0} a_i w_i. Knots closer than
    ``knot_tol`` merge (:func:`relu_lens.spline.make_spline`). A unit whose knot -b_i / w_i
    overflows float64 (|w_i| below ~1e-308 |b_i|) is read as flat, like w_i = 0.
    """
    r = reading
    moving = r.orientation != 0
    left = r.orientation < 0
    alpha = (
        r.c + np.sum(r.a[~moving] * np.maximum(r.b[~moving], 0.0)) + np.sum(r.a[left] * r.b[left])
    )
    beta = np.sum(r.a[left] * r.w[left])
    return make_spline(alpha, beta, r.knot[moving], r.slope_jump[moving], knot_tol=knot_tol)


def merged_spline(reading: UnitReading, knot_tol: float = DEFAULT_KNOT_TOL) -> Spline:
    """The spline the net computes on [lo, hi]: distinct INSIDE knots with their total slope
    jumps, and the affine part collected from AFFINE units and left-facing INSIDE units.

    Exact on [lo, hi] (not outside it) when ``knot_tol`` is at rounding level; a larger
    ``knot_tol`` merges nearby knots and changes f by at most |lambda| times the shift.
    """
    r = reading
    inside, affine = r.inside, r.affine
    left_inside = inside & (r.w < 0)
    folded = affine | left_inside
    alpha = r.c + np.sum(r.a[folded] * r.b[folded])
    beta = np.sum(r.a[folded] * r.w[folded])
    return make_spline(alpha, beta, r.knot[inside], r.slope_jump[inside], knot_tol=knot_tol)


@dataclass(frozen=True)
class Redundancy:
    """How many units a net spends against how many knots its function needs on [lo, hi].

    ``needed`` is the merged spline with knots within ``resolution`` merged and knots with
    |lambda| <= ``jump_rel_tol`` * max |lambda| dropped; ``n_distinct_knots`` its knot count;
    ``redundancy`` = n_inside / n_distinct_knots (NaN when no knot is needed).
    """

    needed: Spline
    n_inside: int
    n_affine: int
    n_dead: int
    n_distinct_knots: int
    redundancy: float


def redundancy(reading: UnitReading, resolution: float, jump_rel_tol: float) -> Redundancy:
    """Units against needed knots (:class:`Redundancy`); ``resolution`` in units of x."""
    merged = merged_spline(reading, knot_tol=resolution)
    scale = float(np.max(np.abs(merged.jumps))) if merged.n_knots else 0.0
    needed = merged.pruned(jump_rel_tol * scale)
    n_inside = int(reading.inside.sum())
    n_knots = needed.n_knots
    return Redundancy(
        needed=needed,
        n_inside=n_inside,
        n_affine=int(reading.affine.sum()),
        n_dead=int(reading.dead.sum()),
        n_distinct_knots=n_knots,
        redundancy=n_inside / n_knots if n_knots else float("nan"),
    )


def net_from_params(
    w: ArrayLike, b: ArrayLike, a: ArrayLike, c: float, dtype: torch.dtype = torch.float64
) -> nn.Sequential:
    """``nn.Sequential(nn.Linear(1, h), nn.ReLU(), nn.Linear(h, 1))`` with the given unit
    parameters (e.g. from :func:`relu_lens.spline.to_net_params`)."""
    w, b, a = (torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(-1)) for v in (w, b, a))
    h = w.numel()
    model = nn.Sequential(nn.Linear(1, h), nn.ReLU(), nn.Linear(h, 1)).to(dtype)
    with torch.no_grad():
        model[0].weight.copy_(w.reshape(h, 1))
        model[0].bias.copy_(b)
        model[2].weight.copy_(a.reshape(1, h))
        model[2].bias.fill_(float(c))
    return model
