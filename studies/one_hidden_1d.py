"""One-hidden-layer ReLU nets on 1-D targets read as splines, against the constructive solution.

Seed: Huang 2024 (arXiv 2411.06728); docs/theory/splines.md. A net
f(x) = sum_i a_i relu(w_i x + b_i) + c is a continuous piecewise-linear function with a knot
t_i = -b_i / w_i per unit, which faces right (w_i > 0) or left (w_i < 0) and bends the slope by
a_i |w_i| (``relu_lens.knots``). The constructive solution with the same budget of k = width
units is the piecewise-linear interpolant of the target on k + 1 nodes (``relu_lens.spline``).

Targets. ``Config.targets`` names built-in targets (:data:`TARGETS`: abs, sin3x, square, pwl,
bump) or gives g as an expression in x, e.g. ``--set targets="abs(x-0.3)+0.5*sin(7*x)"``
(:func:`parse_target`, read by sympy, never by Python's eval): x, numbers, + - * / ** ^,
brackets, the constants pi and E and the functions abs, sign, Heaviside, relu, Max, Min, sqrt,
exp, log, sin, cos, tan, atan, sinh, cosh, tanh (:data:`ALLOWED_NAMES`); any other name is
refused. ``--set`` splits the tuple on commas, so an expression holds no comma: separate
function arguments with ';' (``Max(x;0.2)``; in Python ',' works too) or use relu(u) =
Max(u, 0). The target must be continuous with finite one-sided slopes on [lo, hi]. Its kinks
and g'' come from the expression itself (:class:`ExpressionTarget`): exact, where the
built-ins' g'' is a finite difference.

What is run. For every target g on [lo, hi], width k and seed: a float64 net
``Linear(1, k) -> ReLU -> Linear(k, 1)`` with PyTorch's default initialisation is trained by
full-batch Adam (cosine-annealed step) on the loss (1/2P) sum_p (f(x_p) - g(x_p))^2 over P
equally spaced points of [lo, hi]; then it is read unit by unit.

The comparison, precisely:

- errors: sup_error = max |f - g| and l2_error = ((1/(hi - lo)) int (f - g)^2)^(1/2), both on
  the evaluation grid ``x`` (n_eval equally spaced points, which contain no training point
  other than the end points when n_eval - 1 is not a multiple of n_train - 1);
- constructed solutions (``rule``): ``uniform`` and ``adaptive`` interpolants with k units
  (adaptive: nodes equidistribute |g''|^(1/2), ``relu_lens.spline.adaptive_nodes``), and
  ``trained_knots``: the interpolant of g at the trained net's own needed knots plus lo and hi
  (n_distinct_knots + 1 units). The last one separates where the net put its knots from how
  well it fitted given those knots. Uniform and adaptive do not depend on the seed; they are
  stored over ``seed`` anyway so that every error variable shares the dims
  (target, width, seed, [rule]);
- units: each is ``inside`` (knot strictly inside (lo, hi)), ``affine`` (active on all of
  [lo, hi]: an affine term there) or ``dead`` (inactive on all of [lo, hi], or a_i = 0);
- needed knots and redundancy: the merged spline on [lo, hi] with knots closer than
  knot_resolution (hi - lo) merged and knots whose |slope jump| <= jump_rel_tol max |jump|
  dropped; n_distinct_knots is its knot count, redundancy = n_inside / n_distinct_knots, and
  merge_error = sup |needed - f| says how little the simplification changed f;
- knots against curvature: the |slope jump|-weighted distribution of the needed knots is
  compared by its Wasserstein-1 distance W1(P, Q) = int |F_P - F_Q| dx with the distribution
  of density |g''|^(1/2) (``w1_knots_curvature``; the adaptive rule's density, so a point mass
  at a kink of g) and with the uniform one (``w1_knots_uniform``). w1_knots_curvature <
  w1_knots_uniform means the trained knots sit nearer to where the target bends than a uniform
  spread would. (W1 rather than a sup-distance between distribution functions, because the
  latter barely notices knots gathered at the centre of a kink.)
- units at initialisation: the same dead / affine counts for the untrained net
  (``n_units_*_init``), so one sees which outside units training created and which it inherited;
- kinks: the target's kinks inside (lo, hi) (``target_kink``: known for abs and pwl, found by
  sympy for an expression) and the distance from each to the nearest needed knot of the trained
  net (``kink_knot_distance``).

What the quick preset found (2 seeds, 3000 Adam steps; medians over seeds; rerun to update):

- Where the knots go. Trained knots follow the target's curvature where it is localised: the
  ratio W1(knots, |g''|^(1/2)) / W1(knots, uniform) is 0.07-0.17 for the bump, 0.02-0.37 for
  |x| and 0.10-0.76 for the piecewise-linear target (falling with width), 0.5-0.9 for sin(3x)
  and 1 for x^2 (constant curvature: uninformative). At kinks they gather near, not on, the
  kink: at width 128 the interpolant on the trained knots misses |x| by 2e-3 and the
  piecewise-linear target by 5e-3 in sup norm, where the construction is exact.
- Redundancy. Median 1.27 units inside per needed knot; near 1 for smooth targets (x^2
  1.0-1.09), larger for kinked ones (piecewise-linear 1.3-6, |x| 1-2): several units stack on
  one kink. About 31% of units end dead and 27% affine on [-1, 1], against 26% and 26% at
  PyTorch's default initialisation: most outside units are inherited, a few are created.
- Errors at equal width. The construction wins at every width: at width 128 the trained sup
  error is 0.003-0.02 against 6e-5 (x^2), 3e-4 (sin 3x) and 6e-3 / 2e-4 (bump, uniform /
  adaptive) constructed, and 0 for |x| and the piecewise-linear target. The trained net is
  about as good as its own knots allow (interpolant on the trained knots: sin 3x 0.0097 vs
  trained 0.0093, bump 0.020 vs 0.019, x^2 0.0026 vs 0.0033), so the gap is knot count (about
  half the units sit inside) and knot placement, not the fit between knots. The trained error
  falls with width (sin 3x: 0.50, 0.10, 0.009 at widths 8, 32, 128) but narrow nets often stall
  (width 8: the piecewise-linear target at 0.4-0.7 in both seeds).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import tokenize
from collections.abc import Callable
from io import StringIO
from typing import Any

import numpy as np
import sympy
import torch
import xarray as xr
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq
from sympy.parsing.sympy_parser import auto_number, convert_xor, parse_expr, rationalize
from torch import nn
from tqdm.auto import tqdm

from relu_lens.knots import AFFINE, DEAD, INSIDE, STATE_NAMES, read_net, redundancy
from relu_lens.spline import (
    SecondDerivative,
    Spline,
    constructive_interpolant,
    curvature_density,
    error_norms,
    interpolant,
)
from relu_lens.train import torch_threads
from studies import io
from studies.config import check_numbers

NAME = "one_hidden_1d"
RULES = ("uniform", "adaptive", "trained_knots")
PWL_NODES = (-1.0, -0.5, 0.25, 0.5, 1.0)
PWL_VALUES = (0.0, 1.0, -0.5, 0.5, 0.2)
BUMP_CENTRE, BUMP_WIDTH = 0.2, 0.1


def _pwl(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.interp(x, PWL_NODES, PWL_VALUES)


def _bump(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.exp(-(((x - BUMP_CENTRE) / BUMP_WIDTH) ** 2))


TARGETS: dict[str, Callable[[NDArray[np.float64]], NDArray[np.float64]]] = {
    "abs": np.abs,
    "sin3x": lambda x: np.sin(3 * x),
    "square": np.square,
    "pwl": _pwl,
    "bump": _bump,
}
TARGET_FORMULAS = {
    "abs": "|x|",
    "sin3x": "sin(3x)",
    "square": "x^2",
    "pwl": f"piecewise linear through {list(zip(PWL_NODES, PWL_VALUES, strict=True))}",
    "bump": f"exp(-((x - {BUMP_CENTRE}) / {BUMP_WIDTH})^2)",
}
BUILTIN_KINKS = {"abs": (0.0,), "pwl": PWL_NODES[1:-1]}

# ----------------------------------------------------------- targets given as expressions in x

X = sympy.Symbol("x", real=True)
_U = sympy.Dummy("u", real=True)
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "E": sympy.E}
FUNCTIONS: dict[str, Any] = {
    "abs": sympy.Abs,
    "sign": sympy.sign,
    "Heaviside": sympy.Heaviside,
    "relu": sympy.Lambda(_U, sympy.Max(_U, 0)),
    "Max": sympy.Max,
    "Min": sympy.Min,
    "sqrt": sympy.sqrt,
    "exp": sympy.exp,
    "log": sympy.log,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "atan": sympy.atan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
}
ALLOWED_NAMES = ("x", *CONSTANTS, *FUNCTIONS)
_ALLOWED_TEXT = (
    f"allowed names: {', '.join(ALLOWED_NAMES)} (and numbers, + - * / ** ^ ( ); "
    "';' between function arguments)"
)
_OPERATORS = frozenset({"+", "-", "*", "/", "**", "^", "(", ")", ","})
_LAYOUT = frozenset({tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER})
# functions whose branch changes where their argument (Max, Min: a difference of two of their
# arguments) changes sign: the only places where an expression of the allowed names can bend
_SWITCHES = (sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max, sympy.Min)
ROOT_GRID = 8193  # grid on which zeros sympy cannot solve for are bracketed
ADAPTIVE_GRID = 4097  # the grid of relu_lens.spline.adaptive_nodes (its default n_grid)


class TargetError(ValueError):
    """A target expression that cannot be read, or whose values, slopes or g'' are unusable."""


def _evaluate(f: Callable[..., Any], x: ArrayLike) -> NDArray[np.float64]:
    """A lambdified function on x as float64 of x's shape (a constant broadcast); NaN where
    it is undefined (numpy's warnings silenced: the callers check finiteness)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        y = f(x)
    return np.broadcast_to(np.asarray(y, dtype=np.float64), x.shape).copy()


@dataclasses.dataclass(frozen=True)
class ExpressionTarget:
    """A target g given as a sympy expression in the real variable x (:func:`parse_target`).

    Values g(x) come from ``sympy.lambdify`` with numpy. Kinks (:meth:`kinks`) and g''
    (:meth:`second_derivative`) come from the expression itself, so the adaptive rule of the
    constructive solution and the knot-against-curvature comparison use them exactly.
    """

    text: str
    expr: sympy.Expr

    @functools.cached_property
    def _value(self) -> Callable[..., Any]:
        return sympy.lambdify(X, self.expr, "numpy")

    @functools.cached_property
    def _second(self) -> Callable[..., Any]:
        """g'' where g is smooth: the second derivative with its Dirac deltas (at kinks) cut."""
        g2 = sympy.diff(self.expr, X, 2).replace(sympy.DiracDelta, lambda *_: sympy.S.Zero)
        return sympy.lambdify(X, g2, "numpy")

    def __call__(self, x: ArrayLike) -> NDArray[np.float64]:
        """g(x), same shape as x (NaN where g is undefined)."""
        return _evaluate(self._value, x)

    def kinks(self, lo: float, hi: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Kinks t_k of g inside (lo, hi), increasing, and the slope jumps g'(t_k+) - g'(t_k-)
        (:func:`_kinks`); TargetError if g jumps or has an infinite slope there."""
        t, jumps = _kinks(self.expr, float(lo), float(hi))
        return np.array(t, dtype=np.float64), np.array(jumps, dtype=np.float64)

    def second_derivative(self, x: ArrayLike) -> NDArray[np.float64]:
        """g'' on the equally spaced grid x, as central second differences see it but exact:

            g''(x_i) = g''_smooth(x_i) + sum_k J_k max(1 - |x_i - t_k| / h, 0) / h,

        h the spacing: where g is smooth its g'' from the expression, and at each kink t_k with
        slope jump J_k the two grid values that the second difference of J_k relu(x - t_k)
        gives (a discrete J_k delta(x - t_k) of mass J_k). The input of
        ``relu_lens.spline.curvature_density`` (its ``g2``).
        """
        x = np.asarray(x, dtype=np.float64)
        g2 = _evaluate(self._second, x)
        t, jumps = self.kinks(x[0], x[-1])
        if t.size and x.size > 1:
            h = x[1] - x[0]
            g2 += (np.maximum(1.0 - np.abs(x[:, None] - t) / h, 0.0) / h) @ jumps
        return g2


def _check_tokens(source: str) -> None:
    """TargetError naming the first token of ``source`` that is not x, an allowed name, a real
    number, an arithmetic operator or a bracket: the parser sees arithmetic and nothing else."""
    try:
        tokens = list(tokenize.generate_tokens(StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError) as err:
        raise TargetError(f"cannot read it ({err.args[0]})") from None
    for tok in tokens:
        kind, text = tok.type, tok.string
        if kind == tokenize.NAME and text not in ALLOWED_NAMES:
            raise TargetError(f"unknown name {text!r}; {_ALLOWED_TEXT}")
        if kind == tokenize.NUMBER and text[-1] in "jJ":
            raise TargetError(f"{text!r} is imaginary; targets are real")
        if kind == tokenize.OP and text not in _OPERATORS:
            raise TargetError(f"{text!r} is not allowed; {_ALLOWED_TEXT}")
        if kind == tokenize.ERRORTOKEN and text.isspace():
            continue
        if kind not in (tokenize.NAME, tokenize.NUMBER, tokenize.OP) and kind not in _LAYOUT:
            raise TargetError(f"{text!r} is not allowed; {_ALLOWED_TEXT}")


@functools.lru_cache(maxsize=256)
def parse_target(text: str) -> ExpressionTarget:
    """The target g(x) that the expression ``text`` gives, read by sympy.

    Allowed: the variable x, numbers (floats read as exact rationals, so kinks of
    abs(x - 0.3) sit at exactly 3/10), + - * / ** (^ is a power too), brackets and the names
    of :data:`ALLOWED_NAMES`: the constants pi and E, and abs, sign, Heaviside, relu (= Max(u,
    0)), Max, Min, sqrt, exp, log, sin, cos, tan, atan, sinh, cosh, tanh. Function arguments
    are separated by ',' or ';' (';' on the command line, where ',' separates targets). Every
    token is checked against this list before ``sympy.parsing.sympy_parser.parse_expr`` runs
    with only these names in its namespaces (no builtins), so nothing else can be named,
    imported or called. TargetError, one line naming the first offending name or token.
    """
    source = text.strip().replace(";", ",")
    _check_tokens(source)
    names = {"x": X, **CONSTANTS, **FUNCTIONS}
    numbers = {  # what auto_number and rationalize write; no builtins
        "__builtins__": {},
        "Integer": sympy.Integer,
        "Float": sympy.Float,
        "Rational": sympy.Rational,
    }
    try:
        expr = parse_expr(
            source,
            local_dict=names,
            global_dict=numbers,
            transformations=(auto_number, rationalize, convert_xor),
        )
    except Exception as err:  # any error of a malformed expression (syntax, arity, ...)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TargetError(f"cannot read it ({reason})") from None
    if not isinstance(expr, sympy.Expr) or isinstance(expr, sympy.Lambda):
        raise TargetError(
            "it is not one expression in x (a function needs its argument, e.g. sin(x))"
        )
    if expr.has(sympy.I, sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise TargetError(f"it is not finite and real ({expr})")
    return ExpressionTarget(text=text, expr=expr)


def _switch_arguments(expr: sympy.Expr) -> list[sympy.Expr]:
    """The expressions whose sign changes can bend g: arguments of abs, sign and Heaviside,
    and differences of two arguments of Max or Min."""
    out = [a.args[0] for a in expr.atoms(sympy.Abs, sympy.sign, sympy.Heaviside)]
    for m in expr.atoms(sympy.Max, sympy.Min):
        out += [p - q for p, q in itertools.combinations(m.args, 2)]
    return out


def _zeros(u: sympy.Expr, lo: float, hi: float) -> list[float]:
    """Zeros of u in (lo, hi): exact from ``sympy.solveset`` when it finds a finite set, else
    the sign changes of u on ROOT_GRID points refined by Brent's method (and grid zeros)."""
    found = sympy.solveset(u, X, sympy.Interval.open(sympy.Rational(lo), sympy.Rational(hi)))
    if isinstance(found, sympy.FiniteSet):
        return [float(t) for t in found]
    f = sympy.lambdify(X, u, "numpy")
    grid = np.linspace(lo, hi, ROOT_GRID)
    sign = np.sign(_evaluate(f, grid))
    zeros = list(grid[1:-1][sign[1:-1] == 0])
    for i in np.flatnonzero(sign[:-1] * sign[1:] < 0):
        zeros.append(brentq(lambda t: float(_evaluate(f, t)), grid[i], grid[i + 1], xtol=1e-15))
    return zeros


def _branch(expr: sympy.Expr, point: float) -> sympy.Expr:
    """The smooth expression equal to ``expr`` on the stretch around ``point`` where no switch
    argument changes sign: each switch, inside out, replaced by its branch at the point
    (abs(u) -> +-u, sign(u) -> +-1, Heaviside(u) -> 0 or 1, Max / Min -> the largest / smallest
    argument)."""
    at = {X: sympy.Float(point, 30)}

    def value(u: sympy.Expr) -> float:
        return float(sympy.N(u, 30, subs=at))

    def pick(e: sympy.Expr) -> sympy.Expr:
        if isinstance(e, sympy.Abs):
            return e.args[0] if value(e.args[0]) >= 0 else -e.args[0]
        if isinstance(e, sympy.sign | sympy.Heaviside):
            return e.func(sympy.Float(value(e.args[0])), *e.args[1:])
        values = [value(a) for a in e.args]
        return e.args[int(np.argmax(values) if isinstance(e, sympy.Max) else np.argmin(values))]

    return expr.replace(lambda e: isinstance(e, _SWITCHES), pick)


def _finite(e: sympy.Expr) -> float:
    """The number e as a float; NaN unless it is finite and real."""
    v = sympy.N(e)
    return float(v) if v.is_real and v.is_finite else float("nan")


@functools.lru_cache(maxsize=256)
def _kinks(expr: sympy.Expr, lo: float, hi: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Kinks of g = expr inside (lo, hi): positions t and slope jumps g'(t+) - g'(t-).

    g can only bend where a switch changes branch, at a zero t of a switch argument
    (:func:`_switch_arguments`, :func:`_zeros`). Between two neighbouring candidates every
    switch keeps its branch, so the smooth branches of g left and right of t are read at the
    midpoints to its neighbours (:func:`_branch`), and give g(t-), g(t+), g'(t-), g'(t+) from
    the expression. TargetError if g jumps at t (the nets are continuous) or a one-sided slope
    is infinite; a candidate where g'(t+) = g'(t-) is no kink.
    """
    candidates = sorted({t for u in _switch_arguments(expr) for t in _zeros(u, lo, hi)})
    tol = 1e-12 * (hi - lo)  # zeros of several switches at one point, up to rounding
    candidates = [t for i, t in enumerate(candidates) if i == 0 or t - candidates[i - 1] > tol]
    edges = [lo, *candidates, hi]
    positions, jumps = [], []
    for i, t in enumerate(candidates, start=1):
        sides = (_branch(expr, (edges[i - 1] + t) / 2), _branch(expr, (t + edges[i + 1]) / 2))
        values = [_finite(e.subs(X, t)) for e in sides]
        slopes = [_finite(sympy.diff(e, X).subs(X, t)) for e in sides]
        if not np.all(np.isfinite(values + slopes)):
            raise TargetError(f"its slope is infinite or undefined at x = {t:.6g}")
        if abs(values[1] - values[0]) > 1e-9 * (1 + max(map(abs, values))):
            raise TargetError(
                f"it jumps by {values[1] - values[0]:.6g} at x = {t:.6g}; targets must be "
                "continuous (a ReLU net is)"
            )
        if abs(slopes[1] - slopes[0]) > 1e-9 * (1 + max(map(abs, slopes))):
            positions.append(t)
            jumps.append(slopes[1] - slopes[0])
    return tuple(positions), tuple(jumps)


def target_function(name: str) -> Callable[[NDArray[np.float64]], NDArray[np.float64]]:
    """The built-in target ``name``, else the :class:`ExpressionTarget` it gives."""
    return TARGETS[name] if name in TARGETS else parse_target(name)


def target_kinks(name: str, lo: float, hi: float) -> NDArray[np.float64]:
    """The kinks of a target inside (lo, hi): known for the built-ins, found for expressions."""
    if name in TARGETS:
        t = np.array(BUILTIN_KINKS.get(name, ()), dtype=np.float64)
        return t[(t > lo) & (t < hi)]
    return parse_target(name).kinks(lo, hi)[0]


def _exact_second(g: Callable[..., Any]) -> SecondDerivative | None:
    """An expression target's exact g''; None for a built-in (finite differences)."""
    return g.second_derivative if isinstance(g, ExpressionTarget) else None


def check_target(name: str, lo: float, hi: float, n_points: tuple[int, ...]) -> None:
    """ValueError, one line, unless ``name`` is a built-in target or an expression in x that
    is continuous with finite one-sided slopes on [lo, hi] and whose values and g'' are finite
    on the grids of ``n_points`` points of [lo, hi] the study uses."""
    if name in TARGETS:
        return
    try:
        g = parse_target(name)
    except TargetError as err:
        raise ValueError(
            f"target {name!r} is neither a built-in target ({', '.join(TARGETS)}) nor an "
            f"expression in x: {err}"
        ) from None
    try:
        g.kinks(lo, hi)
    except TargetError as err:
        raise ValueError(f"target {name!r} on [{lo}, {hi}]: {err}") from None
    for n in n_points:
        x = np.linspace(lo, hi, n)
        for what, values in (("value", g(x)), ("second derivative", g.second_derivative(x))):
            bad = ~np.isfinite(values)
            if bad.any():
                raise ValueError(
                    f"target {name!r}: its {what} is not finite at x = {x[bad][0]:.6g} "
                    f"(on [{lo}, {hi}])"
                )


@dataclasses.dataclass(frozen=True)
class Config:
    """Sweep over targets x widths x seeds (seeds seed, seed + 1, ..., seed + n_seeds - 1).

    ``targets``: names of :data:`TARGETS` or expressions in x (module docstring,
    :func:`parse_target`; no commas: ';' between function arguments).
    """

    targets: tuple[str, ...] = tuple(TARGETS)
    widths: tuple[int, ...] = (8, 32, 128)
    n_seeds: int = 2
    seed: int = 0
    device: str = "cpu"
    lo: float = -1.0
    hi: float = 1.0
    n_train: int = 256
    steps: int = 3000
    lr: float = 1e-2
    n_eval: int = 2001
    knot_resolution: float = 1e-3
    jump_rel_tol: float = 1e-3

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("lr", "knot_resolution", "jump_rel_tol"),
            counts=("widths", "n_seeds", "n_train", "n_eval"),
            nonnegative=("seed", "steps"),
        )
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            raise ValueError(f"lo and hi must be finite, got [{self.lo}, {self.hi}]")
        if not self.hi > self.lo:
            raise ValueError(f"need lo < hi, got [{self.lo}, {self.hi}]")
        if self.n_train < 2 or self.n_eval < 3:
            raise ValueError("need n_train >= 2 and n_eval >= 3")
        if not self.targets:
            raise ValueError(f"targets is empty; give built-ins {list(TARGETS)} or expressions")
        for target in self.targets:
            check_target(target, self.lo, self.hi, (self.n_train, self.n_eval, ADAPTIVE_GRID))


PRESETS = {
    "quick": Config(),
    "paper": Config(widths=(8, 16, 32, 64, 128, 256), n_seeds=5, steps=20000, n_eval=4001),
}


def make_net(width: int, seed: int) -> nn.Sequential:
    """A float64 ``Linear(1, width) -> ReLU -> Linear(width, 1)`` with PyTorch's default
    initialisation (for fan-in 1: w_i, b_i ~ U(-1, 1), so half the knots start outside
    [-1, 1]), seeded by ``seed``."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Linear(width, 1))
    return model.to(dtype=torch.float64)


def train(
    model: nn.Sequential, g: Callable[[NDArray[np.float64]], NDArray[np.float64]], config: Config
) -> float:
    """Train ``model`` in place on g (full-batch Adam, cosine-annealed step) and return its
    final training loss (1/2P) sum_p (f(x_p) - g(x_p))^2."""
    device = torch.device(config.device)
    model.to(device)
    x_np = np.linspace(config.lo, config.hi, config.n_train)
    x = torch.as_tensor(x_np, device=device)[:, None]
    y = torch.as_tensor(g(x_np), device=device)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(config.steps, 1))
    with torch_threads(1):  # nets this small only lose time to intra-op threading
        for _ in range(config.steps):
            opt.zero_grad()
            loss = 0.5 * ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            schedule.step()
    with torch.no_grad():
        final = float(0.5 * ((model(x) - y) ** 2).mean())
    if not np.isfinite(final):
        raise FloatingPointError(f"training diverged (loss {final}); lower lr (now {config.lr})")
    return final


def _w1_distance(
    x: NDArray[np.float64], cdf: NDArray[np.float64], knots: NDArray, weights: NDArray
) -> float:
    """int |F_knots - cdf| dx on the grid x, F_knots the weighted empirical distribution."""
    if knots.size == 0 or weights.sum() == 0:
        return float("nan")
    order = np.argsort(knots)
    cum = np.concatenate([[0.0], np.cumsum(weights[order])]) / weights.sum()
    f_knots = cum[np.searchsorted(knots[order], x, side="right")]
    return float(np.trapezoid(np.abs(f_knots - cdf), x))


def _cell(
    g: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    width: int,
    seed: int,
    config: Config,
    x: NDArray[np.float64],
    cdf_curv: NDArray[np.float64],
    kinks: NDArray[np.float64],
) -> dict[str, Any]:
    """Train, read and compare one (target, width, seed) cell."""
    model = make_net(width, seed)
    initial = read_net(model, (config.lo, config.hi))
    loss = train(model, g, config)
    reading = read_net(model.cpu(), (config.lo, config.hi))
    if reading.dead.all():
        raise FloatingPointError(
            f"every one of the {width} units is dead on [{config.lo}, {config.hi}] after "
            f"training (seed {seed}): the net is a constant; lower lr (now {config.lr})"
        )
    gx = g(x)
    f = reading(x)
    red = redundancy(reading, config.knot_resolution * (config.hi - config.lo), config.jump_rel_tol)
    needed = red.needed
    constructed: dict[str, Spline] = {
        rule: constructive_interpolant(g, config.lo, config.hi, width, rule, _exact_second(g))
        for rule in ("uniform", "adaptive")
    }
    nodes = np.unique(np.concatenate([[config.lo], needed.knots, [config.hi]]))
    constructed["trained_knots"] = interpolant(g, nodes)
    cdf_unif = (x - config.lo) / (config.hi - config.lo)
    weights = np.abs(needed.jumps)
    out: dict[str, Any] = {
        "loss": loss,
        "errors_trained": error_norms(x, f - gx),
        "merge_error": float(np.max(np.abs(needed(x) - f))),
        "red": red,
        "reading": reading,
        "initial": initial,
        "f": f,
        "constructed": {
            rule: (s(x), error_norms(x, s(x) - gx), s) for rule, s in constructed.items()
        },
        "w1_curv": _w1_distance(x, cdf_curv, needed.knots, weights),
        "w1_unif": _w1_distance(x, cdf_unif, needed.knots, weights),
        "kink_distance": (
            np.min(np.abs(kinks[:, None] - needed.knots), axis=1)
            if needed.knots.size
            else np.full(kinks.size, np.nan)
        ),
    }
    return out


def _var(dims: tuple[str, ...], data: Any, long_name: str, units: str, **extra: Any) -> xr.Variable:
    return xr.Variable(dims, data, attrs={"long_name": long_name, "units": units, **extra})


def run(config: Config) -> xr.Dataset:
    """Train, read and compare every (target, width, seed) cell; one Dataset (module doc)."""
    targets, widths = list(config.targets), list(config.widths)
    seeds = [config.seed + i for i in range(config.n_seeds)]
    T, W, S, R = len(targets), len(widths), len(seeds), len(RULES)
    n_unit = max(widths)
    n_node = n_unit + 2
    x = np.linspace(config.lo, config.hi, config.n_eval)

    def nan(*shape: int) -> NDArray[np.float64]:
        return np.full(shape, np.nan)

    names = "sup_t l2_t loss merge w1_curv w1_unif red c n_knots n_inside n_affine n_dead"
    cell3 = {k: nan(T, W, S) for k in (*names.split(), "n_affine0", "n_dead0")}
    sup_c, l2_c = nan(T, W, S, R), nan(T, W, S, R)
    units = {k: nan(T, W, S, n_unit) for k in ("a", "w", "b", "knot", "jump", "orient", "state")}
    f_trained = nan(T, W, S, x.size)
    f_constructed = nan(T, W, S, R, x.size)
    nodes_c = nan(T, W, S, R, n_node)
    target_value, rho_all = nan(T, x.size), nan(T, x.size)

    kinks = [target_kinks(t, config.lo, config.hi) for t in targets]
    n_kink = max(1, *(k.size for k in kinks))  # NaN-padded; one NaN slot if no target has one
    kink_at, kink_distance = nan(T, n_kink), nan(T, W, S, n_kink)
    cdf_curv = nan(T, x.size)
    for ti, target in enumerate(targets):
        g = target_function(target)
        target_value[ti] = g(x)
        kink_at[ti, : kinks[ti].size] = kinks[ti]
        _, rho = curvature_density(g, config.lo, config.hi, x.size, g2=_exact_second(g))
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])
        rho_all[ti], cdf_curv[ti] = rho / cum[-1], cum / cum[-1]
    cells = [(i, j, k) for i in range(T) for j in range(W) for k in range(S)]
    for ti, wi, si in tqdm(cells, desc=NAME, unit="cell", disable=None):  # bar on a terminal only
        g, width = target_function(targets[ti]), widths[wi]
        res = _cell(g, width, seeds[si], config, x, cdf_curv[ti], kinks[ti])
        r, red = res["reading"], res["red"]
        idx = (ti, wi, si)
        cell3["sup_t"][idx], cell3["l2_t"][idx] = res["errors_trained"]
        cell3["loss"][idx], cell3["merge"][idx] = res["loss"], res["merge_error"]
        cell3["w1_curv"][idx], cell3["w1_unif"][idx] = res["w1_curv"], res["w1_unif"]
        cell3["red"][idx], cell3["c"][idx] = red.redundancy, r.c
        cell3["n_knots"][idx], cell3["n_inside"][idx] = red.n_distinct_knots, red.n_inside
        cell3["n_affine"][idx], cell3["n_dead"][idx] = red.n_affine, red.n_dead
        r0 = res["initial"]
        cell3["n_affine0"][idx], cell3["n_dead0"][idx] = r0.affine.sum(), r0.dead.sum()
        for name, arr in (
            ("a", r.a),
            ("w", r.w),
            ("b", r.b),
            ("knot", r.knot),
            ("jump", r.slope_jump),
            ("orient", r.orientation),
            ("state", r.state),
        ):
            units[name][ti, wi, si, :width] = arr
        f_trained[idx] = res["f"]
        kink_distance[ti, wi, si, : kinks[ti].size] = res["kink_distance"]
        for ri, rule in enumerate(RULES):
            values, (sup, l2), spline = res["constructed"][rule]
            f_constructed[ti, wi, si, ri] = values
            sup_c[ti, wi, si, ri], l2_c[ti, wi, si, ri] = sup, l2
            nodes = np.append(spline.knots, config.hi)
            nodes_c[ti, wi, si, ri, : nodes.size] = nodes

    d3 = ("target", "width", "seed")
    du = (*d3, "unit")
    length = "x units"
    data_vars = {
        "sup_error_trained": _var(d3, cell3["sup_t"], "sup |f - g| of the trained net", "1"),
        "l2_error_trained": _var(
            d3, cell3["l2_t"], "RMS (L2 / sqrt(hi - lo)) of f - g, trained", "1"
        ),
        "sup_error_constructed": _var(
            (*d3, "rule"), sup_c, "sup |S - g| of the constructed interpolant", "1"
        ),
        "l2_error_constructed": _var(
            (*d3, "rule"), l2_c, "RMS of S - g, constructed interpolant", "1"
        ),
        "final_loss": _var(d3, cell3["loss"], "final training loss (1/2P) sum (f - g)^2", "1"),
        "n_distinct_knots": _var(
            d3, cell3["n_knots"], "distinct needed knots inside the interval", "1"
        ),
        "n_units_inside": _var(
            d3, cell3["n_inside"], "units with knot strictly inside the interval", "1"
        ),
        "n_units_affine": _var(
            d3, cell3["n_affine"], "units active on the whole interval (knot outside)", "1"
        ),
        "n_units_dead": _var(d3, cell3["n_dead"], "units inactive on the whole interval", "1"),
        "n_units_affine_init": _var(
            d3, cell3["n_affine0"], "units active on the whole interval, at initialisation", "1"
        ),
        "n_units_dead_init": _var(
            d3, cell3["n_dead0"], "units inactive on the whole interval, at initialisation", "1"
        ),
        "redundancy": _var(d3, cell3["red"], "units inside per needed knot", "1"),
        "merge_error": _var(
            d3, cell3["merge"], "sup |needed spline - f| after merging and pruning", "1"
        ),
        "w1_knots_curvature": _var(
            d3, cell3["w1_curv"], "W1 distance: |jump|-weighted knots vs |g''|^(1/2)", length
        ),
        "w1_knots_uniform": _var(
            d3, cell3["w1_unif"], "W1 distance: |jump|-weighted knots vs uniform", length
        ),
        "output_bias": _var(d3, cell3["c"], "output bias c", "1"),
        "unit_a": _var(du, units["a"], "output weight a_i (NaN past width)", "1"),
        "unit_w": _var(du, units["w"], "input weight w_i (NaN past width)", "1"),
        "unit_b": _var(du, units["b"], "hidden bias b_i (NaN past width)", "1"),
        "knot": _var(du, units["knot"], "knot t_i = -b_i / w_i (NaN if w_i = 0)", length),
        "slope_jump": _var(du, units["jump"], "slope jump a_i |w_i| at the knot", "1"),
        "orientation": _var(
            du, units["orient"], "orientation: +1 right-facing, -1 left-facing, 0 flat", "1"
        ),
        "unit_state": _var(
            du,
            units["state"],
            "unit state on the interval",
            "1",
            flag_values=np.array([DEAD, AFFINE, INSIDE], dtype=np.int8),
            flag_meanings=" ".join(STATE_NAMES),
        ),
        "f_trained": _var((*d3, "x"), f_trained, "trained net f(x)", "1"),
        "f_constructed": _var(
            (*d3, "rule", "x"), f_constructed, "constructed interpolant S(x)", "1"
        ),
        "constructed_nodes": _var(
            (*d3, "rule", "node"), nodes_c, "interpolation nodes x_0..x_k (NaN past k)", length
        ),
        "target_value": _var(("target", "x"), target_value, "target g(x)", "1"),
        "curvature_density": _var(
            ("target", "x"), rho_all, "normalised density |g''|^(1/2) (adaptive rule)", "1/x units"
        ),
        "target_kink": _var(
            ("target", "kink"), kink_at, "kink of the target inside the interval (NaN past)", length
        ),
        "kink_knot_distance": _var(
            (*d3, "kink"),
            kink_distance,
            "distance from the kink to the nearest needed knot",
            length,
        ),
    }
    coords = {
        "target": (
            "target",
            np.array(targets, dtype=object),
            {"long_name": "target function", "units": "1"},
        ),
        "width": ("width", np.array(widths), {"long_name": "hidden units", "units": "1"}),
        "seed": ("seed", np.array(seeds), {"long_name": "initialisation seed", "units": "1"}),
        "unit": ("unit", np.arange(n_unit), {"long_name": "hidden unit index", "units": "1"}),
        "node": ("node", np.arange(n_node), {"long_name": "node index", "units": "1"}),
        "kink": ("kink", np.arange(n_kink), {"long_name": "kink index", "units": "1"}),
        "rule": (
            "rule",
            np.array(RULES, dtype=object),
            {"long_name": "constructive knot rule", "units": "1"},
        ),
        "x": ("x", x, {"long_name": "input x", "units": length}),
        "target_formula": (
            "target",
            np.array([_formula(t) for t in targets], dtype=object),
            {"long_name": "target formula", "units": "1"},
        ),
    }
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update(
        {
            "seed_paper": "Huang 2024, arXiv 2411.06728",
            "interval_lo": config.lo,
            "interval_hi": config.hi,
            "loss_convention": "(1/2P) sum_p (f(x_p) - g(x_p))^2, full batch, Adam, cosine lr",
        }
    )
    return io.finalize(ds, NAME, config)


def _formula(target: str) -> str:
    """A target's formula: the built-in's, or the expression as sympy read it."""
    return TARGET_FORMULAS[target] if target in TARGETS else str(parse_target(target).expr)


def _middle(values: NDArray) -> int:
    """Index of the value closest (in log) to the geometric middle of the range."""
    logs = np.log(np.asarray(values, dtype=float))
    return int(np.argmin(np.abs(logs - 0.5 * (logs.min() + logs.max()))))


def _units_figure(ds: xr.Dataset) -> Figure:
    """The trained net at the middle width (first seed) and each unit's term as a basis."""
    wi = _middle(ds.width.values)
    targets = ds.target.values
    fig = Figure(figsize=(4.2 * len(targets), 3.6), layout="constrained")
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    x = ds.x.values
    colours = {1: "tab:orange", -1: "tab:green", 0: "tab:purple"}
    for ax, target in zip(axes, targets, strict=True):
        cell = ds.sel(target=target).isel(width=wi, seed=0)
        width = int(cell.width)
        a, w, b = (cell[v].values[:width] for v in ("unit_a", "unit_w", "unit_b"))
        state, orient = cell.unit_state.values[:width], cell.orientation.values[:width]
        terms = a[:, None] * np.maximum(w[:, None] * x + b[:, None], 0.0)
        for i in range(width):
            if state[i] == DEAD:
                ax.plot(x, terms[i], color="0.7", lw=0.6, ls=":")
            else:
                ax.plot(x, terms[i], color=colours[int(orient[i])], lw=0.7, alpha=0.8)
        ax.plot(x, cell.target_value, "k--", lw=1.2, label="target g")
        ax.plot(x, cell.f_trained, color="tab:blue", lw=2, label="trained f")
        inside = cell.knot.values[:width][state == INSIDE]
        span = float(np.ptp(cell.f_trained.values)) or 1.0
        low = float(cell.f_trained.min()) - 0.6 * span
        ax.plot(inside, np.full(inside.size, low + 0.05 * span), "|", color="tab:red", ms=10)
        ax.set_ylim(low, float(cell.f_trained.max()) + 0.6 * span)
        n_dead, n_aff = int(np.sum(state == DEAD)), int(np.sum(state == AFFINE))
        ax.set_title(
            f"{target}: width {width}, {inside.size} inside, {n_aff} affine, {n_dead} dead",
            fontsize=9,
        )
        ax.set_xlabel("x")
    axes[0].plot([], [], color="tab:orange", label="right-facing unit")
    axes[0].plot([], [], color="tab:green", label="left-facing unit")
    axes[0].plot([], [], color="0.7", ls=":", label="dead unit")
    axes[0].plot([], [], "|", color="tab:red", label="knots inside")
    axes[0].legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("a_i relu(w_i x + b_i) and f(x)")
    return fig


def _knots_figure(ds: xr.Dataset) -> Figure:
    """Trained knots inside the interval (largest width, all seeds) against |g''|^(1/2)."""
    targets = ds.target.values
    fig = Figure(figsize=(4.2 * len(targets), 3.4), layout="constrained")
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    x = ds.x.values
    bins = np.linspace(x[0], x[-1], 41)
    for ax, target in zip(axes, targets, strict=True):
        cell = ds.sel(target=target).isel(width=-1)
        inside = (cell.unit_state == INSIDE).values
        knots = cell.knot.values[inside]
        jumps = np.abs(cell.slope_jump.values[inside])
        top = 1.0
        if knots.size:
            h1, _, _ = ax.hist(
                knots,
                bins=bins,
                density=True,
                weights=jumps,
                alpha=0.5,
                color="tab:blue",
                label="knots, |jump|-weighted",
            )
            h2, _, _ = ax.hist(
                knots,
                bins=bins,
                density=True,
                histtype="step",
                color="tab:blue",
                label="knots, unweighted",
            )
            top = 1.3 * max(h1.max(), h2.max())
        ax.plot(x, cell.curvature_density, color="tab:red", label="|g''|^(1/2), normalised")
        kinks = cell.target_kink.values if "target_kink" in cell else np.array([])  # older files
        for k, t in enumerate(kinks[np.isfinite(kinks)]):
            ax.axvline(t, color="k", lw=0.6, ls=":", label="kinks of g" if k == 0 else None)
        ax.set_ylim(0, top)
        w1_c = float(cell.w1_knots_curvature.mean())
        w1_u = float(cell.w1_knots_uniform.mean())
        ax.set_title(
            f"{target}, width {int(cell.width)}: W1 to curv {w1_c:.3f}, to unif {w1_u:.3f}",
            fontsize=9,
        )
        twin = ax.twinx()
        twin.plot(x, cell.target_value, color="0.4", lw=0.8, ls="--")
        twin.set_yticks([])
        ax.set_xlabel("x")
    axes[0].set_ylabel("density (1/x units)")
    axes[0].legend(fontsize=7, loc="upper left")
    return fig


def _comparison_figure(ds: xr.Dataset) -> Figure:
    """Top: trained vs constructed at the middle width. Bottom: sup error against width."""
    wi = _middle(ds.width.values)
    targets = ds.target.values
    fig = Figure(figsize=(4.2 * len(targets), 7.0), layout="constrained")
    axes = fig.subplots(2, len(targets), squeeze=False)
    x = ds.x.values
    widths = ds.width.values
    styles = {"uniform": "tab:green", "adaptive": "tab:red", "trained_knots": "tab:purple"}
    for col, target in enumerate(targets):
        sub = ds.sel(target=target)
        top, bottom = axes[0, col], axes[1, col]
        cell = sub.isel(width=wi, seed=0)
        top.plot(x, cell.target_value, "k--", lw=1.2, label="target g")
        top.plot(x, cell.f_trained, color="tab:blue", lw=1.5, label="trained")
        for rule in ("uniform", "adaptive"):
            top.plot(x, cell.f_constructed.sel(rule=rule), color=styles[rule], lw=1, label=rule)
        top.set_title(f"{target}, width {int(cell.width)}", fontsize=9)
        top.set_xlabel("x")
        err = sub.sup_error_trained
        bottom.errorbar(
            widths,
            err.median("seed"),
            fmt="o-",
            color="tab:blue",
            label="trained",
            yerr=[err.median("seed") - err.min("seed"), err.max("seed") - err.median("seed")],
        )
        for rule, colour in styles.items():
            bottom.plot(
                widths,
                sub.sup_error_constructed.sel(rule=rule).median("seed"),
                "s-",
                color=colour,
                ms=4,
                label=f"constructed, {rule}",
            )
        bottom.set_xscale("log", base=2)
        bottom.set_yscale("log")
        bottom.set_xlabel("width (units)")
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    axes[1, 0].set_ylabel("sup |f - g| (median, min-max over seeds)")
    return fig


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """Figures: units as bases, knots against curvature, trained vs constructed."""
    return {
        "units": _units_figure(ds),
        "knots": _knots_figure(ds),
        "trained_vs_constructed": _comparison_figure(ds),
    }


def summary(ds: xr.Dataset) -> dict[str, float | str]:
    """Headline numbers: errors at the largest width (medians over seeds), how close the
    trained knots sit to the target's kinks and curvature, redundancy, and dead / affine
    shares (trained vs init).
    """
    out: dict[str, float | str] = {}
    big = ds.isel(width=-1)
    for target in ds.target.values:
        cell = big.sel(target=target)
        width = int(cell.width)
        out[f"{target}: sup err trained (w={width})"] = float(cell.sup_error_trained.median())
        for rule in RULES:
            out[f"{target}: sup err constructed {rule}"] = float(
                cell.sup_error_constructed.sel(rule=rule).median()
            )
        if "target_kink" in cell and cell.target_kink.notnull().any():  # not in older files
            far = cell.kink_knot_distance.max("kink").median()
            out[f"{target}: largest distance kink to nearest knot (w={width})"] = float(far)
        ratio = ds.w1_knots_curvature.sel(target=target) / ds.w1_knots_uniform.sel(target=target)
        out[f"{target}: W1(knots, curvature) / W1(knots, uniform), all widths"] = float(
            ratio.median()
        )
    units = float(ds.width.sum()) * ds.sizes["target"] * ds.sizes["seed"]
    out["median redundancy (units inside per needed knot)"] = float(ds.redundancy.median())
    for state in ("dead", "affine"):
        trained = float(ds[f"n_units_{state}"].sum()) / units
        initial = float(ds[f"n_units_{state}_init"].sum()) / units
        out[f"share of units {state}: trained (init)"] = f"{trained:.3f} ({initial:.3f})"
    return out
