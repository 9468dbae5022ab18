"""Losses on the output nodes, averaged over samples (the toolkit's clock: docs/design.md,
section "Time").

A loss gives its value and its gradient with respect to each output node's activity h_v; the
layer-by-layer gradient in ``gdln.dynamics`` back-propagates that gradient, so a new loss (for
instance cross-entropy on logits) only has to implement these two methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from gdln.network import Array


class Loss(Protocol):
    """L(h, y) averaged over samples; ``gradient`` returns dL/dh_v, shape (sample, n_v)."""

    name: str

    def value(self, outputs: Mapping[str, Array], targets: Mapping[str, Array]) -> float: ...

    def gradient(
        self, outputs: Mapping[str, Array], targets: Mapping[str, Array]
    ) -> dict[str, Array]: ...


class SquaredError:
    """L = (1/2P) sum_i sum_{v in outputs} ||y_{v,i} - h_{v,i}||^2 (Saxe et al. 2022, eq. 2,
    with the mean over P samples), so dL/dh_{v,i} = (h_{v,i} - y_{v,i}) / P."""

    name = "squared_error"

    def value(self, outputs: Mapping[str, Array], targets: Mapping[str, Array]) -> float:
        n_samples = next(iter(targets.values())).shape[0]
        return float(
            sum(np.sum((targets[v] - outputs[v]) ** 2) for v in targets) / (2.0 * n_samples)
        )

    def gradient(
        self, outputs: Mapping[str, Array], targets: Mapping[str, Array]
    ) -> dict[str, Array]:
        n_samples = next(iter(targets.values())).shape[0]
        return {v: (outputs[v] - targets[v]) / n_samples for v in targets}


class CrossEntropy:
    """L = -(1/P) sum_i sum_{v in outputs} sum_c y_{v,i,c} log softmax(h_{v,i})_c, the mean
    cross-entropy of the output activities read as logits, with one-hot (or probability) targets;
    dL/dh_{v,i} = (softmax(h_{v,i}) - y_{v,i}) / P. This is the loss of a ReLU classifier
    trained with ``torch.nn.functional.cross_entropy``, applied to the GDLN's gated-linear
    outputs (used to predict W_eff of an MNIST classifier with frozen gates)."""

    name = "cross_entropy"

    @staticmethod
    def _log_softmax(h: Array) -> Array:
        shifted = h - h.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def value(self, outputs: Mapping[str, Array], targets: Mapping[str, Array]) -> float:
        n_samples = next(iter(targets.values())).shape[0]
        return float(
            -sum(np.sum(targets[v] * self._log_softmax(outputs[v])) for v in targets) / n_samples
        )

    def gradient(
        self, outputs: Mapping[str, Array], targets: Mapping[str, Array]
    ) -> dict[str, Array]:
        n_samples = next(iter(targets.values())).shape[0]
        return {
            v: (np.exp(self._log_softmax(outputs[v])) - targets[v]) / n_samples for v in targets
        }
