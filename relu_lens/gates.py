"""Activation patterns: the gates of every gated operation of a model on a batch.

The gates are what fix a piecewise-linear network's affine map on an input
(docs/theory/effective-weights.md): D_l(x) = diag(1[z_l(x) > 0]) for a ReLU, the same mask
choosing between the two slopes of a leaky ReLU or PReLU, and for a max-pool the input each
output selected. They are read from the traced graph (``relu_lens.graph``) in one forward
pass; the model itself is never changed (no hooks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np
import torch
from torch import Tensor, nn

from relu_lens import linearize
from relu_lens.effective import prepare


class Gates(Sequence[Tensor]):
    """The gates of every gated operation on a batch, in graph order, by position or by name.

    As a sequence it is the list of gate tensors (``gates[0]``, iteration, ``len``): for an
    MLP, one bool (sample, width) mask per hidden layer, as the theory side reads them. By name,
    ``gates["relu_1"]`` is the gate of the graph node ``relu_1`` (torch.fx names: a module
    called twice gives two nodes, e.g. ``_1`` and ``_1_1`` for ``model[1]``).

    Each gate is flattened per sample like the node's value (channel, then spatial dims):

    - ``relu``, ``leaky_relu``, ``prelu``: bool (sample, units), True where z > 0 (the unit
      passes; a leaky or PReLU unit takes its slope 1 there and its negative slope elsewhere);
    - ``max_pool``: int64 (sample, outputs), the index of the selected entry in the
      pool's input flattened per sample.

    Attributes:
        names: the node names in graph order.
        kinds: node name -> "relu", "leaky_relu", "prelu" or "max_pool".
    """

    def __init__(self, names: Sequence[str], kinds: Sequence[str], values: Sequence[Tensor]):
        self.names = tuple(names)
        self.kinds = dict(zip(self.names, kinds, strict=True))
        self._values = dict(zip(self.names, values, strict=True))

    @overload
    def __getitem__(self, key: int | str) -> Tensor: ...

    @overload
    def __getitem__(self, key: slice) -> list[Tensor]: ...

    def __getitem__(self, key: int | str | slice) -> Tensor | list[Tensor]:
        if isinstance(key, str):
            return self._values[key]
        if isinstance(key, slice):
            return [self._values[name] for name in self.names[key]]
        return self._values[self.names[key]]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Tensor]:
        return (self._values[name] for name in self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def items(self) -> list[tuple[str, Tensor]]:
        """(node name, gate) pairs in graph order."""
        return [(name, self._values[name]) for name in self.names]

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}: {self.kinds[n]} {tuple(v.shape)}" for n, v in self.items())
        return f"Gates({shown})"


def _selected_entries(index: Tensor, plane: int) -> Tensor:
    """Max-pool indices in each channel's plane -> indices in the input flattened per sample."""
    channels = index.shape[1]
    offset = torch.arange(channels, device=index.device) * plane
    return (index + offset.view(1, -1, *[1] * (index.ndim - 2))).flatten(1)


def activation_patterns(model: nn.Module, x: Tensor) -> Gates:
    """The gates of every gated operation of ``model`` on the batch ``x`` (:class:`Gates`).

    Every piecewise-linear model the lens reads is accepted (``relu_lens.graph.OPERATIONS``);
    any other is refused with UnsupportedModuleError naming the node. ``x`` is checked before
    the forward pass (InputError: an empty batch, NaN or inf, a shape the model does not take;
    see :func:`relu_lens.effective.prepare`). A model without gated operations has no gates.
    The mask is taken before the unit (z > 0), so an in-place ReLU is read correctly.
    """
    lens = prepare(model, x)
    _, raw = linearize.record(lens.graph, lens.x)
    steps = lens.graph.gates
    values = []
    for step in steps:
        gate = raw[step.node]
        if step.rule == "max_pool":  # only in graphs, never in an MLP chain: probe is set
            plane = int(np.prod(lens.probe.shapes[step.args["input"]][1:]))
            values.append(_selected_entries(gate, plane))
        else:
            values.append(gate.flatten(1))
    return Gates([s.name for s in steps], [s.rule for s in steps], values)


def gate_flip_fraction(
    before: Sequence[Tensor | np.ndarray], after: Sequence[Tensor | np.ndarray]
) -> list[float]:
    """Per gated operation, the fraction of (sample, unit) gates that differ between two
    patterns.

    ``before`` and ``after`` are sequences (one entry per gated operation, e.g.
    :class:`Gates`) of (sample, width) gates: bool tensors or 0/1 arrays
    (``relu_lens.read_mlp``), or max-pool selections (a flip is a changed selection), read on
    the same samples, e.g. at two snapshots of training.
    """
    if len(before) != len(after):
        raise ValueError(f"patterns have {len(before)} and {len(after)} layers")
    fractions = []
    for layer, (a, b) in enumerate(zip(before, after, strict=True)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise ValueError(f"layer {layer}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        fractions.append(float(np.mean(a != b)))
    return fractions
