"""Training loop with snapshots: recorders are called at chosen steps (step 0 included).

Clock (docs/design.md, section "Time"): with SGD at step size eta, k steps sit at t = k * eta on
the gradient flow of the loss as defined here (mean over samples; MSE is
(1/2P) sum_i ||y_i - f(x_i)||^2).
Adam and minibatches leave that clock approximate; the recorded ``time`` is still k * eta.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

LossName = Literal["cross_entropy", "mse"]


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"depth": 0, "before": 0}


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Temporarily set torch's (process-wide) intra-op thread count; None leaves it alone.

    Small problems run fastest on one thread: on a busy machine torch's thread pool can make a
    tiny matmul many times slower. Nested or concurrent uses (threaded dask workers) share one
    reference count, so the count from before the outermost use is the one restored.
    """
    if count is None:
        yield
        return
    with _THREADS_LOCK:
        if _THREADS_STATE["depth"] == 0:
            _THREADS_STATE["before"] = torch.get_num_threads()
        _THREADS_STATE["depth"] += 1
        torch.set_num_threads(count)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["depth"] -= 1
            if _THREADS_STATE["depth"] == 0:
                torch.set_num_threads(_THREADS_STATE["before"])


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; what was recorded before is kept."""


class Recorder(Protocol):
    """Called with the model at every snapshot step; ``close`` ends the recording."""

    def record(self, index: int, step: int, model: nn.Module) -> None: ...

    def close(self) -> None: ...


def log_spaced_steps(total: int, n: int) -> list[int]:
    """About ``n`` distinct integer steps from 0 to ``total``, log-spaced, 0 and total included."""
    if total < 0 or n < 2:
        raise ValueError(f"need total >= 0 and n >= 2, got total={total}, n={n}")
    if total == 0:
        return [0]
    grid = np.unique(np.round(np.geomspace(1, total + 1, n - 1) - 1).astype(int))
    return sorted({0, *grid.tolist(), total})


def loss_fn(name: LossName) -> Callable[[Tensor, Tensor], Tensor]:
    """Per-batch mean loss: cross-entropy on class labels, or (1/2) mean_i ||y_i - f(x_i)||^2."""
    if name == "cross_entropy":
        return nn.functional.cross_entropy
    if name == "mse":
        return lambda out, y: 0.5 * ((out - y) ** 2).sum(dim=1).mean()
    raise ValueError(f"unknown loss {name!r}; use 'cross_entropy' or 'mse'")


@dataclass
class TrainResult:
    """Snapshot steps and times, and the training loss at every step."""

    snapshot_steps: list[int]
    snapshot_times: list[float]
    step_loss: list[float] = field(default_factory=list)


def train(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    steps: int,
    lr: float,
    loss: LossName = "cross_entropy",
    optimizer: Literal["sgd", "adam"] = "sgd",
    batch_size: int | None = None,
    snapshot_steps: Sequence[int] | None = None,
    recorders: Sequence[Recorder] = (),
    seed: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` for ``steps`` optimiser steps, calling every recorder at each snapshot.

    ``batch_size=None`` is full-batch gradient descent. Minibatches are drawn by reshuffling
    each epoch with a generator seeded by ``seed``. Snapshot steps default to 20 log-spaced
    steps including 0 and ``steps``. A NaN or infinite loss raises :class:`TrainingDiverged`
    after the recorders are closed (so what they recorded is kept).
    """
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}")
    if lr <= 0 or steps < 0:
        raise ValueError(f"need lr > 0 and steps >= 0, got lr={lr}, steps={steps}")
    snaps = sorted(set(snapshot_steps)) if snapshot_steps is not None else None
    snaps = snaps or log_spaced_steps(steps, 20)
    if snaps[0] < 0 or snaps[-1] > steps:
        raise ValueError(f"snapshot steps must lie in [0, {steps}], got {snaps[0]}..{snaps[-1]}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    criterion = loss_fn(loss)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    P = X.shape[0]
    bs = P if batch_size is None else min(batch_size, P)
    result = TrainResult(snapshot_steps=snaps, snapshot_times=[s * lr for s in snaps])
    snap_index = {s: i for i, s in enumerate(snaps)}
    order = torch.randperm(P, generator=gen)
    cursor = 0
    # a bar only on a terminal (disable=None): a log gets no carriage-return updates
    bar = tqdm(total=steps, desc="training", disable=None if progress else True, leave=False)
    try:
        for step in range(steps + 1):
            if step in snap_index:
                model.eval()
                for rec in recorders:
                    rec.record(snap_index[step], step, model)
                model.train()
            if step == steps:
                break
            if bs == P:
                xb, yb = X, y
            else:
                if cursor + bs > P:
                    order, cursor = torch.randperm(P, generator=gen), 0
                idx = order[cursor : cursor + bs].to(X.device)
                cursor += bs
                xb, yb = X[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            value = criterion(model(xb), yb)
            current = float(value.detach())
            if not math.isfinite(current):
                raise TrainingDiverged(
                    f"loss became {current} at step {step} (t = {step * lr:.4g}); lower the step "
                    f"size (lr={lr}) or the init scale. Snapshots before this step are kept."
                )
            value.backward()
            opt.step()
            result.step_loss.append(current)
            bar.update(1)
    finally:
        bar.close()
        for rec in recorders:
            rec.close()
    return result
