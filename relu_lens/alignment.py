"""Measurements of early neuron alignment (Min, Mallada & Vidal, ICLR 2024).

Regions of a neuron direction z (section 3 of the paper):

    S+     = {z: <x_i, z> > 0 exactly for the positive x_i}   (and <= 0 for the negative ones)
    S-     = {z: <x_i, z> > 0 exactly for the negative x_i}
    S_dead = {z: <x_i, z> <= 0 for all i}

A network is aligned when every j in V+ = {j: v_j > 0} lies in S+ or S_dead and every j in V-
lies in S- or S_dead. The time of alignment ``t_align`` is the first time from which the
network is aligned at every later step of the horizon. Region codes: 0 neither, 1 S+, 2 S-,
3 S_dead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

NEITHER, S_PLUS, S_MINUS, S_DEAD = 0, 1, 2, 3
REGION_NAMES = {NEITHER: "neither", S_PLUS: "S+", S_MINUS: "S-", S_DEAD: "S_dead"}


def _region_codes(
    active_pos_all: np.ndarray,
    active_pos_any: np.ndarray,
    active_neg_all: np.ndarray,
    active_neg_any: np.ndarray,
) -> np.ndarray:
    plus = active_pos_all & ~active_neg_any
    minus = active_neg_all & ~active_pos_any
    dead = ~active_pos_any & ~active_neg_any
    return plus * S_PLUS + minus * S_MINUS + dead * S_DEAD


def regions(W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Region code of every neuron, shape W.shape[:-1], for W (..., hidden, in),
    X (sample, in), y (sample,) in {-1, +1}. Exact (signs of <x_i, w_j>)."""
    active = np.asarray(W) @ np.asarray(X).T > 0
    pos, neg = np.asarray(y) > 0, np.asarray(y) < 0
    a_p, a_n = active[..., pos], active[..., neg]
    return _region_codes(a_p.all(-1), a_p.any(-1), a_n.all(-1), a_n.any(-1)).astype(np.int8)


def allowed(codes: np.ndarray, v: np.ndarray) -> np.ndarray:
    """True where neuron j is in an allowed region: S+ or S_dead if v_j > 0, S- or S_dead if
    v_j < 0 (v_j = 0 only S_dead). ``codes`` and ``v`` of equal shape (..., hidden)."""
    v = np.asarray(v)
    own = np.where(v > 0, S_PLUS, np.where(v < 0, S_MINUS, S_DEAD))
    return (codes == S_DEAD) | (codes == own)


def aligned_monitor(
    y: torch.Tensor, max_f: bool = True, per_neuron: bool = False
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """A per-step monitor for :func:`relu_lens.two_layer.train`.

    Returns a callable (pre, W, v) -> {"aligned": (run,) bool, "max_abs_f": (run,)} where
    "aligned" says every neuron of the run is in an allowed region, from the pre-activations
    pre (run, sample, hidden) and labels y (run, sample), and "max_abs_f" is max_i |f(x_i)|
    (the size of the output, used to check that training is still in its small-output phase).
    With ``per_neuron`` it adds "allowed" (run, hidden): neuron by neuron, whether it is in an
    allowed region (while the output is small neurons move independently, so per-neuron
    alignment times of many candidate neurons come from one run).
    """
    # one row per class: counts of active positives and negatives per neuron in one bmm
    classes = torch.stack([y > 0, y < 0], dim=1)  # (run, 2, sample)
    sizes = classes.sum(2, keepdim=True)  # (run, 2, 1): n+ and n-
    classes = classes.to(y.dtype)

    def monitor(pre: torch.Tensor, W: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
        counts = torch.bmm(classes, (pre > 0).to(classes.dtype))  # (run, 2, hidden)
        up, down = v > 0, v < 0
        own = torch.where(up, counts[:, 0], counts[:, 1])
        other = torch.where(up, counts[:, 1], counts[:, 0])
        full = torch.where(up, sizes[:, 0], sizes[:, 1])
        # S_dead (nothing active) or exactly the own class active (S+ for v > 0, S- for v < 0)
        ok = (other == 0) & ((own == 0) | ((own == full) & (up | down)))
        out = {"aligned": ok.all(1)}
        if per_neuron:
            out["allowed"] = ok
        if max_f:
            f = torch.bmm(torch.relu(pre), v.unsqueeze(2)).squeeze(2)
            out["max_abs_f"] = f.abs().amax(1)
        return out

    return monitor


def first_time_held(flags: np.ndarray, times: np.ndarray) -> np.ndarray:
    """First of ``times`` from which ``flags`` (time, ...) holds at every later time.

    Returns (...) times; NaN where the flag is false at the last time."""
    flags = np.asarray(flags, dtype=bool)
    steps = flags.shape[0]
    not_ok = ~flags
    last_bad = steps - 1 - np.argmax(not_ok[::-1], axis=0)
    k = np.where(not_ok.any(axis=0), last_bad + 1, 0)
    return np.where(flags[-1], np.asarray(times)[np.minimum(k, steps - 1)], np.nan)


def t_align(aligned: np.ndarray, eta: float) -> np.ndarray:
    """First time from which ``aligned`` holds at every later step.

    ``aligned`` (step, ...) is the per-step flag at t = k eta, k = 0..steps. Returns (...)
    times; NaN where the last step is not aligned (not aligned within the horizon)."""
    return first_time_held(aligned, eta * np.arange(np.shape(aligned)[0]))


def own_class_cosine(
    W: np.ndarray, v: np.ndarray, x_plus: np.ndarray, x_minus: np.ndarray
) -> np.ndarray:
    """cos(w_j, x+) for v_j > 0 and cos(w_j, x-) for v_j < 0 (NaN for v_j = 0), shape of v;
    W (..., hidden, in), v (..., hidden)."""
    v = np.asarray(v)
    return np.where(v > 0, cosine(W, x_plus), np.where(v < 0, cosine(W, x_minus), np.nan))


def cosine(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """cos(w_j, x) for W (..., hidden, in) and x (in,); NaN for a zero w_j."""
    W = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(W, axis=-1) * np.linalg.norm(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (W @ x) / norms, np.nan)


def spectral_norm_sq(W: np.ndarray) -> np.ndarray:
    """||W||_2^2, the largest squared singular value, for W (..., hidden, in)."""
    return np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False)[..., 0] ** 2


def stable_rank(W: np.ndarray) -> np.ndarray:
    """||W||_F^2 / ||W||_2^2 for W (..., hidden, in); the paper shows it tends to <= 2."""
    s2 = np.linalg.svd(np.asarray(W, dtype=np.float64), compute_uv=False) ** 2
    return s2.sum(-1) / s2[..., 0]


def inverse_rate_fit(time: np.ndarray, loss: np.ndarray, t_start: float) -> tuple[float, float]:
    """Least-squares fit of 1/L(t) = a + b t over t >= t_start.

    Under L(t) <= L(t2) / (L(t2) alpha (t - t2) + 1) the slope b of 1/L is at least alpha; an
    O(1/t) phase shows as a straight line (R^2 near 1). Returns (b, R^2); NaN if fewer than
    3 points or t_start is NaN."""
    time = np.asarray(time, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    if not np.isfinite(t_start):
        return float("nan"), float("nan")
    sel = (time >= t_start) & np.isfinite(loss) & (loss > 0)
    if sel.sum() < 3:
        return float("nan"), float("nan")
    t, z = time[sel], 1.0 / loss[sel]
    b, a = np.polyfit(t, z, 1)
    resid = z - (a + b * t)
    total = ((z - z.mean()) ** 2).sum()
    r2 = 1.0 - (resid**2).sum() / total if total > 0 else float("nan")
    return float(b), float(r2)
