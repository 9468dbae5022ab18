"""gdln.rkc: the Runge-Kutta-Chebyshev integrator against exact solutions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from gdln.closed_form import mode_strength
from gdln.rkc import HORNER_MAX_STAGES, _coefficients, _horner, rkc


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


def _recurrence_polynomial(s: int, z: np.ndarray) -> np.ndarray:
    """R_s(z) of the three-term stage recurrence, stepped on dy/dt = lambda y with z = h lambda."""
    mu, nu, mu_t, gamma_t, mu_t1 = _coefficients(s)
    prev, cur = np.ones_like(z), 1.0 + mu_t1 * z
    for j in range(2, s + 1):
        prev, cur = (
            cur,
            (1 - mu[j] - nu[j]) + mu[j] * cur + nu[j] * prev + (mu_t[j] * cur + gamma_t[j]) * z,
        )
    return cur


@pytest.mark.parametrize("s", range(2, HORNER_MAX_STAGES + 1))
def test_horner_stages_have_the_recurrence_stability_polynomial(s: int) -> None:
    """Y_j = y_n + alpha_j h F(Y_{j-1}) gives the same R_s(z) over the whole stability interval
    as the damped three-term recurrence, and is second order (alpha_s = 1, alpha_{s-1} = 1/2)."""
    alpha = _horner(s)
    assert alpha[s] == pytest.approx(1.0, abs=1e-12)
    assert alpha[s - 1] == pytest.approx(0.5, abs=1e-12)
    z = np.linspace(-(s**2 - 1.0) / 1.54, 0.0, 201)  # the step's largest h rho
    horner = np.ones_like(z)
    for j in range(1, s + 1):
        horner = 1.0 + alpha[j] * z * horner
    recurrence = _recurrence_polynomial(s, z)
    np.testing.assert_allclose(horner, recurrence, rtol=0, atol=1e-11)
    assert np.max(np.abs(recurrence)) <= 1.0 + 1e-9  # inside the stability interval


def test_horner_and_recurrence_steps_both_follow_the_closed_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mode flow of the closed-form test, once with every step in the recurrence form
    (HORNER_MAX_STAGES = 1) and once with the default: both within tolerance of the closed form
    and of each other."""
    s = np.array([3.0, 2.0, 1.0, 0.5, 0.25])
    t = np.linspace(0.0, 30.0, 61)
    exact = np.stack([mode_strength(t, si, 1e-6) for si in s])

    def run() -> np.ndarray:
        return rkc(lambda u: 2 * u * (s - u), t[-1], np.full(5, 1e-6), t, 1e-6, 1e-14).y

    horner = run()
    monkeypatch.setattr("gdln.rkc.HORNER_MAX_STAGES", 1)
    recurrence = run()
    for result in (horner, recurrence):
        np.testing.assert_allclose(result, exact, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(horner, recurrence, rtol=1e-3, atol=1e-5)
