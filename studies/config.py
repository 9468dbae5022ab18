"""Study configurations: presets and ``--set FIELD=VALUE`` overrides with type checking.

A study's ``Config`` is a frozen dataclass. Values given on the command line are parsed by the
field's annotation: ``int``, ``float``, ``bool``, ``str``, ``X | None`` (``none`` gives None) and
``tuple[X, ...]`` (comma-separated, e.g. ``widths=256,256``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """An override names an unknown field or gives a value of the wrong type."""


def _parse_scalar(text: str, kind: Any, field: str) -> Any:
    text = text.strip()
    if kind is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"--set {field}={text}: expected a boolean (true/false)")
    if kind in (int, float, str):
        try:
            value = kind(text)
        except ValueError:
            raise ConfigError(
                f"--set {field}={text}: expected {kind.__name__}, got {text!r}"
            ) from None
        return value
    raise ConfigError(f"field {field!r} has type {kind!r}, which --set cannot parse")


def parse_value(text: str, annotation: Any, field: str) -> Any:
    """Parse ``text`` into a value of type ``annotation``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if text.strip().lower() in {"none", "null", ""} and len(non_none) < len(args):
            return None
        if len(non_none) == 1:
            return parse_value(text, non_none[0], field)
        raise ConfigError(f"field {field!r} has a union type --set cannot parse")
    if origin is tuple:
        item = args[0] if args else str
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise ConfigError(f"--set {field}={text}: expected a comma-separated list")
        return tuple(parse_value(p, item, field) for p in parts)
    if origin is typing.Literal:
        if text in args:
            return text
        raise ConfigError(f"--set {field}={text}: must be one of {list(args)}")
    return _parse_scalar(text, annotation, field)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Return ``config`` with ``FIELD=VALUE`` overrides applied (a new frozen instance)."""
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE")
        field, text = item.split("=", 1)
        field = field.strip()
        if field not in names:
            raise ConfigError(
                f"--set {field}: {type(config).__module__.split('.')[-1]} has no field {field!r}; "
                f"fields are: {', '.join(names)}"
            )
        changes[field] = parse_value(text, hints[field], field)
    try:
        return dataclasses.replace(config, **changes)
    except ValueError as err:  # __post_init__ validation
        raise ConfigError(str(err)) from None


def check_numbers(
    config: Any,
    positive: tuple[str, ...] = (),
    counts: tuple[str, ...] = (),
    nonnegative: tuple[str, ...] = ("seed",),
    naturals: tuple[str, ...] = (),
) -> None:
    """The domain checks every study's ``Config.__post_init__`` starts with, before any data
    load or training: ValueError naming the first field (of those given that the config has)
    that is not a finite number > 0 (``positive``; tuples element-wise), not an integer >= 1
    (``counts``) or >= 0 (``naturals``; both tuples element-wise, and a tuple must not be
    empty), or is negative (``nonnegative``). Optional fields set to None are skipped. A
    ``device`` field must name a device torch has (CUDA only if present).
    """

    def values(name: str) -> tuple[Any, ...]:
        value = getattr(config, name)
        return tuple(value) if isinstance(value, tuple) else (value,)

    optional = {f.name for f in dataclasses.fields(config) if getattr(config, f.name) is None}

    names = {f.name for f in dataclasses.fields(config)} - optional  # None: not given
    for name in (n for n in positive if n in names):
        if not all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in values(name)):
            raise ValueError(f"{name} must be finite and > 0, got {getattr(config, name)}")
    for lowest, fields in ((1, counts), (0, naturals)):
        for name in (n for n in fields if n in names):
            vals, given = values(name), getattr(config, name)
            if not vals or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                raise ValueError(f"{name} must be integers >= {lowest}, got {given}")
            if min(vals) < lowest:
                raise ValueError(f"{name} must be >= {lowest}, got {given}")
    for name in (n for n in nonnegative if n in names):
        if not all(v >= 0 for v in values(name)):
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    if "device" in names:
        check_device(config.device)


def check_device(device: str) -> None:
    """ValueError unless torch can use ``device`` ("cpu", "cuda", "cuda:1"...), said at once
    rather than after the data load."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (index and not index.isdigit()):
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if kind == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r}: this machine has no CUDA device (use --device cpu)"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA devices")
