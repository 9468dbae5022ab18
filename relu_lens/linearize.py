"""A piecewise-linear graph at frozen gates: record the gates, then read W_eff and b_eff exactly.

For a checked graph (:func:`relu_lens.graph.trace_model`) and a batch x (docs/theory/
effective-weights.md, section "Any piecewise-linear network"):

1. **Record** (:func:`record`): run the graph on x and keep every gate: D = 1[z > 0] of each
   ReLU-like unit, and for each max-pool output j the input k*(j) its window selected.
2. **Freeze**: with the gates fixed, every gated operation is linear in its input:

       relu, leaky_relu, prelu:  z -> s ⊙ z,   s = 1 where D = 1, else the negative slope a
                                              (a = 0 for ReLU, the parameter for PReLU);
       max_pool:                 z -> (z[k*(j)])_j   (a gather);

   and every other accepted operation is affine, so the frozen graph f_D is affine in its
   input, equal to f at x: f(x) = f_D(x) = W_eff(x) x + b_eff(x), with b_eff(x) = f_D(0).
3. **Transpose** (:func:`affine_map`): W_eff(x) is the Jacobian of f_D. Its C rows are pulled
   back from the output all at once: cotangents of shape (sample, C, *node shape) start as the
   identity at the output and go through each operation's adjoint in reverse graph order
   (matmul by W for a linear layer, the transposed convolution, the gate's slopes, a
   scatter-add at the selected indices for a max-pool, ...); at the input they are W_eff.
   This is reverse-mode differentiation of f_D, written per operation and batched over the
   C outputs in the batch dim, with no vmap (whose batching rules loop over the C outputs for
   convolutions and batch norm).

The cost per sample is about C times one backward pass of the network; for a classifier
C << in, so reverse mode beats forward mode (one pass per input dim).
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx

from relu_lens.graph import (
    DIVIDING,
    NEGATING,
    SUBTRACTING,
    InputError,
    LensGraph,
    Step,
    UnsupportedModuleError,
    check_batch,
    describe,
    permutation,
    spatial_dims,
)


@dataclass(frozen=True)
class Probe:
    """What one run on a small batch tells about the graph.

    Attributes:
        shapes: the per-sample shape (without the batch dim) of every x-dependent node's value.
        n_in: entries per sample of the input.
        n_out: entries per sample of the output (C, the rows of W_eff).
        max_units: the largest per-sample value of any x-dependent node.
    """

    shapes: dict[fx.Node, tuple[int, ...]]
    n_in: int
    n_out: int
    max_units: int


def _fetch(model: torch.nn.Module, target: str) -> Any:
    return reduce(getattr, target.split("."), model)


def _call(step: Step, env: Mapping[fx.Node, Any], model: torch.nn.Module) -> Any:
    """The node's own operation on the values in ``env`` (what the model's forward runs)."""
    node = step.node
    if node.op == "get_attr":
        return _fetch(model, node.target)
    args = fx.node.map_arg(node.args, env.__getitem__)
    kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
    if node.op == "call_module":
        return step.module(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


_WITH_INDICES = {
    (1, False): F.max_pool1d_with_indices,
    (2, False): F.max_pool2d_with_indices,
    (1, True): F.adaptive_max_pool1d_with_indices,
    (2, True): F.adaptive_max_pool2d_with_indices,
}


def _pool_with_indices(step: Step, z: Tensor) -> tuple[Tensor, Tensor]:
    """A max-pool's output and, per output, the flat index in its input plane it selected."""
    args = step.args
    if "output_size" in args:
        return _WITH_INDICES[spatial_dims(step), True](z, args["output_size"], True)
    pool = _WITH_INDICES[spatial_dims(step), False]
    keys = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    defaults = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
    settings = [args.get(k, defaults.get(k)) for k in keys]
    return pool(z, *settings, return_indices=True)


def _slopes(step: Step, gate: Tensor, env: Mapping[fx.Node, Any]) -> Tensor:
    """s: 1 where the unit passes (gate), else the negative slope (0 for ReLU)."""
    one = torch.ones((), dtype=env[step.args["input"]].dtype, device=gate.device)
    if step.rule == "relu":
        return gate.to(one.dtype)
    if step.rule == "leaky_relu":
        return torch.where(gate, one, one * step.args.get("negative_slope", 0.01))
    weight = fx.node.map_arg(step.args["weight"], env.__getitem__)  # prelu
    if weight.numel() > 1:
        weight = weight.view(1, -1, *[1] * (gate.ndim - 2))
    return torch.where(gate, one, weight)


def _gather(z: Tensor, index: Tensor) -> Tensor:
    """The frozen max-pool: output j is z at the recorded index k*(j) of its plane."""
    return z.flatten(2).gather(2, index.flatten(2)).view(index.shape)


def _forward(
    graph: LensGraph,
    x: Tensor,
    gates: dict[fx.Node, Tensor] | None = None,
    check: Callable[[Step, Any], None] | None = None,
) -> tuple[Tensor, dict[fx.Node, Tensor], dict[fx.Node, Any]]:
    """Run the graph on ``x``: recording the gates (``gates=None``) or at the given frozen gates.

    Returns the output, the gates (recorded: bool masks and max-pool indices; frozen: the
    slopes s and the indices used), and the values of the steps that do not depend on x. The
    values of x-dependent steps are dropped after their last use. ``check(step, value)`` is
    called on each step's value.
    """
    last_use = {node: k for k, s in enumerate(graph.steps) for node in s.node.all_input_nodes}
    last_use[graph.output] = len(graph.steps)
    env: dict[fx.Node, Any] = {}
    used: dict[fx.Node, Tensor] = {}
    for k, step in enumerate(graph.steps):
        node = step.node
        if step.rule == "input":
            value = x
        elif not step.gated:
            value = _call(step, env, graph.model)
        else:
            z = env[step.args["input"]]
            if gates is None:
                if step.rule == "max_pool":
                    value, used[node] = _pool_with_indices(step, z)
                else:
                    used[node] = z > 0
                    value = _call(step, env, graph.model)
            elif step.rule == "max_pool":
                value = _gather(z, gates[node])
                used[node] = gates[node]
            else:
                used[node] = _slopes(step, gates[node], env)
                value = z * used[node]
        env[node] = value
        if check is not None:
            check(step, value)
        for source in node.all_input_nodes:
            if last_use[source] == k and source.meta["lens_uses_x"]:
                del env[source]
    constants = {n: v for n, v in env.items() if not n.meta["lens_uses_x"]}
    return env[graph.output], used, constants


def probe(graph: LensGraph, x: Tensor) -> Probe:
    """Run the graph on two samples of ``x`` and check every value's batch dim.

    InputError, naming the node where the model's own operation failed, when ``x`` does not
    fit the model (one line, before any long work); UnsupportedModuleError from
    :func:`relu_lens.graph.check_batch` when a step mixes samples.
    """
    rows = torch.tensor([0, x.shape[0] - 1], device=x.device)
    small = x.index_select(0, rows)
    shapes: dict[fx.Node, tuple[int, ...]] = {graph.steps[0].node: tuple(x.shape[1:])}

    done: set[fx.Node] = set()

    def check(step: Step, value: Any) -> None:
        done.add(step.node)
        if step.uses_x and step.rule != "input":
            check_batch(step, value, 2, lambda node: len(shapes[node]) + 1)
            shapes[step.node] = tuple(value.shape[1:])

    try:
        with torch.no_grad():
            _forward(graph, small, check=check)
    except (UnsupportedModuleError, InputError):
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        where = next(s for s in graph.steps if s.node not in done)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(
            f"x of shape {tuple(x.shape)} does not fit the model: node {where.name}: "
            f"{describe(where.node, where.module)}{where.source} fails with: {first}"
        ) from err
    units = [int(torch.Size(s).numel()) for s in shapes.values()]
    return Probe(
        shapes=shapes,
        n_in=int(torch.Size(shapes[graph.steps[0].node]).numel()),
        n_out=int(torch.Size(shapes[graph.output]).numel()),
        max_units=max(units),
    )


def record(graph: LensGraph, x: Tensor) -> tuple[Tensor, dict[fx.Node, Tensor]]:
    """f(x) and the gates of every gated step on the batch ``x``, in graph order.

    A ReLU-like step's gate is the bool mask z > 0 (sample, *shape of z); a max-pool's is the
    index (sample, channel, *output spatial shape) in its input plane that each output took.
    """
    with torch.no_grad():
        out, gates, _ = _forward(graph, x)
    return out, gates


@dataclass(frozen=True)
class _Pullback:
    """What the adjoints read: shapes, constant values, frozen gates."""

    model: torch.nn.Module
    shapes: dict[fx.Node, tuple[int, ...]]
    constants: dict[fx.Node, Any]
    frozen: dict[fx.Node, Tensor]

    def value(self, arg: Any) -> Any:
        return fx.node.map_arg(arg, self.constants.__getitem__)


Pulled = list[tuple[fx.Node, Tensor]]


def _to_tuple(value: int | tuple[int, ...] | list[int], dims: int) -> list[int]:
    return list(value) if isinstance(value, tuple | list) else [value] * dims


def _t_linear(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """z = W h + c:  dL/dh = g W."""
    return [(step.args["input"], g @ ctx.value(step.args["weight"]))]


def _t_conv(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """z = w * h + c (convolution):  dL/dh = the transposed convolution of g with w."""
    args = step.args
    if args.get("padding_mode", "zeros") != "zeros":
        return _t_autograd(step, g, ctx)
    weight = ctx.value(args["weight"])
    node = args["input"]
    shape = ctx.shapes[node]
    dims = weight.ndim - 2
    stride = _to_tuple(args.get("stride", 1), dims)
    dilation = _to_tuple(args.get("dilation", 1), dims)
    padding = args.get("padding", 0)
    spatial, crop = list(shape[1:]), None
    if padding == "valid":
        padding = 0
    elif padding == "same":  # torch pads dilation*(k-1) in all, the odd one at the end
        total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:], strict=True)]
        crop = [slice(t // 2, t // 2 + s) for t, s in zip(total, spatial, strict=True)]
        spatial = [s + t for s, t in zip(spatial, total, strict=True)]
        padding = 0
    n, C = g.shape[:2]
    merged = g.reshape(n * C, *g.shape[2:])
    like = merged.new_empty(()).expand(n * C, shape[0], *spatial)
    grad = torch.ops.aten.convolution_backward(
        merged,
        like,
        weight,
        None,
        stride,
        _to_tuple(padding, dims),
        dilation,
        False,
        [0] * dims,
        args.get("groups", 1),
        [True, False, False],
    )[0]
    if crop is not None:
        grad = grad[(slice(None), slice(None), *crop)]
    return [(node, grad.reshape(n, C, *shape))]


def _t_batch_norm(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """Eval mode: z = gamma (h - mu) / sqrt(var + eps) + beta per channel (dim 1)."""
    args = step.args
    scale = torch.rsqrt(ctx.value(args["running_var"]) + args.get("eps", 1e-5))
    weight = ctx.value(args.get("weight"))
    if weight is not None:
        scale = scale * weight
    shape = ctx.shapes[args["input"]]
    return [(args["input"], g * scale.view(1, 1, -1, *[1] * (len(shape) - 1)))]


def _t_slopes(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """Frozen ReLU-like unit z -> s ⊙ z:  dL/dz = s ⊙ g."""
    return [(step.args["input"], g * ctx.frozen[step.node].unsqueeze(1))]


def _t_max_pool(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """Frozen max-pool (a gather at k*(j)):  dL/dz_k = sum of g_j over the j with k*(j) = k."""
    node = step.args["input"]
    shape = ctx.shapes[node]
    index = ctx.frozen[step.node]
    n, C = g.shape[:2]
    channels, plane = shape[0], int(torch.Size(shape[1:]).numel())
    src = g.reshape(n, C, channels, -1)
    index = index.reshape(n, 1, channels, -1).expand_as(src)
    out = g.new_zeros(n, C, channels, plane).scatter_add_(3, index, src)
    return [(node, out.view(n, C, *shape))]


def _t_identity(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    return [(step.args["input"], g)]


def _t_reshape(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    node = step.args["input"]
    return [(node, g.reshape(*g.shape[:2], *ctx.shapes[node]))]


def _t_permute(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """Output dim i is input dim p[i]; the adjoint permutes back, with the C dim kept at 1."""
    node = step.args["input"]
    order = permutation(step, len(ctx.shapes[node]) + 1)
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return [(node, g.permute(0, 1, *[d + 1 for d in inverse[1:]]))]


def _unbroadcast(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum g (sample, C, *out) over the dims where an operand of ``shape`` was broadcast."""
    extra = g.ndim - 2 - len(shape)
    if extra > 0:
        g = g.sum(dim=tuple(range(2, 2 + extra)))
    dims = tuple(2 + i for i, s in enumerate(shape) if s == 1 and g.shape[2 + i] != 1)
    return g.sum(dim=dims, keepdim=True) if dims else g


def _t_add(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """z = a + alpha b (or a - alpha b, or -a): each x-dependent operand gets ±g."""
    sign = -1.0 if step.op_name in NEGATING else 1.0
    other = (-1.0 if step.op_name in SUBTRACTING else 1.0) * step.args.get("alpha", 1.0)
    pulled = []
    for name, factor in (("input", sign), ("other", other)):
        node = step.args.get(name)
        if isinstance(node, fx.Node) and node.meta["lens_uses_x"]:
            scaled = g if factor == 1.0 else g * factor
            pulled.append((node, _unbroadcast(scaled, ctx.shapes[node])))
    return pulled


def _t_scale(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """z = c h or h / c with c constant:  dL/dh = c g or g / c."""
    args = step.args
    first = isinstance(args["input"], fx.Node) and args["input"].meta["lens_uses_x"]
    node, c = (args["input"], args["other"]) if first else (args["other"], args["input"])
    c = ctx.value(c)
    if isinstance(c, Tensor) and c.ndim == g.ndim - 1:  # c has a batch dim (of size 1)
        c = c.unsqueeze(1)
    pulled = g / c if step.op_name in DIVIDING else g * c
    return [(node, _unbroadcast(pulled, ctx.shapes[node]))]


def _t_cat(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """Concatenation: each x-dependent piece gets its slice of g."""
    tensors = step.args["tensors"]
    dim = step.args.get("dim", 0) % (g.ndim - 1)
    sizes = [
        ctx.shapes[t][dim - 1]
        if isinstance(t, fx.Node) and t.meta["lens_uses_x"]
        else ctx.value(t).shape[dim]
        for t in tensors
    ]
    pieces = g.split(sizes, dim=dim + 1)
    return [
        (t, piece)
        for t, piece in zip(tensors, pieces, strict=True)
        if isinstance(t, fx.Node) and t.meta["lens_uses_x"]
    ]


def _t_autograd(step: Step, g: Tensor, ctx: _Pullback) -> Pulled:
    """Any other affine step (pooling by average, padding, slicing, sums): the adjoint by
    autograd, with the C outputs merged into the batch dim (sample * C, *shape)."""
    n, C = g.shape[:2]
    nodes = step.x_inputs()
    zeros = {v: g.new_zeros((n * C, *ctx.shapes[v])).requires_grad_() for v in nodes}
    with torch.enable_grad():
        y = _call(step, ChainMap(zeros, ctx.constants), ctx.model)
    grads = torch.autograd.grad(
        y, list(zeros.values()), g.reshape(n * C, *g.shape[2:]), allow_unused=True
    )
    return [
        (v, (gv if gv is not None else zeros[v].detach()).reshape(n, C, *ctx.shapes[v]))
        for v, gv in zip(nodes, grads, strict=True)
    ]


_ADJOINTS: dict[str, Callable[[Step, Tensor, _Pullback], Pulled]] = {
    "linear": _t_linear,
    "conv": _t_conv,
    "batch_norm": _t_batch_norm,
    "relu": _t_slopes,
    "leaky_relu": _t_slopes,
    "prelu": _t_slopes,
    "max_pool": _t_max_pool,
    "identity": _t_identity,
    "reshape": _t_reshape,
    "permute": _t_permute,
    "add": _t_add,
    "scale": _t_scale,
    "cat": _t_cat,
    "avg_pool": _t_autograd,
    "reduce": _t_autograd,
    "pad": _t_autograd,
    "getitem": _t_autograd,
}


def affine_map(graph: LensGraph, probe: Probe, x: Tensor) -> tuple[Tensor, Tensor]:
    """W_eff (sample, out, in) and b_eff (sample, out) of the graph on the batch ``x``.

    Gates are recorded on x; then b_eff = f_D(0) and W_eff = the Jacobian of f_D, pulled back
    from the output for all ``out`` rows at once (module docstring). ``probe`` is the result
    of :func:`probe` for this graph and input shape. Memory is about a few times
    sample * out * probe.max_units entries: the caller chooses the chunk of samples.
    """
    n = x.shape[0]
    with torch.no_grad():
        _, gates, _ = _forward(graph, x)
        b, frozen, constants = _forward(graph, torch.zeros_like(x), gates)
        ctx = _Pullback(graph.model, probe.shapes, constants, frozen)
        C = probe.n_out
        eye = torch.eye(C, dtype=b.dtype, device=b.device).expand(n, C, C)
        cotangents: dict[fx.Node, Tensor] = {
            graph.output: eye.reshape(n, C, *probe.shapes[graph.output])
        }
        for step in reversed(graph.steps):
            g = cotangents.pop(step.node, None)
            if g is None:
                continue
            if step.rule == "input":
                return g.reshape(n, C, -1), b.reshape(n, C)
            for node, pulled in _ADJOINTS[step.rule](step, g, ctx):
                cotangents[node] = cotangents[node] + pulled if node in cotangents else pulled
    W = torch.zeros((n, C, probe.n_in), dtype=b.dtype, device=b.device)
    return W, b.reshape(n, C)
