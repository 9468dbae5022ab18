"""The hierarchical multi-context task of Jarvis, Klein, Rosman & Saxe (ICLR 2025), numpy only.

Eight objects carry 15 binary features from a binary tree (1 + 2 + 4 + 8 nodes): feature k
of object o is 1 when o lies below tree node k. Objects are seen in C contexts. One data point
per (context, object) pair, P = 8 C, ordered context-major (point i = c * 8 + o):

    x_i = [e_o ; kappa e_c]                      (8 + C inputs, kappa = ``context_scale``)
    y_i = [H_0[:, o] ; 1[c = 1] H_1[:, o] ; ... ; 1[c = C] H_C[:, o]]    (15 (C + 1) outputs)

H_0 is the tree's feature matrix (15 x 8): the first block is the context-independent
hierarchy, present in every context; block c holds the hierarchy of context c and is zero in
the other contexts. In the plain task H_c = H_0 for every c. In the different-structure variant
context c >= 2 sees the same tree over a permuted list of objects, H_c = H_0[:, pi_c^-1], with
pi_c a fixed random permutation (``structure_seed``): each context groups the objects its own
way, while the first context and the common block keep the original tree.

The public code of the paper scales the context one-hot by kappa = 1.1 (C = 4) and 1.35 (C = 5)
to keep its closed form's sorted-rank pairing of singular values with input eigenvalues in
order; ``published_context_scale`` gives those values. kappa = 1 is the plain one-hot.

Like every synthetic task it lives on the theory side (see :mod:`gdln.tasks`): numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_OBJECTS = 8
N_FEATURES = 15
TREE_DEPTH = 4  # levels of the binary tree: 1, 2, 4, 8 nodes


@dataclass(frozen=True)
class ContextTask:
    """One instance of the multi-context task.

    Attributes:
        X: inputs, (sample, in) with in = 8 + C: [object one-hot ; kappa * context one-hot].
        Y: targets, (sample, out) with out = 15 (C + 1).
        context: context index 0..C-1 of every sample, (sample,).
        obj: object index 0..7 of every sample, (sample,).
        n_contexts: C.
        context_scale: kappa.
        structures: (C, 15, 8) the feature matrix H_c of every context block.
    """

    X: np.ndarray
    Y: np.ndarray
    context: np.ndarray
    obj: np.ndarray
    n_contexts: int
    context_scale: float
    structures: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    def context_mask(self) -> np.ndarray:
        """(sample, context) bool: True where the sample is seen in that context."""
        return self.context[:, None] == np.arange(self.n_contexts)[None, :]


def hierarchy(n_levels: int = TREE_DEPTH) -> np.ndarray:
    """Feature matrix of a full binary tree over 2^(n_levels - 1) leaves, (feature, object).

    Row k is tree node k in breadth-first order (root first); entry (k, o) is 1 when leaf o lies
    below node k. For 4 levels: 15 features over 8 objects, every object has 4 ones.
    """
    n_leaves = 2 ** (n_levels - 1)
    rows = []
    for level in range(n_levels):
        span = n_leaves // 2**level
        for node in range(2**level):
            row = np.zeros(n_leaves)
            row[node * span : (node + 1) * span] = 1.0
            rows.append(row)
    return np.array(rows)


def published_context_scale(n_contexts: int) -> float:
    """kappa used by the paper's public code: 1.1 for C = 4, 1.35 for C = 5, else 1."""
    return {4: 1.1, 5: 1.35}.get(n_contexts, 1.0)


def context_task(
    n_contexts: int = 3,
    context_scale: float = 1.0,
    different_structure: bool = False,
    structure_seed: int = 0,
) -> ContextTask:
    """The task of the module docstring for C = ``n_contexts`` contexts (C >= 1).

    Args:
        n_contexts: C; the paper uses 3 (and 2, 4, 5 as variants).
        context_scale: kappa, the value of the context input (1.0: plain one-hot).
        different_structure: contexts 2..C use the tree over permuted objects.
        structure_seed: seed of those permutations.
    """
    if n_contexts < 1:
        raise ValueError(f"n_contexts must be >= 1, got {n_contexts}")
    if not np.isfinite(context_scale) or context_scale <= 0:
        raise ValueError(f"context_scale must be positive and finite, got {context_scale}")
    H = hierarchy()
    structures = np.repeat(H[None], n_contexts, axis=0)
    if different_structure:
        rng = np.random.default_rng(structure_seed)
        for c in range(1, n_contexts):
            structures[c] = H[:, np.argsort(rng.permutation(N_OBJECTS))]
    context = np.repeat(np.arange(n_contexts), N_OBJECTS)
    obj = np.tile(np.arange(N_OBJECTS), n_contexts)
    P = N_OBJECTS * n_contexts
    X = np.zeros((P, N_OBJECTS + n_contexts))
    X[np.arange(P), obj] = 1.0
    X[np.arange(P), N_OBJECTS + context] = context_scale
    Y = np.zeros((P, N_FEATURES * (n_contexts + 1)))
    Y[:, :N_FEATURES] = H[:, obj].T
    for i in range(P):
        start = N_FEATURES * (context[i] + 1)
        Y[i, start : start + N_FEATURES] = structures[context[i]][:, obj[i]]
    return ContextTask(X, Y, context, obj, n_contexts, float(context_scale), structures)
