"""gdln.groups: hidden units grouped by the partition cells (contexts) where they are active."""

from __future__ import annotations

import numpy as np
import pytest

from gdln import groups as gg
from gdln.context_task import context_task

#: context sets (bitmasks over C = 3) of the units of the hand-built net, and their sizes
SETS = {0b111: 4, 0b011: 3, 0b110: 2, 0b101: 2, 0b001: 1}


def hand_built(C: int = 3) -> tuple[list[np.ndarray], np.ndarray]:
    """Layer weights of a one-hidden-layer net whose unit u has pre-activation
    0.5 + (+1 if c in S_u else -1): active on every object of exactly the contexts of S_u;
    plus two dead units. Returns ([W1, W2], masks)."""
    masks = np.array([m for m, n in SETS.items() for _ in range(n)] + [0, 0])
    W1 = np.zeros((len(masks), 8 + C))
    W1[:, :8] = 0.5
    W1[:, 8:] = np.where(masks[:, None] >> np.arange(C) & 1, 1.0, -1.0)
    W1[masks == 0, :8] = -0.5  # dead everywhere
    W2 = np.ones((4, len(masks)))
    W2[:, -3] = 1e-4  # the {1} unit passes almost nothing on: weak
    return [W1, W2], masks


def relu_gates(weights: list[np.ndarray], X: np.ndarray) -> list[np.ndarray]:
    """The activation pattern of a bias-free ReLU MLP, layer by layer (numpy)."""
    h, out = X, []
    for W in weights[:-1]:
        z = h @ W.T
        out.append((z > 0).astype(float))
        h = np.maximum(z, 0.0)
    return out


def test_hand_built_net_groups_are_recovered() -> None:
    task = context_task(3)
    W, masks = hand_built()
    D = relu_gates(W, task.X)
    acts = gg.activities(W, D, task.X)
    assert len(acts) == 1 and acts[0].shape == (24, len(masks))
    (groups,) = gg.layer_groups(W, D, task.X, task.context, 3)
    # the unit with tiny outgoing weights is weak, as are the two dead units
    weak = np.zeros(len(masks), bool)
    weak[-3:] = True
    np.testing.assert_array_equal(groups.unit_group < 0, weak)
    found = gg.subset_mask(groups.group_cells)[groups.unit_group[~weak]]
    np.testing.assert_array_equal(found, masks[~weak])
    # groups in bitmask order, census in bitmask order {1}, {2}, {1,2}, {3}, {1,3}, {2,3}, ...
    np.testing.assert_array_equal(gg.subset_mask(groups.group_cells), [0b011, 0b101, 0b110, 7])
    assert groups.labels() == ["{1,2}", "{1,3}", "{2,3}", "{1,2,3}"]
    np.testing.assert_array_equal(gg.census(groups, 3), [0, 0, 3, 0, 2, 2, 4])
    assert gg.mixed_selectivity(groups, 3) == pytest.approx(7 / 11)
    # node gates: 1 exactly on the samples of the group's contexts
    gates = groups.node_gates(task.context)
    for k, cells in enumerate(groups.group_cells):
        np.testing.assert_array_equal(gates[:, k], cells[task.context])
    # activity of an active unit is 1.5 per sample in its contexts, 0 elsewhere
    np.testing.assert_allclose(groups.activity[0], [1.5, 1.5, 1.5])
    np.testing.assert_allclose(groups.activity[4], [1.5, 1.5, 0.0])


def test_thresholds_move_units_between_groups() -> None:
    context = np.repeat(np.arange(3), 2)
    h = np.array([[1.0, 1.0, 0.05, 0.05, 0.5, 0.5]]).T * np.ones((1, 2))  # (6 samples, 2 units)
    h[:, 1] *= 0.01  # unit 1 is 100x weaker than unit 0
    W = np.ones((3, 2))
    low = gg.gate_groups(h, W, context, 3, active_threshold=0.01, strength_fraction=0.001)
    assert gg.subset_mask(low.group_cells)[low.unit_group].tolist() == [0b111, 0b111]
    high = gg.gate_groups(h, W, context, 3, active_threshold=0.1, strength_fraction=0.1)
    assert high.unit_group[1] == -1
    assert gg.subset_mask(high.group_cells)[high.unit_group[0]] == 0b101
    assert np.isnan(gg.mixed_selectivity(gg.gate_groups(0 * h, W, context, 3), 3))


def test_many_cells_group_without_bitmasks() -> None:
    """A partition of 70 cells (more than a bitmask holds): units active on the first and on
    the second half of the cells form two groups."""
    partition = np.arange(140) % 70
    h = np.zeros((140, 3))
    h[partition < 35, 0] = 1.0
    h[partition >= 35, 1] = 2.0
    h[:, 2] = 3.0
    groups = gg.gate_groups(h, np.ones((2, 3)), partition)
    assert groups.n_groups == 3 and groups.group_cells.shape == (3, 70)
    assert groups.group_cells.sum(axis=1).tolist() == [35, 35, 70]
    assert len(set(groups.unit_group.tolist())) == 3
    with pytest.raises(ValueError, match="62 cells"):
        gg.subset_mask(groups.group_cells)


def test_labels_and_subsets() -> None:
    assert gg.subset_label(0b011, 3) == "{1,2}" and gg.subset_label(0b100, 3) == "{3}"
    assert gg.subset_label(np.array([False, True, True])) == "{2,3}"
    subsets = gg.all_subsets(3)
    assert subsets.shape == (7, 3)
    np.testing.assert_array_equal(gg.subset_mask(subsets), np.arange(1, 8))


def test_errors_name_the_problem() -> None:
    context = np.zeros(4, int)
    with pytest.raises(ValueError, match="post-ReLU"):
        gg.gate_groups(-np.ones((4, 2)), np.ones((1, 2)), context, 1)
    with pytest.raises(ValueError, match="no sample is in cell 1"):
        gg.gate_groups(np.ones((4, 2)), np.ones((1, 2)), context, 2)
    with pytest.raises(ValueError, match="W_next"):
        gg.gate_groups(np.ones((4, 2)), np.ones((1, 3)), context, 1)
    with pytest.raises(ValueError, match="integer cell labels"):
        gg.gate_groups(np.ones((4, 2)), np.ones((1, 2)), np.zeros(4), 1)
    W, _ = hand_built()
    X = context_task(3).X
    flipped = [1.0 - g for g in relu_gates(W, X)]
    with pytest.raises(ValueError, match="not the activation pattern"):
        gg.activities(W, flipped, X)
