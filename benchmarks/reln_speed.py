"""The twin's prediction against training the ReLU net it predicts (a script, not a test).

Cells of the ``contexts`` study at their published settings (C = 3 contexts; one hidden layer
11 -> 700 -> 60, init std 0.005/700, 8,000 steps; two hidden layers 11 -> 420 -> 420 -> 60,
init std 6e-4, 30,000 steps; full-batch GD on the summed loss with lr 1e-3, float64, one torch
thread, as the study trains). For each depth the ReLU net is trained (plain training, no
recording; this is the time a user spends on the experiment; the best of as many identical
runs as each prediction gets), its arrays are read
(``relu_lens.read_mlp``), its twin is built (``gdln.ReLN.from_gates`` with the context
partition, started from the ReLU net's initial weights) and its loss curve is predicted on the
study's 301-point grid:

- depth 1, the study's fast prediction: the aligned start cut to the pathways' mode counts
  (``ReLN.aligned_start`` + ``gdln.pathway_flow``, RKC) at the study's tolerance and ten times
  looser, correlations included;
- every depth: the exact flow from the ReLU net's initial weights (``gdln.integrate``) at the
  study's solver and tolerance, as its ``loss_theory``, and ten times looser.

Every prediction is the best of a few calls and is reported with its largest relative
deviation from a tight solution (RK45, rtol 1e-8). Ratios are ReLU training time / prediction
time, measured in one run.

    python benchmarks/reln_speed.py [--contexts 3] [--seed 0] [--depths 1 2]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from timing import best_time

import gdln
from gdln.context_task import context_task
from relu_lens import read_mlp
from relu_lens.models import mlp
from relu_lens.train import torch_threads, train

#: the published nets of the contexts task: (width, init std, steps); lr 1e-3 on the summed loss
PUBLISHED = {1: (700, 0.005 / 700, 8000), 2: (420, 6e-4, 30000)}
N_TIMES = 301
#: the study's tolerances (contexts.Config: solver, rtol, rtol_aligned; atol 1e-6 x init std)
SOLVER, RTOL, RTOL_ALIGNED = "RKC", 1e-4, 1e-4


def train_relu(X: np.ndarray, Y: np.ndarray, depth: int, seed: int, repeats: int) -> tuple:
    """(initial weights, trained model, training seconds): the best of ``repeats`` identical
    trainings from the same initialisation, as the predictions are timed."""
    width, std, steps = PUBLISHED[depth]
    torch.manual_seed(seed)
    start_model = mlp(X.shape[1], (width,) * depth, Y.shape[1], dtype=torch.float64, init_std=std)
    initial = read_mlp(start_model, X).weights
    trained: list[torch.nn.Module] = []

    def run() -> None:
        model = copy.deepcopy(start_model)
        train(
            model,
            torch.as_tensor(X),
            torch.as_tensor(Y),
            steps=steps,
            lr=X.shape[0] * 1e-3,
            loss="mse",
            snapshot_steps=[0, steps],
            progress=False,
        )
        trained.append(model)

    with torch_threads(1):
        seconds = best_time(run, repeats)
    return initial, trained[-1], seconds


def deviation(loss: np.ndarray, tight: np.ndarray) -> str:
    """The largest relative and the relative L2 deviation of a loss curve from a tight one."""
    worst = np.max(np.abs(loss - tight) / tight)
    l2 = np.linalg.norm(loss - tight) / np.linalg.norm(tight)
    return f"loss within {worst:.1e} of the rtol-1e-8 flow, {l2:.1e} in relative L2"


def report(task, depth: int, seed: int) -> None:
    """Train one net, build its twin, time the predictions and print them."""
    X, Y, P = task.X, task.Y, task.n_samples
    width, std, steps = PUBLISHED[depth]
    times = np.linspace(0, steps, N_TIMES) * P * 1e-3
    repeats = 3 if depth == 1 else 2
    initial, model, t_relu = train_relu(X, Y, depth, seed, repeats)
    final = read_mlp(model, X)
    twin = gdln.ReLN.from_gates(final.weights, final.gates, task.context, X=X, initial=initial)
    net, atol = twin.network, 1e-6 * std
    print(
        f"C = {task.n_contexts}, depth {depth}: 11 -> {' -> '.join([str(width)] * depth)} -> "
        f"60, {steps} GD steps; twin of {sum(net.sizes[v] for v in twin.units)} units in "
        f"{len(twin.units)} nodes, {len(net.paths)} pathways"
    )
    print(f"  {'ReLU training':44s}: {t_relu:8.3f} s")

    def flow(rtol: float, solver: str = SOLVER) -> np.ndarray:
        return gdln.integrate(
            net, X, Y, twin.initial, times, twin.gates, solver=solver, rtol=rtol, atol=atol,
            with_weights=False,
        ).loss  # fmt: skip

    def aligned(rtol: float, solver: str = "RKC") -> np.ndarray:
        small, W0 = twin.aligned_start(X, Y, std)
        return gdln.pathway_flow(
            small, X, Y, W0, times, twin.gates, solver=solver, rtol=rtol, atol=atol,
            with_weights=False,
        ).loss  # fmt: skip

    tight = flow(1e-8, "RK45")
    rows = []
    for rtol in (RTOL, 10 * RTOL):
        seconds = best_time(lambda r=rtol: flow(r), repeats)
        rows.append(
            (f"integrate, ReLU init, {SOLVER} rtol {rtol:g}", seconds, deviation(flow(rtol), tight))
        )
    if depth == 1:
        tight = aligned(1e-8, "RK45")
        for rtol in (RTOL_ALIGNED, 10 * RTOL_ALIGNED):
            seconds = best_time(lambda r=rtol: aligned(r))
            rows.append(
                (f"aligned start, cut, RKC rtol {rtol:g}", seconds, deviation(aligned(rtol), tight))
            )
    for label, seconds, note in rows:
        print(
            f"  {label:44s}: {seconds:8.3f} s   ratio ReLU / twin = {t_relu / seconds:6.1f}"
            f"   ({note})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    task = context_task(args.contexts)
    for depth in args.depths:
        report(task, depth, args.seed)


if __name__ == "__main__":
    main()
