"""The masked chain: W_eff(x) and b_eff(x) of an MLP, the fast path of the lens.

For a stack of affine layers A_l h + c_l and ReLUs with gates D_l(x) = diag(1[z_l(x) > 0])
(Ye 2025, arXiv 2511.05628, eq. for W_eff):

    W_eff(x) = W_L D_{L-1}(x) W_{L-1} ... D_1(x) W_1,
    b_eff(x) = sum_l W_L D_{L-1}(x) ... D_l(x) c_l      (zero for bias-free nets).

Both are built right to left, batched over samples: G <- W_L; for each layer below,
G <- (G * mask_l[:, None, :]) @ W_l, adding G @ c_l to b on the way. The cost per sample is
about C * sum_l n_l n_{l-1} multiply-adds for C outputs.

:func:`chain_of` finds the chain in a traced graph (:func:`relu_lens.graph.trace_model`): an
optional leading flatten, then ``nn.Linear`` modules and ReLUs (module or function), each node
feeding only the next. A module used twice is two links (tied weights or a shared ReLU give
the right product); anything else goes to the general path (``relu_lens.linearize``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from relu_lens.graph import LensGraph, Step, UnsupportedModuleError, trace_model


@dataclass(frozen=True)
class Affine:
    """One affine layer z = W h + c of the chain (W: (out, in), c: (out,) or None)."""

    W: Tensor
    c: Tensor | None


@dataclass(frozen=True)
class Gate:
    """A ReLU: h = D(z) z with D(z) = diag(1[z > 0])."""


@dataclass(frozen=True)
class MLPChain:
    """An MLP read from its graph: the layers in execution order, and whether a flatten of the
    input (``nn.Flatten()``, ``torch.flatten(x, 1)``) comes first."""

    ops: list[Affine | Gate]
    flatten: bool

    @property
    def n_in(self) -> int:
        """Input features of the first layer."""
        return next(op for op in self.ops if isinstance(op, Affine)).W.shape[1]


def _is_flatten(step: Step) -> bool:
    """A flatten of every dim after the batch dim."""
    return (
        step.op_name in ("flatten", "Flatten")
        and step.args.get("start_dim", 0) == 1
        and step.args.get("end_dim", -1) == -1
    )


def chain_of(graph: LensGraph) -> MLPChain | None:
    """The graph as an MLP chain, or None when it is not one (module docstring)."""
    ops: list[Affine | Gate] = []
    flatten = False
    previous = graph.steps[0].node
    for k, step in enumerate(graph.steps[1:]):
        if step.args.get("input") is not previous or len(previous.users) != 1:
            return None
        if k == 0 and _is_flatten(step):
            flatten = True
        elif step.rule == "linear" and isinstance(step.module, nn.Linear):
            ops.append(Affine(step.module.weight, step.module.bias))
        elif step.rule == "relu":
            ops.append(Gate())
        else:
            return None
        previous = step.node
    if previous is not graph.output or not any(isinstance(op, Affine) for op in ops):
        return None
    return MLPChain(ops, flatten)


def parse_mlp(model: nn.Module) -> MLPChain:
    """The model as an MLP chain, or UnsupportedModuleError (naming the first refused node of
    its graph, or saying why it is no chain)."""
    chain = chain_of(trace_model(model))
    if chain is None:
        raise UnsupportedModuleError(
            f"{type(model).__name__} is not an MLP: a chain of nn.Linear and ReLU (after an "
            "optional flatten), each feeding only the next"
        )
    return chain


def forward_masks(
    ops: list[Affine | Gate], h: Tensor, need_output: bool = True
) -> tuple[Tensor | None, list[Tensor]]:
    """Forward pass of the chain: output (sample, out) and the gate of every ReLU, a bool tensor
    (sample, width) with True where the pre-activation is > 0.

    With ``need_output=False`` the layers after the last ReLU are skipped and None is returned
    in place of the output.
    """
    masks = []
    last_gate = max((i for i, op in enumerate(ops) if isinstance(op, Gate)), default=-1)
    for i, op in enumerate(ops):
        if not need_output and i > last_gate:
            return None, masks
        if isinstance(op, Affine):
            h = torch.nn.functional.linear(h, op.W, op.c)
        else:
            mask = h > 0
            masks.append(mask)
            h = h * mask
    return h, masks


def masked_product(
    ops: list[Affine | Gate],
    masks: list[Tensor],
    stop_at_first: bool,
    n: int,
    out_buffer: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Right-to-left masked product G and the accumulated b_eff for a chunk of n samples.

    With ``stop_at_first`` the product stops before the first affine layer's W (so that
    W_eff = G W_1); its bias is still added to b. Otherwise the last product is written into
    ``out_buffer`` (n, out, in) when given (no fresh allocation for the largest array).
    """
    last_affine = max(i for i, op in enumerate(ops) if isinstance(op, Affine))
    first_affine = min(i for i, op in enumerate(ops) if isinstance(op, Affine))
    out = ops[last_affine].W.shape[0]
    ref = ops[last_affine].W
    G = torch.eye(out, dtype=ref.dtype, device=ref.device).expand(n, out, out)
    b = torch.zeros(n, out, dtype=ref.dtype, device=ref.device)
    k = len(masks)
    for i in range(len(ops) - 1, -1, -1):
        op = ops[i]
        if isinstance(op, Gate):
            k -= 1
            G = G * masks[k][:, None, :].to(G.dtype)
            continue
        if op.c is not None:
            b = b + torch.einsum("soi,i->so", G, op.c)
        if stop_at_first and i == first_affine:
            break
        if i == last_affine and G.ndim == 3 and G.stride(0) == 0:
            G = op.W.expand(n, *op.W.shape)  # G = I @ W_L, shared by all samples
        elif i == first_affine and out_buffer is not None:
            torch.mm(G.reshape(-1, G.shape[-1]), op.W, out=out_buffer.view(-1, op.W.shape[1]))
            G = out_buffer
        else:
            G = (G.reshape(-1, G.shape[-1]) @ op.W).reshape(n, out, op.W.shape[1])
    if out_buffer is not None and G is not out_buffer:
        out_buffer.copy_(G)
        G = out_buffer
    return (G.contiguous() if G.stride(0) == 0 else G), b


def lower_triangular_mm(A: Tensor, L: Tensor, out: Tensor, levels: int = 2) -> None:
    """out = A @ L for a lower-triangular L, skipping its zero upper block level by level:
    with L = [[L11, 0], [L21, L22]], A L = [A1 L11 + A2 L21, A2 L22] (3/4 of the work per
    level; R^T of the QR factorisation is lower-triangular)."""
    n = L.shape[0]
    if levels == 0 or n < 64:
        torch.mm(A, L, out=out)
        return
    h = n // 2
    lower_triangular_mm(A[:, :h], L[:h, :h], out[:, :h], levels - 1)
    out[:, :h].addmm_(A[:, h:], L[h:, :h])
    lower_triangular_mm(A[:, h:], L[h:, h:], out[:, h:], levels - 1)


def first_layer_qr(chain: MLPChain) -> tuple[Tensor, Tensor]:
    """Q (in, r) and R (r, n_1) of the thin QR factorisation W_1^T = Q R, r = min(in, n_1).

    W_eff(x) = G(x) W_1 = G(x) R^T Q^T, and Q has orthonormal columns, so Z(x) = G(x) R^T
    (sample, out, r) has exactly the inner products and distances of W_eff(x).
    """
    if not isinstance(chain.ops[0], Affine):
        raise UnsupportedModuleError(
            "the isometric representation of an MLP needs an nn.Linear as the first layer"
        )
    with torch.no_grad():
        Q, R = torch.linalg.qr(chain.ops[0].W.T, mode="reduced")
    return Q, R
