"""Ingredients of the early-alignment bound of Min, Mallada & Vidal (ICLR 2024).

Setting: f(x) = sum_j v_j relu(w_j^T x), balanced small initialisation W(0) = eps W0,
v_j(0) = +-||w_j(0)||, loss summed over the n samples, gradient flow. The theorem: if the data
are well separated (mu > 0) and eps is small enough, every neuron j in V+ = {j: v_j > 0} lies in
S+ or S_dead and every neuron in V- lies in S- or S_dead by

    t1 = 16 log n / (min{zeta, xi} sqrt(mu) X_min),                                    (T1)

after which L(t) <= L(t2) / (L(t2) alpha (t - t2) + 1) with alpha = (mu X_min)^2 / (32 X_max).

What is exact and what is an estimate here:

- exact (closed forms of the data): ``mu``, ``X_min``, ``X_max``, ``x_plus``, ``x_minus``,
  ``zeta1`` (the largest cap around x+ / x- inside S+ / S-), ``alpha``;
- exact given the initial directions W0: ``zeta_init`` (the initial-angle term);
- estimate: ``xi``, an infimum over the sphere computed by sampling (see :func:`xi_estimate`);
  sampling can only miss smaller values, so it over-estimates xi and ``t1`` may be
  under-estimated by the same factor when xi is the smaller of the two;
- ``t1`` and ``log_eps_max`` combine the above by the paper's formulas.

Beside the bound, two mechanistic predictors of the alignment time (our derivation, not in the
paper; docs/theory/early-alignment.md, section "What t_align scales with"):
:func:`drift_time` (the pre-activations of each neuron drift linearly along x_a of its current
active set, event by event: exact sign-pattern path, time rescaled by the neuron's norm) and
:func:`aligned_drift_time` (the same drift frozen at the aligned velocity x+ or x-).

The paper's appendix defines zeta and xi; we had only their structure
(docs/theory/early-alignment.md, section "Our readings of zeta and xi"). Our definitions,
stated in each function, follow that structure and are our own reading. The paper's polynomial
eps condition is not reproduced (its form was not available).

Data with mu <= 0 violate the theorem's assumption: :func:`bound_ingredients` then returns
``applicable = False`` with the reason, and NaN for t1, xi, alpha and log_eps_max, never a
number computed from a meaningless formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln.tasks import check_binary, separability

__all__ = [
    "BoundIngredients",
    "aligned_drift_time",
    "alpha_rate",
    "bound_ingredients",
    "class_sums",
    "drift_time",
    "eps_condition_holds",
    "log_eps_max",
    "loss_bound_after_alignment",
    "norm_extremes",
    "separability",
    "t1_bound",
    "xi_estimate",
    "zeta1",
    "zeta_init",
]


@dataclass(frozen=True)
class BoundIngredients:
    """Everything the bound needs, for one data set (and optionally one initialisation).

    Float fields are NaN where not applicable or not computed (``zeta_init`` without W0).
    """

    n: int
    h: int
    mu: float
    X_min: float
    X_max: float
    x_plus: np.ndarray
    x_minus: np.ndarray
    zeta1: float
    zeta_init: float
    zeta: float
    xi: float
    t1: float
    log_eps_max: float
    alpha: float
    applicable: bool
    reason: str


def norm_extremes(X: np.ndarray) -> tuple[float, float]:
    """(X_min, X_max) = (min_i ||x_i||, max_i ||x_i||); exact. X must be finite."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or not np.all(np.isfinite(X)):
        raise ValueError(f"X must be a finite (sample, in) array with samples, got {X.shape}")
    norms = np.linalg.norm(X, axis=1)
    return float(norms.min()), float(norms.max())


def class_sums(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x+ = sum_{i: y_i > 0} x_i and x- = sum_{i: y_i < 0} x_i (sums, not means); exact.
    Labels must be -1 or +1 and the data finite."""
    X, y = check_binary(X, y)
    return X[y > 0].sum(axis=0), X[y < 0].sum(axis=0)


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def zeta1(X: np.ndarray, y: np.ndarray) -> float:
    """The largest cap {z: cos(z, x+-) > sqrt(1 - zeta1)} inside S+ (around x+) and S- (around x-).

    A direction z at angle phi from x+ keeps the sign of <x_i, z> equal to that of <x_i, x+> as
    long as phi < pi/2 - angle(x_i, +-x+), i.e. cos^2 phi > 1 - cos^2(x_i, x+): the nearest
    hyperplane <x_i, z> = 0 is at angular distance arcsin |cos(x_i, x+)|. With mu > 0 the signs
    of <x_i, x+> are exactly those of S+ (positive for positive x_i, negative for negative
    x_i), so

        zeta1 = min( min_i cos^2(x_i, x+), min_i cos^2(x_i, x-) ).

    Exact (our derivation; checked against sampled cap rims in the tests).
    """
    x_plus, x_minus = class_sums(X, y)
    U = _unit(np.asarray(X, dtype=np.float64))
    c_plus = U @ _unit(x_plus)
    c_minus = U @ _unit(x_minus)
    return float(min((c_plus**2).min(), (c_minus**2).min()))


def zeta_init(W0: np.ndarray, signs: np.ndarray, x_plus: np.ndarray, x_minus: np.ndarray) -> float:
    """Initial-angle term: the largest zeta such that no initial neuron of V+ (V-) lies inside
    the cap cos(w, x+) > sqrt(1 - zeta) (cos(w, x-) > sqrt(1 - zeta)):

        zeta_init = min_j (1 - max(cos(w_j(0), x_{sign v_j}), 0)^2).

    Our reading of "zeta is also bounded through the initial angles": the proof follows each
    neuron until it enters the cap, so the cap is taken no larger than the initial distance of
    the closest neuron. Exact given W0 (rows w_j(0), shape (hidden, in)) and signs (hidden,).
    """
    W0 = np.asarray(W0, dtype=np.float64)
    signs = np.asarray(signs)
    if W0.ndim != 2 or signs.shape != (W0.shape[0],) or not np.all(np.isfinite(W0)):
        raise ValueError(f"need finite W0 (hidden, in) and signs (hidden,), got {W0.shape}")
    if np.any(np.linalg.norm(W0, axis=1) == 0) or not np.all(np.isin(signs, (-1, 1))):
        raise ValueError("every initial neuron w_j(0) must be nonzero and every sign -1 or +1")
    target = np.where(signs[:, None] > 0, _unit(x_plus)[None, :], _unit(x_minus)[None, :])
    cos = np.sum(_unit(W0) * target, axis=1)
    return float((1.0 - np.maximum(cos, 0.0) ** 2).min())


def _directions(X: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit directions that cover the sphere and the regions near the data: uniform samples,
    data directions with small noise, and noisy mixtures of two data directions."""
    n, D = X.shape
    U = _unit(X)
    third = max(samples // 3, 1)
    uniform = rng.standard_normal((third, D))
    scale = rng.choice([1e-3, 1e-2, 1e-1, 0.5], size=(third, 1))
    near = U[rng.integers(n, size=third)] + scale * rng.standard_normal((third, D))
    c = rng.uniform(size=(third, 1))
    mixed = c * U[rng.integers(n, size=third)] + (1 - c) * U[rng.integers(n, size=third)]
    mixed += 0.05 * rng.standard_normal((third, D))
    both = np.concatenate([uniform, near, -near, mixed, -mixed])
    return _unit(both[np.linalg.norm(both, axis=1) > 0])


def xi_estimate(X: np.ndarray, y: np.ndarray, samples: int = 20_000, seed: int = 0) -> float:
    """Separation constant xi: the slowest normalised speed of an unaligned neuron direction.

    In the alignment phase (f ~ 0, -l'(0) = 1 for the exponential loss) a neuron's direction
    w = w_j / ||w_j|| moves by dw/dt = sign(v_j) P_w^perp x_a(w) with
    x_a(w) = sum_{i: <x_i, w> > 0} y_i x_i (balanced init, |v_j| = ||w_j||). We define

        xi = inf_w ||P_w^perp x_a(w)|| / (|A(w)| sqrt(mu) X_min)

    over directions w that are active on some point (A(w) = {i: <x_i, w> > 0} non-empty) and
    lie in neither S+ nor S-, i.e. directions from which some neuron still has to move. This
    normalisation matches the paper's clock: a neuron active on k points moves at speed
    >= xi k sqrt(mu) X_min, and summing 1/k over the activation path gives the log n of (T1).

    Numerical method (an estimate, no closed form): the minimum over ``samples`` directions
    drawn uniformly, near each data direction (noise 1e-3 .. 0.5) and near mixtures of two data
    directions, with their negatives. Sampling can only miss smaller values, so the result is
    an upper estimate of the infimum. Returns NaN when mu <= 0.
    """
    X, y = check_binary(X, y)
    if samples < 1:
        raise ValueError(f"xi_estimate needs samples >= 1, got {samples}")
    mu = separability(X, y)
    if mu <= 0:
        return float("nan")
    X_min, _ = norm_extremes(X)
    rng = np.random.default_rng(seed)
    W = _directions(X, samples, rng)
    active = (W @ X.T) > 0
    pos, neg = y > 0, y < 0
    in_plus = active[:, pos].all(axis=1) & ~active[:, neg].any(axis=1)
    in_minus = active[:, neg].all(axis=1) & ~active[:, pos].any(axis=1)
    keep = active.any(axis=1) & ~in_plus & ~in_minus
    W, active = W[keep], active[keep]
    x_a = (active * y) @ X
    perp = x_a - np.sum(x_a * W, axis=1, keepdims=True) * W
    speed = np.linalg.norm(perp, axis=1) / (active.sum(axis=1) * np.sqrt(mu) * X_min)
    return float(speed.min()) if speed.size else float("nan")


def t1_bound(n: int, mu: float, X_min: float, zeta: float, xi: float) -> float:
    """t1 = 16 log n / (min{zeta, xi} sqrt(mu) X_min), the theorem's alignment time (T1), in
    the paper's clock (loss summed over samples). NaN if mu <= 0 or zeta or xi is NaN (not
    applicable or not estimated); inf if min{zeta, xi} = 0 (no cap, no finite bound).
    ValueError outside the domain: n < 1, mu > 1, X_min <= 0, zeta or xi negative."""
    if n < 1 or not X_min > 0 or mu > 1 or zeta < 0 or xi < 0:
        raise ValueError(
            f"t1_bound needs n >= 1, mu <= 1, X_min > 0 and zeta, xi >= 0; got n={n}, "
            f"mu={mu}, X_min={X_min}, zeta={zeta}, xi={xi}"
        )
    if not mu > 0 or not np.isfinite(zeta) or not np.isfinite(xi):
        return float("nan")
    if min(zeta, xi) == 0:
        return float("inf")
    return float(16.0 * np.log(n) / (min(zeta, xi) * np.sqrt(mu) * X_min))


def log_eps_max(
    n: int, h: int, mu: float, X_min: float, X_max: float, zeta: float, xi: float
) -> float:
    """log of the exponential eps condition,

        eps <= (1 / sqrt h) exp(-64 n X_max log n / (min{zeta, xi} sqrt(mu) X_min)),

    returned as a logarithm because the bound underflows float64 for all but tiny n
    (64 n X_max log n / (...) = 4 n X_max t1). NaN if mu <= 0; ValueError if h < 1."""
    if h < 1:
        raise ValueError(f"the width h must be >= 1, got {h}")
    t1 = t1_bound(n, mu, X_min, zeta, xi)
    if not np.isfinite(t1):
        return float("nan")
    return float(-0.5 * np.log(h) - 4.0 * n * X_max * t1)


def eps_condition_holds(eps: float, ingredients: BoundIngredients) -> bool:
    """True iff log(eps) <= log_eps_max (the exponential condition, exactly as stated); the
    init scale eps must be positive and finite."""
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"the init scale eps must be positive and finite, got {eps}")
    return bool(ingredients.applicable and np.log(eps) <= ingredients.log_eps_max)


def alpha_rate(mu: float, X_min: float, X_max: float) -> float:
    """alpha = (mu X_min)^2 / (32 X_max), the constant of the O(1/t) rate; NaN if mu <= 0."""
    if not 0 < X_min <= X_max or mu > 1:
        raise ValueError(f"need 0 < X_min <= X_max and mu <= 1, got {X_min}, {X_max}, {mu}")
    if not mu > 0:
        return float("nan")
    return float((mu * X_min) ** 2 / (32.0 * X_max))


def loss_bound_after_alignment(t: np.ndarray, t2: float, L2: float, alpha: float) -> np.ndarray:
    """L(t) <= L(t2) / (L(t2) alpha (t - t2) + 1) for t >= t2 (the O(1/t) phase); NaN before.
    Needs a finite t2, L(t2) >= 0 and alpha > 0 (ValueError otherwise)."""
    if not (np.isfinite(t2) and np.isfinite(L2) and L2 >= 0 and np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"need finite t2, L(t2) >= 0 and alpha > 0; got {t2}, {L2}, {alpha}")
    t = np.asarray(t, dtype=np.float64)
    return np.where(t >= t2, L2 / (L2 * alpha * (t - t2) + 1.0), np.nan)


def bound_ingredients(
    X: np.ndarray,
    y: np.ndarray,
    h: int,
    W0: np.ndarray | None = None,
    signs: np.ndarray | None = None,
    xi_samples: int = 20_000,
    seed: int = 0,
    xi: float | None = None,
) -> BoundIngredients:
    """All ingredients of the bound for data X (sample, in), labels y in {-1, +1} (sample,),
    width h, and optionally the initial directions W0 (hidden, in) with signs of v (hidden,).

    zeta = min{zeta1, zeta_init} when W0 is given, else zeta1. xi depends on the data only:
    pass an earlier :func:`xi_estimate` of the same X, y as ``xi`` to reuse it for another
    initialisation (else it is estimated from ``xi_samples`` directions). If mu <= 0 (or a
    class is empty) the theorem does not apply: ``applicable`` is False, ``reason`` says why,
    and t1, xi, alpha, log_eps_max are NaN.
    """
    X, y = check_binary(X, y)
    if h < 1:
        raise ValueError(f"the width h must be >= 1, got {h}")
    if W0 is not None and (signs is None or np.shape(W0) != (h, X.shape[1])):
        raise ValueError(f"W0 must be (h, in) = ({h}, {X.shape[1]}) with signs (h,)")
    n = X.shape[0]
    x_plus, x_minus = class_sums(X, y)
    X_min, X_max = norm_extremes(X)
    nan = float("nan")
    if not (np.any(y > 0) and np.any(y < 0)):
        mu = separability(X, y)
        return BoundIngredients(
            n, h, mu, X_min, X_max, x_plus, x_minus, nan, nan, nan, nan, nan, nan, nan,
            False, "both labels must occur; the bound is not applicable",
        )  # fmt: skip
    mu = separability(X, y)
    z_init = nan if W0 is None else zeta_init(W0, signs, x_plus, x_minus)
    if mu <= 0:
        return BoundIngredients(
            n, h, mu, X_min, X_max, x_plus, x_minus, nan, z_init, nan, nan, nan, nan, nan,
            False, f"data are not well separated (mu = {mu:.4g} <= 0); the bound does not apply",
        )  # fmt: skip
    z1 = zeta1(X, y)
    zeta = z1 if W0 is None else min(z1, z_init)
    if xi is None:
        xi = xi_estimate(X, y, samples=xi_samples, seed=seed)
    return BoundIngredients(
        n=n,
        h=h,
        mu=mu,
        X_min=X_min,
        X_max=X_max,
        x_plus=x_plus,
        x_minus=x_minus,
        zeta1=z1,
        zeta_init=z_init,
        zeta=zeta,
        xi=xi,
        t1=t1_bound(n, mu, X_min, zeta, xi),
        log_eps_max=log_eps_max(n, h, mu, X_min, X_max, zeta, xi),
        alpha=alpha_rate(mu, X_min, X_max),
        applicable=True,
        reason="",
    )


def _check_neurons(
    X: np.ndarray, y: np.ndarray, W0: np.ndarray, signs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """X, y checked, unit rows of W0 (hidden, in) and signs (hidden,) in {-1, +1}."""
    X, y = check_binary(X, y)
    W0 = np.asarray(W0, dtype=np.float64)
    signs = np.asarray(signs, dtype=np.float64)
    if W0.ndim != 2 or W0.shape[1] != X.shape[1] or signs.shape != (W0.shape[0],):
        raise ValueError(f"need W0 (hidden, {X.shape[1]}) and signs (hidden,), got {W0.shape}")
    norms = np.linalg.norm(W0, axis=1)
    if not np.all(np.isfinite(W0)) or np.any(norms == 0) or not np.all(np.isin(signs, (-1, 1))):
        raise ValueError("every initial neuron must be finite and nonzero, every sign -1 or +1")
    return X, y, W0 / norms[:, None], signs


def _allowed_pattern(active: np.ndarray, own: np.ndarray) -> bool:
    """The active set is empty (S_dead) or exactly the neuron's own class (S+ or S-)."""
    return not active.any() or bool(np.array_equal(active, own))


def drift_time(
    X: np.ndarray, y: np.ndarray, W0: np.ndarray, signs: np.ndarray, neg_dloss0: float = 1.0
) -> np.ndarray:
    """Per neuron, the alignment time of the active-set drift: (hidden,) times, summed-loss
    clock.

    In the alignment phase (f ~ 0, so -l'(y_i f_i) = -l'(0); balanced |v_j| = ||w_j||) the
    gradient flow of the summed loss moves neuron j by (Min, Mallada & Vidal 2024, eq. 1 and
    the alignment-phase approximation of their analysis)

        dw_j/dt = -l'(0) s_j ||w_j|| x_a(w_j),    x_a(w) = sum_{i: <x_i, w> > 0} y_i x_i.

    In the rescaled time tau_j = int_0^t ||w_j|| / ||w_j(0)|| dt' this is a straight line between
    the times at which some <x_i, w_j> changes sign, so the pre-activations of the initial
    direction, p = X w_j / ||w_j(0)||, follow exactly

        dp/dtau = -l'(0) s_j X x_a(A),    A = {i : p_i > 0},    p(0) = X w_j(0) / ||w_j(0)||,

    piecewise linear, solved event by event (the next crossing is the smallest -p_i / rate_i
    over the points whose rate pushes them across zero). The returned time is the first tau at
    which the active set is allowed (empty, or exactly the positives for s_j > 0, the
    negatives for s_j < 0), taken as the time t: the one approximation, tau ~ t, holds while
    ||w_j|| stays near its initial value over the alignment phase. With mu > 0 the own-class
    p_i rise and the others fall while A is non-empty, so there are at most n events; inf
    where no event can move the pattern, NaN where 4n events pass without an allowed pattern
    (points crossing back and forth, possible only when mu <= 0). Our derivation (the
    sign-pattern path is exact; only the clock is approximated);
    docs/theory/early-alignment.md, "What t_align scales with".

    Args:
        X: inputs (sample, in); y: labels in {-1, +1} (sample,).
        W0: initial neurons (hidden, in), nonzero rows (only their directions matter).
        signs: signs s_j of v_j (hidden,).
        neg_dloss0: -l'(0): 1 for the exponential loss, 1/2 for the logistic loss.
    """
    X, y, U, signs = _check_neurons(X, y, W0, signs)
    if not neg_dloss0 > 0:
        raise ValueError(f"-l'(0) must be > 0, got {neg_dloss0}")
    G = X @ X.T * y[None, :] * neg_dloss0  # column l: the rate of every p_i from point l
    out = np.empty(len(U))
    for j, (u, s_j) in enumerate(zip(U, signs, strict=True)):
        p = X @ u
        active = p > 0
        own = y * s_j > 0
        rate = s_j * G[:, active].sum(axis=1)
        t = 0.0
        for _ in range(4 * len(y)):
            if _allowed_pattern(active, own):
                break
            moving = np.where(active, rate < 0, rate > 0)
            if not moving.any():
                t = np.inf
                break
            dt = np.where(moving, -p / np.where(moving, rate, 1.0), np.inf)
            i = int(np.argmin(dt))
            t += dt[i]
            p = p + rate * dt[i]
            p[i] = 0.0
            active[i] = not active[i]
            rate = rate + (1.0 if active[i] else -1.0) * s_j * G[:, i]
        out[j] = t if _allowed_pattern(active, own) or np.isinf(t) else np.nan
    return out


def aligned_drift_time(
    X: np.ndarray, y: np.ndarray, W0: np.ndarray, signs: np.ndarray, neg_dloss0: float = 1.0
) -> np.ndarray:
    """Per neuron, the time for the drift at the aligned velocity to carry every wrong
    pre-activation across its boundary: (hidden,) times, summed-loss clock.

    Once neuron j is aligned its x_a is x+ (s_j > 0: the positives are active) or -x-
    (s_j < 0), so by :func:`drift_time` its pre-activations move at dp_i/dt = -l'(0) <x_i,
    x_{s_j}> with x_{+1} = x+ and x_{-1} = x- (class sums; their norms grow like n). Frozen at
    this velocity from the start, the wrong points (own class inactive, other class active)
    cross zero at |p_i(0)| / (-l'(0) |<x_i, x_{s_j}>|), and

        t_j = max over wrong i of |<x_i, u_j(0)>| / (-l'(0) |<x_i, x_{s_j}>|),

    0 if the neuron starts in an allowed region, inf if a wrong point's drift has the wrong
    sign (possible only when mu <= 0). A closed form that ignores the slow start of a neuron
    active on few points (so it under-estimates the worst-case init); our derivation.
    Arguments as in :func:`drift_time`.
    """
    X, y, U, signs = _check_neurons(X, y, W0, signs)
    if not neg_dloss0 > 0:
        raise ValueError(f"-l'(0) must be > 0, got {neg_dloss0}")
    x_plus, x_minus = class_sums(X, y)
    P = U @ X.T  # (hidden, sample)
    target = np.where(signs[:, None] > 0, x_plus[None, :], x_minus[None, :])
    rate = neg_dloss0 * (target @ X.T)  # (hidden, sample): dp_i/dt at alignment
    own = y[None, :] * signs[:, None] > 0
    wrong = (P > 0) != own
    right_way = np.where(own, rate > 0, rate < 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = np.where(right_way, np.abs(P) / np.abs(rate), np.inf)
    return np.where(wrong, cross, 0.0).max(axis=1)
