"""The neural-race reduction of GDLN dynamics to scalar ODEs per mode and path.

Saxe, Sodhani, Lewallen (ICML 2022, sec. 4): if the gated correlations share singular vectors,

    Sigma_yx(p) = U_{t(p)} diag(S(p)) V_{s(p)}^T,
    V_{s(j)}^T Sigma_x(j, p) V_{s(p)} = diag(D(j, p)),

and every weight starts aligned, W_e(0) = R_{t(e)} diag(B_e(0)) R_{s(e)}^T (R_v = U_v at output
nodes, V_u at input nodes, any orthonormal columns at hidden nodes), then W_e stays of that form and
the diagonals follow, per mode alpha,

    tau dB_e/dt = sum_{p through e} (prod_{e' in p, e' != e} B_e') [S(p) - sum_j B_j D(j, p)],

with B_p = prod_{e in p} B_e the path's mode strength: scalar deep linear networks, one per path,
coupled through the shared error (the "neural race"). The mean loss is

    L = sigma_yy / 2 - sum_p sum_alpha B_p S(p) + 1/2 sum_{j, p} sum_alpha B_j D(j, p) B_p.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gdln.correlations import Correlations
from gdln.network import Array, Network
from gdln.ode import solve_flow
from gdln.trajectory import Trajectory, check_times


class NotDiagonalisableError(ValueError):
    """The path correlations do not share singular vectors within the tolerance."""


class NotAlignedError(ValueError):
    """Initial weights are not of the aligned form R_t diag(B) R_s^T within the tolerance."""


@dataclass(frozen=True)
class ModeBasis:
    """Shared singular vectors and the per-mode correlations of a gated dataset.

    Attributes:
        bases: {node: (n_v, mode)} orthonormal columns: U_v at outputs, V_u at inputs, R_v hidden.
        S: (mode, path) singular values of Sigma_yx(p) in the shared basis.
        D: (mode, path, path) input correlations D(j, p) (zero for paths ending apart).
        sigma_yy: < sum_v ||y_v||^2 >.
        residual: largest relative off-diagonal (or out-of-basis) part measured when checking.
    """

    bases: dict[str, Array]
    S: Array
    D: Array
    sigma_yy: float
    residual: float

    @property
    def n_modes(self) -> int:
        return self.S.shape[0]


def _orthonormal(n: int, r: int, rng: np.random.Generator) -> Array:
    q, upper = np.linalg.qr(rng.standard_normal((n, r)))
    return q * np.sign(np.diag(upper))


def shared_modes(
    network: Network,
    corr: Correlations,
    tol: float = 1e-6,
    rank_tol: float = 1e-10,
    bases: Mapping[str, Array] | None = None,
    seed: int = 0,
) -> ModeBasis:
    """Find singular vectors shared by all Sigma_yx(p), and check them against every correlation.

    The strongest path's SVD fixes U and V at its ends (its rank is the number of modes); every
    other input (output) node reached by a path from a known output (input) node gets
    V_u = Sigma_yx(p)^T U_v / norm (U_v = Sigma_yx(p) V_u / norm), which keeps degenerate modes
    consistent across nodes. Hidden nodes get random orthonormal columns (``seed``) unless given
    in ``bases``, which may also fix any node's basis.

    Raises NotDiagonalisableError, naming the measured relative residual and ``tol``, when some
    Sigma_yx(p) is not U diag(S) V^T or some Sigma_x(j, p) is not V_j diag(D) V_p^T on the mode
    subspaces (V_j^T Sigma_x(j, p) = diag(D) V_p^T and Sigma_x(j, p) V_p = V_j diag(D)).
    """
    paths = network.paths
    norms = np.array([np.linalg.norm(s) for s in corr.sigma_yx])
    if norms.max() == 0.0:
        raise NotDiagonalisableError("all Sigma_yx(p) vanish: there is nothing to learn")
    known: dict[str, Array] = {k: np.asarray(v, dtype=np.float64) for k, v in (bases or {}).items()}
    pivot = int(np.argmax(norms))
    U, s, Vt = np.linalg.svd(corr.sigma_yx[pivot])
    r = int(np.sum(s > rank_tol * s[0]))
    src, tgt = paths[pivot].source, paths[pivot].target
    known.setdefault(tgt, U[:, :r])
    known.setdefault(src, Vt[:r].T)
    changed = True
    while changed:
        changed = False
        for k, p in enumerate(paths):
            if norms[k] <= rank_tol * norms.max():
                continue
            for have, want, M in (
                (p.target, p.source, corr.sigma_yx[k].T),
                (p.source, p.target, corr.sigma_yx[k]),
            ):
                if have in known and want not in known:
                    C = M @ known[have]
                    col = np.linalg.norm(C, axis=0)
                    if np.all(col > rank_tol * norms.max()):
                        known[want] = C / col
                        changed = True
    rng = np.random.default_rng(seed)
    for v in network.order:
        if v in known:
            continue
        if v in network.inputs or v in network.outputs:
            raise NotDiagonalisableError(
                f"no path's Sigma_yx fixes all {r} modes at node {v!r}; pass its basis in `bases`"
            )
        if network.sizes[v] < r:
            raise NotDiagonalisableError(
                f"hidden node {v!r} has {network.sizes[v]} units, fewer than the {r} modes"
            )
        known[v] = _orthonormal(network.sizes[v], r, rng)
    for v, b in known.items():
        if b.shape != (network.sizes[v], r):
            raise NotDiagonalisableError(
                f"basis of node {v!r} has shape {b.shape}, expected {(network.sizes[v], r)}"
            )
    S = np.zeros((r, len(paths)))
    D = np.zeros((r, len(paths), len(paths)))
    residual = 0.0
    scale_yx = norms.max()
    for k, p in enumerate(paths):
        U_v, V_u = known[p.target], known[p.source]
        proj = U_v.T @ corr.sigma_yx[k] @ V_u
        S[:, k] = np.diag(proj)
        rebuilt = U_v @ np.diag(S[:, k]) @ V_u.T
        residual = max(residual, np.linalg.norm(corr.sigma_yx[k] - rebuilt) / scale_yx)
    scale_x = max((np.linalg.norm(m) for m in corr.sigma_x.values()), default=1.0) or 1.0
    for (j, k), sx in corr.sigma_x.items():
        V_j, V_k = known[paths[j].source], known[paths[k].source]
        D[:, j, k] = np.diag(V_j.T @ sx @ V_k)
        # The aligned solution stays aligned only if Sigma_x(j, k) maps the mode subspaces onto
        # each other: V_j^T Sigma_x = diag(D) V_k^T and Sigma_x V_k = V_j diag(D). Checking only
        # V_j^T Sigma_x V_k for diagonality would miss couplings that leave the subspace.
        for part in (V_j.T @ sx - D[:, j, k, None] * V_k.T, sx @ V_k - V_j * D[:, j, k]):
            residual = max(residual, np.linalg.norm(part) / scale_x)
    if residual > tol:
        raise NotDiagonalisableError(
            f"the gated correlations are not mutually diagonalisable: relative off-diagonal "
            f"residual {residual:.3g} exceeds tolerance {tol:.3g}; the reduction does not apply "
            "(use integrate for the exact dynamics)"
        )
    return ModeBasis(known, S, D, corr.sigma_yy, float(residual))


def project(
    network: Network, modes: ModeBasis, weights: Mapping[str, Array]
) -> tuple[Array, Array]:
    """Mode strengths of weights (any leading time axis): B_e = diag(R_t^T W_e R_s) as
    (..., mode, edge) and u_p = diag(U_v^T W_p V_u) as (..., mode, path)."""
    R = modes.bases
    edge = np.stack(
        [
            np.einsum("ia,...ij,ja->...a", R[e.target], weights[e.name], R[e.source])
            for e in network.edges.values()
        ],
        axis=-1,
    )
    path_list = []
    for p in network.paths:
        M = weights[p.edges[0]] @ R[p.source]
        for name in p.edges[1:]:
            M = weights[name] @ M
        path_list.append(np.einsum("ia,...ia->...a", R[p.target], M))
    return edge, np.stack(path_list, axis=-1)


def aligned_init(
    network: Network, modes: ModeBasis, scale: float | Mapping[str, float]
) -> dict[str, Array]:
    """The aligned ("decoupled") initial condition W_e = scale * R_t R_s^T: every edge has mode
    strength B_e = scale in every mode (``scale`` may be a dict per edge)."""
    out = {}
    for e in network.edges.values():
        b = scale[e.name] if isinstance(scale, Mapping) else scale
        out[e.name] = b * modes.bases[e.target] @ modes.bases[e.source].T
    return out


class _RaceSystem:
    """Vectorised right-hand side of the reduced ODE for all paths, edges and modes."""

    def __init__(self, network: Network, modes: ModeBasis) -> None:
        names = list(network.edges)
        self.n_edges = len(names)
        self.groups = {}
        for L in sorted({len(p.edges) for p in network.paths}):
            ks = [k for k, p in enumerate(network.paths) if len(p.edges) == L]
            idx = np.array([[names.index(n) for n in network.paths[k].edges] for k in ks])
            self.groups[L] = (np.array(ks), idx)
        self.n_paths = len(network.paths)
        self.S = modes.S.T  # (path, mode)
        self.D = np.transpose(modes.D, (1, 2, 0))  # (j, p, mode)
        self.sigma_yy = modes.sigma_yy

    def path_strength(self, B: Array) -> Array:
        """B_p = prod_{e in p} B_e, (path, mode), from B (edge, mode)."""
        out = np.empty((self.n_paths, B.shape[1]))
        for ks, idx in self.groups.values():
            out[ks] = np.prod(B[idx], axis=1)
        return out

    def rhs(self, B: Array) -> Array:
        Bp = self.path_strength(B)
        E = self.S - np.einsum("jpa,ja->pa", self.D, Bp)
        dB = np.zeros_like(B)
        for ks, idx in self.groups.values():
            Be = B[idx]  # (n, L, mode)
            ones = np.ones_like(Be[:, :1])
            before = np.cumprod(np.concatenate([ones, Be[:, :-1]], axis=1), axis=1)
            after = np.cumprod(np.concatenate([ones, Be[:, :0:-1]], axis=1), axis=1)[:, ::-1]
            np.add.at(dB, idx, before * after * E[ks][:, None, :])
        return dB

    def loss(self, B: Array) -> Array:
        """Mean loss for B of shape (time, edge, mode)."""
        Bp = np.stack([self.path_strength(b) for b in B])  # (time, path, mode)
        quad = np.einsum("tja,jpa,tpa->t", Bp, self.D, Bp)
        return 0.5 * self.sigma_yy - np.einsum("tpa,pa->t", Bp, self.S) + 0.5 * quad


def reduce(
    network: Network,
    modes: ModeBasis,
    initial: Mapping[str, Array] | float,
    times: Sequence[float] | Array,
    tau: float = 1.0,
    tol: float = 1e-6,
    solver: str = "RK45",
    rtol: float = 1e-8,
    atol: float = 1e-12,
    with_weights: bool = True,
) -> Trajectory:
    """Integrate the reduced (neural-race) ODE system of the module docstring
    (:func:`gdln.ode.solve_flow`: a ``scipy.integrate`` method or "RKC").

    Args:
        modes: from :func:`shared_modes` (which has checked the diagonalisability).
        initial: aligned weights {edge: W_e(0)} (checked: the part outside R_t diag(B) R_s^T must be
            below ``tol`` relative, else NotAlignedError), or a number: B_e(0) = initial for all e.
        with_weights: also rebuild W_e(t) = R_t diag(B_e(t)) R_s^T (for W_eff and comparisons).

    Returns a Trajectory with loss, mode_strength (time, mode, path) and edge_strength
    (time, mode, edge).
    """
    times = check_times(times, tau)
    names = list(network.edges)
    R = modes.bases
    if isinstance(initial, Mapping):
        W0 = network.check_weights(initial)
        B0 = project(network, modes, W0)[0].T  # (edge, mode)
        for k, e in enumerate(network.edges.values()):
            rebuilt = R[e.target] @ np.diag(B0[k]) @ R[e.source].T
            off = np.linalg.norm(W0[e.name] - rebuilt) / max(np.linalg.norm(W0[e.name]), 1e-300)
            if off > tol:
                raise NotAlignedError(
                    f"initial weight of edge {e.name!r} is not aligned with the shared modes: "
                    f"relative residual {off:.3g} > tolerance {tol:.3g} (use aligned_init, or "
                    "integrate for unaligned starts)"
                )
    else:
        B0 = np.full((len(names), modes.n_modes), float(initial))
    if not (np.all(np.isfinite(B0)) and np.all(np.isfinite(modes.S))):
        raise ValueError("the initial mode strengths or the mode correlations hold NaN or inf")
    system = _RaceSystem(network, modes)
    shape = B0.shape
    states = np.empty((B0.size, len(times)))

    def record(k: int, b: Array) -> None:
        states[:, k] = b

    solve_flow(
        lambda b: system.rhs(b.reshape(shape)).ravel() / tau,
        B0.ravel(),
        times,
        record,
        solver,
        rtol,
        atol,
    )
    B = states.T.reshape(len(times), *shape)  # (time, edge, mode)
    paths = np.stack([system.path_strength(b) for b in B])  # (time, path, mode)
    weights = None
    if with_weights:
        weights = {
            e.name: np.einsum("ia,ta,ja->tij", R[e.target], B[:, k], R[e.source])
            for k, e in enumerate(network.edges.values())
        }
    return Trajectory(
        time=times,
        loss=system.loss(B),
        method="reduce",
        tau=tau,
        mode_strength=np.transpose(paths, (0, 2, 1)),
        edge_strength=np.transpose(B, (0, 2, 1)),
        weights=weights,
        paths=tuple(p.name for p in network.paths),
        edges=tuple(names),
        network=network,
        attrs={"solver": solver, "rtol": rtol, "atol": atol, "residual": modes.residual},
    )
