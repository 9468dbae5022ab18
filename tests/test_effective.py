"""W_eff(x) x + b_eff(x) = f(x) and W_eff = input Jacobian, for random ReLU MLPs (the masked
chain); convolutional and residual nets are in test_lens_graph.py."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from relu_lens import UnsupportedModuleError, effective_weights
from relu_lens.effective import isometric_weights
from relu_lens.models import mlp


def jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Reference: the per-sample input Jacobian by torch.func (what a user would otherwise do)."""
    J = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi[None])[0]))(x)
    return J.reshape(x.shape[0], J.shape[1], -1)


@settings(max_examples=25, deadline=None)
@given(
    n_in=st.integers(1, 12),
    widths=st.lists(st.integers(1, 10), min_size=0, max_size=4),
    n_out=st.integers(1, 5),
    bias=st.booleans(),
    batch=st.integers(1, 17),
    chunk=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_affine_identity_and_jacobian(n_in, widths, n_out, bias, batch, chunk, seed):
    torch.manual_seed(seed)
    model = mlp(n_in, widths, n_out, bias=bias, dtype=torch.float64)
    if bias:  # make biases large enough to matter
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 1:
                    p.normal_()
    x = torch.randn(batch, n_in, dtype=torch.float64)
    eff = effective_weights(model, x, chunk_size=chunk)
    assert eff.W.shape == (batch, n_out, n_in) and eff.b.shape == (batch, n_out)
    f = model(x).detach()
    recon = torch.einsum("soi,si->so", eff.W, x) + eff.b
    scale = f.abs().max().clamp_min(1e-12)
    assert (recon - f).abs().max() / scale < 1e-10
    torch.testing.assert_close(eff.W, jacobian(model, x).detach(), rtol=1e-10, atol=1e-12)
    if not bias:
        assert torch.count_nonzero(eff.b) == 0


def test_flatten_and_images():
    torch.manual_seed(1)
    model = mlp(12, [7, 5], 3, flatten=True, dtype=torch.float64)
    x = torch.randn(9, 3, 4, dtype=torch.float64)
    eff = effective_weights(model, x)
    recon = torch.einsum("soi,si->so", eff.W, x.reshape(9, -1))
    torch.testing.assert_close(recon, model(x).detach(), rtol=1e-12, atol=1e-12)


def test_bias_free_weff_is_scale_invariant():
    """Positive homogeneity: W_eff depends only on the direction of x."""
    torch.manual_seed(2)
    model = mlp(6, [8, 8], 4, dtype=torch.float64)
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(effective_weights(model, x).W, effective_weights(model, 3.7 * x).W)


def test_isometric_representation_has_weff_inner_products():
    torch.manual_seed(3)
    for n_in, h1 in ((20, 6), (5, 9)):  # thin QR with h1 < in and h1 > in
        model = mlp(n_in, [h1, 7], 3, dtype=torch.float64)
        x = torch.randn(11, n_in, dtype=torch.float64)
        W = effective_weights(model, x).W
        Z, Q = isometric_weights(model, x, chunk_size=4)
        torch.testing.assert_close(Z @ Q.T, W, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(Q.T @ Q, torch.eye(Q.shape[1], dtype=torch.float64))
        gram_w, gram_z = W.flatten(1) @ W.flatten(1).T, Z.flatten(1) @ Z.flatten(1).T
        torch.testing.assert_close(gram_z, gram_w, rtol=1e-12, atol=1e-12)


def test_no_graph_kept():
    model = mlp(4, [3], 2)
    eff = effective_weights(model, torch.randn(2, 4))
    assert not eff.W.requires_grad and not eff.b.requires_grad


class HiddenRelu(nn.Linear):
    """A subclass overriding forward: traced through, its relu is seen."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


class OverriddenSequential(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().forward(x))


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (
            nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)),
            r"node _1: nn\.BatchNorm1d \(module '1'\) runs in train mode",
        ),
        (nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)), r"node _1: nn\.Tanh"),
        (OverriddenSequential(nn.Linear(4, 1)), r"node tanh: torch\.tanh \(at .*test_effective"),
        (nn.Sequential(nn.Flatten(0), nn.Linear(4, 1)), r"node _0: nn\.Flatten .* batch dim"),
    ],
)
def test_unsupported_modules_named(model, name):
    with pytest.raises(UnsupportedModuleError, match=name):
        effective_weights(model, torch.randn(2, 4))


def test_subclass_with_its_own_forward_is_read_through():
    """Before the graph was traced such a layer was refused; now its relu is a gate."""
    torch.manual_seed(5)
    model = nn.Sequential(HiddenRelu(4, 6), nn.Linear(6, 2)).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    eff = effective_weights(model, x)
    recon = torch.einsum("soi,si->so", eff.W, x) + eff.b
    torch.testing.assert_close(recon, model(x).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(eff.W, jacobian(model, x).detach(), rtol=1e-12, atol=1e-12)


def test_hooked_module_refused():
    model = mlp(4, [3], 2)
    model[0].register_forward_hook(lambda m, i, o: o * 2)
    with pytest.raises(UnsupportedModuleError, match="hooks"):
        effective_weights(model, torch.randn(2, 4))


def test_wrong_input_shape():
    with pytest.raises(ValueError, match="expects 4"):
        effective_weights(mlp(4, [3], 2), torch.randn(2, 5))
    with pytest.raises(ValueError, match="batch dimension"):
        effective_weights(mlp(4, [3], 2), torch.randn(4))


@pytest.mark.parametrize("n", [63, 64, 130, 257])
def test_lower_triangular_product(n):
    """The blocked product that skips the zero upper blocks equals the plain one."""
    from relu_lens.chain import lower_triangular_mm

    torch.manual_seed(n)
    A = torch.randn(37, n, dtype=torch.float64)
    L = torch.tril(torch.randn(n, n, dtype=torch.float64))
    out = torch.empty(37, n, dtype=torch.float64)
    lower_triangular_mm(A, L, out)
    torch.testing.assert_close(out, A @ L, rtol=1e-12, atol=1e-12)


def test_isometric_representation_with_wide_first_layer():
    torch.manual_seed(4)
    model = mlp(300, [130, 7], 3, dtype=torch.float64)  # R^T is 130 x 130: blocked product
    x = torch.randn(9, 300, dtype=torch.float64)
    Z, Q = isometric_weights(model, x, chunk_size=4)
    torch.testing.assert_close(Z @ Q.T, effective_weights(model, x).W, rtol=1e-12, atol=1e-12)
