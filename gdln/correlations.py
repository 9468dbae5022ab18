"""Gated dataset correlations: the effective dataset each path sees (Saxe et al. 2022, sec. 3).

With pathway gates g_p(x) (product of the gates met along path p) and means <.> over the P
samples (the toolkit's mean-loss clock):

    Sigma_yx(p)   = < g_p y_{t(p)} x_{s(p)}^T >,                shape (n_t(p), n_s(p))
    Sigma_x(j, p) = < g_j g_p x_{s(j)} x_{s(p)}^T >,             shape (n_s(j), n_s(p)),
                    for every pair of paths j, p ending at the same output node
    sigma_yy      = < sum_v ||y_v||^2 >.

The mean loss is then L = sigma_yy / 2 - sum_p tr(W_p^T Sigma_yx(p))
+ 1/2 sum_{j, p same end} tr(W_j Sigma_x(j, p) W_p^T).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gdln.network import Array, Network


@dataclass(frozen=True)
class Correlations:
    """Gated correlations of one dataset, indexed by path number (``network.paths``).

    ``sigma_x[(j, p)]`` exists for every ordered pair of paths ending at the same node.
    """

    sigma_yx: tuple[Array, ...]
    sigma_x: dict[tuple[int, int], Array]
    sigma_yy: float
    n_samples: int


def gated_correlations(
    network: Network,
    X: Mapping[str, Array] | Array,
    Y: Mapping[str, Array] | Array,
    gates: Mapping[str, Array] | None = None,
) -> Correlations:
    """Sigma_yx(p), Sigma_x(j, p) and sigma_yy from samples, averaged over the P samples.

    Needs pathway (per-sample) node gates: with per-unit gates the paths are per unit and are not
    enumerated (use ``integrate(..., form="layers")`` instead).
    """
    x = network.check_inputs(X)
    y = network.check_targets(Y)
    n_samples = next(iter(x.values())).shape[0]
    if next(iter(y.values())).shape[0] != n_samples:
        raise ValueError("inputs and targets have different numbers of samples")
    gp = network.path_gates(network.check_gates(gates, n_samples), n_samples)
    paths = network.paths
    sigma_yx = tuple(
        (y[p.target] * gp[:, k, None]).T @ x[p.source] / n_samples for k, p in enumerate(paths)
    )
    sigma_x = {}
    for j, pj in enumerate(paths):
        for k, pk in enumerate(paths):
            if pj.target == pk.target:
                weight = gp[:, j] * gp[:, k]
                sigma_x[(j, k)] = (x[pj.source] * weight[:, None]).T @ x[pk.source] / n_samples
    sigma_yy = float(sum(np.sum(v**2) for v in y.values()) / n_samples)
    return Correlations(sigma_yx, sigma_x, sigma_yy, n_samples)


def path_gradient(
    network: Network, corr: Correlations, weights: Mapping[str, Array]
) -> dict[str, Array]:
    """-dL/dW_e by the path-sum form (Saxe et al. 2022, eq. 4, with tau = 1):

        -dL/dW_e = sum_{p through e} W_after(p, e)^T E(p) W_before(p, e)^T,
        E(p) = Sigma_yx(p) - sum_{j ending where p ends} W_j Sigma_x(j, p),

    where W_before (W_after) is the product of the weights of p before (after) e.
    """
    W = network.check_weights(weights)
    paths = network.paths
    Wp = [network.path_weight(W, p) for p in paths]
    out = {name: np.zeros_like(w) for name, w in W.items()}
    for k, p in enumerate(paths):
        E = corr.sigma_yx[k] - sum(
            Wp[j] @ corr.sigma_x[(j, k)] for j in network.paths_ending_at(p.target)
        )
        before = np.eye(network.sizes[p.source])
        for i, name in enumerate(p.edges):
            after = np.eye(network.sizes[p.nodes[i + 1]])
            for later in p.edges[i + 1 :]:
                after = W[later] @ after
            out[name] += after.T @ E @ before.T
            before = W[name] @ before
    return out


def correlation_loss(network: Network, corr: Correlations, weights: Mapping[str, Array]) -> float:
    """The mean loss from the correlations (module docstring), without touching the samples."""
    W = network.check_weights(weights)
    Wp = [network.path_weight(W, p) for p in network.paths]
    value = 0.5 * corr.sigma_yy
    for k in range(len(network.paths)):
        value -= float(np.sum(Wp[k] * corr.sigma_yx[k]))
    for (j, k), sx in corr.sigma_x.items():
        value += 0.5 * float(np.sum((Wp[j] @ sx) * Wp[k]))
    return value
