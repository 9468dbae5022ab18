"""A torch model as a graph of piecewise-linear operations, or a refusal that names the node.

A network built only from affine maps and gates is, on each input x, one affine map

    f(x) = W_eff(x) x + b_eff(x),

fixed by its gates: which ReLU units pass, which slope a leaky unit takes, which input a
max-pool selects (Ye 2025, arXiv 2511.05628, for bias-free MLPs; the general case is in
docs/theory/effective-weights.md, section "Any piecewise-linear network"). The lens reads that
map from the graph of the model's forward pass, captured by torch.fx symbolic tracing
(:func:`trace_model`). Every node of the graph is checked against the operations in
:data:`OPERATIONS`; any other node is refused with :class:`UnsupportedModuleError`, naming the
node and the source line that created it, so a map that would not be exact is never returned.

A module called twice is two nodes (two operations, with their own gates); torch.fx traces
through user-defined modules down to the modules of ``torch.nn``, which are kept as single
nodes (``call_module``) and accepted by exact type.
"""

from __future__ import annotations

import linecache
import operator
import os
import sys
import threading
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn


class UnsupportedModuleError(TypeError):
    """The model contains an operation whose effective linear map is not known to be exact."""


class InputError(ValueError):
    """The batch ``x`` given to the lens is empty, holds NaN or inf, or has a shape the model
    does not take; raised before any work starts."""


@dataclass(frozen=True)
class Operation:
    """One row of the table of accepted operations.

    Attributes:
        summary: what the row accepts, as a reader writes it (shown in the README table).
        gated: whether the operation has gates (ReLU masks, leaky slopes, max-pool selections);
            the others are affine in their input.
        x_args: the arguments that may depend on the input x (the others must be constants:
            a weight that depends on x would make the map bilinear).
    """

    summary: str
    gated: bool = False
    x_args: tuple[str, ...] = ("input",)


OPERATIONS: dict[str, Operation] = {
    "linear": Operation("nn.Linear, F.linear"),
    "conv": Operation(
        "nn.Conv1d, nn.Conv2d, F.conv1d, F.conv2d (any stride, padding, dilation, groups)"
    ),
    "batch_norm": Operation("nn.BatchNorm1d, nn.BatchNorm2d, F.batch_norm: eval mode only"),
    "relu": Operation("nn.ReLU, F.relu, torch.relu, Tensor.relu, clamp(min=0)", gated=True),
    "leaky_relu": Operation("nn.LeakyReLU, F.leaky_relu", gated=True),
    "prelu": Operation("nn.PReLU, F.prelu", gated=True),
    "max_pool": Operation(
        "nn.MaxPool1d/2d, nn.AdaptiveMaxPool1d/2d and their F. forms", gated=True
    ),
    "avg_pool": Operation("nn.AvgPool1d/2d, nn.AdaptiveAvgPool1d/2d and their F. forms"),
    "identity": Operation(
        "nn.Identity, nn.Dropout/Dropout1d/Dropout2d and F.dropout in eval mode, contiguous"
    ),
    "reshape": Operation(
        "nn.Flatten, nn.Unflatten, flatten, view, reshape, squeeze/unsqueeze (not the batch dim)"
    ),
    "permute": Operation("permute, transpose (the batch dim stays first)"),
    "add": Operation(
        "x + y, x - y, -x, torch.add/sub/neg (residual connections)", x_args=("input", "other")
    ),
    "scale": Operation(
        "x * c, x / c, torch.mul/div with c not depending on x", x_args=("input", "other")
    ),
    "cat": Operation("torch.cat/concat along a non-batch dim", x_args=("tensors",)),
    "reduce": Operation("sum, mean over non-batch dims"),
    "pad": Operation("F.pad"),
    "getitem": Operation("x[:, ...] slicing with ints, slices, None, Ellipsis"),
}

_MAX_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)

# torch.nn modules accepted by exact type (a subclass may override forward and is traced through)
_MODULES: dict[type[nn.Module], str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv",
    nn.Conv2d: "conv",
    nn.BatchNorm1d: "batch_norm",
    nn.BatchNorm2d: "batch_norm",
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    **dict.fromkeys(_MAX_POOL_MODULES, "max_pool"),
    nn.AvgPool1d: "avg_pool",
    nn.AvgPool2d: "avg_pool",
    nn.AdaptiveAvgPool1d: "avg_pool",
    nn.AdaptiveAvgPool2d: "avg_pool",
    nn.Identity: "identity",
    nn.Dropout: "identity",
    nn.Dropout1d: "identity",
    nn.Dropout2d: "identity",
    nn.Flatten: "reshape",
    nn.Unflatten: "reshape",
}

_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_MAX_POOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_ADD = ("input", "other", "alpha")

# functions: rule and the names of their positional parameters
_FUNCTIONS: dict[Callable[..., Any], tuple[str, tuple[str, ...]]] = {
    F.linear: ("linear", ("input", "weight", "bias")),
    F.conv1d: ("conv", _CONV),
    F.conv2d: ("conv", _CONV),
    F.batch_norm: (
        "batch_norm",
        ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
    ),
    F.relu: ("relu", ("input", "inplace")),
    torch.relu: ("relu", ("input",)),
    torch.clamp: ("relu", ("input", "min", "max")),
    torch.clamp_min: ("relu", ("input", "min")),
    F.leaky_relu: ("leaky_relu", ("input", "negative_slope", "inplace")),
    F.prelu: ("prelu", ("input", "weight")),
    F.max_pool1d: ("max_pool", _MAX_POOL),
    F.max_pool2d: ("max_pool", _MAX_POOL),
    F.adaptive_max_pool1d: ("max_pool", ("input", "output_size", "return_indices")),
    F.adaptive_max_pool2d: ("max_pool", ("input", "output_size", "return_indices")),
    F.avg_pool1d: ("avg_pool", ("input",)),
    F.avg_pool2d: ("avg_pool", ("input",)),
    F.adaptive_avg_pool1d: ("avg_pool", ("input",)),
    F.adaptive_avg_pool2d: ("avg_pool", ("input",)),
    F.dropout: ("identity", ("input", "p", "training", "inplace")),
    torch.flatten: ("reshape", ("input", "start_dim", "end_dim")),
    torch.reshape: ("reshape", ("input", "shape")),
    torch.squeeze: ("reshape", ("input", "dim")),
    torch.unsqueeze: ("reshape", ("input", "dim")),
    torch.permute: ("permute", ("input", "dims")),
    torch.transpose: ("permute", ("input", "dim0", "dim1")),
    operator.add: ("add", _ADD),
    torch.add: ("add", _ADD),
    operator.sub: ("add", _ADD),
    torch.sub: ("add", _ADD),
    operator.neg: ("add", ("input",)),
    torch.neg: ("add", ("input",)),
    operator.mul: ("scale", ("input", "other")),
    torch.mul: ("scale", ("input", "other")),
    operator.truediv: ("scale", ("input", "other", "rounding_mode")),
    torch.div: ("scale", ("input", "other", "rounding_mode")),
    torch.cat: ("cat", ("tensors", "dim")),
    torch.concat: ("cat", ("tensors", "dim")),
    torch.sum: ("reduce", ("input", "dim", "keepdim")),
    torch.mean: ("reduce", ("input", "dim", "keepdim")),
    F.pad: ("pad", ("input", "pad", "mode", "value")),
    operator.getitem: ("getitem", ("input", "index")),
}

# Tensor methods: rule and positional parameter names (after self, named "input")
_METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "relu": ("relu", ("input",)),
    "clamp": ("relu", ("input", "min", "max")),
    "clamp_min": ("relu", ("input", "min")),
    "contiguous": ("identity", ("input",)),
    "view": ("reshape", ("input",)),
    "reshape": ("reshape", ("input",)),
    "flatten": ("reshape", ("input", "start_dim", "end_dim")),
    "unflatten": ("reshape", ("input", "dim", "sizes")),
    "squeeze": ("reshape", ("input", "dim")),
    "unsqueeze": ("reshape", ("input", "dim")),
    "permute": ("permute", ("input",)),
    "transpose": ("permute", ("input", "dim0", "dim1")),
    "add": ("add", _ADD),
    "sub": ("add", _ADD),
    "neg": ("add", ("input",)),
    "mul": ("scale", ("input", "other")),
    "div": ("scale", ("input", "other", "rounding_mode")),
    "sum": ("reduce", ("input", "dim", "keepdim")),
    "mean": ("reduce", ("input", "dim", "keepdim")),
}

# what reads a tensor's shape, not its values
_SHAPE_METHODS = ("size", "dim", "numel")
_SHAPE_ATTRIBUTES = ("shape", "ndim", "dtype", "device")
# names (Step.op_name) of the add and scale operations that negate, subtract or divide
NEGATING, SUBTRACTING, DIVIDING = ("neg",), ("sub",), ("truediv", "div")


@dataclass(frozen=True)
class Step:
    """One node of the traced forward graph, checked and classified.

    Attributes:
        node: the torch.fx node; ``node.name`` is the key of its gates.
        rule: a key of :data:`OPERATIONS`, or "input", "constant" (a parameter or buffer, or
            an accepted operation on constants only) or "shape" (a size read off a tensor).
        module: the called module of a ``call_module`` node, else None.
        args: the bound arguments by parameter name; values are ``fx.Node`` where they come
            from another node. A module's parameters and settings (weight, stride, eps, ...)
            are bound here too, so a module and its functional form read alike.
        uses_x: whether the value depends on the input x.
        source: where the node was written: "file:line: code", or the module path.
    """

    node: fx.Node
    rule: str
    module: nn.Module | None
    args: dict[str, Any]
    uses_x: bool
    source: str

    @property
    def name(self) -> str:
        """The fx node name: unique in the graph, the key of the node's gates."""
        return self.node.name

    @property
    def op_name(self) -> str:
        """The called thing's own name: 'flatten' for torch.flatten and Tensor.flatten, 'sub'
        for operator.sub, 'Flatten' for nn.Flatten."""
        if self.module is not None:
            return type(self.module).__name__
        target = self.node.target
        return target if isinstance(target, str) else getattr(target, "__name__", "")

    @property
    def gated(self) -> bool:
        """Whether the step has gates (a ReLU-like unit or a max-pool)."""
        return self.rule in OPERATIONS and OPERATIONS[self.rule].gated

    def x_inputs(self) -> list[fx.Node]:
        """The nodes depending on x that feed this step, each once, in argument order."""
        found: list[fx.Node] = []
        for name in OPERATIONS[self.rule].x_args:
            fx.node.map_arg(self.args.get(name), found.append)
        return list(dict.fromkeys(n for n in found if n.meta["lens_uses_x"]))

    def refuse(self, why: str) -> UnsupportedModuleError:
        """The error for this step: node name, operation, source line, and why."""
        what = describe(self.node, self.module)
        return UnsupportedModuleError(f"node {self.name}: {what}{self.source} {why}")


@dataclass(frozen=True)
class LensGraph:
    """The checked graph of a model: steps in graph (execution) order, the input first.

    Attributes:
        model: the traced model (its parameters are read live, never copied).
        steps: every node but the output, in graph order.
        output: the node whose value is f(x).
    """

    model: nn.Module
    steps: tuple[Step, ...]
    output: fx.Node

    @property
    def gates(self) -> list[Step]:
        """The gated steps, in graph order."""
        return [s for s in self.steps if s.gated]


_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep


def _code_line(filename: str, lineno: int) -> str:
    """'file:line `code`', the path relative to the working folder when inside it."""
    path = os.path.relpath(filename) if filename.startswith(os.getcwd() + os.sep) else filename
    return f"{path}:{lineno} `{linecache.getline(filename, lineno).strip()}`"


def _user_line(frame: types.FrameType | None) -> str | None:
    """The innermost frame outside torch and this file, until the tracer's own ``trace``."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "trace" and code.co_filename.startswith(_TORCH_DIR):
            return None
        if not code.co_filename.startswith(_TORCH_DIR) and code.co_filename != __file__:
            return _code_line(code.co_filename, frame.f_lineno)
        frame = frame.f_back
    return None


_TRACE_LOCK = threading.Lock()


class _Tracer(fx.Tracer):
    """torch.fx's tracer, recording each node's source line and refusing control flow on x.

    While it traces, torch.fx patches ``nn.Module.__call__`` and ``__getattr__`` for the whole
    process. A module that another thread calls meanwhile (a second cell of a threaded sweep,
    training its own net) must run as it is: it is not part of the traced model, and torch.fx
    would raise "module is not installed as a submodule". So calls from other threads pass
    straight through. Two traces must not overlap, or each passes the other's modules through
    and their patches are undone out of order: :func:`trace_model` holds ``_TRACE_LOCK``."""

    def trace(self, root: Any, concrete_args: Any = None) -> fx.Graph:
        self._thread = threading.get_ident()
        return super().trace(root, concrete_args)

    def call_module(self, m: nn.Module, forward: Callable, args: Any, kwargs: Any) -> Any:
        if threading.get_ident() != self._thread:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if threading.get_ident() != self._thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        node.meta["lens_line"] = _user_line(sys._getframe(1))
        return node

    def _refuse(self, obj: fx.Proxy, what: str) -> UnsupportedModuleError:
        node = obj.node
        module = self.root.get_submodule(node.target) if node.op == "call_module" else None
        line = _user_line(sys._getframe(2))
        where = f" at {line}" if line else ""
        return UnsupportedModuleError(f"node {node.name}: {describe(node, module)} {what}{where}")

    def to_bool(self, obj: fx.Proxy) -> bool:
        raise self._refuse(
            obj, "decides Python control flow (a branch on the data gives no single graph)"
        )

    def iter(self, obj: fx.Proxy) -> Any:
        raise self._refuse(
            obj, "is iterated in Python (a loop over a tensor is no operation of the graph)"
        )


def describe(node: fx.Node, module: nn.Module | None = None) -> str:
    """The operation of a node as a reader names it: module type and path, or function."""
    if node.op == "call_module":
        kind = type(module)
        name = (
            f"nn.{kind.__name__}" if kind.__module__.startswith("torch.nn") else kind.__qualname__
        )
        return f"{name} (module '{node.target}')"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_function":
        fn = node.target
        module = getattr(fn, "__module__", None) or "torch"
        module = {"_operator": "operator", "torch.nn.functional": "F"}.get(module, module)
        return f"{module}.{getattr(fn, '__name__', repr(fn))}"
    return node.op


def _source(node: fx.Node) -> str:
    """' (at file:line `code`)' where the node was written, or '' inside torch's modules."""
    line = node.meta.get("lens_line")
    return f" (at {line})" if line else ""


def _bind(node: fx.Node, names: tuple[str, ...]) -> dict[str, Any]:
    """Positional arguments by ``names``, then keywords; extra positionals under "rest"."""
    bound = dict(zip(names, node.args, strict=False))
    if len(node.args) > len(names):
        bound["rest"] = tuple(node.args[len(names) :])
    bound.update(node.kwargs)
    return bound


def _module_args(module: nn.Module, node: fx.Node) -> dict[str, Any]:
    """A torch.nn module's input and its parameters and settings, named like its F. form."""
    args: dict[str, Any] = {"input": node.args[0] if node.args else node.kwargs.get("input")}
    names: tuple[str, ...] = ()
    if isinstance(module, nn.Linear):
        names = ("weight", "bias")
    elif isinstance(module, nn.Conv1d | nn.Conv2d):
        names = ("weight", "bias", "stride", "padding", "dilation", "groups", "padding_mode")
    elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
        names = ("running_mean", "running_var", "weight", "bias", "eps")
        args["training"] = module.training
    elif isinstance(module, nn.ReLU | nn.LeakyReLU):
        names = ("inplace", "negative_slope") if isinstance(module, nn.LeakyReLU) else ("inplace",)
    elif isinstance(module, nn.PReLU):
        names = ("weight",)
    elif isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
        names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    elif isinstance(module, nn.AdaptiveMaxPool1d | nn.AdaptiveMaxPool2d):
        names = ("output_size", "return_indices")
    elif isinstance(module, nn.Dropout | nn.Dropout1d | nn.Dropout2d):
        names = ("p", "inplace")
        args["training"] = module.training
    elif isinstance(module, nn.Flatten):
        names = ("start_dim", "end_dim")
    elif isinstance(module, nn.Unflatten):
        names = ("dim",)
    args.update({name: getattr(module, name) for name in names})
    return args


def _is_shape_read(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _SHAPE_METHODS
    return (
        node.op == "call_function"
        and node.target is getattr
        and len(node.args) == 2
        and node.args[1] in _SHAPE_ATTRIBUTES
    )


def _classify(node: fx.Node, model: nn.Module) -> tuple[str, nn.Module | None, dict[str, Any]]:
    """(rule, module, bound args) of a call node, or UnsupportedModuleError."""
    inputs = node.all_input_nodes
    if _is_shape_read(node) or (
        inputs
        and all(n.meta["lens_rule"] == "shape" for n in inputs)
        and node.op == "call_function"
        and getattr(node.target, "__module__", None) == "_operator"
    ):
        return "shape", None, {}
    module = model.get_submodule(node.target) if node.op == "call_module" else None
    if module is not None:
        rule = _MODULES.get(type(module))
        if rule is not None:
            return rule, module, _module_args(module, node)
    elif node.op == "call_function" and node.target in _FUNCTIONS:
        rule, names = _FUNCTIONS[node.target]
        return rule, None, _bind(node, names)
    elif node.op == "call_method" and node.target in _METHODS:
        rule, names = _METHODS[node.target]
        return rule, None, _bind(node, names)
    raise UnsupportedModuleError(
        f"node {node.name}: {describe(node, module)}{_source(node)} is not a piecewise-linear "
        "operation the lens accepts (relu_lens.graph.OPERATIONS; README, 'The lens in code'): "
        "its effective map would not be exact"
    )


def _check(step: Step) -> None:
    """Refuse a step whose arguments make it non-affine or couple the samples."""
    args, rule = step.args, step.rule
    x_args = OPERATIONS[rule].x_args
    for name, value in args.items():
        if name not in x_args and _uses_x(value):
            raise step.refuse(
                f"takes an argument '{name}' that depends on x: the map would not be linear in x"
            )
    if rule == "scale":
        both = all(_uses_x(args.get(k)) for k in ("input", "other"))
        if both or (not _uses_x(args.get("input")) and step.op_name in DIVIDING):
            raise step.refuse("multiplies or divides by x: the map would not be linear in x")
        if args.get("rounding_mode") is not None:
            raise step.refuse("rounds: the map would not be linear in x")
    elif (rule == "batch_norm" and args.get("training", False)) or (
        rule == "identity" and "p" in args and args.get("training", True) and args["p"] > 0
    ):
        raise step.refuse(
            "runs in train mode (batch statistics or random dropout couple or randomise the "
            "samples): call model.eval() first"
        )
    elif rule == "batch_norm" and args.get("running_mean") is None:
        raise step.refuse(
            "has no running statistics (track_running_stats=False), so it normalises with the "
            "batch's statistics even in eval mode"
        )
    elif rule == "relu" and (args.get("min", 0) != 0 or args.get("max") is not None):
        raise step.refuse("clamps at other bounds than min=0: only clamp(min=0) is a ReLU")
    elif rule == "max_pool" and args.get("return_indices", False):
        raise step.refuse("returns indices: the lens accepts max-pooling that returns values")
    elif rule == "reshape" and step.op_name == "squeeze" and args.get("dim") is None:
        raise step.refuse("squeezes every size-1 dim: a batch of one sample would lose its dim")
    elif rule == "getitem" and step.uses_x:
        index = args["index"] if isinstance(args["index"], tuple) else (args["index"],)
        if index[0] not in (slice(None), Ellipsis) or any(
            isinstance(i, fx.Node | torch.Tensor) for i in index
        ):
            raise step.refuse(
                "indexes the batch dim or by a tensor: only x[:, ...] with ints, slices, None "
                "and Ellipsis is accepted"
            )
    elif rule == "reduce" and step.uses_x and args.get("dim", args.get("rest")) is None:
        raise step.refuse("sums or averages over every dim, the batch included")


def _uses_x(value: Any) -> bool:
    found: list[bool] = []
    fx.node.map_arg(value, lambda n: found.append(n.meta["lens_uses_x"]))
    return any(found)


def _check_in_place(steps: list[Step]) -> None:
    """Refuse an in-place ReLU whose input (or what it is a view of) is read after it: the
    traced graph would read the value before the ReLU, the model the value after it."""
    order = {s.node: k for k, s in enumerate(steps)}
    by_node = {s.node: s for s in steps}
    for k, step in enumerate(steps):
        if not (step.gated and step.args.get("inplace")):
            continue
        aliased = step.args["input"]
        while isinstance(aliased, fx.Node):
            later = [u for u in aliased.users if u.op == "output" or order.get(u, -1) > k]
            if later:
                raise step.refuse(
                    f"works in place on {aliased.name}, which {later[0].name} reads afterwards: "
                    "the traced graph would see another value than the model; use inplace=False"
                )
            source = by_node.get(aliased)
            if source is None or source.rule not in ("identity", "reshape", "permute"):
                break
            aliased = source.args["input"]


def trace_model(model: nn.Module) -> LensGraph:
    """The checked graph of ``model``'s forward, or UnsupportedModuleError naming the node.

    The model is traced with torch.fx (its modules and parameters are only read: no hook is
    added and nothing is changed, also on error). Refused, each with the node name and source
    line: any operation not in :data:`OPERATIONS`; BatchNorm and Dropout in train mode;
    BatchNorm without running statistics; x-dependent weights or products of two x-dependent
    tensors (bilinear, as in attention); Python control flow or iteration on x; a forward with
    more than one input or an output that is not one tensor depending on x; modules with
    forward hooks. Checks that need shapes (the batch dim stays first and apart) are made when
    the graph first runs on a batch (``relu_lens.linearize.probe``).
    """
    if not isinstance(model, nn.Module):
        raise UnsupportedModuleError(f"the lens takes an nn.Module, got {type(model).__name__}")
    for name, module in model.named_modules():
        if module._forward_hooks or module._forward_pre_hooks:
            raise UnsupportedModuleError(
                f"module {name or type(model).__name__} ({type(module).__name__}) has forward "
                "hooks that may change its output; remove them before using the lens"
            )
    try:
        with _TRACE_LOCK:  # one trace at a time in the process (_Tracer)
            graph = _Tracer().trace(model)
    except UnsupportedModuleError:
        raise
    except Exception as err:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if _is_user(f.filename)]
        where = f" at {_code_line(frames[-1].filename, frames[-1].lineno)}" if frames else ""
        first = str(err).splitlines()[0] if str(err) else ""
        raise UnsupportedModuleError(
            f"torch.fx cannot trace {type(model).__name__}{where}: {type(err).__name__}: {first}"
        ) from err
    graph.owning_module = model
    steps: list[Step] = []
    output = None
    for node in graph.nodes:
        node.meta["lens_uses_x"] = False
        if node.op == "placeholder":
            if steps:
                raise UnsupportedModuleError(
                    f"node {node.name}: the forward of {type(model).__name__} takes a second "
                    "input; the lens reads models of one input x"
                )
            rule, module, args, uses_x = "input", None, {}, True
        elif node.op == "get_attr":
            rule, module, args, uses_x = "constant", None, {}, False
        elif node.op == "output":
            output = node.args[0]
            if not isinstance(output, fx.Node) or not output.meta["lens_uses_x"]:
                raise UnsupportedModuleError(
                    f"the forward of {type(model).__name__} returns {type(output).__name__}, "
                    "not one tensor that depends on x"
                )
            break
        else:
            rule, module, args = _classify(node, model)
            uses_x = rule != "shape" and any(n.meta["lens_uses_x"] for n in node.all_input_nodes)
            if rule not in ("shape",) and not uses_x:
                rule_check = Step(node, rule, module, args, False, _source(node))
                _check(rule_check)
                rule = "constant" if rule != "shape" else rule
        node.meta["lens_rule"] = rule
        node.meta["lens_uses_x"] = uses_x
        step = Step(node, rule, module, args, uses_x, _source(node))
        if uses_x and rule != "input":
            _check(step)
        steps.append(step)
    if not steps or steps[0].rule != "input":
        raise UnsupportedModuleError(f"the forward of {type(model).__name__} takes no input")
    _check_in_place(steps)
    return LensGraph(model, tuple(steps), output)


def _is_user(filename: str) -> bool:
    return not filename.startswith(_TORCH_DIR) and filename != __file__


def permutation(step: Step, ndim: int) -> list[int]:
    """The dims of a permute or transpose step's output, as dims of its ``ndim``-dim input."""
    args = step.args
    if "dim0" in args:
        order = list(range(ndim))
        i, j = args["dim0"] % ndim, args["dim1"] % ndim
        order[i], order[j] = order[j], order[i]
        return order
    dims = args.get("dims", args.get("rest", ()))
    if len(dims) == 1 and isinstance(dims[0], tuple | list):
        dims = dims[0]
    return [d % ndim for d in dims]


def spatial_dims(step: Step) -> int:
    """1 or 2: the spatial dims of a convolution or pooling step (from its name, e.g. 'conv2d')."""
    name = type(step.module).__name__ if step.module is not None else step.node.target.__name__
    return int(name[-2])


def check_batch(step: Step, value: Any, batch: int, ndim_of: Callable[[fx.Node], int]) -> None:
    """Refuse a step that moves, mixes or drops the batch dim (dim 0), seen on a probe batch.

    ``value`` is the step's value on a batch of ``batch`` samples and ``ndim_of`` gives the
    number of dims of an x-dependent input's value. Each sample's output must depend on that
    sample alone, which the table's operations do when dim 0 stays the batch dim: kept first by
    every reshape, never permuted, concatenated, reduced, squeezed or broadcast against, and
    convolutions and pools see batched input (an unbatched 2-D pool would pool across samples).
    """
    if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != batch:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise step.refuse(
            f"gives {shape} for a batch of {batch} samples: the batch dim must stay first"
        )
    ndim, args, rule = value.ndim, step.args, step.rule
    inputs = step.x_inputs()
    in_ndim = ndim_of(inputs[0]) if inputs else ndim
    touches_batch = False
    if rule in ("add", "scale", "cat") and any(ndim_of(v) != ndim for v in inputs):
        raise step.refuse("broadcasts x against a tensor of another rank: batch dims would mix")
    if rule == "permute":
        touches_batch = permutation(step, ndim)[0] != 0
    elif rule == "cat":
        touches_batch = args.get("dim", 0) % ndim == 0
    elif rule == "reduce":
        dims = args.get("dim", args.get("rest"))
        dims = dims if isinstance(dims, tuple | list) else (dims,)
        touches_batch = any(d % in_ndim == 0 for d in dims)
    elif rule == "reshape":
        if step.op_name in ("flatten", "Flatten"):
            touches_batch = args.get("start_dim", 0) % in_ndim == 0
        elif step.op_name == "unsqueeze":
            touches_batch = args["dim"] % (in_ndim + 1) == 0
        elif "dim" in args:  # squeeze, unflatten
            touches_batch = args["dim"] % in_ndim == 0
    elif rule in ("conv", "max_pool", "avg_pool") and in_ndim != spatial_dims(step) + 2:
        raise step.refuse(
            f"gets a {in_ndim}-dim input: it needs (sample, channel, ...) with "
            f"{spatial_dims(step)} spatial dims, else it would mix samples"
        )
    if touches_batch:
        raise step.refuse("acts on the batch dim: each sample's map would depend on the others")
