"""A bias-free ReLU MLP as numpy arrays: what crosses from the experiment to the theory side.

A bias-free MLP f(x) = W_L D_{L-1}(x) W_{L-1} ... D_1(x) W_1 x (Ye 2025) is fixed, on a batch,
by its layer weights and its gates D_l(x) = diag(1[z_l(x) > 0]). :func:`read_mlp` reads both:

- ``weights``: ``[W_1 (n_1, d), ..., W_L (m, n_{L-1})]``, float64 copies;
- ``gates``: one ``(sample, n_l)`` array per hidden layer, 1.0 where the unit is active.

The theory side builds the ReLU net's gated linear twin from these arrays alone
(``gdln.ReLN.from_gates``); :class:`ArrayRecorder` reads them at every snapshot of
:func:`relu_lens.train.train`, for twins read from several points of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from relu_lens.chain import Affine, Gate, parse_mlp
from relu_lens.effective import UnsupportedModuleError, prepare


@dataclass(frozen=True)
class MLPArrays:
    """Layer weights and per-sample gates of a bias-free MLP on one batch (module docstring).

    Attributes:
        weights: [W_1 (n_1, d), ..., W_L (m, n_{L-1})] float64.
        gates: [(sample, n_l)] float64 in {0, 1}, one per hidden layer.
    """

    weights: list[np.ndarray]
    gates: list[np.ndarray]

    @property
    def depth(self) -> int:
        """Number of hidden layers, L - 1."""
        return len(self.gates)


def mlp_layers(model: nn.Module) -> list[Tensor]:
    """The weight tensors [W_1, ..., W_L] of a bias-free MLP that alternates Linear and ReLU
    (a leading Flatten allowed); UnsupportedModuleError for anything else, naming it.

    Each layer must be its own ``nn.Linear``: the twin gives every layer its own weights, so
    a module used twice (tied weights) is refused.
    """
    ops = parse_mlp(model).ops
    for k, op in enumerate(ops):
        if isinstance(op, Affine) and op.c is not None:
            raise UnsupportedModuleError(
                f"layer {sum(isinstance(o, Affine) for o in ops[:k]) + 1} has a bias: the gated "
                "linear twin is defined for bias-free MLPs (build the net with bias=False)"
            )
    kinds = "".join("L" if isinstance(op, Affine) else "R" for op in ops)
    if kinds[0] != "L" or kinds[-1] != "L" or "LL" in kinds or "RR" in kinds or len(kinds) < 3:
        raise UnsupportedModuleError(
            f"expected Linear, ReLU, Linear, ..., Linear; got {' '.join(kinds)} "
            "(L = Linear, R = ReLU): at least one hidden layer, each with exactly one ReLU"
        )
    layers = [op.W for op in ops if isinstance(op, Affine)]
    for k, W in enumerate(layers):
        tied = [j + 1 for j, other in enumerate(layers[:k]) if other is W]
        if tied:
            raise UnsupportedModuleError(
                f"layers {tied[0]} and {k + 1} are the same nn.Linear (tied weights): the gated "
                "linear twin gives each layer its own weights"
            )
    return layers


def read_mlp(model: nn.Module, x: Tensor | np.ndarray) -> MLPArrays:
    """The weights and the gates on the batch ``x`` of a bias-free ReLU MLP (module docstring).

    ``x`` is (sample, d), or (sample, ...) with d entries per sample when the model starts with
    ``nn.Flatten``; an empty batch, NaN or inf, or another shape raise InputError before any work.
    """
    layers = mlp_layers(model)
    x = torch.as_tensor(x, dtype=layers[0].dtype, device=layers[0].device)
    lens = prepare(model, x)
    ops, h = lens.chain.ops, lens.x
    gates = []
    with torch.no_grad():
        for op in ops:
            if isinstance(op, Gate):
                mask = h > 0
                gates.append(mask.cpu().numpy().astype(np.float64))
                h = h * mask
            else:
                h = h @ op.W.T
    weights = [w.detach().cpu().double().numpy().copy() for w in layers]
    return MLPArrays(weights, gates)


class ArrayRecorder:
    """A recorder for :func:`relu_lens.train.train`: :func:`read_mlp` on the batch ``x`` at every
    snapshot, in ``values`` (with the snapshot ``steps``)."""

    def __init__(self, x: Tensor | np.ndarray) -> None:
        self.x = x
        self.values: list[MLPArrays] = []
        self.steps: list[int] = []

    def record(self, index: int, step: int, model: nn.Module) -> None:
        self.values.append(read_mlp(model, self.x))
        self.steps.append(step)

    def close(self) -> None:
        return None
