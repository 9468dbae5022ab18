"""Integrating an autonomous flow d theta/dt = F(theta) and handing over its states at record times.

Every exact flow of the package (``gdln.integrate``, ``gdln.pathway_flow``) is solved here. The
states at the record times go to a callback as soon as the solver has passed them (from the
step's dense output), so nothing but the current step is held: a long flow of a wide network
with many records needs no more memory than one step.

Solvers: the adaptive explicit and implicit methods of ``scipy.integrate`` by name ("RK45",
"RK23", "DOP853", "Radau", "BDF", "LSODA"), stepped one step at a time, or "RKC", the
stabilised Runge-Kutta-Chebyshev method of :mod:`gdln.rkc` for stiff late flows. A state that
turns NaN or inf raises :class:`DivergenceError` at once, and so does a flow that needs more
than ``max_evaluations`` evaluations, so that no input can leave a solver shrinking its step
for ever.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, Radau

from gdln.network import Array
from gdln.rkc import rkc

SCIPY_SOLVERS = {
    "RK45": RK45,
    "RK23": RK23,
    "DOP853": DOP853,
    "Radau": Radau,
    "BDF": BDF,
    "LSODA": LSODA,
}
SOLVERS = (*SCIPY_SOLVERS, "RKC")
#: default cap on the evaluations of one flow: a flow that needs more has stalled
MAX_EVALUATIONS = 2_000_000


class DivergenceError(FloatingPointError):
    """Training produced NaN or inf (step too large, or an unstable flow)."""


def check_solver(solver: str) -> None:
    """ValueError unless ``solver`` is one of :data:`SOLVERS`."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; use one of {list(SOLVERS)}")


def solve_flow(
    rhs: Callable[[Array], Array],
    theta0: Array,
    times: Array,
    record: Callable[[int, Array], None],
    solver: str = "RK45",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_evaluations: int = MAX_EVALUATIONS,
) -> int:
    """Integrate d theta/dt = rhs(theta) from theta0 at t = 0 and call ``record(k, theta)`` with
    the state at ``times[k]`` (increasing, >= 0) in order; theta may be a solver buffer that is
    overwritten later, so ``record`` copies what it keeps. Returns the number of evaluations of
    ``rhs``. Raises DivergenceError on a failed step, a non-finite state, or a flow that stalls
    (more than ``max_evaluations`` evaluations of ``rhs``; the error gives the time reached)."""
    check_solver(solver)
    nfev = 0
    reached = [0.0]

    def counted(theta: Array) -> Array:
        nonlocal nfev
        nfev += 1
        if nfev > max_evaluations:
            raise DivergenceError(
                f"the flow stalled: {max_evaluations} evaluations reached only t = "
                f"{reached[0]:.6g} of {times[-1]:.6g} (a stiff or unstable flow; try "
                "solver='RKC', a looser tolerance, or a shorter horizon)"
            )
        return rhs(theta)

    def checked(k: int, theta: Array, finite: bool = False) -> None:
        """Record theta at times[k]; ``finite``: already known to be finite."""
        if not finite and not np.all(np.isfinite(theta)):
            raise DivergenceError(f"the gradient flow produced NaN or inf by t = {times[k]:.6g}")
        reached[0] = float(times[k])
        record(k, theta)

    if not np.all(np.isfinite(theta0)):
        raise DivergenceError("the initial state holds NaN or inf")
    k = 0
    while k < len(times) and times[k] == 0.0:
        checked(k, theta0)
        k += 1
    if k == len(times):
        return 0
    first = k  # the records at t = 0 are done
    if solver == "RKC":
        try:
            return rkc(
                counted,
                times[-1],
                theta0,
                times[first:],
                rtol,
                atol,
                # rkc's error norm is finite only if the states and slopes its records
                # interpolate are: they need no second check
                record=lambda i, theta: checked(first + i, theta, finite=True),
            ).nfev
        except FloatingPointError as err:
            if isinstance(err, DivergenceError):
                raise
            raise DivergenceError(f"RKC failed: {err}") from err
    stepper = SCIPY_SOLVERS[solver](
        lambda _, th: counted(th), 0.0, theta0, times[-1], rtol=rtol, atol=atol
    )
    while k < len(times):
        message = stepper.step()
        reached[0] = float(stepper.t)
        if stepper.status == "failed":
            raise DivergenceError(f"{solver} failed at t = {stepper.t:.6g}: {message}")
        if not np.all(np.isfinite(stepper.y)):
            raise DivergenceError(f"the gradient flow produced NaN or inf at t = {stepper.t:.6g}")
        if k < len(times) and times[k] <= stepper.t:
            dense = stepper.dense_output()
            while k < len(times) and times[k] <= stepper.t:
                checked(k, stepper.y if times[k] == stepper.t else dense(times[k]))
                k += 1
    return nfev
