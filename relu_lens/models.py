"""ReLU networks the effective-weight lens reads exactly: MLPs (read by the masked chain), and
a CNN and a small ResNet with BatchNorm (read by the general path, in eval mode).

The CNN and the ResNet take flat input rows (sample, C*H*W), as the MLP does and as the MNIST
loaders give them, and reshape them inside (``nn.Unflatten``).
"""

from __future__ import annotations

import itertools
import math
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
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """n_in -> widths... -> n_out with ReLU between layers (none after the last).

    Weights use PyTorch's default (Kaiming-uniform) init unless ``init_std`` is given, in which
    case every weight is N(0, init_std^2) and biases start at zero. With a ``generator`` every
    draw comes from it, in the order of the global generator's: ``mlp(...,
    generator=torch.Generator().manual_seed(s))`` gives the weights of ``torch.manual_seed(s);
    mlp(...)`` without touching the global generator, which threads running other cells of a
    sweep share.
    """
    if n_in < 1 or n_out < 1 or any(w < 1 for w in widths):
        raise ValueError(f"layer sizes must be positive: {n_in}, {list(widths)}, {n_out}")
    sizes = [n_in, *widths, n_out]
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        if generator is None:
            layer = nn.Linear(a, b, bias=bias, dtype=dtype)
        else:  # nn.Linear.reset_parameters, drawn from the generator
            layer = nn.utils.skip_init(nn.Linear, a, b, bias=bias, dtype=dtype)
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1.0 / math.sqrt(a)
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        if init_std is not None:
            with torch.no_grad():
                layer.weight.normal_(0.0, init_std, generator=generator)
                if layer.bias is not None:
                    layer.bias.zero_()
        layers.append(layer)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _conv_block(c_in: int, c_out: int, kernel_size: int, dtype: torch.dtype) -> list[nn.Module]:
    """Convolution ('same' padding, no bias: the BatchNorm shift replaces it), BatchNorm, ReLU."""
    return [
        nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False, dtype=dtype),
        nn.BatchNorm2d(c_out, dtype=dtype),
        nn.ReLU(),
    ]


def cnn(
    in_shape: Sequence[int] = (1, 28, 28),
    channels: Sequence[int] = (16, 32),
    n_out: int = 10,
    kernel_size: int = 5,
    bias: bool = True,
    dropout: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A ReLU CNN on flat input (sample, C*H*W): one block per entry of ``channels``, each
    conv -> BatchNorm -> ReLU -> 2x2 max-pool, then (with ``dropout`` > 0) ``nn.Dropout`` and
    a linear readout.

    The input is reshaped to ``in_shape`` inside the model (``nn.Unflatten``), so the model
    takes the flat rows the MNIST loaders give, like :func:`mlp`. Train it in train mode (batch
    statistics, dropout on) and read it with the lens in eval mode (running statistics, no
    dropout: an affine map per input). ``bias`` is the readout's bias; the convolutions have
    none (the BatchNorm shifts replace it).
    """
    if len(in_shape) != 3 or any(s < 1 for s in in_shape) or not channels or min(channels) < 1:
        raise ValueError(f"need in_shape (C, H, W) and channels >= 1: {in_shape}, {channels}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    side = list(in_shape[1:])
    layers: list[nn.Module] = [nn.Unflatten(1, tuple(in_shape))]
    for c_in, c_out in itertools.pairwise([in_shape[0], *channels]):
        layers += [*_conv_block(c_in, c_out, kernel_size, dtype), nn.MaxPool2d(2)]
        side = [s // 2 for s in side]
    if min(side) < 1:
        raise ValueError(f"{len(channels)} 2x2 max-pools leave nothing of {in_shape[1:]}")
    features = channels[-1] * side[0] * side[1]
    layers.append(nn.Flatten())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(features, n_out, bias=bias, dtype=dtype))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """h -> relu(B2 C2 relu(B1 C1 h) + S h): two 3x3 convolutions with BatchNorm and a skip
    connection S, the identity or, where the stride or width changes, a 1x1 convolution with
    BatchNorm (He et al. 2016, "basic block"). The last ReLU is functional (F.relu)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(c_out, dtype=dtype)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(c_out, dtype=dtype)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False, dtype=dtype),
                nn.BatchNorm2d(c_out, dtype=dtype),
            )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(h)))
        out = self.bn2(self.conv2(out))
        return torch.nn.functional.relu(out + self.skip(h))


def resnet(
    in_shape: Sequence[int] = (1, 28, 28),
    widths: Sequence[int] = (16, 32, 64),
    n_out: int = 10,
    stem_stride: int = 2,
    bias: bool = True,
    dtype: torch.dtype = torch.float32,
) -> nn.Sequential:
    """A small ResNet on flat input (sample, C*H*W): a 3x3 stem (conv, BatchNorm, ReLU; stride
    ``stem_stride``), one :class:`ResidualBlock` per entry of ``widths`` (stride 1 for the
    first, 2 after), global average pooling and a linear readout.

    As :func:`cnn`, the input is reshaped to ``in_shape`` inside the model (``nn.Unflatten``),
    and ``bias`` is the readout's bias (the convolutions have none).
    """
    if len(in_shape) != 3 or any(s < 1 for s in in_shape) or not widths or min(widths) < 1:
        raise ValueError(f"need in_shape (C, H, W) and widths >= 1: {in_shape}, {widths}")
    layers: list[nn.Module] = [
        nn.Unflatten(1, tuple(in_shape)),
        nn.Conv2d(in_shape[0], widths[0], 3, stem_stride, 1, bias=False, dtype=dtype),
        nn.BatchNorm2d(widths[0], dtype=dtype),
        nn.ReLU(),
    ]
    for k, (c_in, c_out) in enumerate(itertools.pairwise([widths[0], *widths])):
        layers.append(ResidualBlock(c_in, c_out, 1 if k == 0 else 2, dtype=dtype))
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(widths[-1], n_out, bias=bias, dtype=dtype),
    ]
    return nn.Sequential(*layers)
