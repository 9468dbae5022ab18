"""Exact per-sample effective maps of piecewise-linear torch models: f(x) = W_eff(x) x + b_eff(x).

A network of affine operations and gates (ReLU-like units, max-pools) is, on each input, the
affine map its gates fix (Ye 2025, arXiv 2511.05628, for bias-free MLPs:
W_eff(x) = W_L D_{L-1}(x) W_{L-1} ... D_1(x) W_1; the general case in
docs/theory/effective-weights.md, section "Any piecewise-linear network"). For a batch x:

- W_eff (sample, out, in), with the input and the output flattened per sample, is the input
  Jacobian of the model at x (wherever no gate is at a tie);
- b_eff (sample, out) = the model at input 0 with x's gates frozen; model(x) = W x + b.

The model's forward is traced with torch.fx and checked operation by operation
(:func:`relu_lens.graph.trace_model`: the table of accepted operations, and the refusal,
naming node and source line, of any other). Two ways to the same map:

- an MLP (a chain of ``nn.Linear`` and ReLUs, :mod:`relu_lens.chain`) by the masked
  right-to-left product, C * sum_l n_l n_{l-1} multiply-adds per sample;
- any other accepted graph (:mod:`relu_lens.linearize`) by recording its gates, freezing them
  and pulling the C output rows back through the frozen graph all at once.

A batch that is empty, holds NaN or inf, or has a shape the model does not take is refused
with InputError (:func:`check_input`) before any work starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from relu_lens import linearize
from relu_lens.chain import (
    MLPChain,
    chain_of,
    first_layer_qr,
    forward_masks,
    lower_triangular_mm,
    masked_product,
)
from relu_lens.graph import InputError, LensGraph, UnsupportedModuleError, trace_model

__all__ = [
    "DEFAULT_CHUNK_ELEMENTS",
    "EffectiveMap",
    "InputError",
    "Lens",
    "UnsupportedModuleError",
    "check_input",
    "effective_weights",
    "isometric_basis",
    "isometric_weights",
    "iter_effective_weights",
    "prepare",
]

DEFAULT_CHUNK_ELEMENTS = 2**22  # ~16 MB of float32 per working array of a chunk


@dataclass(frozen=True)
class EffectiveMap:
    """W_eff(x) of shape (sample, out, in) and b_eff(x) of shape (sample, out)."""

    W: Tensor
    b: Tensor


@dataclass(frozen=True)
class Lens:
    """A model checked against a batch: what every entry point of the lens starts from.

    Attributes:
        graph: the traced, checked graph of the model.
        chain: the model as an MLP chain, or None (then the general path is used).
        x: the batch in the model's dtype; flattened to (sample, in) for a chain.
        n_in: entries per sample of the input (columns of W_eff).
        n_out: entries per sample of the output (rows of W_eff).
        probe: for the general path, the per-node shapes seen on two samples; else None.
    """

    graph: LensGraph
    chain: MLPChain | None
    x: Tensor
    n_in: int
    n_out: int
    probe: linearize.Probe | None


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


def _check_layout(chain: MLPChain, x: Tensor) -> None:
    """InputError unless ``x`` fits the chain's first ``nn.Linear``: (sample, in) when no
    flatten runs before it, else any (sample, ...) with ``in`` entries per sample."""
    n_features = x[0].numel()
    if n_features != chain.n_in:
        raise InputError(
            f"x has {n_features} features per sample (shape {tuple(x.shape)}) but the first "
            f"nn.Linear expects {chain.n_in}"
        )
    if x.ndim > 2 and not chain.flatten:
        raise InputError(
            f"x has shape {tuple(x.shape)} but the model's first layer is "
            f"nn.Linear({chain.n_in}, ...) and no nn.Flatten runs before it: flatten the input "
            "or add nn.Flatten()"
        )


def _dtype(model: nn.Module, x: Tensor) -> torch.dtype:
    """The dtype of the model's first floating parameter or buffer (else of ``x``)."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return x.dtype if x.is_floating_point() else torch.get_default_dtype()


def prepare(model: nn.Module, x: Tensor) -> Lens:
    """Trace and check ``model`` (UnsupportedModuleError naming the node) and the batch ``x``
    (InputError, one line): a batch dim, at least one sample, a shape the model takes
    (for an MLP: ``in`` features, or any (sample, ...) when a flatten comes first; otherwise
    the model runs on two samples and the failing node is named), only finite entries."""
    graph = trace_model(model)
    chain = chain_of(graph)
    _check_batch(x)
    if chain is not None:
        _check_layout(chain, x)
    _check_finite(x)
    x = x.to(dtype=_dtype(model, x))
    if chain is not None:
        n_out = next(op for op in reversed(chain.ops) if hasattr(op, "W")).W.shape[0]
        return Lens(graph, chain, x.reshape(x.shape[0], -1), chain.n_in, n_out, None)
    found = linearize.probe(graph, x)
    return Lens(graph, None, x, found.n_in, found.n_out, found)


def check_input(model: nn.Module, x: Tensor) -> None:
    """InputError, one line naming the problem, unless ``x`` is a batch the model takes
    (:func:`prepare`); UnsupportedModuleError if the lens does not read the model."""
    prepare(model, x)


def _chunk_size(lens: Lens, chunk_size: int | None) -> int:
    """``chunk_size`` checked, or the default: about DEFAULT_CHUNK_ELEMENTS per working array
    (the widest (sample, out, width) product of the chain, or cotangent of the graph)."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return chunk_size
    if lens.chain is not None:
        widest = max(max(op.W.shape) for op in lens.chain.ops if hasattr(op, "W"))
    else:
        widest = lens.probe.max_units
    return max(1, DEFAULT_CHUNK_ELEMENTS // (lens.n_out * widest))


def _reduction(lens: Lens) -> Tensor | None:
    """Q (in, r) with orthonormal columns spanning the rows of every W_eff(x), when r < in can
    be read off the first layer of a general graph; None when no smaller basis is known.

    If x reaches the rest of the network only through one ``nn.Linear`` or ``nn.Conv1d/2d``
    module (after reshapes), W_eff(x) = G(x) A with A (n_1, in) that layer's linear part, so
    the rows of W_eff(x) lie in the row space of A, of dim at most n_1. When n_1 < in (a
    strided or unpadded convolution with few channels) Q comes from the thin QR of A^T.
    When n_1 >= in, A generically has rank ``in`` (a padded convolution is injective for
    almost every kernel) and the only exact basis is the identity: nothing to reduce.
    """
    by_node = {step.node: step for step in lens.graph.steps}
    node = lens.graph.steps[0].node
    while len(node.users) == 1:
        step = by_node.get(next(iter(node.users)))
        if step is None or step.args.get("input") is not node:
            return None
        if step.rule != "reshape":
            break
        node = step.node
    else:
        return None
    if step.rule not in ("linear", "conv") or step.module is None:
        return None
    shape = lens.probe.shapes
    if int(torch.Size(shape[step.node]).numel()) >= lens.n_in:
        return None
    with torch.no_grad():
        basis = torch.eye(lens.n_in, dtype=lens.x.dtype, device=lens.x.device)
        basis = basis.reshape(lens.n_in, *shape[node])
        A_T = (step.module(basis) - step.module(torch.zeros_like(basis[:1]))).flatten(1)
        Q, _ = torch.linalg.qr(A_T, mode="reduced")
    return Q


def isometric_basis(model: nn.Module, x: Tensor) -> Tensor:
    """Q (in, r) with Q^T Q = I and W_eff(x) = Z(x) Q^T for every input: the basis of
    :func:`isometric_weights` (``x`` gives the input shape and is checked as there).

    For an MLP, W_1^T = Q R (thin QR, r = min(in, n_1)); for another graph, the reduction of
    its first layer when one exists (:func:`_reduction`), else the identity (r = in).
    """
    return _basis(prepare(model, x))


def _basis(lens: Lens) -> Tensor:
    if lens.chain is not None:
        return first_layer_qr(lens.chain)[0]
    Q = _reduction(lens)
    return torch.eye(lens.n_in, dtype=lens.x.dtype, device=lens.x.device) if Q is None else Q


def _chain_chunks(
    lens: Lens, chunk_size: int, R_T: Tensor | None, out: Tensor | None
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """The masked chain on every chunk (W_eff, or Z = G R^T when ``R_T`` is given)."""
    ops, flat = lens.chain.ops, lens.x
    with torch.no_grad():
        for start in range(0, flat.shape[0], chunk_size):
            rows = slice(start, min(start + chunk_size, flat.shape[0]))
            h = flat[rows]
            _, masks = forward_masks(ops, h, need_output=False)
            buffer = None if out is None or R_T is not None else out[rows]
            G, b = masked_product(ops, masks, R_T is not None, h.shape[0], buffer)
            if R_T is not None:
                Z = out[rows] if out is not None else G.new_empty((*G.shape[:2], R_T.shape[1]))
                lower_triangular_mm(G.reshape(-1, G.shape[-1]), R_T, Z.view(-1, R_T.shape[1]))
                G = Z
            yield rows, G, b


def _graph_chunks(
    lens: Lens, chunk_size: int, Q: Tensor | None, out: Tensor | None
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """The frozen-gate pullback on every chunk (W_eff, or Z = W_eff Q when ``Q`` is given)."""
    x = lens.x
    for start in range(0, x.shape[0], chunk_size):
        rows = slice(start, min(start + chunk_size, x.shape[0]))
        W, b = linearize.affine_map(lens.graph, lens.probe, x[rows])
        if Q is not None:
            W = W @ Q
        if out is not None:
            out[rows] = W
            W = out[rows]
        yield rows, W, b


def _chunks(
    lens: Lens, chunk_size: int | None, isometric: bool, out: Tensor | None
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Check ``chunk_size`` and ``out``, then iterate the chain or the graph path."""
    chunk_size = _chunk_size(lens, chunk_size)
    if lens.chain is not None:
        R_T = first_layer_qr(lens.chain)[1].T.contiguous() if isometric else None
        width = lens.n_in if R_T is None else R_T.shape[1]
    else:
        Q = _reduction(lens) if isometric else None
        width = lens.n_in if Q is None else Q.shape[1]
    expected = (lens.x.shape[0], lens.n_out, width)
    if out is not None and tuple(out.shape) != expected:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {expected}")
    if lens.chain is not None:
        return _chain_chunks(lens, chunk_size, R_T, out)
    return _graph_chunks(lens, chunk_size, Q, out)


def iter_effective_weights(
    model: nn.Module,
    x: Tensor,
    chunk_size: int | None = None,
    isometric: bool = False,
    out: Tensor | None = None,
) -> Iterator[tuple[slice, Tensor, Tensor]]:
    """Yield ``(rows, W, b)`` chunk by chunk; memory stays near one chunk.

    With ``isometric=True`` the second element is Z(x) (sample, out, r) with
    W_eff(x) = Z(x) Q^T, Q = :func:`isometric_basis`, instead of W_eff(x). With ``out``
    (sample, out, in or r), each chunk is written into ``out[rows]`` and yielded as that view.

    The model, ``x`` (:func:`prepare`: UnsupportedModuleError, InputError), ``chunk_size`` and
    ``out`` are checked when this is called, before the first chunk is asked for.
    """
    return _chunks(prepare(model, x), chunk_size, isometric, out)


def effective_weights(model: nn.Module, x: Tensor, chunk_size: int | None = None) -> EffectiveMap:
    """W_eff(x) (sample, out, in) and b_eff(x) (sample, out) with model(x) = W x + b per sample.

    ``x`` is a batch (sample, ...) the model takes; W is with respect to the input flattened
    per sample (and the output flattened per sample). The model is refused with
    UnsupportedModuleError, naming the node and its source line, unless every operation of its
    forward is in the lens's table (relu_lens.graph.OPERATIONS); an empty batch, NaN or inf in
    ``x``, or a shape the model does not take raise InputError before any work. Computed in
    chunks of ``chunk_size`` samples (default: about 16 MB per working array) written into one
    preallocated result.
    """
    lens = prepare(model, x)
    W = lens.x.new_empty((lens.x.shape[0], lens.n_out, lens.n_in))
    b = lens.x.new_empty(W.shape[:2])
    for rows, _, b_chunk in _chunks(lens, chunk_size, False, W):
        b[rows] = b_chunk
    return EffectiveMap(W=W, b=b)


def isometric_weights(
    model: nn.Module, x: Tensor, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Z (sample, out, r) and Q (in, r) with W_eff(x) = Z(x) Q^T and Q^T Q = I.

    Z has exactly the inner products and distances of W_eff, in r <= in columns: for an MLP
    r = min(in, n_1) (Z = G(x) R^T from W_1^T = Q R); for other graphs see
    :func:`isometric_basis` (r = in, Q = I and Z = W_eff when no reduction exists). ``x`` is
    checked as for :func:`effective_weights` before any work.
    """
    lens = prepare(model, x)
    Q = _basis(lens)
    Z = lens.x.new_empty((lens.x.shape[0], lens.n_out, Q.shape[1]))
    for _ in _chunks(lens, chunk_size, True, Z):
        pass
    return Z, Q
