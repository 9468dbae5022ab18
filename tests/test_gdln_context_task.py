"""gdln.context_task: the hierarchical multi-context task (Jarvis et al., ICLR 2025)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdln.context_task import (
    N_FEATURES,
    N_OBJECTS,
    context_task,
    hierarchy,
    published_context_scale,
)


@pytest.mark.parametrize("C", [2, 3, 4, 5])
def test_shapes_and_blocks(C: int) -> None:
    task = context_task(C)
    P = 8 * C
    assert task.X.shape == (P, 8 + C) and task.Y.shape == (P, 15 * (C + 1))
    assert task.context.shape == task.obj.shape == (P,)
    H = hierarchy()
    for i in range(P):
        c, o = task.context[i], task.obj[i]
        assert i == c * 8 + o
        np.testing.assert_array_equal(task.Y[i, :15], H[:, o])
        blocks = task.Y[i, 15:].reshape(C, 15)
        np.testing.assert_array_equal(blocks[c], H[:, o])
        assert np.all(np.delete(blocks, c, axis=0) == 0)
    # the published initial summed loss: (1/2) sum ||y||^2 = 4 P (96 at C = 3)
    assert 0.5 * np.sum(task.Y**2) == pytest.approx(4.0 * P)


def test_pinned_entries() -> None:
    H = hierarchy()
    assert H.shape == (N_FEATURES, N_OBJECTS)
    np.testing.assert_array_equal(H[0], np.ones(8))
    np.testing.assert_array_equal(H[1], [1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(H[4], [0, 0, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(H[7:], np.eye(8))
    task = context_task(3, context_scale=1.35)
    # point (context 1, object 2) is row 10: [e_2 ; 1.35 e_1]
    expected = np.zeros(11)
    expected[2], expected[9] = 1.0, 1.35
    np.testing.assert_array_equal(task.X[10], expected)
    assert task.Y[10, 30 + 0] == 1 and task.Y[10, 30 + 1] == 1 and task.Y[10, 30 + 2] == 0
    assert task.Y[10, 15:30].sum() == 0 and task.Y[10, 45:].sum() == 0
    np.testing.assert_array_equal(task.context_mask().sum(axis=0), [8, 8, 8])


def test_published_scaling_and_errors() -> None:
    assert [published_context_scale(C) for C in (2, 3, 4, 5)] == [1.0, 1.0, 1.1, 1.35]
    with pytest.raises(ValueError, match="n_contexts"):
        context_task(0)
    with pytest.raises(ValueError, match="context_scale"):
        context_task(3, context_scale=0.0)


def test_different_structure_permutes_objects_per_context() -> None:
    plain, varied = context_task(4), context_task(4, different_structure=True)
    np.testing.assert_array_equal(plain.X, varied.X)
    np.testing.assert_array_equal(plain.Y[:, :30], varied.Y[:, :30])  # common block, context 1
    H = hierarchy()
    changed = 0
    for c in range(1, 4):
        S = varied.structures[c]
        # same tree over permuted objects: every column of H appears exactly once
        assert sorted(map(tuple, S.T)) == sorted(map(tuple, H.T))
        changed += not np.array_equal(S, H)
    assert changed >= 2
    np.testing.assert_array_equal(varied.Y.sum(axis=1), plain.Y.sum(axis=1))


@given(st.integers(min_value=1, max_value=6))
def test_hierarchy_is_a_binary_tree(levels: int) -> None:
    H = hierarchy(levels)
    n = 2 ** (levels - 1)
    assert H.shape == (2**levels - 1, n)
    np.testing.assert_array_equal(H.sum(axis=0), np.full(n, levels))  # one node per level
    # every node's leaves are the union of its two children's leaves
    for k in range(2 ** (levels - 1) - 1):
        np.testing.assert_array_equal(H[k], H[2 * k + 1] + H[2 * k + 2])
