"""ReLU MLPs as ``nn.Sequential`` stacks that the effective-weight lens reads exactly."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


def mlp(
    n_in: int,
    widths: Sequence[int],
    n_out: int,
    bias: bool = False,
    flatten: bool = False,
    dtype: torch.dtype = torch.float32,
    init_std: float | None = None,
) -> nn.Sequential:
    """n_in -> widths... -> n_out with ReLU between layers (none after the last).

    Weights use PyTorch's default (Kaiming-uniform) init unless ``init_std`` is given, in which
    case every weight is N(0, init_std^2) and biases start at zero.
    """
    if n_in < 1 or n_out < 1 or any(w < 1 for w in widths):
        raise ValueError(f"layer sizes must be positive: {n_in}, {list(widths)}, {n_out}")
    sizes = [n_in, *widths, n_out]
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layer = nn.Linear(a, b, bias=bias, dtype=dtype)
        if init_std is not None:
            with torch.no_grad():
                layer.weight.normal_(0.0, init_std)
                if layer.bias is not None:
                    layer.bias.zero_()
        layers.append(layer)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
