"""relu_lens: measure real ReLU networks (experiment side; torch).

Public API (imported lazily, so ``relu_lens.tasks`` and ``relu_lens.data`` stay torch-free):

- :func:`effective_weights` -- exact per-sample W_eff(x), b_eff(x) (``relu_lens.effective``)
- :func:`activation_patterns` -- the gates D_l(x) per hidden layer (``relu_lens.gates``)
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "effective_weights": "relu_lens.effective",
    "EffectiveMap": "relu_lens.effective",
    "UnsupportedModuleError": "relu_lens.effective",
    "activation_patterns": "relu_lens.gates",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'relu_lens' has no attribute {name!r}")
