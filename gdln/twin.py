"""The gated linear twin of a trained ReLU network (a ReLN), built from arrays alone.

A bias-free ReLU MLP computes f(x) = W_L D_{L-1}(x) W_{L-1} ... D_1(x) W_1 x with gates
D_l(x) = diag(1[z_l(x) > 0]). Freeze the gates and it is a gated deep linear network (GDLN;
Saxe, Sodhani & Lewallen, ICML 2022): h_v = g_v * sum_e W_e h_{s(e)}. Jarvis, Klein, Rosman &
Saxe (ICLR 2025) go one step further: units that are switched on in the same contexts form one
gated node, and the GDLN of those nodes (a ReLN) learns like the ReLU net. :meth:`ReLN.from_gates`
builds both twins from the layer weights [W_1 (n_1, d), ..., W_L (m, n_{L-1})] and the per-sample
gates [(sample, n_l)] of the net (read by ``relu_lens.read_mlp``):

- ``partition=None``: the *frozen-gate twin*, the chain x -> h_1 -> ... -> y with per-unit
  node gates g_{h_l}(x) = D_l(x). Its outputs, loss and gradient are the ReLU net's, and its
  gradient flow is the ReLU net's for as long as no gate flips.
- ``partition=labels`` (an integer cell per sample: its context, object x context, class...):
  each layer's live units are grouped by the set of cells in which they are active
  (:mod:`gdln.groups`), one node per group, with node gate g_v(x) = 1[cell(x) in the group's
  set], and an edge between every pair of groups in consecutive layers. A path through groups
  (a_1, ..., a_{L-1}) is open on cell c only if every group's set contains c.

Either twin is a plain :class:`gdln.Network` with gates and initial weights, so it runs as it is
through ``gdln.integrate``, ``gdln.gradient_descent``, ``gdln.reduce`` (where its check passes)
and, at one hidden layer, ``gdln.pathway_flow`` from :meth:`ReLN.aligned_start`. Its initial
weights are cut from ``initial`` (default: ``weights``): ``W_in_a = W_1[units_a]``,
``W_mid_a_b = W_l[units_b][:, units_a]``, ``W_out_b = W_L[:, units_b]`` -- for instance the
ReLU net's own initial weights, with the gates read at the end of training.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gdln.groups import GateGroups, activities, layer_groups
from gdln.network import Array, Network, ShapeError, chain
from gdln.partitions import check_partition
from gdln.pathways import aligned_pathways


@dataclass(frozen=True)
class ReLN:
    """A gated linear twin: the GDLN, its gates and initial weights, the ReLU units behind it.

    Attributes:
        network: nodes ``x``, ``y`` and the hidden nodes; per-unit twins are the chain
            x -> h1 -> ... -> y with edges W1 .. WL, grouped twins have nodes ``h{l}_{k}`` and
            edges ``in_a`` (x -> layer-1 node a), ``mid_a_b`` (layer l node a -> layer l+1 node
            b), ``out_b`` (last hidden layer node b -> y).
        gates: {hidden node: (sample,) or (sample, n_v)} node gates on the samples given.
        initial: {edge: (n_target, n_source)} weights cut from the initial layer weights.
        units: {hidden node: indices of the ReLU units of its layer behind it}.
        layer_nodes: the hidden nodes of each hidden layer.
        node_labels: {hidden node: label}, the cell set "{1,2}" of a group or "h{l}" per unit.
        groups: the gate groups of each hidden layer (None for the per-unit twin).
    """

    network: Network
    gates: dict[str, Array]
    initial: dict[str, Array]
    units: dict[str, Array]
    layer_nodes: tuple[tuple[str, ...], ...]
    node_labels: dict[str, str]
    groups: tuple[GateGroups, ...] | None = None

    @property
    def depth(self) -> int:
        """Number of hidden layers."""
        return len(self.layer_nodes)

    @property
    def per_unit(self) -> bool:
        """True for the frozen-gate twin (per-unit gates), False for a grouped ReLN."""
        return self.groups is None

    @property
    def pathway_labels(self) -> tuple[str, ...]:
        """One label per path of ``network.paths``: its hidden nodes' labels joined by '>'
        (e.g. "{1,2,3}>{2,3}"). Enumerates the paths: a wide deep twin has many."""
        return tuple(
            ">".join(self.node_labels[v] for v in p.nodes[1:-1]) for p in self.network.paths
        )

    @classmethod
    def from_gates(
        cls,
        weights: Sequence[Array],
        gates: Sequence[Array],
        partition: Array | None = None,
        *,
        X: Array | None = None,
        initial: Sequence[Array] | None = None,
        n_cells: int | None = None,
        active_threshold: float = 0.1,
        strength_fraction: float = 0.0,
    ) -> ReLN:
        """The twin of a bias-free ReLU MLP (module docstring).

        Args:
            weights: [W_1 (n_1, d), ..., W_L (m, n_{L-1})], the layer weights at the snapshot
                the gates come from.
            gates: [(sample, n_l)] per hidden layer, 1 where a unit is active (0/1).
            partition: None (per-unit twin) or (sample,) integer cell labels (grouped twin).
            X: (sample, d) the inputs the gates were read on; needed with a partition (the
                grouping uses the units' post-ReLU activity h_l = D_l W_l h_{l-1}), and used to
                check that the gates are the weights' own activation pattern.
            initial: layer weights to start the twin from (default ``weights``), e.g. the ReLU
                net's initial weights.
            n_cells: number of partition cells (default: largest label + 1).
            active_threshold: a unit is active in a cell if its mean activity there exceeds
                this fraction of its largest cell activity (default 0.1, :mod:`gdln.groups`).
            strength_fraction: units weaker than this fraction of the strongest are left out
                (default 0: every live unit is in the twin; dead units never are).
        """
        W = _check_layers(weights, "weights")
        W0 = W if initial is None else _check_layers(initial, "initial")
        if [w.shape for w in W0] != [w.shape for w in W]:
            raise ShapeError(
                f"initial weights have shapes {[w.shape for w in W0]}, the weights "
                f"{[w.shape for w in W]}"
            )
        D = _check_gates(gates, W)
        if X is not None:
            activities(W, D, X)  # checks that the gates belong to the weights
        if partition is None:
            return _per_unit(W0, D)
        if X is None:
            raise ValueError(
                "a grouped twin needs X, the inputs the gates were read on: units are grouped "
                "by their post-ReLU activity in each partition cell"
            )
        n = check_partition(partition, D[0].shape[0], n_cells)
        groups = layer_groups(W, D, X, partition, n, active_threshold, strength_fraction)
        return _grouped(W0, groups, np.asarray(partition), n)

    def cut(self, layer_weights: Sequence[Array]) -> dict[str, Array]:
        """Edge weights cut from layer weights [W_1, ..., W_L] of the ReLU net (any snapshot),
        as the initial weights are: to put the ReLU net's own pathways next to the twin's."""
        W = _check_layers(layer_weights, "layer_weights")
        return _cut(self, W)

    def gates_from(self, layer_gates: Sequence[Array]) -> dict[str, Array]:
        """Node gates from per-unit gates [(sample, n_l)] of other samples or another snapshot:
        the gates themselves for the per-unit twin; for a grouped twin, the fraction of each
        node's units that are active, g_v(x) in [0, 1]."""
        out = {}
        for l, nodes in enumerate(self.layer_nodes):
            g = np.asarray(layer_gates[l], dtype=np.float64)
            for v in nodes:
                out[v] = g if self.per_unit else g[:, self.units[v]].mean(axis=1)
        return out

    def cell_gates(self, partition: Array) -> dict[str, Array]:
        """Node gates 1[cell(x) in the group's set] for the cells of other samples."""
        if self.groups is None:
            raise ValueError("the per-unit twin has no cell gates; use gates_from(layer_gates)")
        partition = np.asarray(partition)
        return {
            v: self.groups[l].group_cells[int(v.split("_")[1]), partition].astype(np.float64)
            for l, nodes in enumerate(self.layer_nodes)
            for v in nodes
        }

    def aligned_start(
        self, X: Array, Y: Array, init_std: float
    ) -> tuple[Network, dict[str, Array]]:
        """The one-hidden-layer twin cut to its pathways' mode counts, and its silent-alignment
        start (``gdln.aligned_pathways``: every pathway in its own singular vectors of
        Sigma_yx(p)) with the statistics of a random start of standard deviation
        ``init_std``: path strength n_p init_std^2 / 2 for a node of n_p units, the growing
        balanced part E||v + w||^2 / 4 of random incoming and outgoing weights v, w (Saxe,
        McClelland & Ganguli 2014). Run it with ``gdln.pathway_flow`` (exact for this start).
        """
        if self.depth != 1:
            raise ValueError(
                f"the aligned start needs one hidden layer (parallel pathways), the twin has "
                f"{self.depth}: pathways share edges"
            )
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        net = self.network
        strength = {k: init_std**2 * net.sizes[p.nodes[1]] / 2.0 for k, p in enumerate(net.paths)}
        return aligned_pathways(net, X, Y, self.gates, strength)


def _check_layers(weights: Sequence[Array], what: str) -> list[Array]:
    if isinstance(weights, Mapping):
        raise ShapeError(
            f"{what}: need the list of layer matrices [W_1, ..., W_L], got a mapping (of edge "
            "weights?)"
        )
    W = [np.asarray(w, dtype=np.float64) for w in weights]
    if len(W) < 2 or any(w.ndim != 2 for w in W):
        raise ShapeError(f"{what}: need [W_1 (n_1, d), ..., W_L (m, n_(L-1))], L >= 2 matrices")
    for l in range(1, len(W)):
        if W[l].shape[1] != W[l - 1].shape[0]:
            raise ShapeError(
                f"{what}: W_{l + 1} has shape {W[l].shape} but W_{l} has {W[l - 1].shape[0]} rows"
            )
    if not all(np.all(np.isfinite(w)) for w in W):
        raise ValueError(f"{what} hold NaN or inf")
    return W


def _check_gates(gates: Sequence[Array], W: list[Array]) -> list[Array]:
    if len(gates) != len(W) - 1:
        raise ShapeError(f"need one gate array per hidden layer ({len(W) - 1}), got {len(gates)}")
    D = [np.asarray(g, dtype=np.float64) for g in gates]
    n_samples = D[0].shape[0] if D[0].ndim == 2 else -1
    for l, g in enumerate(D):
        if g.ndim != 2 or g.shape != (n_samples, W[l].shape[0]):
            raise ShapeError(
                f"gates of hidden layer {l + 1} have shape {g.shape}, expected "
                f"(sample, {W[l].shape[0]}) with the same samples in every layer"
            )
        if not np.all((g == 0) | (g == 1)):
            raise ValueError(f"gates of hidden layer {l + 1} must be 0 or 1 (ReLU gates)")
    return D


def _per_unit(W0: list[Array], D: list[Array]) -> ReLN:
    sizes = [W0[0].shape[1], *(w.shape[0] for w in W0)]
    net = chain(sizes)
    hidden = tuple((f"h{l + 1}",) for l in range(len(D)))
    return ReLN(
        network=net,
        gates={f"h{l + 1}": g for l, g in enumerate(D)},
        initial={f"W{l + 1}": w for l, w in enumerate(W0)},
        units={f"h{l + 1}": np.arange(g.shape[1]) for l, g in enumerate(D)},
        layer_nodes=hidden,
        node_labels={v[0]: v[0] for v in hidden},
    )


def _grouped(
    W0: list[Array], groups: tuple[GateGroups, ...], partition: Array, n_cells: int
) -> ReLN:
    nodes: dict[str, int] = {"x": W0[0].shape[1], "y": W0[-1].shape[0]}
    gates: dict[str, Array] = {}
    units: dict[str, Array] = {}
    labels: dict[str, str] = {}
    layer_nodes: list[tuple[str, ...]] = []
    for l, g in enumerate(groups):
        if g.n_groups == 0:
            raise ValueError(
                f"hidden layer {l + 1} has no live unit: the twin would have no path "
                "(every unit is dead or below strength_fraction)"
            )
        node_gates = g.node_gates(partition)
        names = []
        for k, label in enumerate(g.labels()):
            name = f"h{l + 1}_{k}"
            units[name] = g.members(k)
            nodes[name] = len(units[name])
            gates[name] = node_gates[:, k]
            labels[name] = label
            names.append(name)
        layer_nodes.append(tuple(names))
    edges: dict[str, tuple[str, str]] = {f"in_{a}": ("x", a) for a in layer_nodes[0]}
    for lower, upper in itertools.pairwise(layer_nodes):
        edges.update({f"mid_{a}_{b}": (a, b) for a in lower for b in upper})
    edges.update({f"out_{b}": (b, "y") for b in layer_nodes[-1]})
    twin = ReLN(Network(nodes, edges), gates, {}, units, tuple(layer_nodes), labels, groups)
    twin.initial.update(_cut(twin, W0))
    return twin


def _cut(twin: ReLN, W: list[Array]) -> dict[str, Array]:
    """Edge weights of the twin cut from layer weights (module docstring)."""
    if twin.per_unit:
        return {f"W{l + 1}": w for l, w in enumerate(W)}
    if len(W) != twin.depth + 1:
        raise ShapeError(f"the twin has {twin.depth} hidden layers: need {twin.depth + 1} weights")
    layer_of = {v: l for l, nodes in enumerate(twin.layer_nodes) for v in nodes}
    out = {}
    for name, e in twin.network.edges.items():
        if e.source == "x":
            out[name] = W[0][twin.units[e.target]]
        elif e.target == "y":
            out[name] = W[-1][:, twin.units[e.source]]
        else:
            out[name] = W[layer_of[e.target]][np.ix_(twin.units[e.target], twin.units[e.source])]
    return out
