"""Gates that change over time (gdln.GateSchedule, or a gate rule read from the weights) in
integrate and gradient_descent, the record callback, and the flow's refusal of non-finite data."""

from __future__ import annotations

import numpy as np
import pytest

import gdln
from gdln.context_task import context_task


def two_pathways(seed: int = 0):
    """x -> a -> y and x -> b -> y on the two-context task, small random weights."""
    task = context_task(2)
    net = gdln.Network(
        {"x": 10, "a": 4, "b": 4, "y": 45},
        {"ia": ("x", "a"), "oa": ("a", "y"), "ib": ("x", "b"), "ob": ("b", "y")},
    )
    rng = np.random.default_rng(seed)
    W0 = {e: 0.1 * rng.standard_normal(net.weight_shape(e)) for e in net.edges}
    return net, task.X, task.Y, W0


ON = {"a": np.ones(16), "b": np.ones(16)}
B_OFF = {"a": np.ones(16), "b": np.zeros(16)}
FIRST = {"a": np.ones(16), "b": (np.arange(16) < 8).astype(float)}


def b_off_below(net, X, Y, threshold: float, calls: list[float]):
    """A gate rule that turns pathway b off while the loss of the weights it is given (both
    pathways on) is below ``threshold``; it appends every time it is called at to ``calls``."""

    def rule(t: float, W: dict) -> dict:
        calls.append(t)
        loss = gdln.integrate(net, X, Y, W, [0.0], ON).loss[0]
        return B_OFF if loss < threshold else ON

    return rule


def test_schedule_reproduces_a_hand_made_switching_sequence() -> None:
    """Gates ON on [0, 2), B_OFF on [2, 5), FIRST from 5: the same as three integrations
    chained by hand, and every record sees the gates in force at its time."""
    net, X, Y, W0 = two_pathways()
    times = np.array([0.0, 1.0, 2.0, 3.5, 5.0, 6.0, 8.0])
    schedule = gdln.GateSchedule([2.0, 5.0], [ON, B_OFF, FIRST])
    tol = {"rtol": 1e-11, "atol": 1e-13}
    traj = gdln.integrate(net, X, Y, W0, times, schedule=schedule, **tol)
    assert traj.attrs["gate_switches"] == 2
    one = gdln.integrate(net, X, Y, W0, [0.0, 1.0, 2.0], ON, **tol)
    two = gdln.integrate(net, X, Y, one.weights_at(2), [0.0, 1.5, 3.0], B_OFF, **tol)
    three = gdln.integrate(net, X, Y, two.weights_at(2), [0.0, 1.0, 3.0], FIRST, **tol)
    by_hand = [one.weights_at(0), one.weights_at(1), one.weights_at(2), two.weights_at(1)]
    by_hand += [two.weights_at(2), three.weights_at(1), three.weights_at(2)]
    for k, W in enumerate(by_hand):
        for e in net.edges:
            np.testing.assert_allclose(traj.weights[e][k], W[e], rtol=1e-8, atol=1e-12)
    # the record at t = 2 (a switch) uses the new gates: pathway b is off there
    loss_at_2 = gdln.integrate(net, X, Y, one.weights_at(2), [0.0], B_OFF).loss[0]
    assert traj.loss[2] == pytest.approx(loss_at_2, rel=1e-12)
    assert traj.loss[2] != pytest.approx(one.loss[2], rel=1e-3)
    # the weights of pathway b do not move while it is off
    np.testing.assert_allclose(traj.weights["ib"][3], traj.weights["ib"][2], rtol=1e-9)


@pytest.mark.parametrize("solver", ["RK45", "RKC"])
def test_a_gate_rule_is_a_schedule_found_by_the_run(solver: str) -> None:
    """A rule that turns pathway b off once the loss of its own weights falls below 90% of
    the start is the schedule whose one switch sits at the first record where that holds; the
    rule is called once per record after the first, and a rule that never changes the gates
    gives the fixed-gate flow itself."""
    net, X, Y, W0 = two_pathways(2)
    times = np.linspace(0.0, 8.0, 17)
    tol = {"solver": solver, "rtol": 1e-10 if solver == "RK45" else 1e-6, "atol": 1e-12}
    fixed = gdln.integrate(net, X, Y, W0, times, ON, **tol)
    threshold, calls = 0.9 * fixed.loss[0], []
    rule = b_off_below(net, X, Y, threshold, calls)

    ruled = gdln.integrate(net, X, Y, W0, times, ON, gate_rule=rule, **tol)
    np.testing.assert_array_equal(calls, times[1:])
    k = int(np.argmax(fixed.loss < threshold))
    assert 2 <= k < len(times) - 2  # the switch falls inside the run
    assert ruled.attrs["gate_switches"] == 1
    schedule = gdln.GateSchedule([times[k]], [ON, B_OFF])
    scheduled = gdln.integrate(net, X, Y, W0, times, schedule=schedule, **tol)
    rel = 1e-8 if solver == "RK45" else 1e-4
    np.testing.assert_allclose(ruled.loss, scheduled.loss, rtol=rel)
    np.testing.assert_allclose(ruled.loss[:k], fixed.loss[:k], rtol=1e-12)
    assert abs(ruled.loss[-1] / fixed.loss[-1] - 1) > 1e-3  # b stopped learning
    never = gdln.integrate(net, X, Y, W0, times, ON, gate_rule=lambda t, W: ON, **tol)
    np.testing.assert_array_equal(never.loss, fixed.loss)
    assert never.attrs["gate_switches"] == 0
    with pytest.raises(ValueError, match="not on the names"):
        gdln.integrate(net, X, Y, W0, times, ON, gate_rule=lambda t, W: {"a": ON["a"]}, **tol)
    with pytest.raises(ValueError, match="or a gate rule, not both"):
        gdln.integrate(net, X, Y, W0, times, schedule=schedule, gate_rule=lambda t, W: ON, **tol)


def test_schedule_in_gradient_descent_switches_at_the_step_in_force() -> None:
    net, X, Y, W0 = two_pathways(1)
    eta = 0.1
    schedule = gdln.GateSchedule([0.95, 2.0], [ON, B_OFF, FIRST])  # steps 0-9, 10-19, 20-
    traj = gdln.gradient_descent(net, X, Y, W0, eta, 30, schedule=schedule, record_every=10)
    a = gdln.gradient_descent(net, X, Y, W0, eta, 10, ON, record_every=10)
    b = gdln.gradient_descent(net, X, Y, a.weights_at(1), eta, 10, B_OFF, record_every=10)
    c = gdln.gradient_descent(net, X, Y, b.weights_at(1), eta, 10, FIRST, record_every=10)
    for k, W in enumerate([W0, a.weights_at(1), b.weights_at(1), c.weights_at(1)]):
        for e in net.edges:
            np.testing.assert_allclose(traj.weights[e][k], W[e], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(traj.time, [0.0, 1.0, 2.0, 3.0])


def test_a_gate_rule_in_gradient_descent_is_read_before_every_step() -> None:
    """Gradient descent with a rule that turns pathway b off once the loss falls below 90% of
    the start: the rule is called before every step from the first, the switch takes effect
    at the step where the loss of the weights reached first falls below, and the run equals the
    schedule with that switch; a rule that never changes the gates is the fixed-gate run."""
    net, X, Y, W0 = two_pathways(2)
    eta, n = 0.05, 160
    fixed = gdln.gradient_descent(net, X, Y, W0, eta, n, ON)
    threshold, calls = 0.9 * fixed.loss[0], []
    rule = b_off_below(net, X, Y, threshold, calls)

    ruled = gdln.gradient_descent(net, X, Y, W0, eta, n, ON, gate_rule=rule)
    np.testing.assert_allclose(calls, eta * np.arange(1, n + 1))
    k = int(np.argmax(fixed.loss < threshold))
    assert 5 <= k < n - 5
    assert ruled.attrs["gate_switches"] == 1
    schedule = gdln.GateSchedule([(k - 0.5) * eta], [ON, B_OFF])
    scheduled = gdln.gradient_descent(net, X, Y, W0, eta, n, schedule=schedule)
    np.testing.assert_allclose(ruled.loss, scheduled.loss, rtol=1e-12)
    np.testing.assert_array_equal(ruled.loss[:k], fixed.loss[:k])
    assert abs(ruled.loss[-1] / fixed.loss[-1] - 1) > 1e-3
    never = gdln.gradient_descent(net, X, Y, W0, eta, n, ON, gate_rule=lambda t, W: ON)
    np.testing.assert_array_equal(never.loss, fixed.loss)
    assert never.attrs["gate_switches"] == 0
    with pytest.raises(ValueError, match="or a gate rule, not both"):
        gdln.gradient_descent(net, X, Y, W0, eta, n, schedule=schedule, gate_rule=lambda t, W: ON)


@pytest.mark.parametrize("solver", ["RK45", "RKC"])
def test_callback_sees_every_record_and_weights_can_be_dropped(solver: str) -> None:
    net, X, Y, W0 = two_pathways(2)
    times = np.linspace(0.0, 4.0, 9)
    seen: list[tuple[int, float, dict]] = []
    tight = gdln.integrate(net, X, Y, W0, times, ON, rtol=1e-11, atol=1e-13)
    full = gdln.integrate(net, X, Y, W0, times, ON, solver=solver, rtol=1e-7, atol=1e-12)
    for e in net.edges:  # every record holds the state at its own time
        np.testing.assert_allclose(full.weights[e], tight.weights[e], rtol=1e-4, atol=1e-6)
    light = gdln.integrate(
        net, X, Y, W0, times, ON, solver=solver, rtol=1e-7, atol=1e-12,
        callback=lambda k, t, W: seen.append((k, t, W)), with_weights=False,
    )  # fmt: skip
    assert light.weights is None
    np.testing.assert_array_equal(light.loss, full.loss)
    assert [k for k, _, _ in seen] == list(range(len(times)))
    np.testing.assert_array_equal([t for _, t, _ in seen], times)
    for k, _, W in seen:
        for e in net.edges:
            np.testing.assert_array_equal(W[e], full.weights[e][k])
    gd_seen: list[int] = []
    gdln.gradient_descent(
        net, X, Y, W0, 0.1, 20, ON, record_every=5, callback=lambda k, t, W: gd_seen.append(k)
    )
    assert gd_seen == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("solver", ["RK45", "RKC"])
def test_dense_layers_and_rkc_agree_with_the_edge_by_edge_flow(solver: str) -> None:
    """A complete layered network runs as dense layers; an edge gate forces the edge-by-edge
    form. Both are the same flow; RKC (second order) agrees at its tolerance."""
    net, X, Y, W0 = two_pathways(3)
    assert net.layers == (("x",), ("a", "b"), ("y",))
    times = np.linspace(0.0, 5.0, 6)
    dense = gdln.integrate(net, X, Y, W0, times, FIRST, solver=solver, rtol=1e-9, atol=1e-12)
    edge_gated = {**FIRST, "oa": np.ones(16)}  # the same gating, given as an edge gate
    edges = gdln.integrate(net, X, Y, W0, times, edge_gated, rtol=1e-11, atol=1e-13)
    tol = 1e-6 if solver == "RKC" else 1e-7
    np.testing.assert_allclose(dense.loss, edges.loss, rtol=tol)


def test_bad_schedules_and_non_finite_data_are_refused_at_once() -> None:
    net, X, Y, W0 = two_pathways()
    with pytest.raises(ValueError, match="needs 2 sets of gates"):
        gdln.GateSchedule([1.0], [ON])
    with pytest.raises(ValueError, match="increase strictly"):
        gdln.GateSchedule([2.0, 1.0], [ON, ON, ON])
    with pytest.raises(ValueError, match="> 0"):
        gdln.GateSchedule([0.0], [ON, ON])
    with pytest.raises(ValueError, match="not both"):
        gdln.integrate(net, X, Y, W0, [1.0], ON, schedule=gdln.GateSchedule.constant(ON))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        gdln.integrate(net, bad, Y, W0, [0.0, 1.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        gdln.gradient_descent(net, X, np.where(Y > 0, np.inf, Y), W0, 0.1, 3)
    with pytest.raises(ValueError, match="unknown solver"):
        gdln.integrate(net, X, Y, W0, [1.0], solver="Euler")
