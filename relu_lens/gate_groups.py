"""Gate extraction: hidden ReLU units grouped by the set of contexts in which they are active.

Jarvis, Klein, Rosman & Saxe (ICLR 2025) read a ReLU network trained on a multi-context task as a
gated deep linear network (a ReLN): every hidden unit that matters is switched on in some
contexts and off in others, and the units that share a set of contexts form one gated node of
the ReLN, with node gate g(x) = 1[context(x) in that set] (Saxe, Sodhani & Lewallen, ICML 2022,
for the gated networks). The paper's clustering code is not public; this is ours, stated fully:

- context activity of unit u in context c: A[u, c] = mean over the samples of context c of the
  unit's post-ReLU activity h_u(x) >= 0;
- strength of unit u: s_u = ||W_next[:, u]|| * max_c A[u, c], the size of the signal the unit
  can pass on to the next layer (W_next: the weights leaving the layer);
- u is *strong* if s_u >= ``strength_fraction`` * max_u s_u (default 0.1); weak units get
  group -1 (they are left out of the ReLN);
- a strong unit is *active in context c* if A[u, c] > ``active_threshold`` * max_c' A[u, c']
  (default 0.1);
- its group is the set of contexts in which it is active.

Everything works on plain numpy arrays (activities per sample, a weight matrix and the context
of every sample), so it applies to any snapshot of any hidden layer; :func:`layer_activities`
reads them from a torch MLP. Group labels are bitmasks over contexts (bit c set when the unit is
active in context c), so labels agree across layers, snapshots and seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn

DEFAULT_ACTIVE_THRESHOLD = 0.1
DEFAULT_STRENGTH_FRACTION = 0.1


@dataclass(frozen=True)
class GateGroups:
    """Groups of one hidden layer.

    Attributes:
        unit_group: (unit,) int, index into ``group_contexts`` of each unit's group, -1 if weak.
        group_contexts: (group, context) bool, the context set of each group; groups are sorted
            by bitmask (:func:`subset_mask`), and only groups with at least one unit appear.
        activity: (unit, context) the context activity A[u, c].
        strength: (unit,) the unit strength s_u.
    """

    unit_group: np.ndarray
    group_contexts: np.ndarray
    activity: np.ndarray
    strength: np.ndarray

    @property
    def n_groups(self) -> int:
        return self.group_contexts.shape[0]

    def members(self, group: int) -> np.ndarray:
        """Indices of the units in ``group``."""
        return np.flatnonzero(self.unit_group == group)

    def sizes(self) -> np.ndarray:
        """(group,) number of units per group."""
        return np.bincount(self.unit_group[self.unit_group >= 0], minlength=self.n_groups)

    def node_gates(self, context: np.ndarray) -> np.ndarray:
        """(sample, group) float: g_group(x) = 1[context(x) in the group's context set]."""
        return self.group_contexts[:, np.asarray(context)].T.astype(np.float64)


def subset_mask(contexts: np.ndarray) -> np.ndarray:
    """Bitmask label sum_c 2^c of context sets given as bool arrays (..., context)."""
    contexts = np.asarray(contexts, dtype=bool)
    return (contexts * (1 << np.arange(contexts.shape[-1]))).sum(axis=-1)


def subset_label(mask: int, n_contexts: int) -> str:
    """Readable name of a bitmask with contexts numbered from 1, e.g. 0b011 -> "{1,2}"."""
    members = [str(c + 1) for c in range(n_contexts) if mask >> c & 1]
    return "{" + ",".join(members) + "}"


def all_subsets(n_contexts: int) -> np.ndarray:
    """(subset, context) bool: every non-empty context set, ordered by bitmask 1 .. 2^C - 1."""
    masks = np.arange(1, 2**n_contexts)
    return (masks[:, None] >> np.arange(n_contexts)[None, :] & 1).astype(bool)


def context_activity(h: np.ndarray, context: np.ndarray, n_contexts: int) -> np.ndarray:
    """A[u, c] = mean of h[:, u] over the samples of context c; h is (sample, unit), h >= 0."""
    h = np.asarray(h, dtype=np.float64)
    context = np.asarray(context)
    if h.ndim != 2 or context.shape != (h.shape[0],):
        raise ValueError(
            f"h must be (sample, unit) and context (sample,); got {h.shape}, {context.shape}"
        )
    if np.any(h < 0):
        raise ValueError("h must be post-ReLU activity (>= 0)")
    out = np.zeros((h.shape[1], n_contexts))
    for c in range(n_contexts):
        rows = context == c
        if not rows.any():
            raise ValueError(f"no sample is in context {c}")
        out[:, c] = h[rows].mean(axis=0)
    return out


def gate_groups(
    h: np.ndarray,
    W_next: np.ndarray,
    context: np.ndarray,
    n_contexts: int,
    active_threshold: float = DEFAULT_ACTIVE_THRESHOLD,
    strength_fraction: float = DEFAULT_STRENGTH_FRACTION,
) -> GateGroups:
    """Group the units of one hidden layer by the contexts in which they are active.

    Args:
        h: (sample, unit) post-ReLU activity of the layer.
        W_next: (next, unit) weights leaving the layer.
        context: (sample,) context index of every sample.
        n_contexts: C.
        active_threshold: a unit is active in context c if A[u, c] > this * max_c A[u, c].
        strength_fraction: a unit is strong if s_u >= this * max_u s_u.

    Returns:
        :class:`GateGroups` (see the module docstring for the definitions).
    """
    if not 0.0 <= active_threshold < 1.0 or not 0.0 <= strength_fraction <= 1.0:
        raise ValueError(
            "need 0 <= active_threshold < 1 and 0 <= strength_fraction <= 1, got "
            f"{active_threshold}, {strength_fraction}"
        )
    A = context_activity(h, context, n_contexts)
    W_next = np.asarray(W_next, dtype=np.float64)
    if W_next.ndim != 2 or W_next.shape[1] != A.shape[0]:
        raise ValueError(f"W_next must be (next, {A.shape[0]}), got {W_next.shape}")
    peak = A.max(axis=1)
    strength = np.linalg.norm(W_next, axis=0) * peak
    strong = (strength > 0) & (strength >= strength_fraction * strength.max())
    active = A > active_threshold * peak[:, None]
    masks = np.where(strong, subset_mask(active), 0)
    present = np.unique(masks[strong])
    lookup = {int(m): k for k, m in enumerate(present)}
    unit_group = np.array([lookup[int(m)] if s else -1 for m, s in zip(masks, strong, strict=True)])
    group_contexts = (present[:, None] >> np.arange(n_contexts)[None, :] & 1).astype(bool)
    return GateGroups(unit_group.astype(np.int64), group_contexts, A, strength)


def census(groups: GateGroups, n_contexts: int) -> np.ndarray:
    """(subset,) number of strong units per context set, over :func:`all_subsets` order."""
    counts = np.zeros(2**n_contexts - 1, dtype=np.int64)
    masks = subset_mask(groups.group_contexts)
    counts[masks - 1] = groups.sizes()
    return counts


def mixed_selectivity(groups: GateGroups, n_contexts: int) -> float:
    """Fraction of strong units active in more than one but not all contexts (NaN if none
    is strong): the structured mixed selectivity of Jarvis et al. (ICLR 2025). Always 0 for
    C <= 2."""
    sizes = groups.sizes()
    total = sizes.sum()
    if total == 0:
        return float("nan")
    n_active = groups.group_contexts.sum(axis=1)
    mixed = (n_active > 1) & (n_active < n_contexts)
    return float(sizes[mixed].sum() / total)


def layer_activities(model: nn.Module, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Post-ReLU activities (sample, unit) and outgoing weights (next, unit) of every hidden
    layer of a bias-free or biased torch MLP read by :func:`relu_lens.effective.parse_mlp`.

    Imports torch lazily, so the grouping functions above stay usable without it.
    """
    import torch

    from relu_lens.effective import Affine, forward_masks, parse_mlp

    ops = parse_mlp(model)
    affines = [op for op in ops if isinstance(op, Affine)]
    with torch.no_grad():
        x = torch.as_tensor(x, dtype=affines[0].W.dtype)
        _, masks = forward_masks(ops, x, need_output=False)
        activities = []
        h = x
        for W, mask in zip(affines[:-1], masks, strict=True):
            h = torch.nn.functional.linear(h, W.W, W.c) * mask
            activities.append(h.double().cpu().numpy())
    return activities, [a.W.detach().double().cpu().numpy() for a in affines[1:]]
