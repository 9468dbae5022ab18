"""Closed-form learning curves of deep linear networks per mode (Saxe, McClelland, Ganguli 2014).

For one mode of input-output strength s, input variance d along the mode, and a balanced chain of
D weight matrices whose product has strength u (whitened input: d = 1):

- D = 2 (SMG 2014, eq. 6 and its input-variance form):
  tau du/dt = 2u(s - d u),  u(t) = (s/d) / (1 - (1 - s/(d u0)) e^{-2st/tau});
  with d = 1 this is u(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0);
  time from u0 to uf: t = (tau / 2s) ln[uf (s - d u0) / (u0 (s - d uf))].
- D >= 2 balanced: tau du/dt = D u^{2 - 2/D} (s - d u); t(u) from sympy (``gdln.symbolic``),
  lambdified, and inverted numerically (bisection on z = (d u / s)^{1/D}) to give u(t).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gdln.network import Array
from gdln.symbolic import antiderivative_function
from gdln.trajectory import Trajectory


def _check(s: Array, u0: Array, d: Array, tau: float, depth: int) -> None:
    if not isinstance(depth, int | np.integer) or depth < 2:
        raise ValueError(
            f"depth (number D of weight matrices) must be an integer >= 2, got {depth}"
        )
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if np.any(s <= 0) or np.any(d <= 0):
        raise ValueError("the mode strength s and input variance d must be positive")
    if np.any(u0 <= 0):
        raise ValueError("the initial strength u0 must be positive (u0 = 0 is a fixed point)")
    if depth > 2 and np.any(u0 >= s / d):
        raise ValueError(
            f"for depth {depth} the closed form needs 0 < u0 < s/d (learning from below)"
        )


def _time_deep(u: Array, s: Array, u0: Array, d: Array, tau: float, depth: int) -> Array:
    F = antiderivative_function(depth)
    z = (d * u / s) ** (1.0 / depth)
    z0 = (d * u0 / s) ** (1.0 / depth)
    return tau * (s / d) ** (2.0 / depth - 1.0) / s * (F(z) - F(z0))


def mode_strength(
    t: Array | Sequence[float] | float,
    s: Array | float,
    u0: Array | float,
    depth: int = 2,
    d: Array | float = 1.0,
    tau: float = 1.0,
) -> Array:
    """u(t) of a balanced chain of ``depth`` = D weight matrices learning a mode of strength s.

    tau du/dt = D u^{2-2/D} (s - d u), u(0) = u0 (SMG 2014). D = 2 uses the closed form
    u(t) = (s/d) / (1 - (1 - s/(d u0)) e^{-2st/tau}); D > 2 inverts the sympy-derived t(u).
    Arguments broadcast against each other; t >= 0.
    """
    t, s, u0, d = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (t, s, u0, d)))
    _check(s, u0, d, tau, depth)
    if np.any(t < 0):
        raise ValueError("times must be >= 0")
    if depth == 2:
        return (s / d) / (1.0 - (1.0 - s / (d * u0)) * np.exp(-2.0 * s * t / tau))
    F = antiderivative_function(depth)
    z0 = (d * u0 / s) ** (1.0 / depth)
    target = F(z0) + t * s / (tau * (s / d) ** (2.0 / depth - 1.0))
    lo, hi = z0.copy(), np.ones_like(z0)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(110):
            mid = 0.5 * (lo + hi)
            below = F(mid) < target
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
    return (s / d) * (0.5 * (lo + hi)) ** depth


def time_to_reach(
    u: Array | float,
    s: Array | float,
    u0: Array | float,
    depth: int = 2,
    d: Array | float = 1.0,
    tau: float = 1.0,
) -> Array:
    """Time for u to go from u0 to u (SMG 2014): for D = 2,
    t = (tau / 2s) ln[u (s - d u0) / (u0 (s - d u))]; for D > 2 the sympy-derived integral."""
    u, s, u0, d = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (u, s, u0, d)))
    _check(s, u0, d, tau, depth)
    if np.any((u - s / d) * (u0 - s / d) <= 0) or np.any(u <= 0):
        raise ValueError("u must lie strictly between 0 and s/d on the same side as u0")
    if depth == 2:
        return tau / (2.0 * s) * np.log(u * (s - d * u0) / (u0 * (s - d * u)))
    return _time_deep(u, s, u0, d, tau, depth)


def time_to_learn(
    s: Array | float,
    u0: Array | float,
    fraction: float = 0.5,
    depth: int = 2,
    d: Array | float = 1.0,
    tau: float = 1.0,
) -> Array:
    """Time for a mode to reach ``fraction`` of its final strength s/d, from u0."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    s, d = np.asarray(s, dtype=np.float64), np.asarray(d, dtype=np.float64)
    return time_to_reach(fraction * s / d, s, u0, depth=depth, d=d, tau=tau)


def closed_form(
    s: Array | Sequence[float],
    u0: Array | float,
    times: Array | Sequence[float],
    depth: int = 2,
    d: Array | float = 1.0,
    tau: float = 1.0,
    loss_floor: float = 0.0,
) -> Trajectory:
    """Per-mode closed-form trajectory of a balanced chain: mode_strength (time, mode, path = 1),
    edge_strength u^{1/D} on each of the D edges, and the mean loss

        L(t) = sum_alpha (s_alpha - d_alpha u_alpha)^2 / (2 d_alpha) + loss_floor,

    where ``loss_floor`` is the part of the loss no mode can remove,
    sigma_yy / 2 - sum_alpha s_alpha^2 / (2 d_alpha).
    """
    s = np.atleast_1d(np.asarray(s, dtype=np.float64))
    u0 = np.broadcast_to(np.asarray(u0, dtype=np.float64), s.shape)
    d = np.broadcast_to(np.asarray(d, dtype=np.float64), s.shape)
    times = np.asarray(times, dtype=np.float64)
    u = mode_strength(times[:, None], s[None], u0[None], depth=depth, d=d[None], tau=tau)
    loss = np.sum((s - d * u) ** 2 / (2.0 * d), axis=1) + loss_floor
    edges = tuple(f"W{k + 1}" for k in range(depth))
    return Trajectory(
        time=times,
        loss=loss,
        method="closed_form",
        tau=tau,
        mode_strength=u[:, :, None],
        edge_strength=np.repeat((u ** (1.0 / depth))[:, :, None], depth, axis=2),
        paths=(">".join(edges),),
        edges=edges,
        attrs={"depth": int(depth)},
    )
