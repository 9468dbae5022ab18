"""Runge-Kutta-Chebyshev (RKC): a stabilised explicit integrator for mildly stiff flows.

Gradient flows of deep linear networks are stiff late in learning: converged modes contract
at rate lambda_max while slow modes still creep, so a classical explicit method (RK45) takes
steps of about 3 / lambda_max however smooth the solution. The second-order RKC method of
Sommeijer, Shampine & Verwer (J. Comput. Appl. Math. 88, 1997, eqs. 2.1-2.6) uses s stages of
damped Chebyshev polynomials (damping eps = 2/13), whose stability interval along the negative
real axis grows as beta(s) ~ 0.65 s^2: a step h needs only s ~ sqrt(1.54 h rho) evaluations,
rho the spectral radius of the Jacobian (estimated here by power iteration on finite-difference
Jacobian-vector products). It suits gradient flows, whose Jacobian (minus a Hessian) has a real
spectrum.

Stages, with w0 = 1 + eps/s^2, w1 = T_s'(w0)/T_s''(w0), b_j = T_j''(w0)/T_j'(w0)^2
(b_0 = b_1 = b_2), a_j = 1 - b_j T_j(w0):

    Y_0 = y_n,   Y_1 = Y_0 + b_1 w1 h F(Y_0),
    Y_j = (1 - mu_j - nu_j) Y_0 + mu_j Y_{j-1} + nu_j Y_{j-2} + mu~_j h F(Y_{j-1})
          - a_{j-1} mu~_j h F(Y_0),
    mu_j = 2 w0 b_j / b_{j-1}, nu_j = -b_j / b_{j-2}, mu~_j = 2 w1 b_j / b_{j-1},

y_{n+1} = Y_s. For few stages (s <= :data:`HORNER_MAX_STAGES`) the same stability polynomial
R_s(z) = a_s + b_s T_s(w0 + w1 z) = sum_k r_k z^k is stepped in its Horner form instead,

    Y_0 = y_n,   Y_j = y_n + alpha_j h F(Y_{j-1}),   alpha_j = r_{s-j+1} / r_{s-j},

which is second order for autonomous flows (the conditions sum b = 1 and sum b c = 1/2 read
alpha_s = r_1 = 1 and alpha_{s-1} = r_2 / r_1 = 1/2) and reads three vectors per stage instead
of six. Its error propagation is weaker: a perturbation of stage j reaches y_{n+1} multiplied
by r_{s-j} z^{s-j}, at most about 450 over the stability interval at s = 5 but 2 x 10^6 at
s = 10, where the damped three-term recurrence keeps it near 1. Local error estimate (their
eq. 2.7):
(1/15) [12 (y_n - y_{n+1}) + 6 h (F(y_n) + F(y_{n+1}))], in the RMS norm weighted by
atol + rtol max(|y_n|, |y_{n+1}|). Values between steps come from cubic
Hermite interpolation with the two end slopes. The stage combinations and the error norm are
done in place in preallocated buffers with one-thread BLAS axpy
(:func:`gdln.threads.vector_threads`), block by block (:data:`BLOCK` elements), so that the
several vectors of one combination stay in the core's cache: on large states (a depth-2 twin
holds about 2 x 10^5 weights) these vector operations otherwise cost as much as the
evaluations of F.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial import Chebyshev, Polynomial
from scipy.linalg.blas import daxpy as axpy
from scipy.linalg.blas import ddot as dot

from gdln.network import Array
from gdln.threads import vector_threads

_EPS = 2.0 / 13.0
#: elements per block of the vector operations: a block of each of the six vectors of a stage
#: (256 KiB each in float64) fits in a 2 MiB L2 cache
BLOCK = 2**15
#: the largest stage count stepped in Horner form (perturbations grow at most ~450-fold)
HORNER_MAX_STAGES = 5


@dataclass(frozen=True)
class RKCResult:
    """States at the requested times, (n, time) (None when they went to ``record``), and the
    number of F evaluations."""

    y: Array | None
    nfev: int


@lru_cache(maxsize=256)
def _coefficients(s: int) -> tuple[Array, Array, Array, Array, float]:
    """(mu, nu, mu_tilde, gamma_tilde) for stages 1..s (index j), and b_1 w1."""
    w0 = 1.0 + _EPS / s**2
    T, dT, d2T = np.zeros(s + 1), np.zeros(s + 1), np.zeros(s + 1)
    T[0], T[1], dT[1] = 1.0, w0, 1.0
    for j in range(2, s + 1):
        T[j] = 2 * w0 * T[j - 1] - T[j - 2]
        dT[j] = 2 * T[j - 1] + 2 * w0 * dT[j - 1] - dT[j - 2]
        d2T[j] = 4 * dT[j - 1] + 2 * w0 * d2T[j - 1] - d2T[j - 2]
    w1 = dT[s] / d2T[s]
    b = np.empty(s + 1)
    b[2:] = d2T[2:] / dT[2:] ** 2
    b[0] = b[1] = b[2]
    a = 1.0 - b * T
    mu, nu, mu_t, gamma_t = (np.zeros(s + 1) for _ in range(4))
    for j in range(2, s + 1):
        mu[j] = 2 * w0 * b[j] / b[j - 1]
        nu[j] = -b[j] / b[j - 2]
        mu_t[j] = 2 * w1 * b[j] / b[j - 1]
        gamma_t[j] = -a[j - 1] * mu_t[j]
    return mu, nu, mu_t, gamma_t, b[1] * w1


@lru_cache(maxsize=16)
def _horner(s: int) -> Array:
    """alpha_1..alpha_s (index j) of the Horner form of R_s(z) = a_s + b_s T_s(w0 + w1 z)."""
    w0 = 1.0 + _EPS / s**2
    T = Chebyshev.basis(s).convert(kind=Polynomial)
    dT, d2T = T.deriv(), T.deriv(2)
    w1 = dT(w0) / d2T(w0)
    b = d2T(w0) / dT(w0) ** 2
    r = ((1.0 - b * T(w0)) + b * T(Polynomial([w0, w1]))).coef
    alpha = np.zeros(s + 1)
    alpha[1:] = r[s:0:-1] / r[s - 1 :: -1]
    return alpha


def _combine(out: Array, first: Array, c0: float, terms: list[tuple[Array, float]]) -> None:
    """out = c0 first + sum_k c_k a_k over (a_k, c_k) in ``terms``, block by block
    (:data:`BLOCK`), so that one block of every vector stays in cache."""
    for b in range(0, out.size, BLOCK):
        sl = slice(b, min(b + BLOCK, out.size))
        out_b = out[sl]
        np.multiply(first[sl], c0, out=out_b)
        for a, c in terms:
            axpy(a[sl], out_b, a=c)


def rkc(
    fun: Callable[[Array], Array],
    t_end: float,
    y0: Array,
    t_eval: Array,
    rtol: float = 1e-4,
    atol: float = 1e-10,
    max_stages: int = 200,
    rho_every: int = 25,
    record: Callable[[int, Array], None] | None = None,
) -> RKCResult:
    """Integrate the autonomous system dy/dt = fun(y) from t = 0 to ``t_end`` and return y at
    ``t_eval`` (increasing, within [0, t_end]), or hand y at ``t_eval[k]`` to ``record(k, y)``
    as soon as it is known (nothing is stored; y may be a work buffer that is overwritten
    later, so ``record`` copies what it keeps). Step size from the error estimate (weighted
    RMS norm with ``rtol``, ``atol``); stage count from the spectral radius, re-estimated every
    ``rho_every`` steps. Raises FloatingPointError on non-finite values or a vanishing step."""
    y = np.array(y0, dtype=np.float64)
    t_eval = np.asarray(t_eval, dtype=np.float64)
    out = np.empty((y.size, t_eval.size)) if record is None else None

    def keep(k: int, value: Array) -> None:
        if out is None:
            record(k, value)
        else:
            out[:, k] = value

    nfev = 0

    def F(v: Array) -> Array:
        nonlocal nfev
        nfev += 1
        return fun(v)

    f = F(y)
    rng = np.random.default_rng(0)
    v = rng.standard_normal(y.size)

    def spectral_radius(y: Array, f: Array, v: Array) -> tuple[float, Array]:
        """Power iteration on J v ~ (F(y + d v) - F(y)) / d; a 20% safety margin."""
        rho = 0.0
        for _ in range(12):
            v = v / np.linalg.norm(v)
            d = 1e-7 * max(np.linalg.norm(y) / np.sqrt(y.size), 1e-8)
            Jv = (F(y + d * v) - f) / d
            new = float(np.linalg.norm(Jv))
            if new == 0.0:  # F is flat along v (e.g. a flow at rest): no stiffness seen
                return 0.0, rng.standard_normal(y.size)
            converged = abs(new - rho) <= 0.01 * new
            rho, v = new, Jv
            if converged:
                break
        return 1.2 * rho, v

    rho, v = spectral_radius(y, f, v)
    scale = atol + rtol * np.abs(y)
    h = min(t_end, 0.1 * np.sqrt(y.size) / max(np.linalg.norm(f / scale), 1e-300))
    pool = [np.empty_like(y) for _ in range(3)]
    blocks = [slice(i, min(i + BLOCK, y.size)) for i in range(0, y.size, BLOCK)]

    def vector_ops() -> AbstractContextManager[object]:
        return vector_threads(y.size)

    n_block = min(BLOCK, y.size)
    est, est_abs, work = np.empty(n_block), np.empty(n_block), np.empty_like(y)
    t, k_eval, n_steps = 0.0, 0, 0
    while k_eval < t_eval.size and t_eval[k_eval] <= t:
        keep(k_eval, y)
        k_eval += 1
    while t < t_end:
        h = min(h, t_end - t)
        if not np.isfinite(rho):
            raise FloatingPointError(
                f"RKC: the Jacobian's spectral radius is not finite at t = {t:.6g}"
            )
        s = max(2, int(np.ceil(np.sqrt(1.0 + 1.54 * h * rho))))
        if s > max_stages:
            s = max_stages
            h = (s**2 - 1.0) / (1.54 * rho)
        # stages in preallocated buffers, updated in place (the state may be large: fresh
        # temporaries per operation would cost more than the flow's own evaluations)
        if s <= HORNER_MAX_STAGES:
            alpha, cur = _horner(s), pool[0]
            with vector_ops():
                _combine(cur, f, alpha[1] * h, [(y, 1.0)])
            for j in range(2, s + 1):
                F_cur = F(cur)
                with vector_ops():
                    _combine(cur, F_cur, alpha[j] * h, [(y, 1.0)])
        else:
            mu, nu, mu_t, gamma_t, mu_t1 = _coefficients(s)
            prev, cur = y, pool[0]
            with vector_ops():
                _combine(cur, f, mu_t1 * h, [(y, 1.0)])
            for j in range(2, s + 1):
                nxt = next(b for b in pool if b is not prev and b is not cur)
                F_cur = F(cur)
                with vector_ops():
                    _combine(
                        nxt, y, 1 - mu[j] - nu[j],
                        [(cur, mu[j]), (prev, nu[j]), (F_cur, mu_t[j] * h), (f, gamma_t[j] * h)],
                    )  # fmt: skip
                prev, cur = cur, nxt
        f_new = F(cur)
        # est = (12 (y - cur) + 6 h (f + f_new)) / 15, weighted by atol + rtol max(|y|, |cur|)
        # = rtol (atol / rtol + max(|y|, |cur|)), from the blocks of y and cur in cache
        sum_sq = 0.0
        with vector_ops():
            for b in blocks:
                n_b = b.stop - b.start
                est_b, m_b, abs_b = est[:n_b], work[:n_b], est_abs[:n_b]
                y_b, cur_b = y[b], cur[b]
                np.subtract(y_b, cur_b, out=est_b)
                axpy(f[b], est_b, a=0.5 * h)
                axpy(f_new[b], est_b, a=0.5 * h)
                np.abs(cur_b, out=m_b)
                np.maximum(np.abs(y_b, out=abs_b), m_b, out=m_b)
                m_b += atol / rtol
                est_b /= m_b
                sum_sq += float(dot(est_b, est_b))
        err = 0.8 * np.sqrt(sum_sq / y.size) / rtol
        if not np.isfinite(err):
            raise FloatingPointError(f"RKC produced NaN or inf at t = {t:.6g}")
        if err > 1.0:  # reject
            h *= max(0.1, 0.8 / err ** (1.0 / 3.0))
            if h < 1e-12 * max(t_end, 1.0):
                raise FloatingPointError(f"RKC step size vanished at t = {t:.6g}")
            continue
        t_new = t + h
        while k_eval < t_eval.size and t_eval[k_eval] <= t_new:
            x = (t_eval[k_eval] - t) / h  # cubic Hermite on [t, t + h]
            h00, h10 = 2 * x**3 - 3 * x**2 + 1, x**3 - 2 * x**2 + x
            h01, h11 = -2 * x**3 + 3 * x**2, x**3 - x**2
            with vector_ops():
                _combine(work, y, h00, [(f, h10 * h), (cur, h01), (f_new, h11 * h)])
            keep(k_eval, work)
            k_eval += 1
        pool[next(i for i, b in enumerate(pool) if b is cur)] = y  # old state: a stage buffer
        t, y, f = t_new, cur, f_new
        n_steps += 1
        if n_steps % rho_every == 0:
            rho, v = spectral_radius(y, f, v)
        h *= min(10.0, max(0.1, 0.8 / max(err, 1e-10) ** (1.0 / 3.0)))
    return RKCResult(out, nfev)
