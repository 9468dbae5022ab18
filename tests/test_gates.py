"""Activation patterns: the gates of every gated operation, by position and by node name."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from relu_lens import activation_patterns
from relu_lens.chain import forward_masks, parse_mlp
from relu_lens.effective import InputError
from relu_lens.gates import gate_flip_fraction
from relu_lens.models import mlp


def test_patterns_match_preactivations():
    torch.manual_seed(0)
    model = mlp(5, [7, 6], 3, bias=True)
    x = torch.randn(20, 5)
    gates = activation_patterns(model, x)
    assert [g.shape for g in gates] == [(20, 7), (20, 6)]
    z1 = model[0](x)
    z2 = model[2](torch.relu(z1))
    assert torch.equal(gates[0], z1 > 0) and torch.equal(gates[1], z2 > 0)
    _, masks = forward_masks(parse_mlp(model).ops, x)
    assert all(torch.equal(a, b) for a, b in zip(gates, masks, strict=True))
    assert gates.names == ("_1", "_3") and gates.kinds == {"_1": "relu", "_3": "relu"}
    assert torch.equal(gates["_3"], gates[1]) and "_1" in gates and "_2" not in gates
    assert [name for name, _ in gates.items()] == list(gates.names)


def test_inplace_relu_read_before_activation():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 1))
    x = torch.randn(6, 3)
    (gate,) = activation_patterns(model, x)
    assert torch.equal(gate, model[0](x) > 0)


def test_wrong_width_is_an_input_error():
    with pytest.raises(InputError, match=r"5 features per sample .* expects 4"):
        activation_patterns(mlp(4, [3], 2), torch.randn(2, 5))


def test_a_model_without_gates_has_none():
    gates = activation_patterns(nn.Sequential(nn.Linear(2, 2)), torch.randn(1, 2))
    assert len(gates) == 0 and list(gates) == []


def test_a_relu_module_called_twice_has_two_gates():
    """One nn.ReLU instance at two places of a Sequential: two graph nodes, two gates, each
    the mask of its own pre-activation."""
    torch.manual_seed(1)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 5), relu, nn.Linear(5, 4), relu, nn.Linear(4, 2))
    x = torch.randn(9, 3)
    gates = activation_patterns(model, x)
    assert gates.names == ("_1", "_1_1")
    z1 = model[0](x)
    z2 = model[2](torch.relu(z1))
    assert torch.equal(gates["_1"], z1 > 0) and torch.equal(gates["_1_1"], z2 > 0)


class _HandConv(nn.Module):
    """Conv 1x1 (weight 1, bias -4), F.relu, 2x2 max-pool, LeakyReLU, flatten, readout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.pool = nn.MaxPool2d(2)
        self.leaky = nn.LeakyReLU(0.1)
        self.out = nn.Linear(4, 1)
        self.leaky_shift = 2.5
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(-4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.relu(self.conv(x))
        h = self.leaky(self.pool(h) - self.leaky_shift)
        return self.out(h.flatten(1))


def test_gates_of_a_hand_built_conv_net_match_a_hand_count():
    """One 4x4 image with the entries 0..15: the conv subtracts 4, so the ReLU passes the 11
    entries 5..15; each 2x2 window's maximum sits at its bottom-right corner (flat indices 5,
    7, 13, 15); the pooled values relu(5-4), relu(7-4), relu(13-4), relu(15-4) = 1, 3, 9, 11
    minus 2.5 are negative only for the first window."""
    model = _HandConv().double()
    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4)
    gates = activation_patterns(model, x)
    assert gates.names == ("relu", "pool", "leaky")
    assert gates.kinds == {"relu": "relu", "pool": "max_pool", "leaky": "leaky_relu"}
    relu = gates["relu"]
    assert relu.shape == (1, 16) and relu.dtype == torch.bool
    assert int(relu.sum()) == 11 and relu[0].tolist() == [False] * 5 + [True] * 11
    assert gates["pool"].tolist() == [[5, 7, 13, 15]]
    assert gates["leaky"].tolist() == [[False, True, True, True]]


def test_max_pool_selections_index_the_flattened_pool_input():
    """For several channels the index runs over the whole (channel, H, W) input of the pool:
    gathering there gives the pooled values."""
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.MaxPool2d(2, stride=1), nn.Flatten(), nn.Linear(3 * 25, 1))
    x = torch.randn(4, 2, 6, 6)
    (selected,) = activation_patterns(model, x)
    with torch.no_grad():
        z = conv(x)
        pooled = torch.nn.functional.max_pool2d(z, 2, stride=1)
    assert selected.shape == (4, 75)
    torch.testing.assert_close(z.flatten(1).gather(1, selected), pooled.flatten(1))


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
