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


#: the paper each study reproduces, and the headline quantity it measures (``relu-gdln list``,
#: the report page)
PAPERS: dict[str, tuple[str, str]] = {
    "weff_mnist": ("Ye 2025 (linear lens)", "inter/intra-class distance ratio of W_eff(x)"),
    "weff_theory": (
        "Ye 2025 + Saxe, Sodhani & Lewallen 2022",
        "error of the frozen-gate twin's W_eff(x, t) against the ReLU net's",
    ),
    "race": ("Saxe, Sodhani & Lewallen 2022 (neural race)", "reduced theory vs gradient descent"),
    "one_hidden_1d": ("Huang 2024 (1-D nets as splines)", "trained knots vs the target's kinks"),
    "alignment": (
        "Min, Mallada & Vidal 2024 (early alignment)",
        "alignment time t_align against the bound t1",
    ),
    "alignment_mnist": (
        "Min, Mallada & Vidal 2024 (early alignment)",
        "alignment iteration on MNIST digit pairs",
    ),
    "contexts": (
        "Jarvis, Klein, Rosman & Saxe 2025 (ReLN)",
        "relative L2 error of the twin's loss curve against the ReLU net's",
    ),
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
