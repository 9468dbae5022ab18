"""gdln.rkc: the Runge-Kutta-Chebyshev integrator against exact solutions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from gdln.closed_form import mode_strength
from gdln.rkc import rkc


def test_stiff_linear_decay_matches_the_exponential() -> None:
    """dy/dt = -lambda y with rates over four decades (a stiff gradient flow)."""
    lam = np.geomspace(1e-2, 1e2, 30)
    y0 = np.ones_like(lam)
    t = np.linspace(0.0, 50.0, 26)
    result = rkc(lambda y: -lam * y, t[-1], y0, t, rtol=1e-4, atol=1e-10)
    exact = np.exp(-np.outer(lam, t))
    np.testing.assert_allclose(result.y, exact, rtol=1e-2, atol=1e-4)
    # the stiff modes do not force steps of 3 / lambda_max, as they do for RK45
    rk45 = solve_ivp(lambda _, y: -lam * y, (0, t[-1]), y0, t_eval=t, rtol=1e-4, atol=1e-10)
    assert result.nfev < 0.5 * rk45.nfev


def test_deep_linear_mode_matches_its_closed_form() -> None:
    """tau du/dt = 2 u (s - u) from a small start (Saxe et al. 2014), five modes at once."""
    s = np.array([3.0, 2.0, 1.0, 0.5, 0.25])
    u0 = 1e-6
    t = np.linspace(0.0, 30.0, 61)
    result = rkc(lambda u: 2 * u * (s - u), t[-1], np.full(5, u0), t, rtol=1e-6, atol=1e-14)
    exact = np.stack([mode_strength(t, si, u0) for si in s])
    np.testing.assert_allclose(result.y, exact, rtol=1e-3, atol=1e-5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_blow_up_raises() -> None:
    with pytest.raises(FloatingPointError):
        rkc(lambda y: y**2, 2.0, np.ones(1), np.array([0.0, 2.0]), rtol=1e-6, atol=1e-12)


def test_a_flat_flow_is_not_an_error() -> None:
    """A constant F (the Jacobian vanishes, so power iteration finds J v = 0): the exact
    straight line, with the spectral radius re-estimated at every step, not a failure."""
    y0, c = np.linspace(-1.0, 1.0, 7), np.linspace(0.5, 2.0, 7)
    t = np.array([0.0, 1.0, 5.0])
    result = rkc(lambda y: c + 0.0 * y, t[-1], y0, t, rtol=1e-4, atol=1e-10, rho_every=1)
    np.testing.assert_allclose(result.y, y0[:, None] + np.outer(c, t), rtol=1e-12)
