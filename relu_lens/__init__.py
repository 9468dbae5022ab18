"""relu_lens: measure real ReLU networks (experiment side; torch).

Public API:

- :func:`effective_weights` -- exact per-sample W_eff(x), b_eff(x) of any piecewise-linear
  model: MLPs, convolutional and residual nets (``relu_lens.effective``; the accepted
  operations are ``relu_lens.graph.OPERATIONS``)
- :func:`activation_patterns` -- the gates of every gated operation, by position or by graph
  node name (:class:`Gates`, ``relu_lens.gates``)
- :func:`read_mlp`, :class:`MLPArrays`, :class:`ArrayRecorder` -- a bias-free MLP's layer
  weights and per-sample gates as numpy arrays, at one snapshot or over training
  (``relu_lens.arrays``): what crosses to the theory side (``gdln.ReLN.from_gates``)

``relu_lens`` never imports ``gdln``; studies join the two.
"""

from __future__ import annotations

from relu_lens.arrays import ArrayRecorder, MLPArrays, read_mlp
from relu_lens.effective import EffectiveMap, UnsupportedModuleError, effective_weights
from relu_lens.gates import Gates, activation_patterns

__all__ = [
    "ArrayRecorder",
    "EffectiveMap",
    "Gates",
    "MLPArrays",
    "UnsupportedModuleError",
    "activation_patterns",
    "effective_weights",
    "read_mlp",
]
