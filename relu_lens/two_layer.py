"""Two-layer bias-free ReLU networks trained by gradient descent, many runs at once.

Model (Min, Mallada & Vidal, ICLR 2024, eq. 1): f(x) = sum_j v_j relu(w_j^T x), first layer
W (hidden, in) with rows w_j, second layer v (hidden,). Loss SUMMED over samples (the paper's
clock, not the toolkit's default mean):

    L = sum_i l(y_i f(x_i)),  l(q) = exp(-q) (exponential) or log(1 + exp(-q)) (logistic).

Gradient flow dW/dt = -dL/dW is approximated by gradient descent with a small step eta, so
step k sits at t = k eta. Gradients are written out (checked against autograd in the tests):

    dL/dv_j = -sum_i g_i relu(w_j^T x_i),   dL/dw_j = -v_j sum_i g_i 1[w_j^T x_i > 0] x_i,

with g_i = -l'(y_i f(x_i)) y_i. Along the flow v_j^2 - ||w_j||^2 is conserved and sign(v_j)
never changes.

Every tensor carries a leading ``run`` dimension: R independent runs (seeds x grid cells)
with the same sample count, width and input dimension advance together through batched
matrix products (``torch.bmm``), never a Python loop over runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linprog

from relu_lens.train import torch_threads

LossKind = Literal["exp", "logistic"]
Monitor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class TwoLayerRun:
    """Snapshots of R runs.

    Attributes:
        time: (snapshot,) times t = k eta of the snapshots.
        W: (snapshot, run, hidden, in) first-layer weights.
        v: (snapshot, run, hidden) second-layer weights.
        loss: (snapshot, run) summed loss.
        monitors: name -> (step, run) array, a monitor evaluated at every step 0..steps
            (before the update of that step), so per-step events are timed to one step.
        eta: the step.
    """

    time: np.ndarray
    W: np.ndarray
    v: np.ndarray
    loss: np.ndarray
    monitors: dict[str, np.ndarray]
    eta: float


def balanced_signs(hidden: int) -> np.ndarray:
    """Signs of v: the first ceil(h/2) neurons in V+ (+1), the rest in V- (-1)."""
    return np.where(np.arange(hidden) < (hidden + 1) // 2, 1.0, -1.0)


def init_balanced(
    runs: int, hidden: int, D: int, eps: float, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's balanced small init: W(0) = eps W0, W0 entries N(0, 1/D),
    v_j(0) = s_j ||w_j(0)|| with signs s from :func:`balanced_signs`.

    Returns W (run, hidden, in) and v (run, hidden)."""
    gen = torch.Generator().manual_seed(seed)
    W0 = torch.randn(runs, hidden, D, generator=gen, dtype=dtype) / np.sqrt(D)
    return balance(eps * W0)


def balance(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, v) with v_j = s_j ||w_j||, s from :func:`balanced_signs`; W (run, hidden, in)."""
    signs = torch.as_tensor(balanced_signs(W.shape[1]), dtype=W.dtype)
    return W, signs * W.norm(dim=2)


def init_gaussian(
    runs: int, hidden: int, D: int, std: float, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's (unbalanced) MNIST init: every entry of W and v drawn from N(0, std^2)."""
    gen = torch.Generator().manual_seed(seed)
    W = std * torch.randn(runs, hidden, D, generator=gen, dtype=dtype)
    v = std * torch.randn(runs, hidden, generator=gen, dtype=dtype)
    return W, v


def single_point_direction(X: np.ndarray, k: int, delta: float = 1e-2) -> np.ndarray | None:
    """A unit direction w active on x_k only, barely, and as far from the others as possible.

    Solves the linear program  max s  s.t.  <x_k/||x_k||, w> >= delta,
    <x_i/||x_i||, w> <= -s (i != k), -1 <= w <= 1, and returns w/||w||, or None if no s > 0
    exists (x_k lies in the closed cone of the others; generic data with n <= D never do).
    Such a neuron starts almost orthogonal to x_k, with every other point clearly inactive:
    it must rotate through a large angle, gaining points one at a time, before it reaches an
    allowed region (the worst-case path behind the log n of the bound)."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    n, D = U.shape
    others = np.delete(np.arange(n), k)
    # variables (w, s): <u_i, w> + s <= 0 for i != k, -<u_k, w> <= -delta
    A = np.vstack([np.hstack([U[others], np.ones((n - 1, 1))]), np.r_[-U[k], 0.0][None]])
    b = np.r_[np.zeros(n - 1), -delta]
    bounds = [(-1.0, 1.0)] * D + [(None, 1.0)]
    res = linprog(c=np.r_[np.zeros(D), -1.0], A_ub=A, b_ub=b, bounds=bounds)
    if res.status != 0 or -res.fun <= 1e-9:
        return None
    w = res.x[:D]
    return w / np.linalg.norm(w)


def single_point_family(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The whole worst-case family of a data set: for every point k that can be isolated, the
    direction of :func:`single_point_direction` (active on x_k only, barely, the others
    clearly inactive).

    Returns directions (member, in) and the isolated points (member,) (indices into X). A
    neuron of the family belongs to the class of its point (v_k of sign y_k): it starts active
    on a single point of its own class, the start behind the log n of the bound. The LP's
    activity margin delta moves single members' times but not the family's slowest one, the
    one a search needs (measured for delta = 1e-1 .. 1e-4, docs/theory/early-alignment.md,
    "Tightness"), so one member per point spans the family."""
    found = [(k, w) for k in range(len(X)) if (w := single_point_direction(X, k)) is not None]
    if not found:
        return np.empty((0, X.shape[1])), np.empty(0, dtype=np.int64)
    points, dirs = zip(*found, strict=True)
    return np.array(dirs), np.array(points, dtype=np.int64)


def worst_case_directions(X: np.ndarray, y: np.ndarray, hidden: int, seed: int) -> np.ndarray:
    """Initial directions (hidden, in) with each neuron active on as few points as possible.

    The log n of the bound comes from a neuron that starts active on a single point of its own
    class and gains the others one at a time. Neuron j in V+ (V-, signs of
    :func:`balanced_signs`) is pointed, by :func:`single_point_direction`, at a positive
    (negative) point that can be isolated, cycling through such points in random order; a
    small random tilt (1% of the smallest |cos(w, x_i)|) separates neurons sharing a point.
    If no point of a class can be isolated (possible when n > D), that class's neurons take,
    among 4,096 random directions, those active on the fewest (but at least one) points.
    """
    rng = np.random.default_rng(seed)
    D = X.shape[1]
    signs = balanced_signs(hidden)
    out = np.empty((hidden, D))
    for label in (1.0, -1.0):
        rows = np.flatnonzero(signs == label)
        own = rng.permutation(np.flatnonzero(y == label))
        found = [(k, w) for k in own if (w := single_point_direction(X, k)) is not None]
        if found:
            for r, row in enumerate(rows):
                w = found[r % len(found)][1]
                margin = np.min(np.abs(X @ w) / np.linalg.norm(X, axis=1))
                tilt = rng.standard_normal(D)
                w = w + 0.01 * margin * tilt / np.linalg.norm(tilt)
                out[row] = w / np.linalg.norm(w)
        else:
            cand = rng.standard_normal((4096, D))
            count = (cand @ X.T > 0).sum(axis=1).astype(float)
            count[count == 0] = np.inf
            best = np.argsort(count, kind="stable")[: len(rows)]
            out[rows] = cand[best] / np.linalg.norm(cand[best], axis=1, keepdims=True)
    return out


def init_worst_case(
    X: np.ndarray, y: np.ndarray, hidden: int, eps: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced worst-case init for one data set: w_j(0) = eps d_j with d_j from
    :func:`worst_case_directions` (unit rows, so ||w_j(0)|| = eps), v_j = s_j eps.

    Returns W (1, hidden, in) and v (1, hidden) in float64."""
    d = worst_case_directions(np.asarray(X), np.asarray(y), hidden, seed)
    return balance(eps * torch.as_tensor(d, dtype=torch.float64)[None])


def forward(W: torch.Tensor, v: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations (run, sample, hidden) and outputs f (run, sample) for W (run, hidden, in),
    v (run, hidden), X (run, sample, in)."""
    pre = torch.bmm(X, W.transpose(1, 2))
    f = torch.bmm(torch.relu(pre), v.unsqueeze(2)).squeeze(2)
    return pre, f


def summed_loss(f: torch.Tensor, y: torch.Tensor, kind: LossKind) -> torch.Tensor:
    """L = sum_i l(y_i f_i) per run, (run,)."""
    q = y * f
    if kind == "exp":
        return torch.exp(-q).sum(1)
    if kind == "logistic":
        return torch.nn.functional.softplus(-q).sum(1)
    raise ValueError(f"unknown loss {kind!r}; use 'exp' or 'logistic'")


def _neg_dloss(q: torch.Tensor, kind: LossKind) -> torch.Tensor:
    """-l'(q)."""
    return torch.exp(-q) if kind == "exp" else torch.sigmoid(-q)


def gradients(
    W: torch.Tensor, v: torch.Tensor, X: torch.Tensor, y: torch.Tensor, kind: LossKind
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dL/dW, dL/dv, pre, f, L) for the summed loss, batched over runs (formulas above)."""
    pre, f = forward(W, v, X)
    g = _neg_dloss(y * f, kind) * y
    gv = -torch.bmm(g.unsqueeze(1), torch.relu(pre)).squeeze(1)
    gate = (pre > 0).to(X.dtype) * g.unsqueeze(2)
    gW = -v.unsqueeze(2) * torch.bmm(gate.transpose(1, 2), X)
    return gW, gv, pre, f, summed_loss(f, y, kind)


def train(
    W: torch.Tensor,
    v: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    eta: float,
    steps: int,
    loss: LossKind = "exp",
    record_every: int | Sequence[int] = 100,
    monitor: Monitor | None = None,
    num_threads: int | None = 1,
) -> TwoLayerRun:
    """Gradient descent W <- W - eta dL/dW, v <- v - eta dL/dv on R runs at once.

    Args:
        W: (run, hidden, in) initial first layer; v: (run, hidden) initial second layer.
        X: (run, sample, in) inputs; y: (run, sample) labels in {-1, +1}.
        eta: step (t = k eta); small, as a stand-in for gradient flow.
        steps: number of steps.
        loss: "exp" or "logistic", summed over samples.
        record_every: a snapshot every this many steps (and at step 0 and the last step), or
            the steps to record (a sequence; 0 and the last step are always added).
        monitor: optional callable (pre, W, v) -> {name: (run,) tensor}, called at every step
            before the update; its values are stacked into ``TwoLayerRun.monitors``.
        num_threads: torch threads while training (:func:`torch_threads`); 1 suits the small
            synthetic problems, None keeps the current setting (large inputs such as MNIST).

    Raises:
        FloatingPointError: if the loss becomes NaN or infinite (step too large).
    """
    with torch_threads(num_threads):
        return _descend(W, v, X, y, eta, steps, loss, record_every, monitor)


def _descend(
    W: torch.Tensor,
    v: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    eta: float,
    steps: int,
    loss: LossKind,
    record_every: int | Sequence[int],
    monitor: Monitor | None,
) -> TwoLayerRun:
    """The loop of :func:`train`."""
    W, v = W.clone(), v.clone()
    if isinstance(record_every, int):
        record = set(range(0, steps + 1, record_every)) | {steps}
    else:
        record = {int(k) for k in record_every if 0 <= k <= steps} | {0, steps}
    times, Ws, vs, losses = [], [], [], []
    mon: dict[str, list[torch.Tensor]] = {}
    for k in range(steps + 1):
        gW, gv, pre, _, L = gradients(W, v, X, y, loss)
        if monitor is not None:
            for name, value in monitor(pre, W, v).items():
                mon.setdefault(name, []).append(value)
        if k in record:
            if not torch.isfinite(L).all():
                raise FloatingPointError(
                    f"training diverged at step {k} (loss {L.tolist()}); use a smaller eta"
                )
            times.append(k * eta)
            Ws.append(W.clone())
            vs.append(v.clone())
            losses.append(L)
        if k < steps:
            W -= eta * gW
            v -= eta * gv
    return TwoLayerRun(
        time=np.asarray(times),
        W=torch.stack(Ws).cpu().numpy(),
        v=torch.stack(vs).cpu().numpy(),
        loss=torch.stack(losses).cpu().numpy(),
        monitors={name: torch.stack(vals).cpu().numpy() for name, vals in mon.items()},
        eta=eta,
    )
