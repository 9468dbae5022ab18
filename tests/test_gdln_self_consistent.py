"""gdln.self_consistent: node gates that follow the twin's own group pre-activations."""

from __future__ import annotations

import numpy as np
import pytest

import gdln
from gdln.context_task import context_task
from gdln.self_consistent import (
    cell_gates,
    layer_partitions,
    self_consistent_descent,
    self_consistent_flow,
)

FLOW = {"solver": "RK45", "rtol": 1e-10, "atol": 1e-12}


def context_twin(sets: list[int], sign: float = 1.0, scale: float = 0.05) -> tuple:
    """A one-hidden-layer twin of 3 contexts whose unit u is on exactly in the contexts of the
    bitmask sets[u] (pre-activation 0.5 + 2 in them, 0.5 - 2 elsewhere), started from
    sign * scale * W_1 and small random output weights."""
    task, W1, W2 = context_weights(sets, scale)
    D = [(task.X @ W1.T > 0).astype(float)]
    twin = gdln.ReLN.from_gates(
        [W1, W2], D, task.context, X=task.X, initial=[sign * scale * W1, W2]
    )
    return twin, task


def context_weights(sets: list[int], scale: float) -> tuple:
    """The task of 3 contexts, input weights whose unit u has pre-activation 0.5 + 2 in the
    contexts of the bitmask sets[u] and 0.5 - 2 elsewhere, and small random output weights."""
    task = context_task(3)
    W1 = np.zeros((len(sets), 11))
    W1[:, :8] = 0.5
    W1[:, 8:] = np.where(np.array(sets)[:, None] >> np.arange(3) & 1, 2.0, -2.0)
    W2 = scale * np.random.default_rng(0).standard_normal((task.Y.shape[1], len(sets)))
    return task, W1, W2


def test_sign_gates_of_a_hand_built_twin() -> None:
    """Summed pre-activation of a group on context c: +2.5 per unit and sample where c is in
    its set, -1.5 elsewhere; so the sign gates are the final gates, and with the input weights
    negated they are their complement."""
    sets = [0b111, 0b011, 0b011, 0b100]
    twin, task = context_twin(sets)
    gates = cell_gates(twin, twin.initial, task.X, task.context)
    for v in twin.gates:
        np.testing.assert_array_equal(gates[v], twin.gates[v])
    flipped, _ = context_twin(sets, sign=-1.0)
    gates = cell_gates(flipped, flipped.initial, task.X, task.context)
    for v in flipped.gates:
        np.testing.assert_array_equal(gates[v], 1.0 - flipped.gates[v])


def test_until_the_first_switch_the_flow_is_the_fixed_gate_flow() -> None:
    """Started where the sign gates are the final gates, the self-consistent flow, integrated
    check by check, is the fixed-gate flow of the final gates up to the first check at which a
    group's summed pre-activation has changed sign (the linear twin does not keep its signs:
    here the {1,3} group turns off in context 3), and differs from it after."""
    twin, task = context_twin([0b111, 0b111, 0b011, 0b110, 0b101], scale=0.3)
    times = np.linspace(0.0, 20.0, 41)
    run = self_consistent_flow(twin, task.X, task.Y, task.context, times, **FLOW)
    fixed = gdln.integrate(twin.network, task.X, task.Y, twin.initial, times, twin.gates, **FLOW)
    first = int(np.flatnonzero(run.n_switches)[0])
    assert first >= 3
    np.testing.assert_allclose(run.loss[:first], fixed.loss[:first], rtol=1e-7)
    assert fixed.loss[first - 1] < 0.9 * fixed.loss[0]  # learning before the first switch
    assert np.max(np.abs(run.loss[first:] / fixed.loss[first:] - 1)) > 1e-4
    for v, history in run.gates.items():
        np.testing.assert_array_equal(
            history[:first], np.tile(twin.gates[v][[0, 8, 16]], (first, 1))
        )


def test_switches_change_the_flow_and_are_counted() -> None:
    """Started from the complement of the final gates, the all-context group is off everywhere
    and cannot learn; the pair groups learn in the one context they are on in. Gates move, the
    count of changes is the number of changed (node, context) entries, and the flow is not the
    one with the initial gates frozen."""
    twin, task = context_twin([0b111, 0b111, 0b011, 0b110, 0b101], sign=-1.0, scale=0.3)
    times = np.linspace(0.0, 40.0, 81)
    run = self_consistent_flow(twin, task.X, task.Y, task.context, times, **FLOW)
    changes = sum(np.abs(np.diff(h, axis=0)).sum(axis=1) for h in run.gates.values())
    np.testing.assert_array_equal(run.n_switches[1:], changes)
    start = cell_gates(twin, twin.initial, task.X, task.context)
    frozen = gdln.integrate(twin.network, task.X, task.Y, twin.initial, times, start, **FLOW)
    np.testing.assert_allclose(run.loss[0], frozen.loss[0], rtol=1e-12)
    if run.n_switches.sum():
        assert np.max(np.abs(run.loss - frozen.loss)) > 1e-6 * frozen.loss[0]
    else:
        np.testing.assert_allclose(run.loss, frozen.loss, rtol=1e-7)


def unit_twin(sets: list[int], sign: float = 1.0, scale: float = 0.3) -> tuple:
    """The per-unit twin (one node, a gate per unit, in the order of ``sets``) started from
    sign * scale * W_1 of :func:`context_weights`."""
    task, W1, W2 = context_weights(sets, scale)
    W1 = sign * scale * W1
    D = [(task.X @ W1.T > 0).astype(float)]
    return gdln.ReLN.from_gates([W1, W2], D), task


def test_per_unit_sign_gates_are_each_units_own() -> None:
    """Per-unit twin: unit u's summed pre-activation on context c is 8 (0.5 * 0.3 +- 2 * 0.3)
    per sample, positive exactly in the contexts of its set; so each unit's gate is 1 in the
    contexts of its own set, and negating the input weights gives the complement."""
    sets = [0b111, 0b011, 0b110, 0b100]
    units, task = unit_twin(sets)
    (v,) = units.gates
    gates = cell_gates(units, units.initial, task.X, task.context)[v]
    assert gates.shape == (24, len(sets))
    expected = (np.array(sets)[None, :] >> task.context[:, None] & 1).astype(float)
    np.testing.assert_array_equal(gates, expected)
    flipped, _ = unit_twin(sets, sign=-1.0)
    np.testing.assert_array_equal(
        cell_gates(flipped, flipped.initial, task.X, task.context)[v], 1.0 - expected
    )


def test_per_unit_flow_without_switches_is_the_fixed_gate_flow() -> None:
    """Units whose per-context signs never change (pre-activations 0.3 * (0.5 +- 2) per
    sample) keep them over a short run keep their gates, so the per-unit self-consistent
    flow is exactly the flow with those gates frozen; the count of switches is zero and the
    gate history has one (cell, unit) entry per time."""
    units, task = unit_twin([0b111, 0b011, 0b110, 0b101])
    times = np.linspace(0.0, 0.5, 11)
    run = self_consistent_flow(units, task.X, task.Y, task.context, times, **FLOW)
    start = cell_gates(units, units.initial, task.X, task.context)
    fixed = gdln.integrate(units.network, task.X, task.Y, units.initial, times, start, **FLOW)
    assert run.n_switches.sum() == 0
    (history,) = run.gates.values()
    assert history.shape == (11, 3, 4)
    np.testing.assert_allclose(run.loss, fixed.loss, rtol=1e-9)
    assert fixed.loss[-1] < 0.99 * fixed.loss[0]  # it learns


def test_per_unit_switches_change_the_flow_and_are_counted() -> None:
    """Started from the complement of the context sets, units learn in the contexts they are
    on in; every (unit, context) change is counted, and the flow differs from the frozen one."""
    units, task = unit_twin([0b111, 0b011, 0b110, 0b101], sign=-1.0)
    times = np.linspace(0.0, 40.0, 81)
    run = self_consistent_flow(units, task.X, task.Y, task.context, times, **FLOW)
    (history,) = run.gates.values()
    np.testing.assert_array_equal(
        run.n_switches[1:], np.abs(np.diff(history, axis=0)).sum(axis=(1, 2))
    )
    start = cell_gates(units, units.initial, task.X, task.context)
    frozen = gdln.integrate(units.network, task.X, task.Y, units.initial, times, start, **FLOW)
    assert run.n_switches.sum() > 0
    assert np.max(np.abs(run.loss - frozen.loss)) > 1e-6 * frozen.loss[0]


def test_needs_times_from_zero() -> None:
    twin, task = context_twin([0b111, 0b011])
    with pytest.raises(ValueError, match="increasing from 0"):
        self_consistent_flow(twin, task.X, task.Y, task.context, [1.0, 2.0])


def relu_descent(
    W1: np.ndarray, W2: np.ndarray, X: np.ndarray, Y: np.ndarray, eta: float, n_steps: int
) -> np.ndarray:
    """Losses of plain gradient descent on the one-hidden-layer ReLU net W2 relu(W1 x), the
    mean over samples of ||y_hat - y||^2 / 2, written out by hand."""
    losses = []
    for k in range(n_steps + 1):
        a = X @ W1.T
        h = np.maximum(a, 0.0)
        err = h @ W2.T - Y
        losses.append(0.5 * np.sum(err**2) / len(X))
        if k == n_steps:
            break
        delta = (err @ W2) * (a > 0)
        W2, W1 = W2 - eta * err.T @ h / len(X), W1 - eta * delta.T @ X / len(X)
    return np.array(losses)


def test_per_unit_descent_with_one_cell_per_sample_is_the_relu_net() -> None:
    """With every sample its own cell, a unit's summed pre-activation on a cell is its
    pre-activation on that sample, so the per-unit twin's gates are the ReLU gates and its
    gradient descent, gates re-read before every step, is the ReLU net's, step for step."""
    task = context_task(3)
    rng = np.random.default_rng(1)
    W1, W2 = 0.3 * rng.standard_normal((12, 11)), 0.3 * rng.standard_normal((60, 12))
    units = gdln.ReLN.from_gates([W1, W2], [(task.X @ W1.T > 0).astype(float)])
    eta, n = 0.5, 200
    run = self_consistent_descent(units, task.X, task.Y, np.arange(24), eta * np.arange(n + 1), eta)
    relu = relu_descent(W1, W2, task.X, task.Y, eta, n)
    assert run.n_switches.sum() > 0  # the ReLU gates move
    assert relu[-1] < 0.5 * relu[0]
    np.testing.assert_allclose(run.loss, relu, rtol=1e-10)
    # with context cells the gates are coarser, and the run is another one
    coarse = self_consistent_descent(units, task.X, task.Y, task.context, run.time, eta)
    assert np.max(np.abs(coarse.loss / relu - 1)) > 1e-3


def test_per_unit_descent_counts_every_switch_between_records() -> None:
    """Recorded at every step, the count of switches is the change of the gate history; recorded
    every 10 steps it is the sum of the per-step counts, which is at least the change between
    the records."""
    units, task = unit_twin([0b111, 0b011, 0b110, 0b101], sign=-1.0)
    eta = 0.5
    every = self_consistent_descent(units, task.X, task.Y, task.context, eta * np.arange(81), eta)
    (history,) = every.gates.values()
    assert every.n_switches.sum() > 0
    np.testing.assert_array_equal(
        every.n_switches[1:], np.abs(np.diff(history, axis=0)).sum(axis=(1, 2))
    )
    sparse = self_consistent_descent(
        units, task.X, task.Y, task.context, eta * np.arange(0, 81, 10), eta
    )
    np.testing.assert_allclose(sparse.loss, every.loss[::10], rtol=1e-12)
    np.testing.assert_array_equal(
        sparse.n_switches[1:], every.n_switches[1:].reshape(8, 10).sum(axis=1)
    )
    (coarse,) = sparse.gates.values()
    assert np.all(sparse.n_switches[1:] >= np.abs(np.diff(coarse, axis=0)).sum(axis=(1, 2)))


def test_descent_needs_record_times_on_the_steps() -> None:
    units, task = unit_twin([0b111, 0b011])
    with pytest.raises(ValueError, match="multiples of the step"):
        self_consistent_descent(units, task.X, task.Y, task.context, [0.0, 0.25, 0.6], 0.5)


def two_layer_units(seed: int = 2) -> tuple:
    """A per-unit twin with two hidden layers (11 -> 10 -> 8 -> 60) on the task of 3 contexts,
    random weights large enough that its gates switch within a few hundred steps."""
    task = context_task(3)
    rng = np.random.default_rng(seed)
    W = [0.4 * rng.standard_normal(shape) for shape in ((10, 11), (8, 10), (60, 8))]
    a1 = task.X @ W[0].T
    D = [(a1 > 0).astype(float), (np.maximum(a1, 0) @ W[1].T > 0).astype(float)]
    return gdln.ReLN.from_gates(W, D), task


def test_cells_per_layer() -> None:
    """One partition per hidden layer: each layer is gated on its own cells. The same
    partition given for every layer is the single partition, run for run; per-sample cells in
    layer 1 and contexts in layer 2 give per-sample gates in layer 1 and gates constant on each
    context in layer 2 (each unit's sign summed there), and a run that is neither uniform one."""
    units, task = two_layer_units()
    eta, times = 0.2, 0.2 * np.arange(301)
    samples = np.arange(24)
    single = self_consistent_descent(units, task.X, task.Y, task.context, times, eta)
    listed = self_consistent_descent(
        units, task.X, task.Y, [task.context, task.context], times, eta
    )
    np.testing.assert_array_equal(listed.loss, single.loss)
    np.testing.assert_array_equal(listed.n_switches, single.n_switches)
    mixed_cells = [samples, task.context]
    gates = cell_gates(units, units.initial, task.X, mixed_cells)
    v1, v2 = (nodes[0] for nodes in units.layer_nodes)
    a1 = task.X @ units.initial[units.network.incoming(v1)[0].name].T
    np.testing.assert_array_equal(gates[v1], (a1 > 0).astype(float))
    a2 = (gates[v1] * a1) @ units.initial[units.network.incoming(v2)[0].name].T
    summed = np.stack([a2[task.context == c].sum(axis=0) for c in range(3)])
    np.testing.assert_array_equal(gates[v2], (summed[task.context] > 0).astype(float))
    mixed = self_consistent_descent(units, task.X, task.Y, mixed_cells, times, eta)
    fine = self_consistent_descent(units, task.X, task.Y, samples, times, eta)
    assert mixed.n_switches.sum() > 0
    assert mixed.gates[v1].shape == (301, 24, 10) and mixed.gates[v2].shape == (301, 3, 8)
    for other in (single, fine):
        assert np.max(np.abs(mixed.loss / other.loss - 1)) > 1e-3


def test_cells_per_layer_are_checked() -> None:
    units, task = two_layer_units()
    with pytest.raises(ValueError, match="one partition per hidden layer: the twin has 2, got 3"):
        layer_partitions(units, [task.context] * 3, 24)
    with pytest.raises(ValueError, match="partition must be integer cell labels"):
        layer_partitions(units, [task.context, task.context[:20]], 24)
    assert len(layer_partitions(units, task.context, 24)) == 2


def test_expected_gates_are_the_fraction_of_positive_samples() -> None:
    """Expected gates: a unit's gate on a cell is the fraction of its samples where its
    pre-activation is positive. Where a context's samples agree in sign they are the sign gates;
    a unit at +1 on objects 0-3 and -3 on objects 4-7 has a negative sum on every context (sign
    gate 0) but is on for half of each context's samples (expected gate 0.5), and on the halves
    of split_cells it is on for the first half and off for the second under both rules."""
    units, task = unit_twin([0b111, 0b011, 0b110, 0b100])
    (v,) = units.gates
    np.testing.assert_array_equal(
        cell_gates(units, units.initial, task.X, task.context, expected=True)[v],
        cell_gates(units, units.initial, task.X, task.context)[v],
    )
    W1 = np.zeros((1, 11))
    W1[0, :4], W1[0, 4:8] = 1.0, -3.0
    W2 = 0.1 * np.ones((task.Y.shape[1], 1))
    mixed = gdln.ReLN.from_gates([W1, W2], [(task.X @ W1.T > 0).astype(float)])
    (v,) = mixed.gates
    np.testing.assert_array_equal(cell_gates(mixed, mixed.initial, task.X, task.context)[v], 0.0)
    np.testing.assert_array_equal(
        cell_gates(mixed, mixed.initial, task.X, task.context, expected=True)[v], 0.5
    )
    halves = gdln.partitions.split_cells(task.Y, task.context)
    on_first_half = (task.obj < 4).astype(float)[:, None]
    for expected in (False, True):
        gates = cell_gates(mixed, mixed.initial, task.X, halves, expected=expected)[v]
        np.testing.assert_array_equal(gates, on_first_half)


def test_expected_gates_on_single_samples_are_the_relu_gates() -> None:
    """With one cell per sample the expected gate of a cell is its sample's ReLU gate, so the
    two rules give the same run, step for step (a short descent whose gates switch); on the
    contexts they give different runs."""
    units, task = unit_twin([0b111, 0b011, 0b110, 0b101], sign=-1.0)
    times = np.arange(0, 301, 20) * 0.05
    samples = np.arange(task.n_samples)
    runs = {
        (cells, expected): self_consistent_descent(
            units, task.X, task.Y, partition, times, 0.05, expected=expected
        )
        for cells, partition in (("samples", samples), ("contexts", task.context))
        for expected in (False, True)
    }
    assert runs["samples", False].n_switches.sum() > 0
    np.testing.assert_array_equal(runs["samples", True].loss, runs["samples", False].loss)
    np.testing.assert_array_equal(
        runs["samples", True].n_switches, runs["samples", False].n_switches
    )
    contexts = runs["contexts", True].loss / runs["contexts", False].loss
    assert np.max(np.abs(contexts - 1)) > 1e-6
