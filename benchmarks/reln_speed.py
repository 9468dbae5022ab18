"""Time of the ReLN's prediction against training the ReLU net it predicts (a script, not a test).

One cell of the ``contexts`` study at its published settings (C = 3 contexts, 11 -> 700 -> 60,
init std 0.005/700, full-batch GD, 8,000 steps): the ReLU net is trained once (plain training,
no recording), its gate groups are read at the end, and the ReLN built from them predicts the
loss curve on the study's 301-point grid: from the ReLU net's own initial weights with
``gdln.integrate`` in both of its forms (back-propagation through the gated layers, and the
path-sum form from the gated correlations), and from the aligned start with
``gdln.pathway_flow`` on the cut network (the study's ``aligned`` variant, correlations
included; best of 3 calls) at the study's tolerance and ten times looser, each with its
largest relative deviation from a tight (rtol 1e-10) solution. Ratios are ReLU training time /
prediction time, in one run.

    python benchmarks/reln_speed.py [--contexts 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from timing import best_time

import gdln
from relu_lens import gate_groups as gg
from relu_lens.context_task import context_task
from relu_lens.models import mlp
from relu_lens.train import torch_threads, train
from studies.contexts import PRESETS, aligned_loss, build_reln, reln_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = PRESETS["paper"]
    task = context_task(args.contexts)
    X, Y, P = task.X, task.Y, task.n_samples
    eta, steps = P * cfg.lr_summed, cfg.steps_1
    times = np.linspace(0, steps, cfg.n_times) * eta

    torch.manual_seed(args.seed)
    model = mlp(
        X.shape[1], (cfg.width_1,), Y.shape[1], dtype=torch.float64, init_std=cfg.init_std_1
    )
    init = [m.weight.detach().numpy().copy() for m in model if isinstance(m, torch.nn.Linear)]
    x, y = torch.as_tensor(X), torch.as_tensor(Y)
    with torch_threads(1):
        start = time.perf_counter()
        train(
            model, x, y, steps=steps, lr=eta, loss="mse", snapshot_steps=[0, steps], progress=False
        )
        t_relu = time.perf_counter() - start
    acts, _ = gg.layer_activities(model, X)
    W_out = model[-1].weight.detach().numpy()
    groups = [
        gg.gate_groups(
            acts[0],
            W_out,
            task.context,
            args.contexts,
            cfg.active_threshold,
            cfg.reln_strength_fraction,
        )
    ]
    reln = build_reln(groups, task.context, X.shape[1], Y.shape[1], args.contexts)
    W0 = reln_weights(reln, init)
    atol = 1e-6 * cfg.init_std_1
    timings = {}
    for form in ("layers", "paths"):
        start = time.perf_counter()
        traj = gdln.integrate(
            reln.network, X, Y, W0, times, gates=reln.gates, form=form, rtol=cfg.rtol, atol=atol
        )
        timings[form] = time.perf_counter() - start
        final = traj.loss[-1]
    tight = aligned_loss(reln, X, Y, cfg.init_std_1, times, 1e-10, solver="RK45")
    deviation = {}
    for rtol in (cfg.rtol_aligned, 10 * cfg.rtol_aligned):
        key = f"aligned, RKC rtol {rtol:g}"
        timings[key] = best_time(lambda r=rtol: aligned_loss(reln, X, Y, cfg.init_std_1, times, r))
        loss = aligned_loss(reln, X, Y, cfg.init_std_1, times, rtol)
        deviation[key] = float(np.max(np.abs(loss - tight) / tight))
    print(
        f"contexts C = {args.contexts}, 11 -> {cfg.width_1} -> 60, {steps} GD steps, "
        f"{len(reln.network.paths)} ReLN pathways, final ReLN loss {final:.3g}"
    )
    print(f"  {'ReLU training':32s}: {t_relu:8.3f} s")
    for form, seconds in timings.items():
        label = f"ReLN integrate (form={form})" if form in ("layers", "paths") else f"ReLN {form}"
        extra = (
            f"  (loss within {deviation[form]:.1e} of the rtol-1e-10 flow)"
            if form in deviation
            else ""
        )
        print(
            f"  {label:32s}: {seconds:8.3f} s   ratio ReLU / theory = {t_relu / seconds:6.1f}"
            f"  (target >= 100){extra}"
        )


if __name__ == "__main__":
    main()
