"""The theory side is sealed: importing every gdln submodule loads neither torch nor relu_lens."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import gdln


def test_gdln_imports_neither_torch_nor_the_lens() -> None:
    modules = sorted(f"gdln.{m.name}" for m in pkgutil.iter_modules(gdln.__path__))
    assert {"gdln.twin", "gdln.tasks", "gdln.context_task"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'relu_lens'))\n"
        "print(' '.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"gdln loaded {result.stdout.strip()}"
