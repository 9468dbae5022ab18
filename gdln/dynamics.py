"""Exact learning dynamics of a GDLN: matrix gradient flow and its gradient-descent discretisation.

Gradient flow (Saxe et al. 2022, eq. 4; the toolkit's clock, DESIGN.md "Time"):

    tau dW_e/dt = -dL/dW_e,     L = (1/2P) sum_i sum_{v in outputs} ||y_{v,i} - h_{v,i}||^2,

so k gradient-descent steps of size eta, W <- W - (eta / tau) dL/dW, sit at t = k eta.

Two equal forms of -dL/dW_e are available:

- ``form="layers"`` (default): back-propagation through the gated layers, vectorised over samples.
  Forward h_v = g_v * sum_e g_e W_e h_s; backward delta_v = dL/dh_v, with
  dL/dW_e = (g_e g_v delta_v)^T h_s and delta_s += (g_e g_v delta_v) W_e. Per-unit node gates
  (ReLU activation patterns) are masks here: nothing enumerates per-unit paths.
- ``form="paths"``: the path-sum form of Saxe et al. 2022 from the gated correlations
  (``gdln.correlations.path_gradient``); its cost does not grow with the number of samples, but
  it needs per-sample (pathway) gates and the squared error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from scipy.integrate import solve_ivp

from gdln.correlations import gated_correlations, path_gradient
from gdln.losses import Loss, SquaredError
from gdln.network import Array, Network, _as_column
from gdln.reduction import ModeBasis, project
from gdln.rkc import rkc
from gdln.trajectory import Trajectory, check_times


class DivergenceError(FloatingPointError):
    """Training produced NaN or inf (step too large, or an unstable flow)."""


def solve_flow(
    rhs: Callable[[Array], Array],
    theta0: Array,
    times: Array,
    solver: str,
    rtol: float,
    atol: float,
) -> Array:
    """States (n_params, time) of d theta/dt = rhs(theta) from theta0 at t = 0, at ``times``;
    ``solver`` is a ``solve_ivp`` method or "RKC" (:mod:`gdln.rkc`). DivergenceError on failure
    or on non-finite states."""
    if times[-1] == 0.0:
        states = theta0[:, None]
    elif solver == "RKC":
        try:
            states = rkc(rhs, times[-1], theta0, times, rtol, atol).y
        except FloatingPointError as err:
            raise DivergenceError(f"RKC failed: {err}") from err
    else:
        sol = solve_ivp(
            lambda _, th: rhs(th),
            (0.0, times[-1]),
            theta0,
            method=solver,
            t_eval=times,
            rtol=rtol,
            atol=atol,
        )
        if not sol.success:
            raise DivergenceError(f"solve_ivp failed: {sol.message}")
        states = sol.y
    if not np.all(np.isfinite(states)):
        raise DivergenceError("the gradient flow produced NaN or inf")
    return states


class _Problem:
    """Checked data and a fast -dL/dW for one network, dataset and gating."""

    def __init__(
        self,
        network: Network,
        X: Mapping[str, Array] | Array,
        Y: Mapping[str, Array] | Array,
        gates: Mapping[str, Array] | None,
        loss: Loss,
        form: Literal["layers", "paths"],
    ) -> None:
        self.net = network
        self.x = network.check_inputs(X)
        self.y = network.check_targets(Y)
        self.n_samples = next(iter(self.x.values())).shape[0]
        if next(iter(self.y.values())).shape[0] != self.n_samples:
            raise ValueError("inputs and targets have different numbers of samples")
        self.g = network.check_gates(gates, self.n_samples)
        self.loss = loss
        if form not in ("layers", "paths"):
            raise ValueError(f"form must be 'layers' or 'paths', got {form!r}")
        self.form = form
        if form == "paths":
            if not isinstance(loss, SquaredError):
                raise ValueError("form='paths' holds for the squared error only; use 'layers'")
            self.corr = gated_correlations(network, self.x, self.y, self.g)
        names = list(network.edges)
        shapes = [network.weight_shape(n) for n in names]
        sizes = [a * b for a, b in shapes]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.slices = {
            n: (slice(int(offsets[k]), int(offsets[k + 1])), shapes[k]) for k, n in enumerate(names)
        }
        self.n_params = int(offsets[-1])

    def pack(self, W: Mapping[str, Array]) -> Array:
        out = np.empty(self.n_params)
        for name, (sl, _) in self.slices.items():
            out[sl] = W[name].ravel()
        return out

    def unpack(self, theta: Array) -> dict[str, Array]:
        return {name: theta[sl].reshape(shape) for name, (sl, shape) in self.slices.items()}

    def loss_value(self, W: Mapping[str, Array]) -> float:
        _, h = self.net._forward(W, self.x, self.g)
        return self.loss.value({v: h[v] for v in self.net.outputs}, self.y)

    def descent(self, W: Mapping[str, Array]) -> dict[str, Array]:
        """-dL/dW_e for every edge."""
        if self.form == "paths":
            return path_gradient(self.net, self.corr, W)
        net, g = self.net, self.g
        _, h = net._forward(W, self.x, g)
        delta = self.loss.gradient({v: h[v] for v in net.outputs}, self.y)
        out: dict[str, Array] = {}
        for v in reversed(net.order):
            if v in net.inputs or v not in delta:
                continue
            dv = delta[v] * _as_column(g[v]) if v in g else delta[v]
            for e in net.incoming(v):
                de = dv * g[e.name][:, None] if e.name in g else dv
                out[e.name] = -(de.T @ h[e.source])
                if e.source in net.inputs:
                    continue  # no error signal is needed below an input node
                back = de @ W[e.name]
                delta[e.source] = delta[e.source] + back if e.source in delta else back
        for name in net.edges:
            out.setdefault(name, np.zeros(net.weight_shape(name)))
        return out


def loss_gradient(
    network: Network,
    weights: Mapping[str, Array],
    X: Mapping[str, Array] | Array,
    Y: Mapping[str, Array] | Array,
    gates: Mapping[str, Array] | None = None,
    loss: Loss | None = None,
    form: Literal["layers", "paths"] = "layers",
) -> dict[str, Array]:
    """dL/dW_e for every edge (see the module docstring for the two forms)."""
    problem = _Problem(network, X, Y, gates, loss or SquaredError(), form)
    return {k: -v for k, v in problem.descent(network.check_weights(weights)).items()}


def _record(
    problem: _Problem,
    times: Array,
    weight_list: Sequence[Mapping[str, Array]],
    losses: Array,
    method: str,
    tau: float,
    modes: ModeBasis | None,
    attrs: dict[str, str | float | int],
) -> Trajectory:
    net = problem.net
    weights = {n: np.stack([w[n] for w in weight_list]) for n in net.edges}
    mode_strength = edge_strength = None
    if modes is not None:
        edge_strength, mode_strength = project(net, modes, weights)
    return Trajectory(
        time=np.asarray(times, dtype=np.float64),
        loss=losses,
        method=method,
        tau=tau,
        mode_strength=mode_strength,
        edge_strength=edge_strength,
        weights=weights,
        paths=tuple(p.name for p in net.paths),
        edges=tuple(net.edges),
        network=net,
        attrs=attrs,
    )


def integrate(
    network: Network,
    X: Mapping[str, Array] | Array,
    Y: Mapping[str, Array] | Array,
    initial: Mapping[str, Array],
    times: Sequence[float] | Array,
    gates: Mapping[str, Array] | None = None,
    tau: float = 1.0,
    loss: Loss | None = None,
    form: Literal["layers", "paths"] = "layers",
    modes: ModeBasis | None = None,
    solver: str = "RK45",
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> Trajectory:
    """Integrate the exact gradient flow tau dW_e/dt = -dL/dW_e with ``scipy.integrate.solve_ivp``.

    Parameters
    ----------
    times : increasing times (from 0 or later) at which to record; the flow starts at t = 0
        from ``initial`` ({edge: (n_target, n_source)}).
    gates : per-sample node/edge gates (node gates may be per unit), see ``gdln.network``.
    form : "layers" (back-propagation, any gates) or "paths" (path-sum form, pathway gates).
    modes : a ``ModeBasis``; if given, the trajectory also carries mode strengths
        diag(U_v^T W_p V_u) per path and diag(U^T W_e V) per edge.
    solver, rtol, atol : a ``solve_ivp`` method (adaptive step size) or "RKC" (gdln.rkc).

    Returns a :class:`~gdln.trajectory.Trajectory` with weights, loss and (optionally) modes.
    """
    times = check_times(times, tau)
    problem = _Problem(network, X, Y, gates, loss or SquaredError(), form)
    W0 = network.check_weights(initial)

    def rhs(theta: Array) -> Array:
        return problem.pack(problem.descent(problem.unpack(theta))) / tau

    states = solve_flow(rhs, problem.pack(W0), times, solver, rtol, atol)
    weight_list = [problem.unpack(states[:, k]) for k in range(states.shape[1])]
    losses = np.array([problem.loss_value(w) for w in weight_list])
    attrs = {"solver": solver, "rtol": rtol, "atol": atol, "form": form, "loss": problem.loss.name}
    return _record(problem, times, weight_list, losses, "integrate", tau, modes, attrs)


def gradient_descent(
    network: Network,
    X: Mapping[str, Array] | Array,
    Y: Mapping[str, Array] | Array,
    initial: Mapping[str, Array],
    eta: float,
    n_steps: int,
    gates: Mapping[str, Array] | None = None,
    record_every: int = 1,
    tau: float = 1.0,
    loss: Loss | None = None,
    form: Literal["layers", "paths"] = "layers",
    modes: ModeBasis | None = None,
) -> Trajectory:
    """Full-batch gradient descent W <- W - (eta / tau) dL/dW, recorded every ``record_every``
    steps at t = k eta (the Euler discretisation of ``integrate``'s flow)."""
    if eta <= 0 or n_steps < 0 or record_every < 1:
        raise ValueError("need eta > 0, n_steps >= 0 and record_every >= 1")
    problem = _Problem(network, X, Y, gates, loss or SquaredError(), form)
    W = {k: v.copy() for k, v in network.check_weights(initial).items()}
    steps, weight_list = [], []
    for k in range(n_steps + 1):
        if k % record_every == 0:
            steps.append(k)
            weight_list.append({n: w.copy() for n, w in W.items()})
        if k == n_steps:
            break
        with np.errstate(over="ignore", invalid="ignore"):
            step = problem.descent(W)
        for name in W:
            W[name] += (eta / tau) * step[name]
        if not all(np.all(np.isfinite(w)) for w in W.values()):
            raise DivergenceError(
                f"gradient descent diverged (NaN/inf) at step {k + 1} with eta = {eta}; "
                "use a smaller step"
            )
    losses = np.array([problem.loss_value(w) for w in weight_list])
    times = eta * np.asarray(steps, dtype=np.float64)
    attrs = {"eta": eta, "form": form, "loss": problem.loss.name}
    return _record(problem, times, weight_list, losses, "gradient_descent", tau, modes, attrs)
