"""Activation patterns: the gates D_l(x) = diag(1[z_l(x) > 0]) of every ReLU of a model.

Read with forward hooks on the model's ``nn.ReLU`` modules. Hooks are global state on the
model, so they live only inside :func:`relu_hooks`, which removes them in ``finally``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from relu_lens.effective import check_input


def relu_modules(model: nn.Module) -> list[tuple[str, nn.ReLU]]:
    """The model's ``nn.ReLU`` modules with their names, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]


@contextmanager
def relu_hooks(model: nn.Module) -> Iterator[list[tuple[str, Tensor]]]:
    """Record ``(name, z > 0)`` for the input z of every ReLU call, in execution order.

    The hooks are removed when the block exits, also on error.
    """
    records: list[tuple[str, Tensor]] = []
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            records.append((name, (inputs[0] > 0).detach()))

        return hook

    try:
        for name, module in relu_modules(model):
            handles.append(module.register_forward_pre_hook(make_hook(name)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def activation_patterns(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The gates of every ReLU call for a batch: a list of bool tensors (sample, width).

    For an MLP ``nn.Sequential`` this is one entry per hidden layer. The pattern is taken
    before the ReLU (z > 0, so an in-place ReLU is read correctly). Raises ValueError if the
    model has no ``nn.ReLU`` module (a relu applied inside ``forward`` cannot be seen), and
    InputError before the forward pass for an empty batch, NaN or inf in ``x``, or (for an MLP
    the lens parses) input with more than two dimensions and no ``nn.Flatten`` before the first
    ``nn.Linear`` (see :func:`relu_lens.effective.check_input`; a wrong feature count is left
    to the model's forward).
    """
    if not relu_modules(model):
        raise ValueError(
            f"{type(model).__name__} has no nn.ReLU module; activation patterns are read from "
            "nn.ReLU modules (a functional relu inside forward cannot be seen)"
        )
    check_input(model, x, check_features=False)
    with relu_hooks(model) as records, torch.no_grad():
        model(x)
    return [mask.reshape(mask.shape[0], -1) for _, mask in records]


def gate_flip_fraction(
    before: Sequence[Tensor | np.ndarray], after: Sequence[Tensor | np.ndarray]
) -> list[float]:
    """Per layer, the fraction of (sample, unit) gates that differ between two patterns.

    ``before`` and ``after`` are lists (one entry per ReLU layer) of (sample, width) gates,
    bool tensors or 0/1 arrays (``relu_lens.read_mlp``), read on the same samples, e.g. at two
    snapshots of training.
    """
    if len(before) != len(after):
        raise ValueError(f"patterns have {len(before)} and {len(after)} layers")
    fractions = []
    for layer, (a, b) in enumerate(zip(before, after, strict=True)):
        a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
        if a.shape != b.shape:
            raise ValueError(f"layer {layer}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        fractions.append(float(np.mean(a != b)))
    return fractions
