"""Parallel pathways: the exact gradient flow of a GDLN of two-layer pathways, made cheap.

Many GDLNs are parallel two-layer pathways x -> h_p -> y, every hidden node on one path and
gated per sample (the ReLN of a one-hidden-layer ReLU net: one pathway per group of units,
gated by its context set; Jarvis et al. ICLR 2025). Stack the hidden units of all pathways,
W_in = [A_1; A_2; ...] (A_p = W_{x -> h_p}) and W_out = [B_1, B_2, ...]. Samples with the same
gate pattern q (a row of the (sample, path) gate matrix G) share their correlations, so with
the pattern's gates d_q on the stacked hidden units (Saxe, Sodhani & Lewallen, ICML 2022, eq. 4,
regrouped by pattern; the mean-loss clock):

    F_q = W_out diag(d_q) W_in,                 E_q = Sigma_yx,q - F_q Sigma_x,q,
    tau dW_in/dt = sum_q diag(d_q) W_out^T E_q,  tau dW_out/dt = sum_q E_q W_in^T diag(d_q),
    L = sigma_yy / 2 - sum_q <F_q, Sigma_yx,q> + 1/2 sum_q tr(F_q Sigma_x,q F_q^T),

with Sigma_yx,q = < y x^T 1[pattern q] > and Sigma_x,q = < x x^T 1[pattern q] >: a handful of
small matrix products per step, whatever the number of samples or pathways.

Aligned start (silent alignment from small weights; Saxe, McClelland & Ganguli 2014): with the
SVD Sigma_yx(p) = U_p diag(s_p) V_p^T, the start A_p = b R V_p^T, B_p = b U_p R^T (R with r_p
orthonormal columns) keeps the hidden activity of pathway p in the span of R for all time, since
the flow only ever multiplies by the weights themselves. The hidden node can therefore be cut to
r_p units with no change in the dynamics: :func:`aligned_pathways` builds that smaller network and
its start. Unlike :func:`gdln.reduce`, nothing here needs the pathways' correlations to share
singular vectors; the modes of different pathways mix freely through E_q.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from gdln.correlations import gated_correlations
from gdln.network import Array, GraphError, Network
from gdln.ode import solve_flow
from gdln.threads import blas_threads
from gdln.trajectory import Trajectory, check_times


def check_parallel(network: Network) -> None:
    """Raise GraphError unless the network is parallel two-layer pathways: one input node x,
    one output node y, and every other node h_p with exactly the edges x -> h_p -> y."""
    if len(network.inputs) != 1 or len(network.outputs) != 1:
        raise GraphError(
            f"parallel pathways need one input and one output node, got inputs "
            f"{list(network.inputs)} and outputs {list(network.outputs)}"
        )
    owner: dict[str, int] = {}
    for k, p in enumerate(network.paths):
        if len(p.edges) != 2:
            raise GraphError(
                f"path {p.name!r} has {len(p.edges)} edges: parallel pathways have two "
                "(x -> h -> y; use gdln.integrate otherwise)"
            )
        for e in p.edges:
            if e in owner:
                raise GraphError(
                    f"edge {e!r} lies on paths {owner[e]} and {k}: parallel pathways need "
                    "edge-disjoint paths (use gdln.integrate for shared edges)"
                )
            owner[e] = k
    if missing := sorted(set(network.edges) - set(owner)):
        raise GraphError(f"edges {missing} lie on no input-output path")


def aligned_pathways(
    network: Network,
    X: Array,
    Y: Array,
    gates: Mapping[str, Array] | None,
    strength: float | Mapping[int, float],
    rank_tol: float = 1e-8,
) -> tuple[Network, dict[str, Array]]:
    """The network with the hidden node of pathway p cut to r_p units, and its aligned start
    A_p = b V_p^T, B_p = b U_p (module docstring, R = I) of strength b^2 = ``strength`` (a number
    or {path index: number}) in every mode. r_p counts the singular values of Sigma_yx(p) above
    ``rank_tol`` x the largest over all pathways, at most the node's size; a pathway with
    r_p = 0 keeps one unit at zero weight (it never learns)."""
    check_parallel(network)
    corr = gated_correlations(network, X, Y, gates)
    largest = max(float(np.linalg.norm(s, 2)) for s in corr.sigma_yx)
    if largest == 0.0:
        raise ValueError("all Sigma_yx(p) vanish: there is nothing to learn")
    sizes = dict(network.sizes)
    weights: dict[str, Array] = {}
    for k, p in enumerate(network.paths):
        U, s, Vt = np.linalg.svd(corr.sigma_yx[k], full_matrices=False)
        h = p.nodes[1]
        r = min(int(np.sum(s > rank_tol * largest)), network.sizes[h])
        level = float(strength[k] if isinstance(strength, Mapping) else strength)
        if r > 0 and level <= 0:
            raise ValueError(f"pathway {k} needs a positive strength, got {level}")
        b = np.sqrt(level) if r > 0 else 0.0
        sizes[h] = max(r, 1)
        weights[p.edges[0]] = b * np.eye(sizes[h], r) @ Vt[:r]
        weights[p.edges[1]] = b * U[:, :r] @ np.eye(r, sizes[h])
    edges = {name: (e.source, e.target) for name, e in network.edges.items()}
    return Network(sizes, edges), weights


class _Pathways:
    """Stacked hidden units, pattern-grouped correlations and the flow's right-hand side."""

    def __init__(
        self,
        network: Network,
        X: Array,
        Y: Array,
        gates: Mapping[str, Array] | None,
        initial: Mapping[str, Array],
    ) -> None:
        check_parallel(network)
        x = network.check_inputs(X)[network.inputs[0]]
        y = network.check_targets(Y)[network.outputs[0]]
        n_samples = x.shape[0]
        if y.shape[0] != n_samples:
            raise ValueError("inputs and targets have different numbers of samples")
        g = network.path_gates(network.check_gates(gates, n_samples), n_samples)
        self.net = network
        W0 = network.check_weights(initial)
        self.w_in = [p.edges[0] for p in network.paths]
        self.w_out = [p.edges[1] for p in network.paths]
        self.hidden = np.cumsum([0, *(network.sizes[p.nodes[1]] for p in network.paths)])
        A = np.concatenate([W0[e] for e in self.w_in], axis=0)  # (H, n_x)
        B = np.concatenate([W0[e] for e in self.w_out], axis=1)  # (n_y, H)
        # Outputs outside the span of the targets' rows never enter E_q, so if W_out starts
        # inside that span it stays there: work in its basis Q (exact).
        _, sv, vt = np.linalg.svd(y, full_matrices=False)
        Q = vt[: int(np.sum(sv > 1e-12 * sv[0]))].T if sv.size and sv[0] > 0 else None
        inside = Q is not None and np.linalg.norm(B - Q @ (Q.T @ B)) <= 1e-12 * max(
            np.linalg.norm(B), 1e-300
        )
        self.Q = Q if inside else np.eye(y.shape[1])
        y = y @ self.Q
        patterns, which = np.unique(g, axis=0, return_inverse=True)
        onehot = np.eye(len(patterns))[which.ravel()]  # (sample, pattern)
        sizes = np.diff(self.hidden)
        self.d = np.repeat(patterns, sizes, axis=1)  # (pattern, H): d_q on the hidden units
        sigma_xq = np.einsum("sq,si,sj->qij", onehot, x, x) / n_samples
        sigma_yxq = np.einsum("sq,so,si->qoi", onehot, y, x) / n_samples
        self.sigma_yy = float(np.sum(y**2) / n_samples)
        # patterns side by side: [F_1, ..., F_Q] = W_out ([W_in, ..., W_in] * D), D the gates
        # spread over (hidden unit, pattern x input); E = [Sigma_yx,q] - F blockdiag(Sigma_x,q)
        n_q, n_x = len(patterns), x.shape[1]
        self.D = np.repeat(self.d.T, n_x, axis=1)  # (H, pattern * n_x)
        self.tile = np.tile(np.eye(n_x), (n_q, 1))  # (pattern * n_x, n_x): sums the patterns
        self.sigma_x = np.zeros((n_q * n_x, n_q * n_x))
        for q in range(n_q):
            self.sigma_x[q * n_x : (q + 1) * n_x, q * n_x : (q + 1) * n_x] = sigma_xq[q]
        self.sigma_yx = sigma_yxq.transpose(1, 0, 2).reshape(y.shape[1], n_q * n_x)
        self.shape_a = A.shape
        self.shape_b = (y.shape[1], A.shape[0])
        self.theta0 = np.concatenate([A.ravel(), (self.Q.T @ B).ravel()])

    def unpack(self, theta: Array) -> tuple[Array, Array]:
        n = self.shape_a[0] * self.shape_a[1]
        return theta[:n].reshape(self.shape_a), theta[n:].reshape(self.shape_b)

    def rhs(self, theta: Array) -> Array:
        A, B = self.unpack(theta)
        DA = (A @ self.tile.T) * self.D  # [diag(d_1) W_in, ..., diag(d_Q) W_in]
        E = self.sigma_yx - (B @ DA) @ self.sigma_x  # [E_1, ..., E_Q]
        dA = ((B.T @ E) * self.D) @ self.tile  # sum_q diag(d_q) W_out^T E_q
        dB = E @ DA.T  # sum_q E_q W_in^T diag(d_q)
        return np.concatenate([dA.ravel(), dB.ravel()])

    def loss(self, states: Array) -> Array:
        """The mean loss (module docstring) for states of shape (time, n_params)."""
        n_a = self.shape_a[0] * self.shape_a[1]
        A = states[:, :n_a].reshape(-1, *self.shape_a)  # (time, H, n_x)
        B = states[:, n_a:].reshape(-1, *self.shape_b)  # (time, n_y, H)
        F = B @ ((A @ self.tile.T) * self.D)  # (time, n_y, pattern * n_x)
        quad = np.sum((F @ self.sigma_x) * F, axis=(1, 2))
        return 0.5 * self.sigma_yy - np.sum(F * self.sigma_yx, axis=(1, 2)) + 0.5 * quad

    def weights(self, theta: Array) -> dict[str, Array]:
        A, B = self.unpack(theta)
        B = self.Q @ B
        out = {}
        for k, (e_in, e_out) in enumerate(zip(self.w_in, self.w_out, strict=True)):
            rows = slice(self.hidden[k], self.hidden[k + 1])
            out[e_in], out[e_out] = A[rows].copy(), B[:, rows].copy()
        return out


def pathway_flow(
    network: Network,
    X: Array,
    Y: Array,
    initial: Mapping[str, Array],
    times: Sequence[float] | Array,
    gates: Mapping[str, Array] | None = None,
    tau: float = 1.0,
    solver: str = "RK45",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    with_weights: bool = True,
) -> Trajectory:
    """The exact gradient flow of parallel two-layer pathways (module docstring) from
    ``initial`` at t = 0, recorded at ``times``: the flow of :func:`gdln.integrate` (squared
    error), faster. ``solver`` is a ``solve_ivp`` method or "RKC" (:mod:`gdln.rkc`: fewer
    evaluations once learning has converged and the flow turns stiff; second order, so use it
    with rtol around 1e-4). Returns a Trajectory with loss (and weights unless
    ``with_weights`` is False)."""
    times = check_times(times, tau)
    system = _Pathways(network, X, Y, gates, initial)
    states = np.empty((len(times), system.theta0.size))  # the cut networks are small

    def record(k: int, state: Array) -> None:
        states[k] = state

    # tau dtheta/dt = F(theta) is the flow of dtheta/ds = F(theta) at s = t / tau
    with blas_threads(system.d.size * system.shape_a[1] * system.shape_b[0]):
        nfev = solve_flow(system.rhs, system.theta0, times / tau, record, solver, rtol, atol)
    weights = None
    if with_weights:
        per_time = [system.weights(state) for state in states]
        weights = {n: np.stack([w[n] for w in per_time]) for n in network.edges}
    return Trajectory(
        time=times,
        loss=system.loss(states),
        method="pathway_flow",
        tau=tau,
        weights=weights,
        edges=tuple(network.edges),
        network=network,
        attrs={"solver": solver, "rtol": rtol, "atol": atol, "form": "pathways", "nfev": nfev},
    )
