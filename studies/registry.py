"""The studies the command line knows, and the contract each study module fulfils.

A study module defines:

- ``NAME``: its command-line name;
- ``Config``: a frozen dataclass (fields ``seed`` and ``device`` where they apply);
- ``PRESETS``: ``{"quick": Config(...), "paper": Config(...)}``;
- ``run(config) -> xr.Dataset``: compute only (no plotting), provenance attrs attached;
- ``plot(ds) -> dict[str, Figure]``: figures by name, reading only the Dataset;
- ``summary(ds) -> dict[str, float | str]``: headline numbers for ``relu-gdln show``.

Modules are imported when first asked for, so a run pays only for the studies it uses.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STUDIES: dict[str, str] = {
    "weff_mnist": "studies.weff_mnist",
    "weff_theory": "studies.weff_theory",
    "race": "studies.race",
    "one_hidden_1d": "studies.one_hidden_1d",
    "alignment": "studies.alignment",
    "alignment_mnist": "studies.alignment_mnist",
    "contexts": "studies.contexts",
}


class UnknownStudyError(LookupError):
    """No study of that name in this checkout."""


def available() -> list[str]:
    """Names of the studies whose module is importable in this checkout."""
    return [name for name, mod in STUDIES.items() if importlib.util.find_spec(mod) is not None]


def load(name: str) -> ModuleType:
    """The study module called ``name``; a clear error for an unknown name."""
    if name not in available():
        raise UnknownStudyError(f"unknown study {name!r}; known studies: {', '.join(available())}")
    module = importlib.import_module(STUDIES[name])
    for attr in ("NAME", "Config", "PRESETS", "run", "plot"):
        if not hasattr(module, attr):
            raise TypeError(f"study module {module.__name__} lacks {attr}")
    return module
