"""The architecture graph of a gated deep linear network (GDLN) and its gated forward pass.

A GDLN (Saxe, Sodhani, Lewallen, ICML 2022, eq. 1) is a directed acyclic graph of nodes v
(layers, with sizes n_v) and edges e: s(e) -> t(e) carrying weight matrices W_e of shape
(n_t(e), n_s(e)). Gates come with the data, per sample:

    h_v = g_v * sum_{e: t(e) = v} g_e W_e h_{s(e)},      h_u = g_u * x_u  for an input node u.

A node gate g_v is either one number per sample, shape (sample,) (a pathway switch), or one number
per unit per sample, shape (sample, n_v) (a diagonal mask: a ReLU layer's activation pattern). An
edge gate g_e is one number per sample, shape (sample,). Missing gates are 1.

Input nodes are the nodes without incoming edges; output nodes are those without outgoing edges.
A path p runs from an input node to an output node; W_p is the product of its edge weights and,
for pathway gates, g_p the product of all gates met along it (nodes and edges), so that an output
node computes h_v = sum_{p ending at v} g_p W_p x_{s(p)}.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

Array = np.ndarray


class GraphError(ValueError):
    """The architecture is not a valid GDLN graph (cycle, unknown node, duplicate name...)."""


class GateError(ValueError):
    """Gates of the wrong shape, with values outside [0, 1], or of a kind a method cannot use."""


class ShapeError(ValueError):
    """Inputs, targets or weights whose shapes do not match the node sizes."""


@dataclass(frozen=True)
class Edge:
    """A weight matrix W_e of shape (n_target, n_source) from node ``source`` to ``target``."""

    name: str
    source: str
    target: str


@dataclass(frozen=True)
class Path:
    """A path from an input node to an output node: its edges in order of traversal."""

    edges: tuple[str, ...]
    nodes: tuple[str, ...]

    @property
    def name(self) -> str:
        """Label used as the ``path`` coordinate: the edge names joined by '>'."""
        return ">".join(self.edges)

    @property
    def source(self) -> str:
        return self.nodes[0]

    @property
    def target(self) -> str:
        return self.nodes[-1]


class Network:
    """A GDLN architecture: named nodes with sizes and named directed edges.

    Args:
        nodes: ``{node name: size}``.
        edges: ``{edge name: (source node, target node)}``; the weight of edge e has shape
            (nodes[target], nodes[source]).
    """

    def __init__(self, nodes: Mapping[str, int], edges: Mapping[str, tuple[str, str]]) -> None:
        self.sizes: dict[str, int] = {}
        for name, size in nodes.items():
            if (
                isinstance(size, bool | np.bool_)
                or not isinstance(size, int | np.integer)
                or size < 1
            ):
                raise GraphError(f"node {name!r} has size {size!r}; sizes are positive integers")
            self.sizes[str(name)] = int(size)
        self.edges: dict[str, Edge] = {}
        for name, pair in edges.items():
            if name in self.sizes:
                raise GraphError(f"edge {name!r} has the name of a node; names must be unique")
            if len(pair) != 2:
                raise GraphError(f"edge {name!r} must be (source, target), got {pair!r}")
            source, target = pair
            for end in (source, target):
                if end not in self.sizes:
                    raise GraphError(
                        f"edge {name!r} refers to unknown node {end!r}; nodes are "
                        f"{sorted(self.sizes)}"
                    )
            self.edges[str(name)] = Edge(str(name), source, target)
        if not self.edges:
            raise GraphError("a network needs at least one edge")
        self._incoming: dict[str, list[Edge]] = {v: [] for v in self.sizes}
        self._outgoing: dict[str, list[Edge]] = {v: [] for v in self.sizes}
        for e in self.edges.values():
            self._incoming[e.target].append(e)
            self._outgoing[e.source].append(e)
        self.order: tuple[str, ...] = self._topological_order()
        self.inputs: tuple[str, ...] = tuple(v for v in self.order if not self._incoming[v])
        self.outputs: tuple[str, ...] = tuple(v for v in self.order if not self._outgoing[v])

    @cached_property
    def paths(self) -> tuple[Path, ...]:
        """Every input-to-output path, enumerated on first use only: a wide layered graph has
        as many paths as products of its layer sizes, and nothing that works layer by layer
        (``forward``, ``effective_map``, ``integrate(form="layers")``) needs them."""
        return self._enumerate_paths()

    @cached_property
    def layers(self) -> tuple[tuple[str, ...], ...] | None:
        """The nodes layer by layer if the graph is *complete layered*, else None.

        Complete layered: the input nodes form layer 0, every edge runs from a node of layer k
        to a node of layer k + 1, every pair of nodes in consecutive layers has exactly one
        edge, and the last layer holds exactly the output nodes. A chain is one (one node per
        layer); so is the ReLN of an MLP whose hidden units are grouped into nodes. Such a
        network is a plain MLP in disguise: stacking each layer's nodes gives dense layer
        weights, and its node gates become per-unit gates (``gdln.dynamics`` uses this).
        """
        depth: dict[str, int] = {}
        for v in self.order:
            depth[v] = 1 + max((depth[e.source] for e in self._incoming[v]), default=-1)
        n_layers = max(depth.values()) + 1
        layers = tuple(tuple(v for v in self.order if depth[v] == k) for k in range(n_layers))
        pairs = {(e.source, e.target) for e in self.edges.values()}
        complete = (
            all(depth[e.target] == depth[e.source] + 1 for e in self.edges.values())
            and len(pairs) == len(self.edges)
            and len(self.edges) == sum(len(a) * len(b) for a, b in itertools.pairwise(layers))
            and set(layers[-1]) == set(self.outputs)
        )
        return layers if complete else None

    def _topological_order(self) -> tuple[str, ...]:
        indegree = {v: 0 for v in self.sizes}
        for e in self.edges.values():
            indegree[e.target] += 1
        ready = [v for v in self.sizes if indegree[v] == 0]
        order: list[str] = []
        while ready:
            v = ready.pop(0)
            order.append(v)
            for e in self._outgoing[v]:
                indegree[e.target] -= 1
                if indegree[e.target] == 0:
                    ready.append(e.target)
        if len(order) < len(self.sizes):
            stuck = sorted(v for v, d in indegree.items() if d > 0)
            raise GraphError(f"the graph has a cycle through nodes {stuck}; a GDLN must be acyclic")
        return tuple(order)

    def _enumerate_paths(self) -> tuple[Path, ...]:
        found: list[Path] = []

        def extend(edges: tuple[str, ...], nodes: tuple[str, ...]) -> None:
            last = nodes[-1]
            if last in self.outputs:
                found.append(Path(edges, nodes))
                return
            for e in self._outgoing[last]:
                extend((*edges, e.name), (*nodes, e.target))

        for u in self.inputs:
            extend((), (u,))
        return tuple(found)

    def incoming(self, node: str) -> list[Edge]:
        """The edges that end at ``node``."""
        return self._incoming[node]

    def outgoing(self, node: str) -> list[Edge]:
        """The edges that leave ``node``."""
        return self._outgoing[node]

    def weight_shape(self, edge: str) -> tuple[int, int]:
        e = self.edges[edge]
        return self.sizes[e.target], self.sizes[e.source]

    def paths_ending_at(self, node: str) -> list[int]:
        """Indices (into ``self.paths``) of the paths that end at ``node``."""
        return [k for k, p in enumerate(self.paths) if p.target == node]

    # ----------------------------------------------------------------- argument checking

    def check_weights(self, weights: Mapping[str, Array]) -> dict[str, Array]:
        """The weights as float64 arrays, one per edge, each of shape (n_target, n_source)."""
        missing = sorted(set(self.edges) - set(weights))
        unknown = sorted(set(weights) - set(self.edges))
        if missing or unknown:
            raise ShapeError(f"weights: missing edges {missing}, unknown edges {unknown}")
        out = {}
        for name in self.edges:
            w = np.asarray(weights[name], dtype=np.float64)
            if w.shape != self.weight_shape(name):
                raise ShapeError(
                    f"weight of edge {name!r} has shape {w.shape}, expected "
                    f"{self.weight_shape(name)} (target size, source size)"
                )
            if not np.all(np.isfinite(w)):
                raise ValueError(f"weight of edge {name!r} holds NaN or inf")
            out[name] = w
        return out

    def _check_node_arrays(
        self, arrays: Mapping[str, Array] | Array, nodes: tuple[str, ...], what: str
    ) -> dict[str, Array]:
        if not isinstance(arrays, Mapping):
            if len(nodes) != 1:
                raise ShapeError(
                    f"{what}: the network has nodes {list(nodes)}; pass a dict node -> array"
                )
            arrays = {nodes[0]: arrays}
        if set(arrays) != set(nodes):
            raise ShapeError(f"{what}: expected arrays for nodes {list(nodes)}, got {list(arrays)}")
        out = {}
        n_samples = None
        for v in nodes:
            a = np.asarray(arrays[v], dtype=np.float64)
            if a.ndim != 2 or a.shape[1] != self.sizes[v]:
                raise ShapeError(
                    f"{what} for node {v!r} has shape {a.shape}; expected (sample, {self.sizes[v]})"
                )
            if n_samples is not None and a.shape[0] != n_samples:
                raise ShapeError(f"{what}: nodes disagree on the number of samples")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{what} for node {v!r} hold NaN or inf")
            n_samples = a.shape[0]
            out[v] = a
        return out

    def check_inputs(self, X: Mapping[str, Array] | Array) -> dict[str, Array]:
        """Inputs per input node, each (sample, n_u); a bare array if there is one input node."""
        return self._check_node_arrays(X, self.inputs, "inputs")

    def check_targets(self, Y: Mapping[str, Array] | Array) -> dict[str, Array]:
        """Targets per output node, each (sample, n_v); a bare array if there is one output."""
        return self._check_node_arrays(Y, self.outputs, "targets")

    def check_gates(self, gates: Mapping[str, Array] | None, n_samples: int) -> dict[str, Array]:
        """Gates as float64 arrays: node gates (sample,) or (sample, n_v), edge gates (sample,).

        Names not given get no entry (gate 1). Raises GateError for an unknown name, a wrong shape,
        or a value outside [0, 1] (NaN included).
        """
        out: dict[str, Array] = {}
        for name, value in (gates or {}).items():
            g = np.asarray(value, dtype=np.float64)
            if name in self.sizes:
                allowed = [(n_samples,), (n_samples, self.sizes[name])]
            elif name in self.edges:
                allowed = [(n_samples,)]
            else:
                raise GateError(f"gate for unknown node or edge {name!r}")
            if g.shape not in allowed:
                raise GateError(
                    f"gate {name!r} has shape {g.shape}; expected one of {allowed} "
                    "(per-sample, or per-sample-per-unit for a node)"
                )
            if not np.all((g >= 0.0) & (g <= 1.0)):
                bad = g[~((g >= 0.0) & (g <= 1.0))]
                raise GateError(f"gate {name!r} has values outside [0, 1], e.g. {bad.flat[0]!r}")
            out[name] = g
        return out

    def has_unit_gates(self, gates: Mapping[str, Array]) -> bool:
        """True if any node gate is per unit (shape (sample, n_v))."""
        return any(g.ndim == 2 for g in gates.values())

    # ----------------------------------------------------------------- computation

    def forward(
        self,
        weights: Mapping[str, Array],
        X: Mapping[str, Array] | Array,
        gates: Mapping[str, Array] | None = None,
    ) -> dict[str, Array]:
        """Activities h_v of every node for a batch, each (sample, n_v).

        h_v = g_v * sum_{e: t(e)=v} g_e W_e h_{s(e)} (Saxe et al. 2022, eq. 1), done layer by
        layer (no path enumeration), so per-unit gates cost one masked matmul per edge.
        """
        W = self.check_weights(weights)
        x = self.check_inputs(X)
        n_samples = next(iter(x.values())).shape[0]
        return self._forward(W, x, self.check_gates(gates, n_samples))[1]

    def _forward(
        self, W: Mapping[str, Array], x: Mapping[str, Array], g: Mapping[str, Array]
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """(pre-gate sums a_v, activities h_v) for checked arguments."""
        a: dict[str, Array] = {}
        h: dict[str, Array] = {}
        n_samples = next(iter(x.values())).shape[0]
        for v in self.order:
            if v in self.inputs:
                a[v] = x[v]
            else:
                total = np.zeros((n_samples, self.sizes[v]))
                for e in self.incoming(v):
                    term = h[e.source] @ W[e.name].T
                    if e.name in g:
                        term *= g[e.name][:, None]
                    total += term
                a[v] = total
            h[v] = a[v] * _as_column(g[v]) if v in g else a[v]
        return a, h

    def path_weight(self, weights: Mapping[str, Array], path: Path) -> Array:
        """W_p = W_{e_L} ... W_{e_1}, shape (n_target, n_source)."""
        out = np.eye(self.sizes[path.source])
        for name in path.edges:
            out = weights[name] @ out
        return out

    def path_gates(self, gates: Mapping[str, Array], n_samples: int) -> Array:
        """g_p(x) for every path, shape (sample, path): the product of the gates along p.

        Needs pathway (per-sample) node gates; per-unit gates have no scalar path gate.
        """
        if self.has_unit_gates(gates):
            raise GateError(
                "path gates g_p need per-sample node gates; with per-unit node gates use the "
                "layer-by-layer form (integrate(..., form='layers'))"
            )
        out = np.ones((n_samples, len(self.paths)))
        for k, p in enumerate(self.paths):
            for name in (*p.nodes, *p.edges):
                if name in gates:
                    out[:, k] *= gates[name]
        return out

    def effective_map(
        self,
        weights: Mapping[str, Array],
        gates: Mapping[str, Array] | None = None,
        n_samples: int = 1,
    ) -> dict[tuple[str, str], Array]:
        """The GDLN's W_eff(x): for each (output v, input u), sum_{p: u -> v} g_p(x) W_p.

        Returns ``{(v, u): array (sample, n_v, n_u)}``; computed backwards layer by layer,
        J_s += (J_t * g_t) g_e W_e with J_v = d h_v / d h_v = I at the output, so per-unit gates
        are masks and no per-unit path is enumerated. ``n_samples`` is used when no gate is given.
        """
        W = self.check_weights(weights)
        if gates:
            n_samples = len(next(iter(gates.values())))
        g = self.check_gates(gates, n_samples)
        out: dict[tuple[str, str], Array] = {}
        for v in self.outputs:
            J = {v: np.broadcast_to(np.eye(self.sizes[v]), (n_samples, *(self.sizes[v],) * 2))}
            for node in reversed(self.order):
                if node not in J:
                    continue
                Jv = J[node] * _as_row(g[node]) if node in g else J[node]
                if node in self.inputs:
                    out[(v, node)] = np.array(Jv)
                    continue
                for e in self.incoming(node):
                    term = Jv @ W[e.name]
                    if e.name in g:
                        term = term * g[e.name][:, None, None]
                    J[e.source] = J[e.source] + term if e.source in J else term
            for u in self.inputs:
                out.setdefault((v, u), np.zeros((n_samples, self.sizes[v], self.sizes[u])))
        return out


def _as_column(g: Array) -> Array:
    """A node gate shaped to multiply activities (sample, n): (sample, 1) or (sample, n)."""
    return g[:, None] if g.ndim == 1 else g


def _as_row(g: Array) -> Array:
    """A node gate shaped to multiply a Jacobian (sample, n_out, n) along its last axis."""
    return g[:, None, None] if g.ndim == 1 else g[:, None, :]


def chain(sizes: Iterable[int], prefix: str = "W") -> Network:
    """A plain chain x -> h1 -> ... -> y with edges W1, W2, ... (node names x, h1.., y)."""
    sizes = list(sizes)
    if len(sizes) < 2:
        raise GraphError("a chain needs at least two layer sizes")
    names = ["x", *[f"h{k}" for k in range(1, len(sizes) - 1)], "y"]
    return Network(
        dict(zip(names, sizes, strict=True)),
        {f"{prefix}{k + 1}": (names[k], names[k + 1]) for k in range(len(sizes) - 1)},
    )
