"""sympy derivations behind the closed forms (Saxe, McClelland, Ganguli 2014).

A balanced chain of D weight matrices learning one mode of strength s with input variance d
follows tau du/dt = D u^(2 - 2/D) (s - d u). With u = (s/d) z^D, separating variables gives

    t(u) = tau (s/d)^(2/D - 1) / s * [F_D(z) - F_D(z0)],    F_D(z) = int dz / (z^(D-1) (1 - z^D)),

for 0 < z0, z < 1. sympy integrates the rational function for any given D; logs of arguments
that are negative on (0, 1) are flipped (a constant shift, which cancels in the difference).
For D = 2 and the ODE tau du/dt = 2u(s - d u), ``two_layer_solution`` solves the ODE with dsolve.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import sympy as sp

z = sp.Symbol("z", positive=True)
t, s, d, tau, u, u0 = sp.symbols("t s d tau u u0", positive=True)


@cache
def antiderivative(D: int) -> sp.Expr:
    """F_D(z) = int dz / (z^(D-1) (1 - z^D)), real on 0 < z < 1."""
    if D < 2:
        raise ValueError(f"depth D must be >= 2, got {D}")
    F = sp.integrate(1 / (z ** (D - 1) * (1 - z**D)), z)
    half = sp.Rational(1, 2)
    return F.replace(
        lambda e: isinstance(e, sp.log) and bool(e.args[0].subs(z, half) < 0),
        lambda e: sp.log(-e.args[0]),
    )


def time_to_reach(D: int) -> sp.Expr:
    """t(u) for tau du/dt = D u^(2-2/D) (s - d u), u(0) = u0 (module docstring)."""
    F = antiderivative(D)
    z_of = lambda value: (d * value / s) ** sp.Rational(1, D)  # noqa: E731
    return tau * (s / d) ** (sp.Rational(2, D) - 1) / s * (F.subs(z, z_of(u)) - F.subs(z, z_of(u0)))


@cache
def antiderivative_function(D: int) -> Callable[[np.ndarray], np.ndarray]:
    """F_D as a vectorised numpy function of z."""
    return sp.lambdify(z, antiderivative(D), modules="numpy")


def two_layer_solution() -> sp.Expr:
    """u(t) solving tau du/dt = 2u(s - d u), u(0) = u0, by sympy's dsolve."""
    f = sp.Function("f")
    ode = sp.Eq(tau * f(t).diff(t), 2 * f(t) * (s - d * f(t)))
    return sp.simplify(sp.dsolve(ode, f(t), ics={f(0): u0}).rhs)
