"""The lens on any piecewise-linear graph: conv, pooling, BatchNorm (eval), residual nets.

float64 throughout. For random nets (hypothesis): W_eff x + b_eff = model(x) to 1e-10 relative
and W_eff equals the Jacobian from torch.func.jacrev. Modules used twice (a shared ReLU, tied
weights) are exact. Every refused operation raises UnsupportedModuleError naming its node, and
the model is left as it was.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from relu_lens import UnsupportedModuleError, activation_patterns, effective_weights
from relu_lens.effective import isometric_weights, iter_effective_weights
from relu_lens.models import cnn, resnet

RTOL = 1e-10


def jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reference: per-sample input Jacobians (sample, out, in) by torch.func.jacrev of the
    batch's summed output (the samples are independent, so each block is one sample's)."""
    J = torch.func.jacrev(lambda xs: model(xs).flatten(1).sum(0))(x)  # (out, sample, *in)
    return J.flatten(2).transpose(0, 1)


def assert_exact(model: nn.Module, x: torch.Tensor, chunk_size: int | None = None) -> None:
    """W x + b = model(x) to RTOL of max |model(x)|; W = jacrev's Jacobian J to RTOL of max |J|."""
    eff = effective_weights(model, x, chunk_size=chunk_size)
    with torch.no_grad():
        f = model(x).flatten(1)
    assert eff.W.shape == (x.shape[0], f.shape[1], x[0].numel())
    assert eff.b.shape == f.shape
    recon = torch.einsum("soi,si->so", eff.W, x.flatten(1)) + eff.b
    assert float((recon - f).abs().max()) <= RTOL * float(f.abs().max().clamp_min(1e-300))
    J = jacobian(model, x).detach()
    assert float((eff.W - J).abs().max()) <= RTOL * float(J.abs().max().clamp_min(1e-300))


def _randomise_batch_norm(model: nn.Module, generator: torch.Generator) -> None:
    """Running statistics and affine parameters away from their defaults (eval mode reads
    them), so a wrong BatchNorm adjoint cannot pass."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                size = m.num_features
                m.running_mean.copy_(torch.randn(size, generator=generator, dtype=torch.float64))
                m.running_var.copy_(
                    torch.rand(size, generator=generator, dtype=torch.float64) + 0.5
                )
                m.weight.copy_(torch.randn(size, generator=generator, dtype=torch.float64))
                m.bias.copy_(torch.randn(size, generator=generator, dtype=torch.float64))


class RandomNet(nn.Module):
    """A random piecewise-linear net, 1-D or 2-D: blocks of (conv or residual or branch),
    optional BatchNorm, a gate of some form, optional pooling (max, average, adaptive max or
    average), optional Dropout or Identity (eval mode); then flatten and a readout.
    Each gate follows an affine operation with a random bias, so no pre-activation is exactly
    zero (where the Jacobian would be one-sided)."""

    def __init__(self, data: st.DataObject, dims: int, channels: int, size: int) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.layers = nn.ModuleList()
        self.kinds: list[str] = []
        for _ in range(data.draw(st.integers(1, 3), label="blocks")):
            kind = data.draw(st.sampled_from(["conv", "residual", "branch"]), label="block")
            if kind == "conv":
                k = data.draw(st.integers(1, 3), label="kernel")
                stride = data.draw(st.integers(1, 2), label="stride")
                dilation = data.draw(st.integers(1, 2), label="dilation")
                padding = data.draw(st.integers(0, k // 2), label="padding")
                out = data.draw(
                    st.sampled_from(
                        [c for c in (2, 4, 6) if c % channels == 0 or channels % 2 == 0]
                        or [channels]
                    ),
                    label="out",
                )
                groups = (
                    2
                    if channels % 2 == 0
                    and out % 2 == 0
                    and data.draw(st.booleans(), label="groups")
                    else 1
                )
                new_size = (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1
                if new_size < 1:
                    continue
                layer: nn.Module = conv(channels, out, k, stride, padding, dilation, groups)
                channels, size = out, new_size
            elif kind == "residual":
                layer = Residual(conv, norm, channels)
            else:
                layer = Branch(conv, channels)
                channels *= 2
            self.layers.append(layer)
            self.kinds.append(kind)
            if data.draw(st.booleans(), label="batch norm"):
                self.layers.append(norm(channels))
                self.kinds.append("norm")
            gate = data.draw(
                st.sampled_from(
                    ["relu", "F.relu", "torch.relu", "method", "clamp", "leaky", "prelu"]
                ),
                label="gate",
            )
            self.layers.append(
                nn.LeakyReLU(0.2)
                if gate == "leaky"
                else nn.PReLU(channels)
                if gate == "prelu"
                else nn.ReLU()
            )
            self.kinds.append(gate)
            pool = data.draw(
                st.sampled_from(["none", "max", "avg", "adaptive", "adaptive avg"]), label="pool"
            )
            if pool != "none" and size >= 2:
                k = data.draw(st.integers(2, min(3, size)), label="pool kernel")
                stride = data.draw(st.integers(1, 2), label="pool stride")
                pad = data.draw(st.integers(0, k // 2), label="pool padding")
                pools = {
                    "max": (nn.MaxPool1d, nn.MaxPool2d),
                    "avg": (nn.AvgPool1d, nn.AvgPool2d),
                    "adaptive": (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d),
                    "adaptive avg": (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d),
                }
                make = pools[pool][dims - 1]
                if pool.startswith("adaptive"):
                    layer, size = make(max(1, size - 1)), max(1, size - 1)
                else:
                    layer = make(k, stride, pad)
                    size = (size + 2 * pad - k) // stride + 1
                self.layers.append(layer)
                self.kinds.append(pool)
            passing = data.draw(st.sampled_from(["none", "dropout", "identity"]), label="eval")
            if passing != "none":  # the identity in eval mode
                self.layers.append(nn.Dropout(0.5) if passing == "dropout" else nn.Identity())
                self.kinds.append(passing)
        self.readout = nn.Linear(channels * size**dims, data.draw(st.integers(1, 4), label="C"))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for kind, layer in zip(self.kinds, self.layers, strict=True):
            if kind == "F.relu":
                h = F.relu(h)
            elif kind == "torch.relu":
                h = torch.relu(h)
            elif kind == "method":
                h = h.relu()
            elif kind == "clamp":
                h = h.clamp(min=0)
            else:
                h = layer(h)
        return self.readout(torch.flatten(h, 1))


class Residual(nn.Module):
    """h + 0.5 * BN(conv(h)) - h / 4: a residual connection with scalings."""

    def __init__(self, conv: type[nn.Module], norm: type[nn.Module], channels: int) -> None:
        super().__init__()
        self.conv = conv(channels, channels, 3, padding=1)
        self.norm = norm(channels)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + 0.5 * self.norm(self.conv(h)) - h / 4


class Branch(nn.Module):
    """cat([h, relu(conv_1x1(h))], channels): concatenation of two paths."""

    def __init__(self, conv: type[nn.Module], channels: int) -> None:
        super().__init__()
        self.conv = conv(channels, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, F.relu(self.conv(h))], dim=1)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    dims=st.integers(1, 2),
    channels=st.integers(1, 3),
    size=st.integers(3, 8),
    batch=st.integers(1, 6),
    chunk=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_random_piecewise_linear_nets_are_exact(data, dims, channels, size, batch, chunk, seed):
    torch.manual_seed(seed)
    model = RandomNet(data, dims, channels, size).double().eval()
    _randomise_batch_norm(model, torch.Generator().manual_seed(seed))
    x = torch.randn(batch, channels, *[size] * dims, dtype=torch.float64)
    assert_exact(model, x, chunk_size=chunk)


@pytest.mark.parametrize("build", [cnn, resnet], ids=["cnn", "resnet"])
def test_the_study_models_are_exact_in_eval_mode(build):
    """The CNN (with its dropout, as weff_mnist builds it) and ResNet of weff_mnist (flat
    input, nn.Unflatten inside), after a few train-mode passes so that BatchNorm's running
    statistics are not the defaults."""
    torch.manual_seed(3)
    options = {"dropout": 0.5} if build is cnn else {}
    model = build(in_shape=(1, 12, 12), dtype=torch.float64, **options)
    for _ in range(3):
        model(torch.randn(16, 144, dtype=torch.float64))  # updates the running statistics
    model.eval()
    assert_exact(model, torch.randn(5, 144, dtype=torch.float64), chunk_size=2)
    gates = activation_patterns(model, torch.randn(5, 144, dtype=torch.float64))
    kinds = set(gates.kinds.values())
    assert kinds == ({"relu", "max_pool"} if build is cnn else {"relu"})


def test_every_functional_form_and_view():
    """F.linear, F.conv2d, F.batch_norm, F.leaky_relu, F.prelu, F.max_pool2d, F.avg_pool2d,
    F.adaptive_avg_pool2d, F.dropout (eval), F.pad, permute, transpose, reshape, view, squeeze,
    unsqueeze, getitem, sum, mean, neg, sub, torch.add with alpha, division by a constant."""

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 2, 3, 3))
            self.c = nn.Parameter(torch.randn(4))
            self.mean = nn.Buffer(torch.randn(4))
            self.var = nn.Buffer(torch.rand(4) + 0.5)
            self.slope = nn.Parameter(torch.rand(4))
            self.lin = nn.Parameter(torch.randn(3, 8))
            self.scale = nn.Buffer(torch.rand(1, 4, 1, 1) + 0.5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.conv2d(F.pad(x, (1, 0, 0, 1)), self.w, self.c, padding="same")
            h = F.batch_norm(h, self.mean, self.var, training=False)
            h = F.leaky_relu(h, 0.3) / self.scale
            h = F.max_pool2d(F.prelu(h - 0.1, self.slope), 2, stride=1)
            h = F.dropout(h, 0.5, training=self.training)
            a = F.avg_pool2d(h, 2).sum(dim=(2, 3))  # (sample, 4)
            g = F.adaptive_avg_pool2d(h, 1).squeeze(-1).squeeze(-1)  # (sample, 4)
            t = h.permute(0, 2, 3, 1).transpose(1, 2).reshape(x.shape[0], -1, 4).mean(1)
            v = torch.add(a, -g, alpha=2.0).unsqueeze(1).view(x.size(0), 4) - t[:, [0, 1, 2, 3]]
            return F.linear(torch.cat([v, t[:, :4]], 1), self.lin)

    torch.manual_seed(4)
    model = Functional().double().eval()
    assert_exact(model, torch.randn(6, 2, 6, 5, dtype=torch.float64), chunk_size=4)


def test_a_relu_module_used_twice_in_a_sequential_is_exact():
    """named_children() lists a repeated module once: reading the children gave
    max |W x + b - f(x)| of about 0.5 here. The traced graph has both calls."""
    torch.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(6, 8), relu, nn.Linear(8, 8), relu, nn.Linear(8, 3)).double()
    x = torch.randn(20, 6, dtype=torch.float64)
    assert_exact(model, x)
    assert len(activation_patterns(model, x)) == 2


def test_tied_weights_in_a_sequential_are_exact():
    """One nn.Linear (and one ReLU) at two places: W_eff = W3 D2 W2 D1 W2 D0 W1."""
    torch.manual_seed(1)
    tied = nn.Linear(7, 7)
    model = nn.Sequential(
        nn.Linear(5, 7), nn.ReLU(), tied, nn.ReLU(), tied, nn.ReLU(), nn.Linear(7, 2)
    ).double()
    x = torch.randn(20, 5, dtype=torch.float64)
    assert_exact(model, x)
    eff, gates = effective_weights(model, x), activation_patterns(model, x)
    W1, W2, W3 = model[0].weight, tied.weight, model[6].weight
    D = [torch.diag(g[0].double()) for g in gates]
    by_hand = W3 @ D[2] @ W2 @ D[1] @ W2 @ D[0] @ W1
    torch.testing.assert_close(eff.W[0], by_hand.detach(), rtol=1e-12, atol=1e-12)


def test_a_conv_used_twice_is_two_operations():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv, nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    model = model.double()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    assert_exact(model, x)
    assert activation_patterns(model, x).names == ("_1", "_3")  # conv nodes: _0 and _0_1


class _Tanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


class _OneLinear(nn.Module):
    """A module whose forward (in the subclasses) reads one 4 -> 4 linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)


class _Softmax(_OneLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.lin(x), dim=1)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x) * self.k(x)


class _Matmul(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :, None] @ x[:, None, :]).flatten(1)


class _TorchAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.att(x[:, None], x[:, None], x[:, None])[0].flatten(1)


class _Branching(_OneLinear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        if h.sum() > 0:
            return h
        return -h


class _Looping(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([row for row in x])


class _Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class _TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


def _train_mode_batch_norm() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))


def _no_running_stats() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False)).eval()


REFUSED = {
    "tanh function": (_Tanh, r"node tanh: torch\.tanh \(at .*test_lens_graph\.py:\d+ "),
    "tanh module": (lambda: nn.Sequential(nn.Linear(4, 4), nn.Tanh()), r"node _1: nn\.Tanh"),
    "tanh method": (lambda: _Lambda(lambda x: x.tanh()), r"node tanh: Tensor\.tanh"),
    "sigmoid": (lambda: nn.Sequential(nn.Sigmoid()), r"node _0: nn\.Sigmoid"),
    "softmax": (_Softmax, r"node softmax: F\.softmax \(at .*`return F\.softmax"),
    "batch norm in train mode": (_train_mode_batch_norm, r"node _1: nn\.BatchNorm1d.*train mode"),
    "batch norm without running statistics": (_no_running_stats, r"node _1: .*running stat"),
    "F.batch_norm training": (
        lambda: _Lambda(lambda x: F.batch_norm(x, None, None, training=True)),
        r"node batch_norm: F\.batch_norm.*train mode",
    ),
    "dropout in train mode": (lambda: nn.Sequential(nn.Dropout(0.2)), r"node _0: nn\.Dropout"),
    "F.dropout, training by default": (
        lambda: _Lambda(lambda x: F.dropout(x, 0.2)),
        r"node dropout: F\.dropout.*train mode",
    ),
    "product of two x-dependent maps": (_Attention, r"node mul: operator\.mul .*not be linear"),
    "matmul": (_Matmul, r"node matmul: operator\.matmul"),
    "multi-head attention": (_TorchAttention, r"node att: nn\.MultiheadAttention"),
    "division by x": (lambda: _Lambda(lambda x: 1.0 / x), r"node truediv: operator\.truediv"),
    "data-dependent control flow": (
        _Branching,
        r"node gt: operator\.gt decides Python control flow .* at .*`if h\.sum\(\) > 0:`",
    ),
    "iteration over x": (_Looping, r"node x: placeholder is iterated in Python"),
    "clamp at another bound": (
        lambda: _Lambda(lambda x: x.clamp(min=0.5)),
        r"node clamp: Tensor\.clamp.*min=0",
    ),
    "relu6": (lambda: nn.Sequential(nn.ReLU6()), r"node _0: nn\.ReLU6"),
    "conv3d": (lambda: nn.Sequential(nn.Conv3d(1, 1, 1)), r"node _0: nn\.Conv3d"),
    "max-pool returning indices": (
        lambda: nn.Sequential(nn.MaxPool1d(2, return_indices=True)),
        r"node _0: nn\.MaxPool1d.*returns indices",
    ),
    "sum over the batch": (lambda: _Lambda(lambda x: x.sum()), r"node sum_1: Tensor\.sum"),
    "mean over the batch dim": (
        lambda: _Lambda(lambda x: x - x.mean(0, keepdim=True)),
        r"node mean: Tensor\.mean .*batch dim",
    ),
    "concatenation along the batch": (
        lambda: _Lambda(lambda x: torch.cat([x, x], 0)),
        r"node cat: torch\.cat .*batch dim",
    ),
    "permute moving the batch": (
        lambda: _Lambda(lambda x: x.permute(1, 0)),
        r"node permute: Tensor\.permute .*batch dim",
    ),
    "indexing a sample": (lambda: _Lambda(lambda x: x[0]), r"node getitem: operator\.getitem"),
    "squeeze of every dim": (lambda: _Lambda(lambda x: x.squeeze()), r"node squeeze: .*every"),
    "two inputs": (_TwoInputs, r"node y: .*second input"),
    "tuple output": (lambda: _Lambda(lambda x: (x, x)), r"returns tuple"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_operations_name_their_node_and_leave_the_model_as_it_was(case):
    build, pattern = REFUSED[case]
    model = build()
    x = torch.randn(3, 4)
    state = copy.deepcopy(model.state_dict())
    modes = [m.training for m in model.modules()]
    attributes = [sorted(vars(m)) for m in model.modules()]
    call, forward = nn.Module.__call__, type(model).forward
    for lens in (effective_weights, activation_patterns, iter_effective_weights):
        with pytest.raises(UnsupportedModuleError, match=pattern) as err:
            lens(model, x)
        assert "\n" not in str(err.value)
    assert nn.Module.__call__ is call and type(model).forward is forward
    assert [m.training for m in model.modules()] == modes
    assert [sorted(vars(m)) for m in model.modules()] == attributes
    assert all(
        not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.modules()
    )
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_hooked_module_refused_by_name():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    model[1].register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(UnsupportedModuleError, match=r"module 1 \(ReLU\) has forward hooks"):
        effective_weights(model, torch.randn(2, 4))


def test_an_in_place_relu_whose_input_is_read_later_is_refused():
    class Aliased(_OneLinear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.lin(x)
            return F.relu(h, inplace=True) + h

    with pytest.raises(UnsupportedModuleError, match=r"node relu: .* in place on lin, which add"):
        effective_weights(Aliased(), torch.randn(2, 4))
    torch.manual_seed(5)
    fine = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)).double()
    assert_exact(fine, torch.randn(5, 4, dtype=torch.float64))


def test_isometric_representation_of_conv_first_layers():
    """A strided convolution with fewer outputs than inputs: Z has n_1 < in columns; a padded
    one (n_1 >= in): Q is the identity and Z is W_eff."""
    torch.manual_seed(6)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    for conv, rank in (
        (nn.Conv2d(1, 2, 3, stride=2), 2 * 3 * 3),
        (nn.Conv2d(1, 2, 3, padding=1), 64),
    ):
        model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).double()
        model(x)  # materialise the lazy readout
        W = effective_weights(model, x).W
        Z, Q = isometric_weights(model, x, chunk_size=2)
        assert Z.shape == (5, 3, rank) and Q.shape == (64, rank)
        torch.testing.assert_close(Q.T @ Q, torch.eye(rank, dtype=torch.float64))
        torch.testing.assert_close(Z @ Q.T, W, rtol=1e-12, atol=1e-12)
        chunks = [(rows, Zc.clone()) for rows, Zc, _ in iter_effective_weights(model, x, 2, True)]
        torch.testing.assert_close(torch.cat([Zc for _, Zc in chunks]), Z)
