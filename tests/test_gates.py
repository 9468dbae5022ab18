"""Activation patterns and the lifetime of the hooks that read them."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from relu_lens import activation_patterns
from relu_lens.effective import forward_masks, parse_mlp
from relu_lens.gates import gate_flip_fraction, relu_hooks
from relu_lens.models import mlp


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_patterns_match_preactivations():
    torch.manual_seed(0)
    model = mlp(5, [7, 6], 3, bias=True)
    x = torch.randn(20, 5)
    gates = activation_patterns(model, x)
    assert [g.shape for g in gates] == [(20, 7), (20, 6)]
    z1 = model[0](x)
    z2 = model[2](torch.relu(z1))
    assert torch.equal(gates[0], z1 > 0) and torch.equal(gates[1], z2 > 0)
    _, masks = forward_masks(parse_mlp(model), x)
    assert all(torch.equal(a, b) for a, b in zip(gates, masks, strict=True))
    assert hook_count(model) == 0


def test_inplace_relu_read_before_activation():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 1))
    x = torch.randn(6, 3)
    (gate,) = activation_patterns(model, x)
    assert torch.equal(gate, model[0](x) > 0)


def test_hooks_removed_after_exception():
    model = mlp(4, [3], 2)
    with pytest.raises(RuntimeError):
        activation_patterns(model, torch.randn(2, 5))  # wrong width: forward fails
    assert hook_count(model) == 0
    with pytest.raises(KeyError), relu_hooks(model):
        assert hook_count(model) == 1
        raise KeyError("inside")
    assert hook_count(model) == 0


def test_no_relu_module_is_an_error():
    with pytest.raises(ValueError, match=r"no nn\.ReLU"):
        activation_patterns(nn.Sequential(nn.Linear(2, 2)), torch.randn(1, 2))


def test_gate_flip_fraction_on_hand_made_masks():
    a = [torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0]], dtype=torch.bool), torch.ones(2, 2, dtype=bool)]
    b = [torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool), torch.ones(2, 2, dtype=bool)]
    assert gate_flip_fraction(a, b) == [2 / 8, 0.0]
    assert gate_flip_fraction(a, a) == [0.0, 0.0]
    with pytest.raises(ValueError, match="layers"):
        gate_flip_fraction(a, b[:1])
    with pytest.raises(ValueError, match="differ"):
        gate_flip_fraction(a[:1], [torch.ones(3, 4, dtype=bool)])


def test_gate_flip_fraction_over_a_hand_made_sequence():
    """Three snapshots of one layer's gates (2 samples x 3 units): flips between consecutive
    snapshots and against the last one, counted by hand."""
    seq = [
        torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool),
        torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool),  # 2 of 6 flipped
        torch.tensor([[1, 0, 0], [1, 1, 1]], dtype=torch.bool),  # 2 of 6 flipped
    ]
    consecutive = [gate_flip_fraction([a], [b])[0] for a, b in itertools.pairwise(seq)]
    to_final = [gate_flip_fraction([a], [seq[-1]])[0] for a in seq]
    assert consecutive == pytest.approx([2 / 6, 2 / 6])
    assert to_final == pytest.approx([4 / 6, 2 / 6, 0.0])
