"""The routing network of the neural race (Saxe, Sodhani & Lewallen, ICML 2022), numpy only.

M input domains, each an input module 4 -> hidden reading one-hot items; one shared hidden ->
hidden layer; M output modules hidden -> 7. Each input domain is gated to K of the M output
domains (here the cyclic routes {m, m+1, ..., m+K-1} mod M), and every trained route has the
same target, a small hierarchy over the 4 items (:data:`HIERARCHY`). A sample is one
(domain, item) pair: P = 4 M samples; node gates switch on its input domain and its K output
domains (pathway gates). Like every synthetic task it lives on the theory side (see
:mod:`gdln.tasks`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gdln.network import Network

#: Target Y^T (7 features x 4 items): the hierarchy of the routing experiment.
HIERARCHY = np.array(
    [
        [6, 6, 6, 6],
        [4, 4, 0, 0],
        [0, 0, 4, 4],
        [3, 0, 0, 0],
        [0, 3, 0, 0],
        [0, 0, 3, 0],
        [0, 0, 0, 3],
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class RoutingTask:
    """The network and its data.

    Attributes:
        network: nodes x0..x{M-1} (4), h1, h2 (hidden), y0..y{M-1} (7); edges in{m}, shared,
            out{o}.
        X, Y, gates: {node: (sample, n)} inputs and targets, {node: (sample,)} pathway gates.
        routes: (input domain, output domain) bool, the trained routes.
    """

    network: Network
    X: dict[str, np.ndarray]
    Y: dict[str, np.ndarray]
    gates: dict[str, np.ndarray]
    routes: np.ndarray

    def routed_paths(self) -> list[int]:
        """Indices of the paths x_m -> y_o whose route m -> o is trained."""
        return [
            k
            for k, p in enumerate(self.network.paths)
            if self.routes[int(p.source[1:]), int(p.target[1:])]
        ]


def cyclic_routes(n_domains: int, n_routes: int) -> np.ndarray:
    """Boolean (input domain, output domain): the cyclic routes m -> m, ..., m + K - 1 mod M."""
    table = np.zeros((n_domains, n_domains), dtype=bool)
    for m in range(n_domains):
        table[m, [(m + k) % n_domains for k in range(n_routes)]] = True
    return table


def routing_task(n_domains: int = 7, n_routes: int = 4, hidden: int = 64) -> RoutingTask:
    """The routing task of the module docstring (published: M = 7, K = 4, 64 hidden units)."""
    M, n_items, n_feat = n_domains, HIERARCHY.shape[1], HIERARCHY.shape[0]
    if not 1 <= n_routes <= M:
        raise ValueError(f"need 1 <= n_routes <= n_domains, got {n_routes} and {M}")
    if hidden < n_items:
        raise ValueError(f"hidden must be >= {n_items} (the number of modes), got {hidden}")
    nodes = {f"x{m}": n_items for m in range(M)}
    nodes |= {"h1": hidden, "h2": hidden}
    nodes |= {f"y{o}": n_feat for o in range(M)}
    edges = {f"in{m}": (f"x{m}", "h1") for m in range(M)}
    edges["shared"] = ("h1", "h2")
    edges |= {f"out{o}": ("h2", f"y{o}") for o in range(M)}
    table = cyclic_routes(M, n_routes)
    domain = np.repeat(np.arange(M), n_items)
    item = np.tile(np.arange(n_items), M)
    onehot = np.eye(n_items)[item]
    X = {f"x{m}": onehot for m in range(M)}
    Y, gates = {}, {}
    for m in range(M):
        gates[f"x{m}"] = (domain == m).astype(np.float64)
    for o in range(M):
        on = table[domain, o]
        gates[f"y{o}"] = on.astype(np.float64)
        Y[f"y{o}"] = HIERARCHY.T[item] * on[:, None]
    return RoutingTask(Network(nodes, edges), X, Y, gates, table)
