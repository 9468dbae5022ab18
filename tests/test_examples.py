"""The tutorial in examples/ runs top to bottom as a script and shows what it says it shows.

It is run the way a reader runs it (``python examples/tutorial.py``, Agg backend), with its
temporary folder inside pytest's, and checked through the numbers it prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TUTORIAL = EXAMPLES / "tutorial.py"


def printed(pattern: str, text: str) -> float:
    """The number printed after ``pattern`` (a literal line start) in ``text``."""
    match = re.search(re.escape(pattern) + r"\s*([-+0-9.eE]+|nan|inf)", text)
    assert match, f"the tutorial did not print {pattern!r}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Standard output of one run of the tutorial, and the folder it put its files in."""
    tmp = tmp_path_factory.mktemp("tutorial")
    env = {**os.environ, "MPLBACKEND": "Agg", "TMPDIR": str(tmp), "OPENBLAS_NUM_THREADS": "1"}
    before = sorted(EXAMPLES.iterdir())
    done = subprocess.run(
        [sys.executable, str(TUTORIAL)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(EXAMPLES.iterdir()) == before  # nothing written beside the tutorial
    out = done.stdout
    folder = Path(re.search(r"figures and files go to (\S+)", out).group(1))
    assert folder.resolve().parent == tmp.resolve()  # a temporary folder, not the repository
    return out, folder


def test_tutorial_is_a_jupytext_percent_script() -> None:
    text = TUTORIAL.read_text()
    assert "format_name: percent" in text
    assert text.count("# %% [markdown]") >= 10
    assert text.count("\n# %%\n") >= 10  # code cells


def test_tutorial_runs_to_the_end(tutorial: tuple[str, Path]) -> None:
    out, _ = tutorial
    assert out.rstrip().endswith("tutorial finished")


def test_the_lens_identity_holds(tutorial: tuple[str, Path]) -> None:
    out, _ = tutorial
    assert printed("lens identity: max |W x + b - model(x)| =", out) < 1e-10
    assert printed("lens identity with nn.Flatten: max |W x + b - model(x)| =", out) < 1e-10
    assert printed("sample 0: max |W3 D2 W2 D1 W1 - W_eff| =", out) < 1e-10


def test_the_twin_follows_the_relu_net(tutorial: tuple[str, Path]) -> None:
    out, _ = tutorial
    assert printed("relative L2 error of the loss curve =", out) < 0.2
    assert printed("frozen-gate twin: max |twin(x) - relu(x)| =", out) < 1e-10


def test_the_dataset_is_sliced_saved_and_reopened(tutorial: tuple[str, Path]) -> None:
    out, folder = tutorial
    assert "<xarray.Dataset>" in out and "loss_theory" in out
    assert printed("relative L2 error per init: {'aligned':", out) < 0.1
    assert "reopened race.nc: study race, t_max 10.0" in out
    assert {p.name for p in folder.iterdir()} == {
        "template.png",
        "twin_loss.png",
        "race_loss.png",
        "race.nc",
    }
