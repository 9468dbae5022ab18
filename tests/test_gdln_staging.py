"""gdln.staging: the staged twin's linear phase, its switch at the cell-mean plateau, and the
cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

import gdln
from gdln.context_task import context_task
from gdln.staging import linear_phase_gates, staged_schedule


def context_twin(sets: list[int], seed: int = 0, scale: float = 0.05) -> tuple[gdln.ReLN, object]:
    """A one-hidden-layer twin whose unit u is on exactly in the contexts of the bitmask
    sets[u] (pre-activation 0.5 +- 1 per context), with small random output weights."""
    C = 3
    task = context_task(C)
    rng = np.random.default_rng(seed)
    W1 = np.zeros((len(sets), 8 + C))
    W1[:, :8] = 0.5
    W1[:, 8:] = np.where(np.array(sets)[:, None] >> np.arange(C) & 1, 1.0, -1.0)
    W2 = scale * rng.standard_normal((task.Y.shape[1], len(sets)))
    D = [(task.X @ W1.T > 0).astype(float)]
    start = [scale * W1, W2]
    return gdln.ReLN.from_gates([W1, W2], D, task.context, X=task.X, initial=start), task


def test_all_context_groups_make_the_staged_twin_the_fixed_one() -> None:
    """When every group is active in every context the linear-phase gates are the final
    gates, so the staged flow is the fixed-gate flow, whatever the switch time."""
    twin, task = context_twin([0b111] * 5)
    gates = linear_phase_gates(twin)
    for v in twin.gates:
        np.testing.assert_array_equal(gates[v], twin.gates[v])
    times = np.linspace(0.0, 60.0, 31)
    flow = {"solver": "RK45", "rtol": 1e-10, "atol": 1e-12}
    staged = staged_schedule(twin, task.X, task.Y, task.context, times[-1], 301, **flow)
    fixed = gdln.integrate(twin.network, task.X, task.Y, twin.initial, times, twin.gates, **flow)
    run = gdln.integrate(
        twin.network, task.X, task.Y, twin.initial, times, schedule=staged.schedule, **flow
    )
    np.testing.assert_allclose(run.loss, fixed.loss, rtol=1e-8)


def test_the_switch_is_where_the_linear_phase_reaches_the_plateau() -> None:
    """Units on in all contexts and units on in two: the linear phase uses only the first,
    the switch is the crossing of its own loss with L_cm, and from there the pair groups
    learn too."""
    twin, task = context_twin([0b111, 0b111, 0b111, 0b011, 0b110, 0b101], seed=1)
    gates = linear_phase_gates(twin)
    on = {v for v, g in gates.items() if g.all()}
    assert {twin.node_labels[v] for v in on} == {"{1,2,3}"}
    flow = {"solver": "RK45", "rtol": 1e-10, "atol": 1e-12}
    staged = staged_schedule(twin, task.X, task.Y, task.context, 200.0, 2001, **flow)
    assert np.isfinite(staged.switch_time) and 0 < staged.switch_time < 200.0
    at = gdln.integrate(
        twin.network, task.X, task.Y, twin.initial, [0.0, staged.switch_time], gates, **flow
    )
    assert at.loss[1] == pytest.approx(staged.plateau, rel=1e-3)
    assert staged.schedule.switch_times == (staged.switch_time,)
    after = gdln.integrate(
        twin.network, task.X, task.Y, twin.initial, [0.0, 200.0], schedule=staged.schedule,
        **flow,
    )  # fmt: skip
    linear_only = gdln.integrate(twin.network, task.X, task.Y, twin.initial, [0.0, 200.0], gates)
    assert after.loss[-1] < 0.8 * linear_only.loss[-1]  # the context groups learn after it


def test_no_linear_phase_is_an_error() -> None:
    twin, _ = context_twin([0b011, 0b110, 0b101])
    with pytest.raises(ValueError, match="no group of the twin is active in every cell"):
        linear_phase_gates(twin)
    frozen = gdln.ReLN.from_gates([np.ones((3, 11)), np.ones((60, 3))], [np.ones((24, 3))])
    with pytest.raises(ValueError, match="grouped twin"):
        linear_phase_gates(frozen)
