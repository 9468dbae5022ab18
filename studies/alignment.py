"""Early neuron alignment on synthetic data: what t_align scales with, beside the bound t1
(Min, Mallada & Vidal 2024).

Two-layer bias-free ReLU nets f(x) = sum_j v_j relu(w_j^T x) trained by small-step gradient
descent on the exponential (or logistic) loss SUMMED over samples (the paper's clock: step k is
at t = k eta with that loss). The toolkit's mean loss (docs/design.md, section "Time") gives the
same trajectory at t_mean = n t: every time is stored on both clocks (``t_align`` and
``t_align_mean``), so the trivial factor n of summing is visible and separable.

The grid has four dims, varied one at a time by the scaling presets: the sample count ``n``, the
input dimension ``D`` (fixed apart from n, D >= n so that single points can be isolated for the
worst-case init), the separability ``mu_target`` and the smallest input norm ``X_min_target``
(X_max = ``norm_high`` fixed; :func:`gdln.tasks.separable_binary` attains both exactly). With
``centre`` set, the cells are a star: one arm per dim through the centre (the union of the
one-at-a-time grids, sharing their cached cells), stored along a ``cell`` dim.

Initialisations per cell: ``random`` (W = eps W0, W0 ~ N(0, 1/D), balanced v), ``worst_case``
(each neuron active on a single point of its own class, nearly orthogonal to it;
:func:`relu_lens.two_layer.worst_case_directions`) and, with ``search``, ``worst_case_all``:
one neuron for every point that can be isolated (:func:`relu_lens.two_layer.single_point_family`).
While the output is small neurons move independently, so this run's t_align is the largest
alignment time over the whole worst-case family: the tightness search.

Per run: t_align beside the theorem's t1 = 16 log n / (min{zeta, xi} sqrt(mu) X_min)
(:mod:`gdln.alignment_bound`, with whether its assumptions held; the eps condition, far below
anything representable, is replaced by its purpose: max_i |f(x_i)| <= f_small until alignment),
and beside three other candidate predictors: the theorem's shape log n / (sqrt(mu) X_min), and
two mechanistic drift times (:func:`gdln.alignment_bound.drift_time`,
:func:`gdln.alignment_bound.aligned_drift_time`). Over the Dataset: the fitted power-law
exponents of t_align and of t1 per factor with bootstrap intervals over seeds, on both clocks,
and each predictor's R^2. Cells run on dask.distributed via :mod:`studies.sweep` (resumable).
The theorem, our readings of zeta and xi and the results: docs/theory/early-alignment.md.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from gdln import alignment_bound as ab
from studies import io
from studies.config import check_numbers
from studies.sweep import cache_dir, run_sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from relu_lens.two_layer import TwoLayerRun

NAME = "alignment"
INITS = ("random", "worst_case")
SEARCH_INIT = "worst_case_all"
#: grid dims, in order, and the Config field holding each one's values
GRID = {
    "n": "n_values",
    "D": "input_dims",
    "mu_target": "mu_values",
    "X_min_target": "x_min_values",
}
#: factors of the power-law fits: the regressor of each (log of it) and the grid dim it varies on
FACTORS = {"n": "n", "log_n": "n", "D": "D", "mu": "mu_target", "X_min": "X_min_target"}
CLOCKS = ("summed", "mean")
PREDICTORS = ("theorem_shape", "t1_bound", "t_drift_aligned", "t_drift")
_NOT_CELL = {*GRID.values(), "centre", "bootstrap", "scheduler", "workers", "processes"}
_NOT_CELL |= {"cache_dir"}
_UNITS = {"summed": "time (summed loss)", "mean": "time (mean loss)"}


@dataclass(frozen=True)
class Config:
    """Settings of the alignment sweep.

    Attributes:
        n_values: sample counts n (grid dim ``n``).
        input_dims: input dimensions D (grid dim ``D``); D >= n lets the worst-case init
            isolate every point (with n > D some points may lie in the cone of others).
        mu_values: target separabilities (grid dim ``mu_target``); the measured mu is stored.
        x_min_values: smallest input norms X_min (grid dim ``X_min_target``), each <=
            norm_high; norms are drawn in [X_min, norm_high] with both ends attained.
        centre: None: every combination of the four value lists (a grid). (n, D, mu, X_min):
            a star, the union of four one-at-a-time grids through this centre (each value a
            member of its list), stored along a ``cell`` dim.
        seeds: seeds per cell (data and init), numbered from ``seed``.
        seed: first seed (also seeds the bootstrap).
        hidden: width h of the random and worst-case inits.
        eps: init scale of W = eps W0.
        loss: "exp" or "logistic", summed over samples.
        step_scale: eta = step_scale / (n X_max), X_max = norm_high (the step on the mean loss,
            n eta, is the same for every n).
        horizon: trained time T = horizon / n (the summed-loss clock speeds up with n).
        snapshots: number of recorded snapshots over the horizon, at steps ~ (i/snapshots)^2
            (denser early; fewer if steps < snapshots^2 makes some coincide). t_align is
            timed to the step by a per-step monitor, not from the snapshots.
        norm_high: the largest input norm X_max.
        search: add the init ``worst_case_all`` (every member of the worst-case family).
        f_small: relaxed eps condition, max_i |f(x_i)| <= f_small until alignment.
        xi_samples: directions sampled to estimate xi.
        bootstrap: bootstrap resamples (over seeds) of the exponent fits.
        scheduler: address of a dask scheduler; None starts a LocalCluster.
        workers: LocalCluster workers; processes: worker processes (True) or threads.
        cache_dir: folder of finished cells; None uses $RELU_GDLN_CACHE or ~/.cache/relu-gdln.
        device: torch device.
    """

    n_values: tuple[int, ...] = (8, 16, 32, 64)
    input_dims: tuple[int, ...] = (64,)
    mu_values: tuple[float, ...] = (0.2, 0.6)
    x_min_values: tuple[float, ...] = (1.0,)
    centre: tuple[float, ...] | None = None
    seeds: int = 2
    seed: int = 0
    hidden: int = 20
    eps: float = 1e-30
    loss: Literal["exp", "logistic"] = "exp"
    step_scale: float = 0.04
    horizon: float = 300.0
    snapshots: int = 60
    norm_high: float = 2.0
    search: bool = False
    f_small: float = 0.1
    xi_samples: int = 20_000
    bootstrap: int = 1000
    scheduler: str | None = None
    workers: int = 2
    processes: bool = False
    cache_dir: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("eps", "step_scale", "horizon", "norm_high", "f_small", "x_min_values"),
            counts=(
                "n_values", "input_dims", "seeds", "hidden", "snapshots", "xi_samples",
                "bootstrap", "workers",
            ),
        )  # fmt: skip
        if not all(np.isfinite(m) and -1 < m <= 1 for m in self.mu_values) or not self.mu_values:
            raise ValueError(f"mu_values must lie in (-1, 1], got {self.mu_values}")
        if max(self.x_min_values) > self.norm_high:
            raise ValueError(
                f"x_min_values must be <= norm_high = {self.norm_high}, got {self.x_min_values}"
            )
        if min(self.n_values) < 2:
            raise ValueError("n_values must all be >= 2 (log n of the bound)")
        if min(self.input_dims) < 2:
            raise ValueError(f"input_dims must all be >= 2, got {self.input_dims}")
        if self.hidden < 2:
            raise ValueError(f"hidden must be >= 2, got {self.hidden}")
        if self.centre is not None:
            values = [getattr(self, field) for field in GRID.values()]
            if len(self.centre) != len(GRID) or not all(
                any(np.isclose(c, v) for v in vals)
                for c, vals in zip(self.centre, values, strict=False)
            ):
                raise ValueError(
                    f"centre must be (n, D, mu, X_min), each a member of n_values, input_dims, "
                    f"mu_values, x_min_values; got {self.centre}"
                )


_SCALING = Config(
    n_values=(32,),
    input_dims=(128,),
    mu_values=(0.2,),
    x_min_values=(0.5,),
    seeds=12,
    hidden=50,
    step_scale=0.01,
    horizon=40.0,
    snapshots=30,
    search=True,
)
PRESETS = {
    "quick": Config(horizon=200.0),
    "paper": Config(
        n_values=(8, 16, 32, 64, 128),
        input_dims=(128,),
        mu_values=(0.1, 0.2, 0.4, 0.8),
        seeds=5,
        hidden=50,
        step_scale=0.02,
        snapshots=100,
    ),
    # one factor at a time around the centre n = 32, D = 128, mu = 0.2, X_min = 0.5 (X_max = 2)
    "scaling_n": dataclasses.replace(_SCALING, n_values=(8, 16, 32, 64, 128)),
    "scaling_D": dataclasses.replace(_SCALING, input_dims=(32, 64, 128, 256, 512)),
    "scaling_mu": dataclasses.replace(_SCALING, mu_values=(0.05, 0.1, 0.2, 0.4, 0.8)),
    "scaling_X_min": dataclasses.replace(_SCALING, x_min_values=(0.125, 0.25, 0.5, 1.0, 2.0)),
    # the four arms together (their cells come from the cache once the arms have run)
    "scaling": dataclasses.replace(
        _SCALING,
        n_values=(8, 16, 32, 64, 128),
        input_dims=(32, 64, 128, 256, 512),
        mu_values=(0.05, 0.1, 0.2, 0.4, 0.8),
        x_min_values=(0.125, 0.25, 0.5, 1.0, 2.0),
        centre=(32, 128, 0.2, 0.5),
    ),
}


def _var(data: object, dims: tuple[str, ...], long_name: str, units: str) -> xr.Variable:
    return xr.Variable(dims, np.asarray(data), {"long_name": long_name, "units": units})


def _record_steps(steps: int, snapshots: int) -> list[int]:
    """Snapshot steps ~ steps (i / S)^2: dense early, where alignment happens."""
    return [int(k) for k in np.round(steps * (np.arange(snapshots + 1) / snapshots) ** 2)]


def _search_start(tasks: list[Any], eps: float) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """The ``worst_case_all`` runs: per data set every member of the worst-case family, one
    neuron per point that can be isolated (v of the point's sign), padded with zero neurons
    to a common width. Zero neurons are inactive on every point (S_dead), get no gradient and
    stay zero, so they change nothing. Returns W (run, member, in), v (run, member), the mask
    of real neurons and the isolated point of each neuron (-1 for padding)."""
    import torch

    from relu_lens import two_layer as tl

    families = [tl.single_point_family(t.X) for t in tasks]
    for r, (_, points) in enumerate(families):
        if not len(points):
            raise ValueError(
                f"worst_case_all: no point of data set {r} of this cell can be isolated (each "
                "lies in the cone of the others, possible when n > D); use D >= n or search=false"
            )
    width = max(len(points) for _, points in families)
    D = tasks[0].X.shape[1]
    W = np.zeros((len(tasks), width, D))
    v = np.zeros((len(tasks), width))
    point = np.full((len(tasks), width), -1)
    for r, ((dirs, points), t) in enumerate(zip(families, tasks, strict=True)):
        W[r, : len(points)] = eps * dirs
        v[r, : len(points)] = eps * t.y[points]
        point[r, : len(points)] = points
    return torch.as_tensor(W), torch.as_tensor(v), point >= 0, point


def _run_results(
    traj: TwoLayerRun,
    tasks: list[Any],
    real: np.ndarray,
    xi: list[float],
    cfg: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Per run (run = one data set and init; ``tasks[r]`` its data, ``real[r]`` its real
    neurons): t_align, the bound, the predictors, the assumptions and the curves."""
    from relu_lens import alignment as al

    eta = traj.eta
    steps = traj.monitors["aligned"].shape[0] - 1
    t_align = al.t_align(traj.monitors["aligned"], eta)
    neg_dloss0 = 1.0 if cfg["loss"] == "exp" else 0.5
    out: dict[str, list[Any]] = {}
    for r, task in enumerate(tasks):
        keep = real[r]
        W0 = traj.W[0, r][keep]
        signs = np.sign(traj.v[0, r][keep])
        b = ab.bound_ingredients(task.X, task.y, int(keep.sum()), W0=W0, signs=signs, xi=xi[r])
        # the relaxed small-init condition must hold on [0, min(t_align, t1, horizon)]
        t1 = b.t1 if np.isfinite(b.t1) else np.nan
        end = int(np.round(np.fmin(np.fmin(t_align[r], t1), steps * eta) / eta))
        Ws, vs = traj.W[:, r][:, keep], traj.v[:, r][:, keep]
        codes = al.regions(Ws, task.X, task.y)
        loss = traj.loss[:, r]
        low = np.flatnonzero(loss <= loss[0] / 10)
        # the O(1/t) fit starts once aligned and the loss has fallen tenfold (NaN: never)
        start = np.max([t_align[r], traj.time[low[0]] if low.size else np.nan])
        slope, r2 = al.inverse_rate_fit(traj.time, loss, start)
        row = {
            "t_align": t_align[r],
            "bound": b,
            "f_until": traj.monitors["max_abs_f"][: end + 1, r].max(),
            "t_drift": ab.drift_time(task.X, task.y, W0, signs, neg_dloss0).max(),
            "t_drift_aligned": ab.aligned_drift_time(task.X, task.y, W0, signs, neg_dloss0).max(),
            "loss": loss,
            "stable_rank": al.stable_rank(Ws),
            "W_spec_sq": al.spectral_norm_sq(Ws),
            "frac_allowed": al.allowed(codes, vs).mean(-1),
            "rate_slope": slope,
            "rate_r2": r2,
        }
        for key, value in row.items():
            out.setdefault(key, []).append(value)
    return {key: np.array(vals) if key != "bound" else vals for key, vals in out.items()}


def cell_data(
    n: int, D: int, mu_target: float, X_min_target: float, seeds: np.ndarray, norm_high: float
) -> list[Any]:
    """The data sets of one cell, one per seed: :func:`gdln.tasks.separable_binary` with n
    samples in D dimensions, separability mu_target and norms in [X_min_target, norm_high]
    (both ends attained)."""
    from gdln.tasks import separable_binary

    return [
        separable_binary(int(n), int(D), mu_target, int(s), norm_range=(X_min_target, norm_high))
        for s in seeds
    ]


def alignment_cell(
    n: int, D: int, mu_target: float, X_min_target: float, **settings: Any
) -> xr.Dataset:
    """One grid cell: ``seeds`` data sets x the inits, trained as batches of runs.

    ``settings`` are the Config fields other than the grid and cluster ones. Returns a
    Dataset with dims (seed, init, snapshot); see :func:`run` for the variables."""
    import torch

    from relu_lens import alignment as al
    from relu_lens import two_layer as tl

    cfg = settings
    n, D = int(n), int(D)
    seeds = cfg["seed"] + np.arange(cfg["seeds"])
    S, h, eps = len(seeds), cfg["hidden"], cfg["eps"]
    device = torch.device(cfg["device"])
    tasks = cell_data(n, D, mu_target, X_min_target, seeds, cfg["norm_high"])
    xi = [
        ab.xi_estimate(t.X, t.y, cfg["xi_samples"], int(s))
        for s, t in zip(seeds, tasks, strict=True)
    ]
    eta = cfg["step_scale"] / (n * cfg["norm_high"])
    steps = int(np.ceil(cfg["horizon"] / n / eta))
    record = _record_steps(steps, cfg["snapshots"])

    def train(W: torch.Tensor, v: torch.Tensor, runs: int, per_neuron: bool) -> TwoLayerRun:
        X = torch.as_tensor(np.stack([t.X for t in tasks] * runs), device=device)
        y = torch.as_tensor(np.stack([t.y for t in tasks] * runs), device=device)
        return tl.train(
            W.to(device), v.to(device), X, y, eta, steps, loss=cfg["loss"],
            record_every=record, monitor=al.aligned_monitor(y, per_neuron=per_neuron),
        )  # fmt: skip

    W_rand, _ = tl.init_balanced(S, h, D, eps, seed=int(seeds[0]))
    W_worst = torch.cat(
        [tl.init_worst_case(t.X, t.y, h, eps, int(s))[0] for s, t in zip(seeds, tasks, strict=True)]
    )
    traj = train(*tl.balance(torch.cat([W_rand, W_worst])), 2, False)  # runs (init, seed)
    parts = [_run_results(traj, tasks * 2, np.ones((2 * S, h), bool), xi * 2, cfg)]
    inits = list(INITS)
    extra = {}
    if cfg["search"]:
        W_s, v_s, real, point = _search_start(tasks, eps)
        traj_s = train(W_s, v_s, 1, True)
        parts.append(_run_results(traj_s, tasks, real, xi, cfg))
        inits.append(SEARCH_INIT)
        # the slowest member of the family: the rank of its point's norm (0: the smallest)
        per_neuron = al.first_time_held(traj_s.monitors["allowed"], eta * np.arange(steps + 1))
        slow = np.where(real, np.nan_to_num(per_neuron, nan=np.inf), -1.0).argmax(1)
        ranks = [
            float(np.argsort(np.argsort(np.linalg.norm(t.X, axis=1)))[point[r, slow[r]]])
            for r, t in enumerate(tasks)
        ]
        extra["slowest_norm_rank"] = _var(
            ranks, ("seed",), "norm rank of the point of the slowest family member (0: X_min)", "1"
        )
    I = len(inits)

    def per_run(key: str) -> np.ndarray:  # (run, ...) in init-major order -> (seed, init, ...)
        a = np.concatenate([p[key] for p in parts])
        return np.swapaxes(a.reshape(I, S, *a.shape[1:]), 0, 1)

    bounds = np.empty(I * S, dtype=object)
    bounds[:] = [b for p in parts for b in p["bound"]]
    bounds = bounds.reshape(I, S).T  # (seed, init)
    field = np.vectorize(lambda b, name: getattr(b, name), otypes=[float])
    t_align, t1 = per_run("t_align"), field(bounds, "t1")
    applicable = field(bounds, "applicable").astype(bool)
    f_until = per_run("f_until")
    strict = applicable & (np.log(eps) <= field(bounds, "log_eps_max"))
    relaxed = applicable & (f_until <= cfg["f_small"])
    hold = strict | relaxed
    horizon = steps * eta
    verdict = np.where(np.isfinite(t_align), t_align <= t1, np.where(horizon >= t1, 0.0, np.nan))
    held = np.where(hold, verdict, np.nan)  # NaN: not applicable, or undecided (T < t1)
    data = bounds[:, 0]
    mu = np.array([t.mu for t in tasks])
    X_min = field(data, "X_min")
    alpha = field(data, "alpha")
    slope = per_run("rate_slope")
    sd, sds = ("seed", "init"), ("seed", "init", "snapshot")
    with np.errstate(invalid="ignore"):
        shape = np.where(mu > 0, np.log(n) / (np.sqrt(np.abs(mu)) * X_min), np.nan)
    return xr.Dataset(
        {
            "mu": _var(mu, ("seed",), "measured separability mu", "1"),
            "X_min": _var(X_min, ("seed",), "smallest input norm", "1"),
            "X_max": _var(field(data, "X_max"), ("seed",), "largest input norm", "1"),
            "zeta1": _var(field(data, "zeta1"), ("seed",), "cap zeta1 inside S+/S-", "1"),
            "xi": _var(
                field(data, "xi"), ("seed",), "separation constant xi (sampled estimate)", "1"
            ),
            "zeta_init": _var(field(bounds, "zeta_init"), sd, "initial-angle term zeta_init", "1"),
            "zeta": _var(field(bounds, "zeta"), sd, "zeta = min(zeta1, zeta_init)", "1"),
            "alpha": _var(alpha, ("seed",), "O(1/t) rate constant alpha", "1/time"),
            "t1_bound": _var(t1, sd, "bound t1 on the alignment time", _UNITS["summed"]),
            "log_eps_max": _var(field(bounds, "log_eps_max"), sd, "log of the eps condition", "1"),
            "t_align": _var(t_align, sd, "measured alignment time", _UNITS["summed"]),
            "t_align_mean": _var(
                n * t_align,
                sd,
                "measured alignment time, mean-loss clock (n t_align)",
                _UNITS["mean"],
            ),
            "ratio": _var(t_align / t1, sd, "t_align / t1_bound", "1"),
            "theorem_shape": _var(
                shape, ("seed",), "theorem's shape log n / (sqrt(mu) X_min)", "1"
            ),
            "t_drift": _var(
                per_run("t_drift"),
                sd,
                "predicted t_align: active-set drift (max over neurons)",
                _UNITS["summed"],
            ),
            "t_drift_aligned": _var(
                per_run("t_drift_aligned"),
                sd,
                "predicted t_align: drift frozen along x+ / x- (max over neurons)",
                _UNITS["summed"],
            ),
            "eps_condition_strict": _var(strict.astype(np.int8), sd, "eps <= eps_max (0/1)", "1"),
            "small_output": _var(
                relaxed.astype(np.int8), sd, "max|f| <= f_small until alignment (0/1)", "1"
            ),
            "assumptions_hold": _var(
                hold.astype(np.int8), sd, "mu > 0 and eps condition or relaxation (0/1)", "1"
            ),
            "bound_held": _var(
                held, sd, "t_align <= t1 where assumptions hold (1/0; NaN n/a or T < t1)", "1"
            ),
            "max_abs_f_until_align": _var(f_until, sd, "max_i |f(x_i)| up to t_align", "1"),
            "rate_slope": _var(slope, sd, "fitted slope of 1/L(t) after alignment", "1/time"),
            "rate_r2": _var(per_run("rate_r2"), sd, "R^2 of the 1/L = a + b t fit", "1"),
            "rate_over_alpha": _var(slope / alpha[:, None], sd, "fitted slope / alpha", "1"),
            "time": _var(traj.time, ("snapshot",), "time t = k eta", _UNITS["summed"]),
            "eta": _var(eta, (), "gradient-descent step", _UNITS["summed"]),
            "horizon": _var(horizon, (), "trained time T", _UNITS["summed"]),
            "loss": _var(per_run("loss"), sds, "summed loss L", "1"),
            "stable_rank": _var(
                per_run("stable_rank"), sds, "stable rank ||W||_F^2/||W||_2^2", "1"
            ),
            "W_spec_sq": _var(per_run("W_spec_sq"), sds, "||W||_2^2", "1"),
            "frac_allowed": _var(
                per_run("frac_allowed"), sds, "fraction of neurons in allowed regions", "1"
            ),
            **extra,
        },
        coords={
            "seed": ("seed", seeds, {"long_name": "random seed", "units": "1"}),
            "init": ("init", inits, {"long_name": "initialisation", "units": "1"}),
        },
    )


# --- fits -------------------------------------------------------------------------------------


def power_law_fit(
    log_t: np.ndarray,
    log_x: np.ndarray,
    seed_index: np.ndarray,
    bootstrap: int,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exponents p of t = c prod_f x_f^(p_f), least squares on logs, with a percentile
    bootstrap interval over seeds.

    log t_r = log c + sum_f p_f log x_{r, f} + e_r over the runs r with finite log t. Each
    bootstrap resample draws as many seeds as there are, with replacement, and refits on every
    run of the drawn seeds (the same draw in every cell of the grid, so runs that share a seed,
    e.g. the same random draws at several mu, stay together); a resample whose design is
    rank-deficient is skipped. The interval is the central ``level`` of the resampled
    exponents.

    Args:
        log_t: (run,) log times (NaN or inf: dropped).
        log_x: (run, factor) logs of the regressors (NaN or inf: the run is dropped); a
            column that varies by less than 1e-6 over the remaining runs (a measured mu
            equal to its target up to rounding) gets NaN.
        seed_index: (run,) the seed of each run.
        bootstrap: number of resamples.
        seed: seed of the resampling.
        level: coverage of the interval.

    Returns:
        (p, low, high), each (factor,); all NaN where there are fewer finite runs than
        unknowns or the design is rank-deficient.
    """
    log_t = np.asarray(log_t, dtype=np.float64)
    log_x = np.asarray(log_x, dtype=np.float64).reshape(len(log_t), -1)
    ok = np.isfinite(log_t) & np.isfinite(log_x).all(1)
    nan = np.full(log_x.shape[1], np.nan)
    varies = np.ptp(log_x[ok], axis=0) > 1e-6 if ok.any() else np.zeros(log_x.shape[1], bool)
    A = np.column_stack([np.ones(ok.sum()), log_x[ok][:, varies]])
    b, seeds_ok = log_t[ok], np.asarray(seed_index)[ok]
    k = A.shape[1]

    def solve(rows: np.ndarray) -> np.ndarray:
        out = nan.copy()
        if len(rows) >= k and np.linalg.matrix_rank(A[rows]) == k:
            out[varies] = np.linalg.lstsq(A[rows], b[rows], rcond=None)[0][1:]
        return out

    p = solve(np.arange(len(b)))
    if not np.isfinite(p[varies]).all() or not varies.any():
        return nan, nan, nan
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(seeds_ok == s) for s in np.unique(seeds_ok)]
    draws = np.array(
        [
            solve(np.concatenate([groups[g] for g in rng.integers(len(groups), size=len(groups))]))
            for _ in range(bootstrap)
        ]
    )
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    return p, low, high


def flat_cells(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with its cells along one ``cell`` dim (n, D, mu_target, X_min_target as
    coordinates over ``cell``): a grid is stacked, a star is already so."""
    if "cell" in ds.dims:
        return ds
    return ds.stack(cell=list(GRID)).reset_index("cell").transpose("cell", ...)


def _varying(flat: xr.Dataset) -> list[str]:
    """Grid dims with more than one value among the cells."""
    return [dim for dim in GRID if np.unique(flat[dim].values).size > 1]


def _regressors(flat: xr.Dataset, factor: str) -> xr.DataArray:
    """Per cell and seed, the quantity a factor's exponent is fitted against."""
    if factor == "log_n":
        return np.log(flat.n.astype(float)).broadcast_like(flat.mu)
    if factor in ("n", "D"):
        return flat[factor].astype(float).broadcast_like(flat.mu)
    return flat[factor]


def _log_positive(a: np.ndarray) -> np.ndarray:
    """log a, flattened, NaN where a <= 0 or NaN (e.g. mu <= 0: no power law there)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    return np.log(np.where(a > 0, a, np.nan))


def _log_time(flat: xr.Dataset, name: str, clock: str, init: str) -> xr.DataArray:
    """log of a time variable (per cell, seed) on a clock: the mean-loss clock is n times the
    summed one. Non-positive and NaN times give NaN."""
    t = flat[name].sel(init=init) if "init" in flat[name].dims else flat[name]
    t = t * flat.n if clock == "mean" else t
    return np.log(t.where(t > 0)).transpose("cell", "seed")


def exponents(ds: xr.Dataset, name: str, bootstrap: int, seed: int) -> xr.Dataset:
    """Power-law exponents of the time variable ``name`` (``t_align`` or ``t1_bound``) against
    every factor that varies, per clock and init, with bootstrap intervals over seeds
    (:func:`power_law_fit`): one joint fit of log t on the logs of all varying factors (n, D,
    the measured mu and X_min), and for ``log_n`` the same fit with log(log n) in place of
    log n (t ~ (log n)^p). Factors that do not vary are NaN. Returns ``estimate``, ``low``,
    ``high`` over (clock, init, factor)."""
    flat = flat_cells(ds)
    varying = _varying(flat)
    inits = [str(i) for i in flat.init.values]
    out = np.full((3, len(CLOCKS), len(inits), len(FACTORS)), np.nan)
    seeds = flat.seed.broadcast_like(flat.mu).transpose("cell", "seed").values.ravel()
    joint = [f for f in ("n", "D", "mu", "X_min") if FACTORS[f] in varying]
    designs = [(joint, joint)]
    if "n" in joint:  # the same fit against log n: report only that exponent
        designs.append((["log_n" if f == "n" else f for f in joint], ["log_n"]))
    for design, reported in designs:
        if not design:
            continue
        log_x = np.column_stack(
            [_log_positive(_regressors(flat, f).transpose("cell", "seed").values) for f in design]
        )
        for c, clock in enumerate(CLOCKS):
            for i, init in enumerate(inits):
                log_t = _log_time(flat, name, clock, init).values.ravel()
                fit = power_law_fit(log_t, log_x, seeds, bootstrap, seed)
                for factor in reported:
                    col, k = design.index(factor), list(FACTORS).index(factor)
                    out[:, c, i, k] = [part[col] for part in fit]
    dims = ("clock", "init", "factor")
    return xr.Dataset(
        {key: (dims, out[k]) for k, key in enumerate(("estimate", "low", "high"))},
        coords={"clock": list(CLOCKS), "init": inits, "factor": list(FACTORS)},
    )


def predictor_scores(ds: xr.Dataset) -> xr.Dataset:
    """How well each candidate predictor P (``PREDICTORS``) predicts t_align over every run of
    the Dataset, per clock and init: t_align = C P fitted on logs (C = exp(mean(log t - log P))),

        R^2 = 1 - sum (log t - log C - log P)^2 / sum (log t - mean log t)^2,

    (1: P predicts every run up to the one constant C; 0: no better than a constant, as for
    a P that does not vary; negative: worse), and the free slope b of log t = a + b log P
    (NaN where P does not vary). The mean-loss clock multiplies t and
    every P by n (the theorem's shape is a summed-clock time up to its constant), so C and the
    residuals are the same there and R^2 measures them against the spread of n t instead
    (smaller where n t barely varies, e.g. along n for the random init: R^2 falls). The
    same runs enter every predictor: those with finite, positive t_align and predictors.
    Returns ``r2``, ``constant``, ``slope``, ``runs`` over (clock, init, predictor)."""
    flat = flat_cells(ds)
    inits = [str(i) for i in flat.init.values]
    shape = (len(CLOCKS), len(inits), len(PREDICTORS))
    r2, const, slope = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    runs = np.zeros(len(inits), dtype=np.int64)
    for i, init in enumerate(inits):
        for c, clock in enumerate(CLOCKS):
            log_t = _log_time(flat, "t_align", clock, init).values.ravel()
            log_p = np.stack(
                [_log_time(flat, p, clock, init).values.ravel() for p in PREDICTORS], axis=1
            )
            ok = np.isfinite(log_t) & np.isfinite(log_p).all(1)
            runs[i] = ok.sum()
            if ok.sum() < 3:
                continue
            t, P = log_t[ok], log_p[ok]
            total = ((t - t.mean()) ** 2).sum()
            res = t[:, None] - P
            const[c, i] = np.exp(res.mean(0))
            r2[c, i] = 1 - ((res - res.mean(0)) ** 2).sum(0) / total
            slope[c, i] = [
                np.polyfit(P[:, k], t, 1)[0] if np.ptp(P[:, k]) > 1e-6 else np.nan
                for k in range(len(PREDICTORS))
            ]  # NaN where the predictor does not vary (the theorem's shape along D)
    dims = ("clock", "init", "predictor")
    return xr.Dataset(
        {
            "r2": (dims, r2),
            "constant": (dims, const),
            "slope": (dims, slope),
            "runs": (("init",), runs),
        },
        coords={"clock": list(CLOCKS), "init": inits, "predictor": list(PREDICTORS)},
    )


def _fit_constant(flat: xr.Dataset) -> np.ndarray:
    """Least-squares C per init in t_align = C log n / (sqrt(mu) X_min), through the origin."""
    C = []
    for init in flat.init.values:
        x, t = xr.broadcast(flat.theorem_shape, flat.t_align.sel(init=init))
        ok = np.isfinite(t.values) & np.isfinite(x.values)
        xx, tt = x.values[ok], t.values[ok]
        C.append(float((xx * tt).sum() / (xx**2).sum()) if ok.any() else np.nan)
    return np.array(C)


# --- the study --------------------------------------------------------------------------------


def _sweeps(config: Config) -> list[dict[str, list[Any]]]:
    """The grids to run: the full grid, or one arm per varied dim of the star."""
    values = {dim: list(getattr(config, field)) for dim, field in GRID.items()}
    if config.centre is None:
        return [values]
    centre = dict(zip(GRID, config.centre, strict=True))
    arms = [dim for dim in GRID if len(values[dim]) > 1] or [next(iter(GRID))]
    return [
        {g: values[g] if g == dim else [_member(values[g], centre[g])] for g in GRID}
        for dim in arms
    ]


def _member(values: list[Any], value: float) -> Any:
    """The entry of ``values`` equal to ``value`` (so a centre 32.0 names the cell n = 32)."""
    return next(v for v in values if np.isclose(v, value))


def _not_aligned(flat: xr.Dataset) -> str:
    """Cells with runs not aligned within the horizon (excluded from the fits), one phrase
    each; empty if every run aligned."""
    notes = []
    for c in range(flat.sizes["cell"]):
        cell = flat.isel(cell=c)
        missing = cell.t_align.isnull().sum("seed")
        if int(missing.sum()):
            label = " ".join(f"{d}={cell[d].values.item():g}" for d in GRID)
            parts = [f"{int(m)}/{cell.sizes['seed']} {i}" for i, m in zip(
                cell.init.values, missing.values, strict=True) if m]  # fmt: skip
            notes.append(f"{label}: {', '.join(parts)} runs not aligned by the horizon")
    return "; ".join(notes)


def run(config: Config) -> xr.Dataset:
    """Run the sweep and return a Dataset with dims (n, D, mu_target, X_min_target, seed, init,
    snapshot), or (cell, seed, init, snapshot) for a star (``centre`` set).

    Per run: ``mu`` and ``X_min`` (measured), ``t_align`` and ``t_align_mean`` (the two
    clocks), ``t1_bound`` (NaN where the theorem does not apply), ``ratio`` = t_align / t1,
    ``assumptions_hold`` (0/1), ``bound_held``, the bound's ingredients, the predictors
    ``theorem_shape``, ``t_drift``, ``t_drift_aligned``, loss / stable rank / ||W||_2^2 /
    fraction of aligned neurons over time, and the fitted O(1/t) slope. Over the Dataset:
    ``t_align_exponent`` and ``t1_exponent`` (clock, init, factor) with ``_low`` / ``_high``
    bootstrap bounds, ``predictor_r2`` / ``predictor_constant`` / ``predictor_slope`` (clock,
    init, predictor), ``fit_constant`` (init). Failed cells are NaN and listed in the
    ``failed_cells`` attr, runs not aligned by the horizon in ``cells_not_learned``.
    """
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_CELL}
    folder = cache_dir(NAME, config, _NOT_CELL, config.cache_dir)
    parts, failures, computed, reused = [], [], 0, 0
    for grid in _sweeps(config):
        result = run_sweep(
            alignment_cell,
            grid,
            folder,
            fixed=settings,
            scheduler=config.scheduler,
            n_workers=config.workers,
            processes=config.processes,
        )
        parts.append(result.dataset)
        failures += result.failures
        computed += len(result.computed)
        reused += len(result.reused)
    for failure in failures:
        warnings.warn(f"alignment cell {failure.cell} failed: {failure.error}", stacklevel=2)
    if config.centre is None:
        ds = parts[0]
    else:  # the arms along one cell dim, the shared centre once
        cells = xr.concat([flat_cells(p) for p in parts], "cell", join="outer")
        key = np.array([[cells[d].values[c] for d in GRID] for c in range(cells.sizes["cell"])])
        first = np.unique(key, axis=0, return_index=True)[1]
        ds = cells.isel(cell=np.sort(first))
    for dim, (long_name, units) in {
        "n": ("number of samples", "1"),
        "D": ("input dimension", "1"),
        "mu_target": ("target separability", "1"),
        "X_min_target": ("target smallest input norm", "1"),
        "seed": ("seed of data and init", "1"),
    }.items():
        ds[dim].attrs.update(long_name=long_name, units=units)
    flat = flat_cells(ds)
    ds["fit_constant"] = _var(
        _fit_constant(flat), ("init",), "C in t_align = C log n / (sqrt(mu) X_min)",
        _UNITS["summed"],
    )  # fmt: skip
    for name, label in (("t_align", "t_align"), ("t1_bound", "t1")):
        fit = exponents(ds, name, config.bootstrap, config.seed)
        text = f"exponent p of {label} ~ factor^p (log-log; log_n: against log n)"
        ds[f"{label}_exponent"] = fit.estimate.assign_attrs(long_name=text, units="1")
        for bound in ("low", "high"):
            ds[f"{label}_exponent_{bound}"] = fit[bound].assign_attrs(
                long_name=f"{label}_exponent: {bound} end of the 95% bootstrap interval over seeds",
                units="1",
            )
    scores = predictor_scores(ds)
    ds["predictor_r2"] = scores.r2.assign_attrs(
        long_name="R^2 of log t_align = log C + log predictor (over every run)", units="1"
    )
    ds["predictor_constant"] = scores.constant.assign_attrs(
        long_name="C in t_align = C predictor (geometric mean)", units="1"
    )
    ds["predictor_slope"] = scores.slope.assign_attrs(
        long_name="free slope b of log t_align = a + b log predictor", units="1"
    )
    ds["predictor_runs"] = scores.runs.assign_attrs(
        long_name="runs in the predictor comparison", units="1"
    )
    ds["init"].attrs.update(long_name="initialisation", units="1")
    ds["clock"].attrs.update(long_name="loss the clock is measured on (summed or mean)", units="1")
    ds["factor"].attrs.update(long_name="quantity the exponent is fitted against", units="1")
    ds["predictor"].attrs.update(long_name="candidate predictor of t_align", units="1")
    ds.attrs.update(
        loss=config.loss,
        clock="loss summed over samples (Min, Mallada & Vidal 2024); t = k eta; "
        "the *_mean variables and clock='mean' are on the mean-loss clock, n t",
        eps=config.eps,
        hidden=config.hidden,
        design="grid" if config.centre is None else "star",
        centre=json.dumps(None if config.centre is None else list(config.centre)),
        eps_relaxation=f"max_i |f(x_i)| <= {config.f_small} until t_align",
        failed_cells="; ".join(f"{f.cell}: {f.error.splitlines()[0]}" for f in failures),
        cells_not_learned=_not_aligned(flat),
        cells_computed=computed,
        cells_reused=reused,
    )
    return io.finalize(ds, NAME, config)


def summary(ds: xr.Dataset) -> dict[str, float | str]:
    """Headline numbers: whether t1 held, ratios, the exponents that were fitted (summed and
    mean clock), the predictors' R^2, the tightness search's largest t_align / t1."""
    hold = ds.assumptions_hold == 1
    out: dict[str, float | str] = {
        "runs": float(ds.t_align.size),
        "runs_aligned": float(np.isfinite(ds.t_align).sum()),
        "runs_assumptions_hold": float(hold.sum()),
        # decided: assumptions hold and either aligned or trained past t1 (else NaN)
        "runs_bound_violated": float(((ds.bound_held == 0) & hold).sum()),
        "runs_undecided": float((np.isnan(ds.bound_held) & hold).sum()),
        "bound_held_in_all_decided_runs": str(bool(((ds.bound_held == 0) & hold).sum() == 0)),
        "max_ratio_t_align_over_t1": float(ds.ratio.where(hold).max()),
        "median_ratio_t_align_over_t1": float(ds.ratio.where(hold).median()),
        "final_stable_rank_max": float(ds.stable_rank.isel(snapshot=-1).max()),
        "median_rate_over_alpha": float(ds.rate_over_alpha.median()),
    }
    fitted = [
        str(f) for f in ds.factor.values if np.isfinite(ds.t_align_exponent.sel(factor=f)).any()
    ]
    for init in ds.init.values:
        out[f"fit_constant_{init}"] = float(ds.fit_constant.sel(init=init))
        for factor in fitted:
            for clock in ds.clock.values:
                sel = {"factor": factor, "init": init, "clock": clock}
                out[f"t_align_exponent_{factor}_{clock}_{init}"] = (
                    f"{float(ds.t_align_exponent.sel(sel)):.3g} "
                    f"[{float(ds.t_align_exponent_low.sel(sel)):.3g}, "
                    f"{float(ds.t_align_exponent_high.sel(sel)):.3g}]"
                )
        for pred in ds.predictor.values:
            r2 = ds.predictor_r2.sel(clock="summed", init=init, predictor=pred)
            out[f"predictor_r2_{pred}_{init}"] = float(r2)
    for factor in fitted:
        sel = {"factor": factor, "init": "random", "clock": "summed"}
        out[f"t1_exponent_{factor}"] = float(ds.t1_exponent.sel(sel))
    if SEARCH_INIT in ds.init.values:
        ratio = ds.ratio.sel(init=SEARCH_INIT).where(hold.sel(init=SEARCH_INIT))
        out["search_max_ratio_t_align_over_t1"] = float(ratio.max())
        out["search_slowest_is_X_min_point"] = float((ds.slowest_norm_rank == 0).mean())
    return out


# --- figures ----------------------------------------------------------------------------------


def _label(cell: xr.Dataset, dims: list[str]) -> str:
    return ", ".join(f"{d}={cell[d].values.item():g}" for d in dims)


def _arm(flat: xr.Dataset, dim: str, ds: xr.Dataset) -> xr.Dataset:
    """The cells along one varied dim: all of a grid, the arm of that dim in a star."""
    centre = json.loads(ds.attrs.get("centre", "null"))
    if centre is None:
        return flat
    on = np.ones(flat.sizes["cell"], bool)
    for other, value in zip(GRID, centre, strict=True):
        if other != dim:
            on &= np.isclose(flat[other].values, value)
    return flat.isel(cell=np.flatnonzero(on))


def _log_axes(ax: Any, ticks: np.ndarray | None = None) -> None:
    """Log scales, x labelled at ``ticks`` (the grid's levels); without ticks, at the decades,
    or at four points of the range when it lies within one decade (no decade to label)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    if ticks is None:
        lo, hi = ax.get_xlim()
        if np.floor(np.log10(lo)) == np.floor(np.log10(hi)):
            ticks = np.array([float(f"{t:.2g}") for t in np.geomspace(lo, hi, 6)[1:-1]])
    if ticks is not None:
        ticks = ticks[np.isfinite(ticks)]
        ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])


def _level_median(level: xr.DataArray, values: xr.DataArray) -> np.ndarray:
    """Median of ``values`` (cell, seed) over every run at each value of ``level`` (cell,),
    in sorted order of the levels."""
    v = values.transpose("cell", "seed").values
    lv = level.values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array([np.nanmedian(v[lv == u]) for u in np.unique(lv)])


def _scaling_figure(ds: xr.Dataset, flat: xr.Dataset) -> Figure:
    """t_align against each varied factor on log axes, one row per factor and one column per
    clock: runs (dots), medians (lines), the fitted power law with its interval, the bound t1
    and the active-set drift prediction."""
    import matplotlib.pyplot as plt

    rows = [f for f in ("n", "D", "mu", "X_min") if FACTORS[f] in _varying(flat)] or ["n"]
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.6 * len(rows)), squeeze=False)
    colours = dict(zip(ds.init.values, ("C0", "C1", "C3"), strict=False))
    for row, factor in zip(axes, rows, strict=True):
        arm = _arm(flat, FACTORS[factor], ds)
        x = _regressors(arm, factor)
        level = arm[FACTORS[factor]]
        for ax, clock in zip(row, CLOCKS, strict=True):
            for init in arm.init.values:
                t = np.exp(_log_time(arm, "t_align", clock, str(init)))
                xx = x.transpose("cell", "seed")
                ax.scatter(xx, t, s=6, alpha=0.35, color=colours[init])
                med = _level_median(level, t)
                xm = _level_median(level, xx)
                sel = {"clock": clock, "init": init, "factor": factor}
                p = float(ds.t_align_exponent.sel(sel))
                lo, hi = (float(ds[f"t_align_exponent_{b}"].sel(sel)) for b in ("low", "high"))
                ax.plot(xm, med, "o-", ms=3, lw=1, color=colours[init],
                        label=f"t_align {init}: p = {p:.2f} [{lo:.2f}, {hi:.2f}]")  # fmt: skip
                lt, lx = _log_positive(t.values), _log_positive(xx.values)
                ok = np.isfinite(lt) & np.isfinite(lx)
                if ok.any() and np.isfinite(p):
                    lx, lt = lx[ok], lt[ok]
                    grid = np.linspace(lx.min(), lx.max(), 20)
                    ax.plot(np.exp(grid), np.exp(lt.mean() + p * (grid - lx.mean())), "--",
                            lw=1, color=colours[init])  # fmt: skip
                drift = np.exp(_log_time(arm, "t_drift", clock, str(init)))
                ax.plot(xm, _level_median(level, drift), "x", ms=6, color=colours[init])
            t1 = np.exp(_log_time(arm, "t1_bound", clock, "random"))
            sel = {"clock": clock, "init": "random", "factor": factor}
            label = f"bound t1 (random): p = {float(ds.t1_exponent.sel(sel)):.2f}"
            ax.plot(xm, _level_median(level, t1), "^-", ms=4, lw=1, color="k", label=label)
            _log_axes(ax, xm)
            ax.set_xlabel(f"{factor}" + (" (measured)" if factor in ("mu", "X_min") else ""))
            ax.set_ylabel(f"time [{_UNITS[clock]}]")
            ax.set_title(f"{clock}-loss clock (x: active-set drift prediction)", fontsize=9)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _predictor_figure(ds: xr.Dataset, flat: xr.Dataset) -> Figure:
    """t_align against each candidate predictor (summed clock), with t = C P and R^2."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PREDICTORS), figsize=(4.2 * len(PREDICTORS), 3.8))
    for ax, pred in zip(axes, PREDICTORS, strict=True):
        title = [pred]
        for init, colour, marker in zip(flat.init.values, ("C0", "C1", "C3"), "o^x", strict=False):
            P = flat[pred].sel(init=init) if "init" in flat[pred].dims else flat[pred]
            P, t = xr.broadcast(P, flat.t_align.sel(init=init))
            ax.scatter(P.values.ravel(), t.values.ravel(), s=8, alpha=0.4, color=colour,
                       marker=marker, label=str(init))  # fmt: skip
            C = float(ds.predictor_constant.sel(clock="summed", init=init, predictor=pred))
            r2 = float(ds.predictor_r2.sel(clock="summed", init=init, predictor=pred))
            ok = np.isfinite(P.values) & (P.values > 0)
            if ok.any() and np.isfinite(C):
                grid = np.geomspace(P.values[ok].min(), P.values[ok].max(), 20)
                ax.plot(grid, C * grid, "--", lw=1, color=colour)
            title.append(f"R^2 {init}: {r2:.2f}")
        _log_axes(ax)
        ax.set_xlabel(pred)
        ax.set_ylabel(f"t_align [{_UNITS['summed']}]")
        ax.set_title("\n".join(title), fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _ratio_figure(ds: xr.Dataset, flat: xr.Dataset) -> Figure:
    """t_align / t1 per run and cell (median marked), one panel per init."""
    import matplotlib.pyplot as plt

    dims = _varying(flat) or list(GRID)[:1]
    labels = [_label(flat.isel(cell=c), dims) for c in range(flat.sizes["cell"])]
    inits = flat.init.values
    fig, axes = plt.subplots(1, len(inits), figsize=(5 * len(inits), 4), squeeze=False)
    for ax, init in zip(axes[0], inits, strict=True):
        r = flat.ratio.sel(init=init).transpose("cell", "seed").values
        for c in range(len(labels)):
            ax.scatter(np.full(r.shape[1], c), r[c], s=8, alpha=0.5, color="C0")
        with warnings.catch_warnings():  # cells without a bound (mu <= 0) are all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.plot(np.arange(len(labels)), np.nanmedian(r, axis=1), "k_", ms=12)
        ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels, rotation=70, fontsize=6)
        ax.set_ylabel("t_align / t1")
        ax.set_title(f"t_align / t1 ({init}; bar: median)", fontsize=9)
    fig.tight_layout()
    return fig


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """Figures: t_align against each varied factor (log axes, both clocks, fits and the
    bound); t_align against each candidate predictor; t_align / t1 per cell; training curves
    (1/L, stable rank, fraction aligned) of the last cell."""
    import matplotlib.pyplot as plt

    flat = flat_cells(ds)
    figs = {
        "scaling": _scaling_figure(ds, flat),
        "predictors": _predictor_figure(ds, flat),
        "ratio": _ratio_figure(ds, flat),
    }
    cell = flat.isel(cell=-1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for init in cell.init.values:
        for s in cell.seed.values:
            c = cell.sel(init=init, seed=s)
            lab = f"{init} seed {int(s)}"
            axes[0].plot(c.time, 1 / c.loss, lw=1, label=lab)
            axes[1].plot(c.time, c.stable_rank, lw=1, label=lab)
            axes[2].plot(c.time, c.frac_allowed, lw=1, label=lab)
    axes[2].set_xscale("log")
    axes[0].set_ylabel("1 / L")
    axes[1].set_ylabel("stable rank")
    axes[1].axhline(2, c="k", ls=":", lw=1)
    axes[2].set_ylabel("fraction of neurons in allowed regions")
    for ax in axes:
        ax.set_xlabel(f"time [{cell.time.attrs['units']}]")
    axes[2].legend(fontsize=6)
    fig.suptitle(_label(cell, list(GRID)))
    figs["training"] = fig
    return figs
