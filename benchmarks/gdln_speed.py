"""Speed of gdln's predictions against simulating the same dynamics by gradient descent.

Run:  python benchmarks/gdln_speed.py

Three measurements, each in one run of this script:

1. Routing network of the neural race (the race study's paper preset, 49 paths, 4 modes):
   ``gdln.reduce`` (reduced ODE) vs full-batch gradient descent (eta = 0.005 up to t = 40)
   vs ``gdln.integrate`` (exact matrix flow) on the same time grid.
2. A balanced chain of D = 3 matrices on a 3-mode whitened task (64 hidden units):
   ``gdln.closed_form`` (sympy-derived t(u), inverted numerically) vs gradient descent with
   eta = 0.002 up to t = 10; the sympy derivation is cached after its first call (timed apart).
3. ``gdln.integrate`` of a 784-256-256-10 chain with per-unit gates (random 0/1 masks) on 1,000
   random inputs over t in [0, 0.5] (the size of the MNIST studies; layer-by-layer gradient).

Each prediction is timed as the best of a few repeats; the ratios are GD time / prediction time.
"""

from __future__ import annotations

import time

import numpy as np
from timing import best_time

import gdln
from gdln.routing_task import routing_task


def routing_race() -> None:
    task = routing_task()
    net, X, Y, gates = task.network, task.X, task.Y, task.gates
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y, gates))
    init = gdln.aligned_init(net, modes, 0.08)
    eta, t_max, n_times = 0.005, 40.0, 2001  # the race study's paper preset
    n_steps = round(t_max / eta)
    record = n_steps // (n_times - 1)
    times = eta * record * np.arange(n_times)
    t_reduce = best_time(lambda: gdln.reduce(net, modes, init, times, with_weights=False))
    t_gd = best_time(
        lambda: gdln.gradient_descent(net, X, Y, init, eta, n_steps, gates, record), repeats=1
    )
    t_flow = best_time(
        lambda: gdln.integrate(net, X, Y, init, times, gates, rtol=1e-8, atol=1e-10), repeats=1
    )
    print("1. routing network (49 paths, 4 modes), t in [0, 40]")
    print(f"   reduce (reduced ODE)          {t_reduce:8.3f} s")
    print(f"   integrate (exact matrix flow) {t_flow:8.3f} s")
    print(f"   gradient descent ({n_steps} steps) {t_gd:8.3f} s")
    print(
        f"   ratio GD / reduce = {t_gd / t_reduce:.0f}x,  integrate / reduce = "
        f"{t_flow / t_reduce:.0f}x"
    )


def deep_chain() -> None:
    rng = np.random.default_rng(0)
    s, P, depth = np.array([3.0, 1.5, 0.6]), 30, 3
    Q = np.linalg.qr(rng.normal(size=(P, 3)))[0]
    X = np.sqrt(P) * Q
    Y = np.sqrt(P) * Q @ np.diag(s)
    net = gdln.chain([3, 64, 64, 3])
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y))
    u0, eta, t_max = 1e-3, 0.002, 10.0
    n_steps = round(t_max / eta)
    times = eta * 50 * np.arange(n_steps // 50 + 1)
    init = gdln.aligned_init(net, modes, u0 ** (1 / depth))
    start = time.perf_counter()
    gdln.closed_form(s, u0, times, depth=depth)
    t_cold = time.perf_counter() - start
    t_closed = best_time(lambda: gdln.closed_form(s, u0, times, depth=depth))
    t_gd = best_time(lambda: gdln.gradient_descent(net, X, Y, init, eta, n_steps, None, 50), 1)
    print("2. balanced chain 3-64-64-3 (D = 3, 3 modes), t in [0, 10]")
    print(f"   closed form (first call, incl. sympy) {t_cold:8.3f} s")
    print(f"   closed form (cached derivation)       {t_closed:8.4f} s")
    print(f"   gradient descent ({n_steps} steps)     {t_gd:8.3f} s")
    print(f"   ratio GD / closed form = {t_gd / t_closed:.0f}x (cold: {t_gd / t_cold:.1f}x)")


def per_unit_chain() -> None:
    rng = np.random.default_rng(0)
    P = 1000
    net = gdln.chain([784, 256, 256, 10])
    X = rng.random((P, 784))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y = np.eye(10)[rng.integers(0, 10, P)]
    gates = {h: (rng.random((P, 256)) < 0.5).astype(float) for h in ("h1", "h2")}
    W0 = {
        e: rng.normal(size=net.weight_shape(e)) * np.sqrt(2.0 / net.weight_shape(e)[1])
        for e in net.edges
    }
    start = time.perf_counter()
    traj = gdln.integrate(net, X, Y, W0, np.linspace(0, 0.5, 6), gates, rtol=1e-6, atol=1e-9)
    elapsed = time.perf_counter() - start
    print("3. integrate 784-256-256-10, per-unit gates, 1,000 samples, t in [0, 0.5]")
    print(f"   {elapsed:.2f} s; loss {traj.loss[0]:.4f} -> {traj.loss[-1]:.4f}")


if __name__ == "__main__":
    routing_race()
    deep_chain()
    per_unit_chain()
