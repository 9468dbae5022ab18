"""Speed of gdln's predictions against simulating the same dynamics by gradient descent.

Run:  python benchmarks/gdln_speed.py

Three measurements, each in one run of this script:

1. Routing network of the neural race (the race study's paper preset, 49 paths, 4 modes):
   ``gdln.reduce`` (reduced ODE) vs full-batch gradient descent (eta = 0.005 up to t = 40)
   vs ``gdln.integrate`` (exact matrix flow) on the same time grid.
2. A balanced chain of D = 3 matrices on a 3-mode whitened task (64 hidden units):
   ``gdln.closed_form`` (sympy-derived t(u), inverted numerically) vs gradient descent with
   eta = 0.002 up to t = 10; the sympy derivation is cached after its first call (timed apart).
3. The per-unit step: one gradient-descent step of the frozen-gate twin of a 784-256-256-10
   ReLU net (``gdln.ReLN.from_gates``) against one torch step of the net itself, on 1,000
   inputs with the cross-entropy (the size of the MNIST studies), side by side, both in
   float64; and the twin's step with float32 gradients, as ``weff_theory`` takes it.

Each prediction is timed as the best of a few repeats; the ratios are GD time / prediction time.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from timing import best_time

import gdln
from gdln.routing_task import routing_task
from relu_lens import read_mlp
from relu_lens.models import mlp
from relu_lens.train import torch_threads, train


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


def per_unit_step(steps: int = 100) -> None:
    """One gradient-descent step of the frozen-gate twin against one torch step of the ReLU net
    it was read from: same net, batch, loss and dtype, each side with its own default threads
    and with one thread."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    P = 1000
    X = rng.random((P, 784))
    labels = rng.integers(0, 10, P)
    model = mlp(784, (256, 256), 10, dtype=torch.float64)
    arrays = read_mlp(model, X)
    twin = gdln.ReLN.from_gates(arrays.weights, arrays.gates)
    x, y = torch.as_tensor(X), torch.as_tensor(labels)
    Y = np.eye(10)[labels]

    def relu_steps() -> None:
        net = copy.deepcopy(model)
        train(net, x, y, steps=steps, lr=0.05, snapshot_steps=[0], progress=False)

    def twin_steps(dtype: type[np.floating] = np.float64) -> None:
        gdln.gradient_descent(
            twin.network, X, Y, twin.initial, 0.05, steps, twin.gates,
            loss=gdln.CrossEntropy(), record_steps=[0, steps], dtype=dtype,
        )  # fmt: skip

    print(f"3. one step, 784-256-256-10, 1,000 samples, cross-entropy, float64 ({steps} steps)")
    for threads in (None, 1):
        with torch_threads(threads), threadpool_limits(threads, "blas"):
            t_relu = best_time(relu_steps, 2, warmup=True) / steps
            t_twin = best_time(twin_steps, 2, warmup=True) / steps
            t_32 = best_time(lambda: twin_steps(np.float32), 2, warmup=True) / steps
        label = "default threads" if threads is None else "one thread"
        print(
            f"   {label:16s}: torch ReLU step {1e3 * t_relu:6.2f} ms, frozen-gate twin step "
            f"{1e3 * t_twin:6.2f} ms, ratio twin / ReLU = {t_twin / t_relu:.2f} (target <= 1)"
        )
        print(
            f"   {'':16s}  twin step with float32 gradients (weff_theory's) {1e3 * t_32:6.2f} ms,"
            f" ratio to the float64 ReLU step = {t_32 / t_relu:.2f}"
        )


if __name__ == "__main__":
    routing_race()
    deep_chain()
    per_unit_step()
