"""What the command line prints: coordinate ranges in ``show``, papers in ``list``, and no
progress-bar updates when the output is not a terminal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from relu_lens.models import mlp
from relu_lens.train import train
from studies import cli, registry


def test_show_gives_each_coordinate_its_length_and_range() -> None:
    ds = xr.Dataset(
        {"v": (("time", "init"), np.zeros((3, 2)), {"long_name": "v", "units": "1"})},
        coords={
            "time": ("time", [0.0, 2.5, 40.0], {"units": "1"}),
            "init": ("init", ["aligned", "orthogonal"], {"units": "1"}),
        },
        attrs={"study": "none"},
    )
    text = cli.describe(ds)
    assert "time ('time',) [1] n=3, 0 .. 40" in text
    assert "init ('init',) [1] n=2, 'aligned' .. 'orthogonal'" in text


def test_list_names_the_paper_and_the_headline_quantity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in registry.available():
        paper, headline = registry.PAPERS[name]
        assert name in out and paper in out and headline in out


def test_no_progress_bar_updates_in_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    """Under pytest stderr is not a terminal, as in a log file: the training bar stays off."""
    model = mlp(3, (4,), 2, dtype=torch.float64)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 2, (5,))
    train(model, x, y, steps=50, lr=0.1, progress=True)
    assert "\r" not in capsys.readouterr().err
