"""Partitions: checks, cuts by the targets' own modes, and the cell-mean loss."""

import numpy as np
import pytest

from gdln.context_task import context_task
from gdln.partitions import cell_mean_loss, check_partition, split_cells


@pytest.mark.parametrize("C", [2, 3, 5])
def test_split_cells_walk_down_the_tree(C: int) -> None:
    """Each cut of the context task follows the next level of its object tree: contexts ->
    halves (first split) -> pairs -> single samples, and a cell of one sample stays whole."""
    task = context_task(C)
    cells = task.context
    for level in (1, 2, 3):
        cells = split_cells(task.Y, cells)
        span = 8 // 2**level
        np.testing.assert_array_equal(cells, task.context * 2**level + task.obj // span)
    np.testing.assert_array_equal(split_cells(task.Y, cells), cells)
    # cuts=k is k cuts in a row; 0 leaves the partition as it is
    np.testing.assert_array_equal(split_cells(task.Y, task.context, cuts=3), cells)
    np.testing.assert_array_equal(split_cells(task.Y, task.context, cuts=0), task.context)


def test_split_cells_sides_zeros_and_flat_cells() -> None:
    # cell 0: targets 2, 0, -2, 2 -> centred 1.5, -0.5, -2.5, 1.5: samples 0 and 3 on one side;
    # cell 1: no variation, kept whole; cell 2: centred -1, 0, 1, so its middle sample sits on
    # the mode's zero and gets a cell of its own
    Y = np.array([[2.0], [0.0], [-2.0], [2.0], [5.0], [5.0], [-1.0], [0.0], [1.0]])
    partition = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(split_cells(Y, partition), [0, 1, 1, 0, 2, 2, 3, 4, 5])
    # new cells are numbered in the order of their first samples, the zero side included
    np.testing.assert_array_equal(split_cells(Y[[7, 6, 8]], np.zeros(3, dtype=int)), [0, 1, 2])
    np.testing.assert_array_equal(split_cells(Y[[8, 7, 6]], np.zeros(3, dtype=int)), [0, 1, 2])


def test_split_cells_refuse_what_has_no_defined_split() -> None:
    # three samples at the corners of a triangle: the two modes beyond the mean are equal
    Y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="cell 0: its leading target mode is degenerate"):
        split_cells(Y, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="Y must be"):
        split_cells(np.ones(3), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="partition must be"):
        split_cells(Y, np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="cuts must be an integer >= 0, got -1"):
        split_cells(Y, np.zeros(3, dtype=int), cuts=-1)


def test_cell_mean_loss_is_the_plateau_of_the_cell_means() -> None:
    # C = 3: the context means leave 51.0 summed over the 24 samples, the global mean 66.0
    task = context_task(3)
    assert cell_mean_loss(task.Y, task.context) * 24 == pytest.approx(51.0)
    assert cell_mean_loss(task.Y, np.zeros(24, dtype=int)) * 24 == pytest.approx(66.0)
    assert cell_mean_loss(task.Y, np.arange(24)) == 0.0
    # down the split_cells ladder: halves leave 10C = 30, pairs 4C = 12, single samples 0
    halves = split_cells(task.Y, task.context)
    pairs = split_cells(task.Y, task.context, cuts=2)
    assert cell_mean_loss(task.Y, halves) * 24 == pytest.approx(30.0)
    assert cell_mean_loss(task.Y, pairs) * 24 == pytest.approx(12.0)
    assert cell_mean_loss(task.Y, split_cells(task.Y, pairs)) == pytest.approx(0.0, abs=1e-15)


def test_check_partition_names_what_is_wrong() -> None:
    assert check_partition(np.array([0, 2, 1, 2]), 4) == 3
    with pytest.raises(ValueError, match="no sample is in cell 1"):
        check_partition(np.array([0, 2, 2]), 3)
    with pytest.raises(ValueError, match="labels must be >= 0"):
        check_partition(np.array([0, -1]), 2)
    with pytest.raises(ValueError, match="label 3 >= n_cells = 3"):
        check_partition(np.array([0, 1, 2, 3]), 4, 3)
