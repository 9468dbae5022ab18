"""Batched training of many two-layer ReLU runs against the same runs one by one.

A grid of 64 runs (16 seeds x 2 separabilities x 2 inits, n = 16 samples, D = 16, h = 20) is
trained by :func:`relu_lens.two_layer.train` once as one batch (leading run dim, torch.bmm)
and once run by run, in one process, with the same steps; the script checks that both give
the same weights and prints the wall-clock ratio.

    python benchmarks/alignment_speed.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from gdln.tasks import separable_binary
from relu_lens import alignment as al
from relu_lens import two_layer as tl


def grid(n: int = 16, hidden: int = 20, eps: float = 1e-30) -> tuple[torch.Tensor, ...]:
    """W, v, X, y of 64 runs: 16 seeds x mu in (0.2, 0.6) x (random, worst-case) init."""
    Ws, Xs, ys = [], [], []
    for mu in (0.2, 0.6):
        for seed in range(16):
            task = separable_binary(n, n, mu, seed)
            W_rand, _ = tl.init_balanced(1, hidden, n, eps, seed)
            W_worst, _ = tl.init_worst_case(task.X, task.y, hidden, eps, seed)
            Ws += [W_rand, W_worst]
            Xs += [task.X, task.X]
            ys += [task.y, task.y]
    W, v = tl.balance(torch.cat(Ws))
    return W, v, torch.as_tensor(np.stack(Xs)), torch.as_tensor(np.stack(ys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    W, v, X, y = grid()
    eta = 0.04 / (16 * 2.0)

    start = time.perf_counter()
    batched = tl.train(
        W, v, X, y, eta, args.steps, record_every=args.steps, monitor=al.aligned_monitor(y)
    )
    t_batched = time.perf_counter() - start

    start = time.perf_counter()
    single = []
    for r in range(W.shape[0]):
        sl = slice(r, r + 1)
        yr = y[sl]
        single.append(
            tl.train(W[sl], v[sl], X[sl], yr, eta, args.steps, record_every=args.steps,
                     monitor=al.aligned_monitor(yr))
        )  # fmt: skip
    t_single = time.perf_counter() - start

    W_single = np.concatenate([s.W[-1] for s in single])
    np.testing.assert_allclose(batched.W[-1], W_single, rtol=1e-9, atol=1e-40)
    print(f"runs: {W.shape[0]}, steps: {args.steps}, threads: 1")
    print(f"batched:    {t_batched:8.2f} s")
    print(f"one by one: {t_single:8.2f} s")
    print(f"speed-up:   {t_single / t_batched:8.1f}x")


if __name__ == "__main__":
    main()
