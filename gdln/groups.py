"""Gate groups: the hidden units of one layer grouped by the partition cells where they are active.

Jarvis, Klein, Rosman & Saxe (ICLR 2025) read a ReLU network trained on a multi-context task as
a gated deep linear network (a ReLN): every hidden unit that matters is switched on in some
contexts and off in others, and the units that share a set of contexts form one gated node,
with node gate g(x) = 1[context(x) in that set] (Saxe, Sodhani & Lewallen, ICML 2022, for the
gated networks). The paper's clustering code is not public; this rule is ours, stated fully,
for any partition of the samples into cells (contexts; object x context; classes):

- cell activity of unit u in cell c: A[u, c] = mean over the samples of cell c of the unit's
  post-ReLU activity h_u(x) >= 0;
- strength of unit u: s_u = ||W_next[:, u]|| * max_c A[u, c], the size of the signal the unit
  can pass on to the next layer (W_next: the weights leaving the layer);
- u is *strong* if s_u > 0 and s_u >= ``strength_fraction`` * max_u s_u; other units get
  group -1 (dead or negligible; the twin leaves them out);
- a strong unit is *active in cell c* if A[u, c] > ``active_threshold`` * max_c' A[u, c'];
- its group is the set of cells in which it is active.

Defaults: ``active_threshold`` = 0.1 (:data:`DEFAULT_ACTIVE_THRESHOLD`), and
``strength_fraction`` = 0.1 (:data:`DEFAULT_STRENGTH_FRACTION`) for a census of the units that
matter; the twin (``gdln.ReLN.from_gates``) keeps every live unit (strength fraction 0).

Groups are ordered by the bitmask sum_c 2^c of their cell sets, so labels agree across layers,
snapshots and seeds; :func:`subset_label` names a set with cells numbered from 1 ("{1,2}").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gdln.network import Array
from gdln.partitions import check_partition

DEFAULT_ACTIVE_THRESHOLD = 0.1
DEFAULT_STRENGTH_FRACTION = 0.1
#: the largest fraction of gates that may disagree with the weights' own activation pattern on
#: X (a float32 net read in float64 flips units whose pre-activation is within rounding of 0)
GATE_MISMATCH_TOL = 1e-3


@dataclass(frozen=True)
class GateGroups:
    """Groups of one hidden layer.

    Attributes:
        unit_group: (unit,) int, index into ``group_cells`` of each unit's group, -1 if weak.
        group_cells: (group, cell) bool, the cell set of each group, in bitmask order; only
            groups with at least one unit appear.
        activity: (unit, cell) the cell activity A[u, c].
        strength: (unit,) the unit strength s_u.
    """

    unit_group: Array
    group_cells: Array
    activity: Array
    strength: Array

    @property
    def n_groups(self) -> int:
        return self.group_cells.shape[0]

    def members(self, group: int) -> Array:
        """Indices of the units in ``group``."""
        return np.flatnonzero(self.unit_group == group)

    def sizes(self) -> Array:
        """(group,) number of units per group."""
        return np.bincount(self.unit_group[self.unit_group >= 0], minlength=self.n_groups)

    def node_gates(self, partition: Array) -> Array:
        """(sample, group) float: g_group(x) = 1[cell(x) in the group's cell set]."""
        return self.group_cells[:, np.asarray(partition)].T.astype(np.float64)

    def labels(self) -> list[str]:
        """The cell set of every group, e.g. "{1,2}" (cells numbered from 1)."""
        return [subset_label(cells) for cells in self.group_cells]


def subset_mask(cells: Array) -> Array:
    """Bitmask label sum_c 2^c of cell sets given as bool arrays (..., cell); at most 62 cells."""
    cells = np.asarray(cells, dtype=bool)
    if cells.shape[-1] > 62:
        raise ValueError(f"bitmasks hold at most 62 cells, got {cells.shape[-1]}")
    return (cells * (1 << np.arange(cells.shape[-1]))).sum(axis=-1)


def subset_label(cells: Array | int, n_cells: int | None = None) -> str:
    """Readable name of a cell set (a bool row, or a bitmask with ``n_cells``), cells numbered
    from 1: [True, True, False] or 0b011 -> "{1,2}"."""
    if n_cells is not None:
        cells = [bool(int(cells) >> c & 1) for c in range(n_cells)]
    return "{" + ",".join(str(c + 1) for c, on in enumerate(np.asarray(cells)) if on) + "}"


def all_subsets(n_cells: int) -> Array:
    """(subset, cell) bool: every non-empty cell set, in bitmask order 1 .. 2^n - 1."""
    masks = np.arange(1, 2**n_cells)
    return (masks[:, None] >> np.arange(n_cells)[None, :] & 1).astype(bool)


def cell_activity(h: Array, partition: Array, n_cells: int | None = None) -> Array:
    """A[u, c] = mean of h[:, u] over the samples of cell c; h is (sample, unit), h >= 0."""
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 2:
        raise ValueError(f"h must be (sample, unit), got shape {h.shape}")
    n = check_partition(partition, h.shape[0], n_cells)
    if np.any(h < 0):
        raise ValueError("h must be post-ReLU activity (>= 0)")
    onehot = np.asarray(partition)[:, None] == np.arange(n)[None, :]
    return (h.T @ onehot) / onehot.sum(axis=0)


def gate_groups(
    h: Array,
    W_next: Array,
    partition: Array,
    n_cells: int | None = None,
    active_threshold: float = DEFAULT_ACTIVE_THRESHOLD,
    strength_fraction: float = DEFAULT_STRENGTH_FRACTION,
) -> GateGroups:
    """Group the units of one hidden layer by the cells in which they are active.

    Args:
        h: (sample, unit) post-ReLU activity of the layer.
        W_next: (next, unit) weights leaving the layer.
        partition: (sample,) cell index of every sample (e.g. its context).
        n_cells: number of cells (default: largest label + 1).
        active_threshold: a unit is active in cell c if A[u, c] > this * max_c A[u, c].
        strength_fraction: a unit is strong if s_u >= this * max_u s_u.

    Returns:
        :class:`GateGroups` (see the module docstring for the definitions).
    """
    if not 0.0 <= active_threshold < 1.0 or not 0.0 <= strength_fraction <= 1.0:
        raise ValueError(
            "need 0 <= active_threshold < 1 and 0 <= strength_fraction <= 1, got "
            f"{active_threshold}, {strength_fraction}"
        )
    A = cell_activity(h, partition, n_cells)
    W_next = np.asarray(W_next, dtype=np.float64)
    if W_next.ndim != 2 or W_next.shape[1] != A.shape[0]:
        raise ValueError(f"W_next must be (next, {A.shape[0]}), got {W_next.shape}")
    peak = A.max(axis=1)
    strength = np.linalg.norm(W_next, axis=0) * peak
    strong = (strength > 0) & (strength >= strength_fraction * strength.max(initial=0.0))
    active = A > active_threshold * peak[:, None]
    # unique cell sets in bitmask order: lexicographic with the last cell most significant
    present, which = np.unique(active[strong][:, ::-1], axis=0, return_inverse=True)
    unit_group = np.full(A.shape[0], -1, dtype=np.int64)
    unit_group[strong] = which.ravel()
    return GateGroups(unit_group, present[:, ::-1].copy(), A, strength)


def census(groups: GateGroups, n_cells: int) -> Array:
    """(subset,) number of strong units per cell set, in :func:`all_subsets` order."""
    counts = np.zeros(2**n_cells - 1, dtype=np.int64)
    counts[subset_mask(groups.group_cells) - 1] = groups.sizes()
    return counts


def mixed_selectivity(groups: GateGroups, n_cells: int) -> float:
    """Fraction of strong units active in more than one but not all cells (NaN if none is
    strong): the structured mixed selectivity of Jarvis et al. (ICLR 2025). Always 0 for
    n_cells <= 2."""
    sizes = groups.sizes()
    total = sizes.sum()
    if total == 0:
        return float("nan")
    n_active = groups.group_cells.sum(axis=1)
    mixed = (n_active > 1) & (n_active < n_cells)
    return float(sizes[mixed].sum() / total)


def activities(weights: Sequence[Array], gates: Sequence[Array], X: Array) -> list[Array]:
    """Post-ReLU activities h_l = D_l W_l h_{l-1} (h_0 = X) of a bias-free MLP with layer
    weights [W_1, ..., W_L] and gates [D_l (sample, n_l)], one (sample, n_l) array per hidden
    layer. Raises ValueError if the gates are not the weights' own activation pattern
    1[W_l h_{l-1} > 0] on X (beyond :data:`GATE_MISMATCH_TOL` of them): weights and gates
    from different snapshots."""
    h = np.asarray(X, dtype=np.float64)
    if h.ndim != 2 or h.shape[1] != np.shape(weights[0])[1]:
        raise ValueError(f"X has shape {h.shape}, expected (sample, {np.shape(weights[0])[1]})")
    out = []
    for l, g in enumerate(gates):
        g = np.asarray(g, dtype=np.float64)
        if g.shape[0] != h.shape[0]:
            raise ValueError(f"X has {h.shape[0]} samples, the gates {g.shape[0]}")
        z = h @ np.asarray(weights[l], dtype=np.float64).T
        mismatch = float(np.mean((z > 0) != (g > 0)))
        if mismatch > GATE_MISMATCH_TOL:
            raise ValueError(
                f"the gates of hidden layer {l + 1} are not the activation pattern of the "
                f"weights on X ({mismatch:.1%} differ): weights and gates must come from the "
                "same snapshot"
            )
        h = g * z
        out.append(h)
    return out


def layer_groups(
    weights: Sequence[Array],
    gates: Sequence[Array],
    X: Array,
    partition: Array,
    n_cells: int | None = None,
    active_threshold: float = DEFAULT_ACTIVE_THRESHOLD,
    strength_fraction: float = DEFAULT_STRENGTH_FRACTION,
) -> tuple[GateGroups, ...]:
    """:func:`gate_groups` of every hidden layer of a bias-free MLP, from its layer weights
    [W_1, ..., W_L], its gates on X and the partition of X's samples."""
    acts = activities(weights, gates, X)
    return tuple(
        gate_groups(h, weights[l + 1], partition, n_cells, active_threshold, strength_fraction)
        for l, h in enumerate(acts)
    )
