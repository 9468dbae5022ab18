"""Bad batches given to the lens: one clear line (InputError) before any work, never a number.

Every entry point that takes a batch (``effective_weights``, ``isometric_weights``,
``iter_effective_weights``, ``activation_patterns``, ``read_mlp``) refuses an empty batch, NaN
or inf, a wrong feature count, and a multi-dimensional batch given to an MLP without
``nn.Flatten``; with a leading ``nn.Flatten`` such a batch is read exactly as its flattened copy.
A conv net takes its own shape, and a shape it does not take names the failing node.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from relu_lens import activation_patterns, effective_weights, read_mlp
from relu_lens.effective import InputError, isometric_weights, iter_effective_weights
from relu_lens.models import mlp


def _effective(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    eff = effective_weights(model, x, chunk_size=2)
    return [eff.W, eff.b]


def _isometric(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return list(isometric_weights(model, x, chunk_size=2))


def _iterated(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    chunks = iter_effective_weights(model, x, chunk_size=2)
    return [t for _, W, b in chunks for t in (W, b)]


def _patterns(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return activation_patterns(model, x)


def _arrays(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    arrays = read_mlp(model, x)
    return [torch.as_tensor(a) for a in (*arrays.weights, *arrays.gates)]


LENSES: dict[str, Callable[[nn.Module, torch.Tensor], list[torch.Tensor]]] = {
    "effective_weights": _effective,
    "isometric_weights": _isometric,
    "iter_effective_weights": _iterated,
    "activation_patterns": _patterns,
    "read_mlp": _arrays,
}


@pytest.fixture(params=list(LENSES))
def lens(request: pytest.FixtureRequest) -> Callable[[nn.Module, torch.Tensor], list[torch.Tensor]]:
    return LENSES[request.param]


def _model(flatten: bool = False) -> nn.Sequential:
    """A bias-free float64 MLP 12 -> 6 -> 5 -> 3 (read_mlp needs bias-free)."""
    torch.manual_seed(0)
    return mlp(12, [6, 5], 3, flatten=flatten, dtype=torch.float64)


def _raises(lens, model: nn.Module, x: torch.Tensor, pattern: str) -> str:
    """The one-line InputError message of ``lens(model, x)``, checked against ``pattern``."""
    with pytest.raises(InputError, match=pattern) as err:
        lens(model, x)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("flatten", [False, True])
def test_empty_batch(lens, flatten):
    x = torch.zeros(0, 12, dtype=torch.float64)
    message = _raises(lens, _model(flatten), x, r"x is an empty batch \(shape \(0, 12\)\)")
    assert "at least one sample" in message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_entries(lens, bad):
    x = torch.randn(5, 12, dtype=torch.float64)
    x[3, 7] = bad
    x[4, 0] = bad
    _raises(lens, _model(), x, r"x holds NaN or inf \(2 of 60 entries, first in sample 3\)")


def test_non_finite_entries_in_images_with_flatten(lens):
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    x[1, 2, 3] = float("nan")
    _raises(lens, _model(flatten=True), x, r"NaN or inf \(1 of 60 entries, first in sample 1\)")


def test_images_without_flatten_are_refused(lens):
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    message = _raises(lens, _model(), x, r"x has shape \(5, 3, 4\)")
    assert "nn.Linear(12, ...)" in message and "nn.Flatten()" in message


def test_images_with_flatten_equal_the_flattened_batch(lens):
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    model = _model(flatten=True)
    images = lens(model, x)
    flat = lens(model, x.reshape(5, -1))
    plain = lens(_model(flatten=False), x.reshape(5, -1))  # same weights, no Flatten
    assert len(images) == len(flat) == len(plain) > 0
    for a, b, c in zip(images, flat, plain, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_missing_batch_dimension(lens):
    _raises(lens, _model(), torch.randn(12, dtype=torch.float64), "batch dimension")


@pytest.mark.parametrize("name", list(LENSES))
def test_wrong_feature_count(name):
    with pytest.raises(InputError, match=r"13 features per sample .* expects 12"):
        LENSES[name](_model(), torch.randn(4, 13, dtype=torch.float64))


def test_iterator_checks_when_called_not_when_iterated():
    """The errors come before the first chunk is asked for (a generator alone would defer
    them to the first ``next``)."""
    model = _model()
    x = torch.randn(4, 12, dtype=torch.float64)
    with pytest.raises(InputError, match="NaN"):
        iter_effective_weights(model, torch.full((4, 12), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        iter_effective_weights(model, x, chunk_size=0)
    with pytest.raises(ValueError, match=r"out has shape \(4, 3, 11\), expected \(4, 3, 12\)"):
        iter_effective_weights(model, x, out=torch.empty(4, 3, 11, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected \(4, 3, 6\)"):
        iter_effective_weights(model, x, isometric=True, out=torch.empty(4, 3, 12))


def test_read_mlp_checks_numpy_input():
    x = np.random.default_rng(0).standard_normal((4, 12))
    x[2, 5] = np.nan
    with pytest.raises(InputError, match="first in sample 2"):
        read_mlp(_model(), x)
    with pytest.raises(InputError, match="empty batch"):
        read_mlp(_model(), np.zeros((0, 12)))


def _conv_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 1)).double()


@pytest.mark.parametrize("name", list(LENSES)[:4])  # read_mlp reads MLPs only
def test_conv_nets_keep_their_input_shape_and_check_samples(name):
    """A model that is no MLP takes its own input shape; an empty batch, NaN and a shape it does
    not take are refused before any work, the last naming the node where the model fails."""
    lens, model = LENSES[name], _conv_model()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    assert len(lens(model, x)) > 0
    x[0, 0, 1, 1] = float("nan")
    _raises(lens, model, x, r"NaN or inf \(1 of 48 entries")
    _raises(lens, model, torch.zeros(0, 1, 4, 4, dtype=torch.float64), "empty batch")
    message = _raises(lens, model, torch.randn(3, 1, 5, 5, dtype=torch.float64), "does not fit")
    assert "node _3: nn.Linear (module '3')" in message and "(3, 1, 5, 5)" in message
    _raises(lens, model, torch.randn(3, 1, 4, dtype=torch.float64), "node _0: nn.Conv2d")


def test_activation_patterns_of_a_conv_net_are_flat_per_sample():
    (gate,) = activation_patterns(_conv_model(), torch.randn(3, 1, 4, 4, dtype=torch.float64))
    assert gate.shape == (3, 8)


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)
