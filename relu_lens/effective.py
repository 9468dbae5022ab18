"""Exact per-sample effective linear maps of ReLU MLPs: f(x) = W_eff(x) x + b_eff(x).

For a stack of affine layers A_l x + c_l and ReLUs with gates D_l(x) = diag(1[z_l(x) > 0])
(Ye 2025, arXiv 2511.05628, eq. for W_eff):

    W_eff(x) = W_L D_{L-1}(x) W_{L-1} ... D_1(x) W_1,
    b_eff(x) = sum_l W_L D_{L-1}(x) ... D_l(x) c_l      (zero for bias-free nets).

Both are built right to left, batched over samples: G <- W_L; for each layer below,
G <- (G * mask_l[:, None, :]) @ W_l, adding G @ c_l to b on the way. The cost per sample is
about C * sum_l n_l n_{l-1} multiply-adds for C outputs.

Only ``nn.Sequential`` stacks (nested allowed) of ``nn.Linear``, ``nn.ReLU`` and ``nn.Flatten``
are accepted: for any other module the map is not known to be exact, so it is refused with an
error naming the module. A batch that is empty, holds NaN or inf, or has a shape the model does
not take is refused with InputError (:func:`check_input`) before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

DEFAULT_CHUNK_ELEMENTS = 2**22  # ~16 MB of float32 working memory per chunk


class UnsupportedModuleError(TypeError):
    """The model contains a module whose effective linear map is not known to be exact."""


class InputError(ValueError):
    """The batch ``x`` given to the lens is empty, holds NaN or inf, or has a shape the model
    does not take; raised before any work starts."""


@dataclass(frozen=True)
class Affine:
    """One affine layer z = W h + c of the parsed stack (W: (out, in), c: (out,) or None)."""

    W: Tensor
    c: Tensor | None


@dataclass(frozen=True)
class Gate:
    """A ReLU: h = D(z) z with D(z) = diag(1[z > 0])."""


@dataclass(frozen=True)
class EffectiveMap:
    """W_eff(x) of shape (sample, out, in) and b_eff(x) of shape (sample, out)."""

    W: Tensor
    b: Tensor


def _children(model: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """Leaves of nested Sequentials, in execution order, with their dotted names."""
    is_sequential = isinstance(model, nn.Sequential) and (
        type(model).forward is nn.Sequential.forward
    )
    if not is_sequential:
        yield prefix or type(model).__name__, model
        return
    for name, child in model.named_children():
        yield from _children(child, f"{prefix}.{name}" if prefix else name)


def parse_mlp(model: nn.Module) -> list[Affine | Gate]:
    """The model as a list of affine layers and ReLU gates, or UnsupportedModuleError.

    ``nn.Flatten`` is accepted with its default dims (it only reshapes); anything else that is
    not exactly ``nn.Linear`` or ``nn.ReLU`` (subclasses included, since they may override
    ``forward``) is refused, as are modules carrying forward hooks.
    """
    ops: list[Affine | Gate] = []
    for name, module in _children(model, ""):
        if module._forward_hooks or module._forward_pre_hooks:
            raise UnsupportedModuleError(
                f"module {name} ({type(module).__name__}) has forward hooks that may change its "
                "output; remove them before computing effective weights"
            )
        kind = type(module)
        if kind is nn.Linear:
            ops.append(Affine(module.weight, module.bias))
        elif kind is nn.ReLU:
            ops.append(Gate())
        elif kind is nn.Flatten:
            if module.start_dim != 1 or module.end_dim != -1:
                raise UnsupportedModuleError(
                    f"module {name} is nn.Flatten(start_dim={module.start_dim}, "
                    f"end_dim={module.end_dim}); only the default Flatten(1, -1) is supported"
                )
        else:
            raise UnsupportedModuleError(
                f"module {name} ({kind.__name__}) is not supported by the effective-weight lens: "
                "only nn.Sequential stacks of nn.Linear, nn.ReLU and nn.Flatten are exact "
                "(no convolutions, normalisation, residual blocks, custom modules or relu "
                "applied inside a custom forward)"
            )
    if not any(isinstance(op, Affine) for op in ops):
        raise UnsupportedModuleError("the model has no nn.Linear layer")
    return ops


def _leading_flatten(model: nn.Module) -> bool:
    """Whether an ``nn.Flatten`` runs before the model's first ``nn.Linear``."""
    for _, module in _children(model, ""):
        if type(module) is nn.Flatten:
            return True
        if type(module) is nn.Linear:
            return False
    return False


def _check_batch(x: Tensor) -> None:
    """InputError unless ``x`` is (sample, ...) with at least one sample."""
    if x.ndim < 2:
        raise InputError(
            f"x must have a batch dimension: got shape {tuple(x.shape)}, expected (sample, ...)"
        )
    if x.shape[0] == 0:
        raise InputError(f"x is an empty batch (shape {tuple(x.shape)}): give at least one sample")


def _check_finite(x: Tensor) -> None:
    """InputError naming how many entries of ``x`` are NaN or inf, and the first such sample."""
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    bad = ~finite
    first = int(bad.reshape(x.shape[0], -1).any(dim=1).nonzero()[0, 0])
    raise InputError(
        f"x holds NaN or inf ({int(bad.sum())} of {x.numel()} entries, first in sample {first}): "
        "the lens needs finite input"
    )


def _check_layout(
    model: nn.Module, ops: list[Affine | Gate], x: Tensor, check_features: bool = True
) -> None:
    """InputError unless ``x`` fits the first ``nn.Linear``: (sample, in) when no ``nn.Flatten``
    runs before it, else any (sample, ...) with ``in`` entries per sample. The feature count is
    checked only with ``check_features``."""
    n_in = next(op for op in ops if isinstance(op, Affine)).W.shape[1]
    n_features = x[0].numel()
    if check_features and n_features != n_in:
        raise InputError(
            f"x has {n_features} features per sample (shape {tuple(x.shape)}) but the first "
            f"nn.Linear expects {n_in}"
        )
    if x.ndim > 2 and not _leading_flatten(model):
        raise InputError(
            f"x has shape {tuple(x.shape)} but the model's first layer is nn.Linear({n_in}, ...) "
            "and no nn.Flatten runs before it: flatten the input or add nn.Flatten()"
        )


def _flat_input(model: nn.Module, ops: list[Affine | Gate], x: Tensor) -> Tensor:
    """``x`` as (sample, in) for the parsed ``model``, after every check of
    :func:`check_input` (InputError naming the first problem)."""
    _check_batch(x)
    _check_layout(model, ops, x)
    _check_finite(x)
    return x.reshape(x.shape[0], -1)


def check_input(model: nn.Module, x: Tensor, check_features: bool = True) -> None:
    """InputError, one line naming the problem, unless ``x`` is a batch the model takes.

    ``x`` needs a batch dimension, at least one sample and only finite entries. For a model the
    lens parses (:func:`parse_mlp`), ``x`` must also be (sample, in) for its first
    ``nn.Linear``, or (sample, ...) with ``in`` entries per sample when an ``nn.Flatten`` runs
    before it; with ``check_features=False`` the feature count is left to the model's forward.
    Other models only get the first checks.
    """
    _check_batch(x)
    try:
        ops = parse_mlp(model)
    except UnsupportedModuleError:
        pass
    else:
        _check_layout(model, ops, x, check_features)
    _check_finite(x)


def forward_masks(
    ops: list[Affine | Gate], h: Tensor, need_output: bool = True
) -> tuple[Tensor | None, list[Tensor]]:
    """Forward pass of the parsed stack: output (sample, out) and the gate of every ReLU,
    a bool tensor (sample, width) with True where the pre-activation is > 0.

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


def _backward_product(
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


def _lower_triangular_mm(A: Tensor, L: Tensor, out: Tensor, levels: int = 2) -> None:
    """out = A @ L for a lower-triangular L, skipping its zero upper block level by level:
    with L = [[L11, 0], [L21, L22]], A L = [A1 L11 + A2 L21, A2 L22] (3/4 of the work per
    level; R^T of the QR factorisation is lower-triangular)."""
    n = L.shape[0]
    if levels == 0 or n < 64:
        torch.mm(A, L, out=out)
        return
    h = n // 2
    _lower_triangular_mm(A[:, :h], L[:h, :h], out[:, :h], levels - 1)
    out[:, :h].addmm_(A[:, h:], L[h:, :h])
    _lower_triangular_mm(A[:, h:], L[h:, h:], out[:, h:], levels - 1)


def _chunk_size(ops: list[Affine | Gate], chunk_size: int | None) -> int:
    """``chunk_size`` checked, or the default: about DEFAULT_CHUNK_ELEMENTS working entries."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return chunk_size
    widths = [op.W.shape[0] for op in ops if isinstance(op, Affine)]
    widths += [op.W.shape[1] for op in ops if isinstance(op, Affine)]
    out = next(op for op in reversed(ops) if isinstance(op, Affine)).W.shape[0]
    return max(1, DEFAULT_CHUNK_ELEMENTS // (out * max(widths)))


def _out_shape(ops: list[Affine | Gate], n: int, isometric: bool) -> tuple[int, int, int]:
    """Shape of the stacked W_eff (sample, out, in), or of Z (sample, out, rank)."""
    affine = [op for op in ops if isinstance(op, Affine)]
    n_out, (n_1, n_in) = affine[-1].W.shape[0], affine[0].W.shape
    return n, n_out, min(n_in, n_1) if isometric else n_in


def _chunks(
    ops: list[Affine | Gate],
    flat: Tensor,
    chunk_size: int,
    R_T: Tensor | None,
    out: Tensor | None,
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """The work of :func:`iter_effective_weights` on a checked (sample, in) batch ``flat``."""
    dtype = next(op for op in ops if isinstance(op, Affine)).W.dtype
    with torch.no_grad():
        for start in range(0, flat.shape[0], chunk_size):
            rows = slice(start, min(start + chunk_size, flat.shape[0]))
            h = flat[rows].to(dtype=dtype)
            _, masks = forward_masks(ops, h, need_output=False)
            buffer = None if out is None or R_T is not None else out[rows]
            G, b = _backward_product(ops, masks, R_T is not None, h.shape[0], buffer)
            if R_T is not None:
                Z = out[rows] if out is not None else G.new_empty((*G.shape[:2], R_T.shape[1]))
                _lower_triangular_mm(G.reshape(-1, G.shape[-1]), R_T, Z.view(-1, R_T.shape[1]))
                G = Z
            yield rows, G, b


def iter_effective_weights(
    model: nn.Module,
    x: Tensor,
    chunk_size: int | None = None,
    isometric: bool = False,
    out: Tensor | None = None,
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Yield ``(rows, W, b)`` chunk by chunk; memory stays near one chunk.

    With ``isometric=True`` the second element is Z(x) = G(x) R^T (sample, out, rank) instead
    of W_eff(x), where G(x) is the masked product down to the first layer and W_1^T = Q R
    (see :func:`isometric_basis`): W_eff(x) = Z(x) Q^T. With ``out`` (sample, out, in), each
    chunk's W_eff (or Z) is written into ``out[rows]`` and yielded as that view.

    The model, ``x`` (:func:`check_input`: InputError), ``chunk_size`` and ``out`` are checked
    when this is called, before the first chunk is asked for.
    """
    ops = parse_mlp(model)
    flat = _flat_input(model, ops, x)
    chunk_size = _chunk_size(ops, chunk_size)
    if out is not None:
        expected = _out_shape(ops, flat.shape[0], isometric)
        if tuple(out.shape) != expected:
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
    R_T = isometric_basis(model)[1].T.contiguous() if isometric else None
    return _chunks(ops, flat, chunk_size, R_T, out)


def effective_weights(model: nn.Module, x: Tensor, chunk_size: int | None = None) -> EffectiveMap:
    """W_eff(x) (sample, out, in) and b_eff(x) (sample, out) with model(x) = W x + b per sample.

    ``x`` has shape (sample, in) or, when the model starts with ``nn.Flatten``, (sample, ...);
    W is then with respect to the flattened input. An empty batch, NaN or inf in ``x``, or a
    shape the model does not take raise InputError before any work. Computed in chunks of
    ``chunk_size`` samples (default: about 16 MB of working memory) written into one
    preallocated result.
    """
    ops = parse_mlp(model)
    flat = _flat_input(model, ops, x)
    chunk_size = _chunk_size(ops, chunk_size)
    last = next(op for op in reversed(ops) if isinstance(op, Affine)).W
    W = last.new_empty(_out_shape(ops, flat.shape[0], isometric=False))
    b = last.new_empty(W.shape[:2])
    for rows, _, b_chunk in _chunks(ops, flat, chunk_size, None, W):
        b[rows] = b_chunk
    return EffectiveMap(W=W, b=b)


def isometric_basis(model: nn.Module) -> tuple[Tensor, Tensor]:
    """Q (in, r) and R (r, n_1) of the thin QR factorisation W_1^T = Q R, r = min(in, n_1).

    W_eff(x) = G(x) W_1 = G(x) R^T Q^T, and Q has orthonormal columns, so Z(x) = G(x) R^T
    (sample, out, r) has exactly the inner products and distances of W_eff(x).
    """
    ops = parse_mlp(model)
    if not isinstance(ops[0], Affine):
        raise UnsupportedModuleError(
            "the isometric representation needs an nn.Linear as the first layer"
        )
    with torch.no_grad():
        Q, R = torch.linalg.qr(ops[0].W.T, mode="reduced")
    return Q, R


def isometric_weights(
    model: nn.Module, x: Tensor, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Z (sample, out, r) and Q (in, r) with W_eff(x) = Z(x) Q^T and Q^T Q = I.

    ``x`` is checked as for :func:`effective_weights` (InputError) before any work.
    """
    ops = parse_mlp(model)
    flat = _flat_input(model, ops, x)
    chunk_size = _chunk_size(ops, chunk_size)
    Q, R = isometric_basis(model)
    Z = R.new_empty(_out_shape(ops, flat.shape[0], isometric=True))
    for _ in _chunks(ops, flat, chunk_size, R.T.contiguous(), Z):
        pass
    return Z, Q
