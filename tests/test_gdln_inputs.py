"""The theory side refuses bad input at once, with one line that names the problem, and no flow
can spin for ever."""

from __future__ import annotations

import time

import numpy as np
import pytest

import gdln
from gdln import alignment_bound as ab
from gdln.ode import DivergenceError, solve_flow
from gdln.tasks import separability, separable_binary


def small_problem():
    rng = np.random.default_rng(0)
    net = gdln.chain([4, 3, 2])
    X, Y = rng.normal(size=(6, 4)), rng.normal(size=(6, 2))
    W0 = {e: 0.1 * rng.normal(size=net.weight_shape(e)) for e in net.edges}
    return net, X, Y, W0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_data_is_refused_before_any_solving(bad: float) -> None:
    net, X, Y, W0 = small_problem()
    Xb = X.copy()
    Xb[2, 1] = bad
    start = time.perf_counter()
    with pytest.raises(ValueError, match="NaN or inf"):
        gdln.integrate(net, Xb, Y, W0, [0.0, 1.0, 2.0])
    assert time.perf_counter() - start < 1.0  # it used to spin in RK45 for minutes
    for call in (
        lambda: gdln.integrate(net, X, np.where(Y > 0, bad, Y), W0, [0.0, 1.0]),
        lambda: gdln.gradient_descent(net, Xb, Y, W0, 0.1, 5),
        lambda: gdln.gated_correlations(net, Xb, Y),
        lambda: gdln.integrate(net, X, Y, {**W0, "W1": W0["W1"] * bad}, [1.0]),
    ):
        with pytest.raises(ValueError, match="NaN or inf"):
            call()
    parallel = gdln.Network({"x": 4, "h": 3, "y": 2}, {"a": ("x", "h"), "b": ("h", "y")})
    with pytest.raises(ValueError, match="NaN or inf"):
        gdln.pathway_flow(parallel, Xb, Y, {"a": W0["W1"], "b": W0["W2"]}, [0.0, 1.0])


def test_non_finite_or_unordered_times_are_refused() -> None:
    net, X, Y, W0 = small_problem()
    with pytest.raises(ValueError, match="finite"):
        gdln.integrate(net, X, Y, W0, [0.0, np.nan, 2.0])  # returned 1 record of 3 before
    with pytest.raises(ValueError, match="finite"):
        gdln.integrate(net, X, Y, W0, [0.0, np.inf])
    with pytest.raises(ValueError, match="tau"):
        gdln.integrate(net, X, Y, W0, [0.0, 1.0], tau=np.nan)


def test_reduce_refuses_non_finite_starts() -> None:
    task_X = np.sqrt(4) * np.eye(4)
    net = gdln.chain([4, 3, 2])
    Y = task_X[:, :2] @ np.diag([2.0, 1.0])
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, task_X, Y))
    with pytest.raises(ValueError, match="NaN or inf"):
        gdln.reduce(net, modes, np.nan, [0.0, 1.0])


def test_a_stalled_flow_raises_with_the_time_reached() -> None:
    """A stiff flow under an explicit method would take millions of steps: the evaluation cap
    stops it with the time it reached."""
    rates = np.array([1e6, 1.0])
    with pytest.raises(DivergenceError, match=r"stalled: 500 evaluations reached only t = "):
        solve_flow(
            lambda y: -rates * y, np.ones(2), np.array([0.0, 10.0]), lambda k, y: None,
            solver="RK45", rtol=1e-8, atol=1e-12, max_evaluations=500,
        )  # fmt: skip


def test_network_sizes_must_be_counts() -> None:
    with pytest.raises(gdln.GraphError, match="True"):
        gdln.Network({"x": True, "y": 2}, {"e": ("x", "y")})


def test_alignment_bound_refuses_impossible_data_and_arguments() -> None:
    task = separable_binary(20, 5, 0.3, seed=0)
    X, y = task.X, task.y
    with pytest.raises(ValueError, match="labels must be -1 or \\+1, got 2"):
        ab.bound_ingredients(X, 2 * y, h=10)  # gave mu = 3.18 > 1 before
    with pytest.raises(ValueError, match="labels must be -1 or \\+1"):
        separability(X, 2 * y)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        ab.bound_ingredients(Xn, y, h=10)  # gave mu = t1 = NaN before
    with pytest.raises(ValueError, match="h must be >= 1"):
        ab.bound_ingredients(X, y, h=0)  # gave log_eps_max = +inf before
    with pytest.raises(ValueError, match="h must be >= 1"):
        ab.log_eps_max(20, 0, 0.3, 1.0, 2.0, 0.1, 0.1)
    with pytest.raises(ValueError, match="zeta, xi >= 0"):
        ab.t1_bound(20, 0.3, 1.0, -0.1, 0.2)  # a negative time before
    assert ab.t1_bound(20, 0.3, 1.0, 0.0, 0.2) == np.inf
    ingredients = ab.bound_ingredients(X, y, h=10, xi_samples=200)
    with pytest.raises(ValueError, match="eps must be positive"):
        ab.eps_condition_holds(0.0, ingredients)  # True before
    with pytest.raises(ValueError, match="finite"):
        ab.norm_extremes(Xn)
    with pytest.raises(ValueError, match="alpha > 0"):
        ab.loss_bound_after_alignment(np.arange(3.0), 0.0, 1.0, np.nan)
    with pytest.raises(ValueError, match="nonzero"):
        ab.zeta_init(np.zeros((3, 5)), np.ones(3), ingredients.x_plus, ingredients.x_minus)
