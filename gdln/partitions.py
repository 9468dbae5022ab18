"""Partitions of the samples into cells, and the cells that the targets themselves define.

A partition is one integer cell label per sample, 0 .. n_cells - 1, every cell non-empty:
the contexts of a multi-context task, object x context, classes. The gate groups of a layer
(``gdln.groups``), the gates of a twin (``gdln.twin``), its self-consistent gates
(``gdln.self_consistent``) and the staged twin's switch (``gdln.staging``) are all stated per
cell. This module checks partitions, refines them from the targets (:func:`split_cells`) and
gives the loss of the best predictor that knows only a sample's cell (:func:`cell_mean_loss`).
"""

from __future__ import annotations

import numpy as np

from gdln.network import Array


def check_partition(partition: Array, n_samples: int, n_cells: int | None = None) -> int:
    """The number of cells of ``partition`` (integer labels 0 .. n_cells - 1, one per sample),
    or ValueError naming what is wrong (a cell without samples included)."""
    partition = np.asarray(partition)
    if partition.shape != (n_samples,) or not np.issubdtype(partition.dtype, np.integer):
        raise ValueError(
            f"partition must be integer cell labels, one per sample: shape ({n_samples},), "
            f"got {partition.dtype} {partition.shape}"
        )
    if partition.size and partition.min() < 0:
        raise ValueError(f"partition labels must be >= 0, got {partition.min()}")
    n = int(partition.max()) + 1 if n_cells is None else n_cells
    if partition.size and partition.max() >= n:
        raise ValueError(f"partition label {partition.max()} >= n_cells = {n}")
    empty = np.setdiff1d(np.arange(n), partition)
    if empty.size:
        raise ValueError(f"no sample is in cell {int(empty[0])} of the partition")
    return n


def split_cells(Y: Array, partition: Array, cuts: int = 1, rtol: float = 1e-9) -> Array:
    """Each cell of ``partition`` cut by the sign of its own strongest target mode beyond the
    mean, and the cells so made cut again, ``cuts`` times in all (0 returns the partition).

    For cell c with samples S_c and centred targets Yc = Y[S_c] - mean_{S_c} y, the leading
    left singular vector u of Yc is the samples' coordinate on the strongest linear mode of the
    cell's targets after its mean (Saxe, McClelland & Ganguli, 2014: the mode a linear net
    learns first once the mean is fit). The cell is cut into {u > 0}, {u < 0} (and {u = 0},
    within ``rtol`` of max |u|, when some samples sit on the mode's zero). A unit that carries
    this mode has a pre-activation of one sign on each side, so these are the coarsest cells on
    which a sign gate can follow it. On the context task the cut of a context is the tree's
    first split (objects 0-3 | 4-7, ``gdln.context_task``); each further cut gives the next
    level: halves, pairs, then one sample per cell at ``cuts=3``.

    New cells are numbered by old cell, and within an old cell in the order in which their
    first samples appear. A cell whose targets do not vary is kept whole. A leading mode that
    is degenerate (the top two singular values equal within ``rtol``) has no defined sign
    pattern: ValueError.
    """
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"Y must be (sample, out), got shape {Y.shape}")
    if isinstance(cuts, bool) or not isinstance(cuts, int | np.integer) or cuts < 0:
        raise ValueError(f"cuts must be an integer >= 0, got {cuts!r}")
    partition = np.asarray(partition)
    check_partition(partition, Y.shape[0])
    for _ in range(cuts):
        partition = _cut(Y, partition, rtol)
    return partition


def _cut(Y: Array, partition: Array, rtol: float) -> Array:
    """One cut of :func:`split_cells`."""
    n = int(partition.max()) + 1
    side = np.zeros(Y.shape[0], dtype=int)  # sign of each sample on its cell's mode
    for c in range(n):
        members = np.flatnonzero(partition == c)
        Yc = Y[members] - Y[members].mean(axis=0)
        U, s, _ = np.linalg.svd(Yc, full_matrices=False)
        if s[0] <= rtol * max(1.0, float(np.abs(Y[members]).max())):
            continue  # no variation in the cell: nothing to cut
        if len(s) > 1 and s[1] >= (1 - rtol) * s[0]:
            raise ValueError(
                f"cell {c}: its leading target mode is degenerate (singular values "
                f"{s[0]:.6g} and {s[1]:.6g}), so its sign split is not defined"
            )
        u = U[:, 0]
        u = np.where(np.abs(u) <= rtol * np.abs(u).max(), 0.0, u)
        side[members] = np.sign(u).astype(int)
    keys, first, inverse = np.unique(
        partition * 3 + side + 1, return_index=True, return_inverse=True
    )
    rank = np.empty(keys.size, dtype=int)
    rank[np.lexsort((first, keys // 3))] = np.arange(keys.size)
    return rank[inverse.reshape(-1)]


def cell_mean_loss(Y: Array, partition: Array) -> float:
    """The cell-mean loss L_cm = (1/2P) sum_i ||y_i - ybar_{c(i)}||^2, ybar_c the mean target of
    cell c: the mean loss of predicting every sample by the mean target of its cell (the plateau
    at which ``gdln.staging`` switches its gates on)."""
    Y = np.asarray(Y, dtype=np.float64)
    partition = np.asarray(partition)
    n = check_partition(partition, Y.shape[0])
    means = np.stack([Y[partition == c].mean(axis=0) for c in range(n)])
    return float(0.5 * np.sum((Y - means[partition]) ** 2) / Y.shape[0])
