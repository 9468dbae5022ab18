"""ReLN: ReLU networks against their gated-linear twin on multi-context hierarchical tasks.

Jarvis, Klein, Rosman & Saxe (ICLR 2025) show that a ReLU network trained on a multi-context
task behaves like a gated deep linear network (GDLN; Saxe, Sodhani & Lewallen, ICML 2022) whose
gates switch pathways on per context: a ReLN. This study reads the gates of the ReLU network
(``relu_lens.read_mlp``), builds its twin with the library (``gdln.ReLN.from_gates``) and
predicts the ReLU network's learning with nothing fitted to the ReLU run.

Experiment (``relu_lens``): the task of :mod:`gdln.context_task` (8 objects, 15 tree features,
C contexts); a bias-free ReLU MLP 11 -> 700 -> 60 (init N(0, (0.005/700)^2), 8,000 steps),
11 -> 420 -> 420 -> 60 (init N(0, 6e-4^2), 30,000 steps) or, beyond the paper, three hidden
layers (by default 420 units each, init N(0, 5e-3^2), 30,000 steps), float64, full-batch gradient
descent with lr 1e-3 on the summed loss (1/2) sum_i ||y_i - f(x_i)||^2 (the published settings).

Clock: mean loss L = (1/2P) sum_i ||y_i - f(x_i)||^2, t = k eta. The summed loss is P L, and lr
on the summed loss equals the step eta = P lr on the mean loss, so step k sits at t = k P lr.
``loss_*`` variables are mean losses; multiply by ``n_samples`` = P = 8C for the published
(summed) numbers (attrs ``clock`` and ``lr_summed``).

The twin (:mod:`gdln.twin`, grouping rule in :mod:`gdln.groups`): at the last snapshot, every
live hidden unit of layer l is put in the group of the contexts in which it is active; one node
per group and layer, node gate g(x) = 1[context(x) in the group's set], edges between all
groups of consecutive layers, so a path through groups (a, b, ...) is open in context c only
if every group's set holds c. Its initial weights are the ReLU network's own initial weights
restricted to the groups' units: the same init statistics, nothing tuned.

Theory variants:

- ``integrate`` (always): the exact gradient flow of the ReLN, ``gdln.integrate`` (solver
  ``solver`` at ``rtol``; the default RKC at 1e-4 stays within 0.4% (relative L2 of the loss
  curve) of an rtol-1e-8 solution on the depth-2 net);
- ``reduced``: the neural-race reduction ``gdln.reduce`` from the aligned init whose mode
  strengths have the variance of the ReLU init (B_e = std_e sqrt(n_e / 2) per edge, n_e the
  number of units at the edge's hidden end), used only where ``gdln.shared_modes`` finds the
  gated correlations mutually diagonalisable (relative residual <= ``reduce_tol``); otherwise
  NaN, with the measured residual in ``reduction_residual`` (NaN too when the twin has more
  than ``reduce_max_paths`` pathways: the check needs every pair of pathway correlations). On
  this task the object-context cross-correlations keep the residual near 0.4.
- ``aligned`` (one hidden layer): the exact flow of the ReLN from the silent-alignment start
  (``ReLN.aligned_start``: each pathway in its own singular vectors of Sigma_yx(p), strength
  n_p std^2 / 2 from the ReLU init statistics), ``gdln.pathway_flow`` on the hidden nodes cut to
  the pathways' mode counts (exact for that start): the fast prediction
  (``benchmarks/reln_speed.py``). With more hidden layers pathways share edges and it is NaN.
- ``staged`` (:mod:`gdln.staging`): a linear phase of the all-context groups, ungated, until
  the twin's own loss reaches the context-mean plateau computed from the data, then the final
  gates.
- ``self_consistent_split_gd`` (:mod:`gdln.self_consistent`): self-consistent gates on the ReLU
  net's own units from its initial weights (nothing read from the trained net), on the ReLU net's
  own clock: gradient descent with its step eta (``gdln.gradient_descent``), each unit's gate on a
  cell the sign of its own pre-activation summed over the cell, re-read before every step as a ReLU
  unit's gate is (a flow re-reads gates only at record times, and at depth 2 the ReLU net itself
  moves by up to 0.03, relative L2, when its step is cut by 4). Its cells are finer than the
  contexts and fixed from the data before training (``gdln.partitions.split_cells``): each context
  cut by the sign of its strongest target mode beyond the context mean (on the plain task the
  tree's first split: 2C cells of 4 objects). A unit that carries that mode has pre-activations of
  opposite signs on the two sides, which a gate constant on the context cannot follow
  (``split_cuts = 0`` keeps the contexts as cells: that twin stalls on plateaus the ReLU net
  leaves). ``split_cuts`` gives each hidden layer its own number of cuts (the ladder of
  docs/theory/reln-measured.md: halves, pairs, then single samples, where a layer is gated as the
  ReLU net's): one layer cut down to samples while another pools is a diagnostic of which layer's
  pooling costs what, not a cheaper twin.
- ``self_consistent_graded_gd``: the same with cells graded by depth: hidden layer l gated on
  the contexts cut l times (at depth 2 the first layer on halves, the second on pairs; at
  depth 1 the split cells), as the split twin with ``split_cuts = (1, 2, 3)``. Each layer
  further from the input carries the next finer level of the tree, so its gates get the next
  finer cut. Chosen from diagnostics on seeds 0-2 at C = 2 and 3, depth 2, and checked on
  seeds 3-5 and at depth 3 (docs/theory/reln-measured.md).
- ``self_consistent_expected_gd``: the split twin with expected gates: each unit's gate on a
  cell is the fraction of the cell's samples where its pre-activation is positive, the
  expected ReLU gate of a sample drawn from the cell (``gdln.self_consistent.cell_gates``).
  A unit then learns from a cell in proportion to how much of it a ReLU unit would, where the
  sign of the sum gates it fully on or off; but it cannot turn off on part of a cell, so it
  stops short in the tail (docs/theory/reln-measured.md).
- ``scheduled`` (depths in ``schedule_depths``): the same ReLN with node gates read from the
  ReLU snapshots over time (``ReLN.gates_from``: the fraction of node v's units active on x at
  snapshot k, held from t_k until the next snapshot; ``gdln.GateSchedule``).
- ``settled``: the frozen-gate twin (``ReLN.from_gates`` without a partition: per-unit gates)
  with the gates of snapshot k, from the ReLU net's initial weights (gate settling: when do
  gates stop mattering?).

Comparisons (dims ``time``, ``context_count``, ``depth``, ``seed``): losses, relative L2 error
of the loss curves ||a - b|| / ||b|| on the shared time grid, the same on log10 of the losses,
singular values of the ``n_pathways`` strongest pathways (by the ReLU net's final top singular
value) of the ReLU net, W_out[:, b] ... W_in[a, :], and of the ReLN's W_p(t), linear CKA of
hidden activity (ReLU vs ReLN), and the ReLU W_eff(x, t) per data point against the ReLN's map
sum_p g_p(x) W_p(t). Census of groups over training and the mixed-selectivity index (strong
units active in more than one but not all contexts), per layer.

The grid (context_count x depth x seed) runs on dask.distributed via :mod:`studies.sweep`
(resumable; one cell per run).
"""

from __future__ import annotations

import dataclasses
import time as _time
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

import gdln
from gdln import groups as gg
from gdln.context_task import context_task, published_context_scale
from gdln.network import Array
from gdln.partitions import cell_mean_loss, split_cells
from gdln.self_consistent import SelfConsistentRun, self_consistent_descent
from gdln.staging import staged_schedule
from studies import io
from studies.config import check_numbers
from studies.sweep import SweepResult, cache_dir, run_sweep

NAME = "contexts"

_GRID_FIELDS = {"contexts", "depths", "seeds", "seed"}
_NOT_CELL = _GRID_FIELDS | {"scheduler", "workers", "processes", "cache_dir"}
DEPTHS = (1, 2, 3)
#: a ReLU net whose final loss is not below this fraction of its initial loss has not learned
LEARNED_FRACTION = 0.5


@dataclass(frozen=True)
class Variant:
    """A twin variant with its own ``loss_<name>``, ``rel_l2_loss_<name>`` and
    ``rel_l2_log_loss_<name>``: what the Dataset says of it (``what``, the long name of its
    loss; ``label``, its name in the other long names) and how the summary (``short``) and the
    loss figures (``legend``, ``color``, ``ls``) name and draw it. A self-consistent variant
    also counts its gate changes: ``switches`` says which (empty for the others)."""

    name: str
    what: str
    label: str
    legend: str
    short: str
    color: str
    ls: str = "-"
    switches: str = ""


#: the variants beside the fixed-gate ReLN (``loss_theory``), in the order of the figures
VARIANTS = (
    Variant(
        name="staged",
        what="ReLN mean loss, staged: a linear phase of the all-context groups until the "
        "context-mean plateau, then the final gates",
        label="staged ReLN",
        legend="ReLN (staged)",
        short="staged",
        color="C4",
    ),
    Variant(
        name="self_consistent_split_gd",
        what="mean loss of the per-unit self-consistent twin on the ReLU net's step, its "
        "cells the contexts cut split_cuts times, each cell by the sign of its strongest "
        "target mode",
        label="per-unit self-consistent twin on split contexts, ReLU step",
        legend="per-unit, split contexts, ReLU step",
        short="split step",
        color="C9",
        switches="(unit, cell) gate changes, summed over the steps,",
    ),
    Variant(
        name="self_consistent_graded_gd",
        what="mean loss of the per-unit self-consistent twin on the ReLU net's step, hidden "
        "layer l gated on the contexts cut l times (depth-graded cells)",
        label="per-unit self-consistent twin on depth-graded cells, ReLU step",
        legend="per-unit, depth-graded cells, ReLU step",
        short="graded step",
        color="C7",
        switches="(unit, cell) gate changes, summed over the steps,",
    ),
    Variant(
        name="self_consistent_expected_gd",
        what="mean loss of the per-unit twin on the ReLU net's step on the split twin's cells, "
        "each unit's gate on a cell the fraction of the cell's samples where its "
        "pre-activation is positive (expected gates)",
        label="per-unit twin with expected gates on split contexts, ReLU step",
        legend="per-unit, expected gates on split contexts, ReLU step",
        short="expected",
        color="C0",
        ls="--",
        switches="(unit, cell) gate changes, summed over the steps,",
    ),
    Variant(
        name="aligned",
        what="ReLN mean loss, exact flow from the aligned start (depth 1; NaN at depth 2)",
        label="aligned-start ReLN",
        legend="ReLN (aligned start)",
        short="aligned",
        color="C2",
        ls=":",
    ),
    Variant(
        name="scheduled",
        what="ReLN mean loss, node gates read from the ReLU snapshots over time",
        label="scheduled-gate ReLN",
        legend="ReLN (gates over time)",
        short="over time",
        color="C3",
        ls="-.",
    ),
)
_VARIANT = {v.name: v for v in VARIANTS}


@dataclass(frozen=True)
class Config:
    """Settings of the contexts sweep.

    Attributes:
        contexts: context counts C (grid dim ``context_count``).
        depths: numbers of hidden layers, 1, 2 and/or 3 (grid dim ``depth``).
        seeds: runs per cell, seeds ``seed`` .. ``seed + seeds - 1`` (grid dim ``seed``).
        context_scaling: "none" (plain one-hot) or "published" (1.1 at C = 4, 1.35 at C = 5).
        different_structure: the task variant whose contexts permute the objects.
        width_1, init_std_1, steps_1: the one-hidden-layer net (published 700, 0.005/700, 8000).
        width_2, init_std_2, steps_2: the two-hidden-layer net (published 420, 6e-4, 30000).
        width_3, init_std_3, steps_3: the three-hidden-layer net (not in the paper): the
            depth-2 width and steps; its init std is larger, since from 6e-4 the net stays at
            its initial loss for all 30,000 steps (summed loss 96.0 throughout, C = 3; 2e-3
            leaves only for the global-mean plateau, 66, by the end; 5e-3 learns the whole
            staircase down to 0.003). A cell whose ReLU net does not learn is flagged
            (``relu_learned``) and its comparisons are NaN.
        lr_summed: gradient-descent learning rate on the summed loss (published 1e-3).
        n_times: records on a linear grid from step 0 to the last step (shared time grid).
        n_settle: snapshots k from which frozen per-unit gates are taken (0: skip).
        schedule_depths: depths at which the ``scheduled`` variant runs (one more integration
            of the ReLN, about as long as ``integrate``).
        settle_depths: depths at which gate settling runs (it costs n_settle integrations of
            the full per-unit network).
        n_sv: singular values kept per pathway.
        n_pathways: pathways whose singular values are followed (the strongest by the ReLU
            net's final top singular value; a depth-2 ReLN at C = 5 has ~600).
        active_threshold, strength_fraction: the census filter (see gdln.groups).
        reln_strength_fraction: strength filter for ReLN membership (0: every live unit).
        reduce_tol: largest diagonalisation residual for which the reduction is used.
        reduce_max_paths: largest number of ReLN pathways for which the reduction is tried.
        solver, rtol: ODE solver and relative tolerance of the ``integrate``, ``scheduled`` and
            ``settled`` flows (absolute tolerance 1e-6 x init std).
        rtol_aligned: relative tolerance of the ``aligned`` variant (RKC).
        split_cuts: how many times the cells of ``self_consistent_split_gd`` are cut with
            ``gdln.partitions.split_cells`` from the contexts, per hidden layer from the input,
            the last entry holding for the deeper layers (plain task: 0 keeps the contexts, 1
            gives halves of 4 objects, 2 pairs, 3 single samples, on which a layer is gated as
            the ReLU net's; with every layer on single samples the twin is the ReLU net
            itself).
        scheduler, workers, processes, cache_dir: the sweep runner (studies.sweep).
    """

    contexts: tuple[int, ...] = (2, 3, 4, 5)
    depths: tuple[int, ...] = (1, 2)
    seeds: int = 3
    seed: int = 0
    context_scaling: Literal["none", "published"] = "none"
    different_structure: bool = False
    width_1: int = 700
    init_std_1: float = 0.005 / 700
    steps_1: int = 8000
    width_2: int = 420
    init_std_2: float = 6e-4
    steps_2: int = 30000
    width_3: int = 420
    init_std_3: float = 5e-3
    steps_3: int = 30000
    lr_summed: float = 1e-3
    n_times: int = 301
    n_settle: int = 5
    settle_depths: tuple[int, ...] = (1,)
    schedule_depths: tuple[int, ...] = ()
    n_sv: int = 4
    n_pathways: int = 16
    active_threshold: float = gg.DEFAULT_ACTIVE_THRESHOLD
    strength_fraction: float = gg.DEFAULT_STRENGTH_FRACTION
    reln_strength_fraction: float = 0.0
    reduce_tol: float = 1e-6
    reduce_max_paths: int = 1024
    solver: str = "RKC"
    rtol: float = 1e-4
    rtol_aligned: float = 1e-4
    split_cuts: tuple[int, ...] = (1,)
    scheduler: str | None = None
    workers: int = 2
    processes: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        sizes = tuple(f"{k}_{d}" for k in ("width", "steps") for d in DEPTHS)
        check_numbers(
            self,
            positive=(
                "lr_summed", "rtol", "rtol_aligned", "reduce_tol",
                *(f"init_std_{d}" for d in DEPTHS),
            ),
            counts=("contexts", "depths", "seeds", "n_times", "n_sv", "n_pathways", "workers",
                    "reduce_max_paths", *sizes),
            nonnegative=("seed", "n_settle"),
            naturals=("split_cuts",),
        )  # fmt: skip
        if not self.contexts or min(self.contexts) < 2:
            raise ValueError(f"contexts must all be >= 2, got {self.contexts}")
        if not self.depths or not set(self.depths) <= set(DEPTHS):
            raise ValueError(f"depths must be among {DEPTHS}, got {self.depths}")
        if self.n_times < 3:
            raise ValueError(f"n_times must be >= 3, got {self.n_times}")
        if self.context_scaling not in ("none", "published"):
            raise ValueError(
                f"context_scaling must be 'none' or 'published', not {self.context_scaling!r}"
            )
        if self.solver not in gdln.ode.SOLVERS:
            raise ValueError(f"solver must be one of {list(gdln.ode.SOLVERS)}, got {self.solver!r}")


PRESETS = {
    "quick": Config(contexts=(3,), depths=(1,), seeds=1, n_times=61, n_settle=2),
    "paper": Config(depths=(1, 2, 3)),
    "paper_scaled": Config(context_scaling="published"),
    "paper_schedule": Config(contexts=(3,), schedule_depths=(1, 2), n_settle=0),
}


def _var(data: Any, dims: tuple[str, ...], long_name: str, units: str = "1") -> xr.Variable:
    return xr.Variable(dims, np.asarray(data), {"long_name": long_name, "units": units})


def rel_l2(a: Array, b: Array) -> float:
    """||a - b|| / ||b|| over the shared grid (NaN entries of either are skipped)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.linalg.norm(a[ok] - b[ok]) / np.linalg.norm(b[ok])) if ok.any() else np.nan


def rel_l2_log(a: Array, b: Array, floor: float = 1e-6) -> float:
    """rel_l2 of log10 losses over the times where both exceed ``floor`` x b's initial value."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    ok &= (a > floor * b[0]) & (b > floor * b[0])
    return rel_l2(np.log10(a[ok]), np.log10(b[ok])) if ok.any() else np.nan


def _variant_vars(name: str, loss: Array, loss_relu: Array) -> dict:
    """Dataset variables of the theory variant ``name`` (a :data:`VARIANTS` entry, which gives
    their long names): its mean loss ``loss_<name>`` and the relative L2 errors of its loss and
    log10 loss against the ReLU net's (``rel_l2_loss_<name>``, ``rel_l2_log_loss_<name>``)."""
    v = _VARIANT[name]
    return {
        f"loss_{name}": _var(loss, ("time",), v.what),
        f"rel_l2_loss_{name}": _var(
            rel_l2(loss, loss_relu), (), f"relative L2 error of the loss curve, {v.label} vs ReLU"
        ),
        f"rel_l2_log_loss_{name}": _var(
            rel_l2_log(loss, loss_relu), (), f"relative L2 error of log10 loss, {v.label} vs ReLU"
        ),
    }


def _self_consistent_vars(
    name: str, run: SelfConsistentRun, seconds: float, loss_relu: Array
) -> dict:
    """:func:`_variant_vars` of a self-consistent run (``gdln.self_consistent``), with its
    count of gate changes ``<name>_switches`` (which ones: the variant's ``switches``) and its
    wall time ``seconds_<name>``."""
    variant = _VARIANT[name]
    label = variant.label
    return {
        **_variant_vars(name, run.loss, loss_relu),
        f"{name}_switches": _var(
            run.n_switches.sum(), (), f"number of {variant.switches} of the {label}"
        ),
        f"seconds_{name}": _var(seconds, (), f"wall time of the {label}", "s"),
    }


def linear_cka(H1: Array, H2: Array) -> float:
    """Linear centred kernel alignment of two representations (sample, features):
    <K1c, K2c>_F / (||K1c|| ||K2c||), K = H H^T, Kc its double-centred form (Kornblith 2019)."""
    Hc1 = H1 - H1.mean(axis=0)
    Hc2 = H2 - H2.mean(axis=0)
    K1, K2 = Hc1 @ Hc1.T, Hc2 @ Hc2.T
    denom = np.linalg.norm(K1) * np.linalg.norm(K2)
    return float(np.sum(K1 * K2) / denom) if denom > 0 else np.nan


def aligned_scale(network: gdln.Network, std: float) -> dict[str, float]:
    """Mode strength B_e(0) of the aligned start with the statistics of a random start of
    standard deviation ``std``: B_e = std sqrt(n_e / 2), n_e the size of the edge's hidden end
    (the larger one for a hidden-to-hidden edge); for one hidden layer B_in B_out = n std^2 / 2,
    as in ``gdln.ReLN.aligned_start``."""
    out = {}
    for name, e in network.edges.items():
        hidden = [network.sizes[v] for v in (e.source, e.target) if v not in ("x", "y")]
        out[name] = std * np.sqrt(max(hidden) / 2.0)
    return out


def linear_map_loss(X: Array, Y: Array) -> float:
    """(1/2P) min_A sum_i ||y_i - A x_i||^2: the plateau of a network that stays linear."""
    A = np.linalg.lstsq(X, Y, rcond=None)[0]
    return float(0.5 * np.sum((Y - X @ A) ** 2) / X.shape[0])


def seed_spread(loss_relu: xr.DataArray) -> xr.DataArray:
    """Mean over pairs of seeds of rel_l2(loss_relu(seed a), loss_relu(seed b)), per
    (context_count, depth): the floor against which every ReLN error stands (NaN with one
    seed)."""
    seeds = loss_relu.seed.values
    out = xr.full_like(loss_relu.isel(seed=0, time=0, drop=True), np.nan, dtype=float)
    for C in loss_relu.context_count.values:
        for D in loss_relu.depth.values:
            curves = [_last_valid(loss_relu.sel(context_count=C, depth=D, seed=s)) for s in seeds]
            pairs = [
                rel_l2(a.values, b.values)
                for i, a in enumerate(curves)
                for b in curves[i + 1 :]
                if a.size == b.size
            ]
            if pairs:
                out.loc[{"context_count": C, "depth": D}] = float(np.mean(pairs))
    out.attrs = {
        "long_name": "relative L2 between ReLU runs of different seeds (mean over pairs)",
        "units": "1",
    }
    return out


def strongest_pathways(twin: gdln.ReLN, W: dict[str, Array], n: int) -> list[int]:
    """Indices (into ``twin.network.paths``) of the ``n`` pathways whose products W_p have the
    largest top singular values, strongest first."""
    net = twin.network
    top = [np.linalg.norm(net.path_weight(W, p), 2) for p in net.paths]
    return [int(k) for k in np.argsort(-np.asarray(top), kind="stable")[:n]]


# ----------------------------------------------------------------------------- one cell


def _train_relu(
    X: Array,
    Y: Array,
    widths: tuple[int, ...],
    std: float,
    steps: int,
    eta: float,
    record: Array,
    seed: int,
) -> dict[str, Any]:
    """Train the ReLU net (float64, full batch); record weights, gates, activities and W_eff at
    every snapshot (weight matrices above 100,000 entries kept in float32) and the final
    weights and gates in float64."""
    import torch

    from relu_lens import effective_weights, read_mlp
    from relu_lens.models import mlp
    from relu_lens.recorders import CallbackRecorder
    from relu_lens.train import torch_threads, train

    with torch_threads(1):  # tiny matrices: one thread is several times faster
        # the cell's own generator: cells of a threaded sweep share the global one
        model = mlp(
            X.shape[1], widths, Y.shape[1], bias=False, dtype=torch.float64, init_std=std,
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip
        x = torch.as_tensor(X)

        def measure(m: torch.nn.Module) -> dict[str, Any]:
            arrays = read_mlp(m, X)
            return {
                "acts": gg.activities(arrays.weights, arrays.gates, X),
                "gates": arrays.gates,
                "weights": [
                    w.astype(np.float32) if w.size > 100_000 else w for w in arrays.weights
                ],
                "W_eff": effective_weights(m, x).W.numpy(),
            }

        initial = read_mlp(model, X).weights
        recorder = CallbackRecorder(measure)
        start = _time.perf_counter()
        result = train(
            model,
            x,
            torch.as_tensor(Y),
            steps=steps,
            lr=eta,
            loss="mse",
            snapshot_steps=[int(k) for k in record],
            recorders=[recorder],
            progress=False,
        )
        seconds = _time.perf_counter() - start
        final = read_mlp(model, X)
        with torch.no_grad():
            last = float(0.5 * ((model(x) - torch.as_tensor(Y)) ** 2).sum(1).mean())
    loss = np.array([*result.step_loss, last])
    return {
        "loss": loss[record],
        "snaps": recorder.values,
        "initial": initial,
        "final": final,
        "seconds": seconds,
    }


def context_cell(context_count: int, depth: int, seed: int, **cfg: Any) -> xr.Dataset:
    """One run: train the ReLU net, build its ReLN, integrate, compare (dims time, ...)."""
    C = int(context_count)
    kappa = published_context_scale(C) if cfg["context_scaling"] == "published" else 1.0
    task = context_task(C, kappa, cfg["different_structure"])
    X, Y, P = task.X, task.Y, task.n_samples
    width, std, steps = (cfg[f"{k}_{depth}"] for k in ("width", "init_std", "steps"))
    eta = P * cfg["lr_summed"]
    record = np.unique(np.round(np.linspace(0, steps, cfg["n_times"])).astype(int))
    times = record * eta
    T = len(times)
    relu = _train_relu(X, Y, (width,) * depth, std, steps, eta, record, seed)
    snaps, init = relu["snaps"], relu["initial"]
    flow = {"solver": cfg["solver"], "rtol": cfg["rtol"], "atol": 1e-6 * std}

    # census and mixed selectivity over training
    subsets = gg.all_subsets(C)
    census = np.zeros((T, depth, len(subsets)))
    mixed = np.zeros((T, depth))
    for k, snap in enumerate(snaps):
        for l in range(depth):
            g = gg.gate_groups(
                snap["acts"][l],
                snap["weights"][l + 1],
                task.context,
                C,
                cfg["active_threshold"],
                cfg["strength_fraction"],
            )
            census[k, l] = gg.census(g, C)
            mixed[k, l] = gg.mixed_selectivity(g, C)
    # the ReLN from the last snapshot's gates, started from the ReLU init
    final = relu["final"]
    twin = gdln.ReLN.from_gates(
        final.weights,
        final.gates,
        task.context,
        X=X,
        initial=init,
        n_cells=C,
        active_threshold=cfg["active_threshold"],
        strength_fraction=cfg["reln_strength_fraction"],
    )
    net = twin.network
    followed = strongest_pathways(twin, twin.cut(final.weights), cfg["n_pathways"])
    paths = [net.paths[k] for k in followed]
    n_sv = cfg["n_sv"]
    sv_relu = np.full((T, len(paths), n_sv), np.nan)
    sv_reln = np.full((T, len(paths), n_sv), np.nan)
    cka = np.full((T, depth), np.nan)
    weff_err = np.full((T, P), np.nan)
    out_err = np.full(T, np.nan)

    def top_sv(M: Array) -> Array:
        s = np.linalg.svd(M, compute_uv=False)[:n_sv]
        return np.pad(s, (0, n_sv - len(s)), constant_values=np.nan)

    def visit(k: int, _t: float, W: dict[str, Array]) -> None:
        relu_W = twin.cut([w.astype(np.float64) for w in snaps[k]["weights"]])
        for j, p in enumerate(paths):
            sv_relu[k, j] = top_sv(net.path_weight(relu_W, p))
            sv_reln[k, j] = top_sv(net.path_weight(W, p))
        h = net.forward(W, X, twin.gates)
        for l, nodes in enumerate(twin.layer_nodes):
            H = np.concatenate([h[v] for v in nodes], axis=1)
            cka[k, l] = linear_cka(snaps[k]["acts"][l], H)
        M = net.effective_map(W, twin.gates)[("y", "x")]
        We = snaps[k]["W_eff"]
        weff_err[k] = np.linalg.norm(We - M, axis=(1, 2)) / np.linalg.norm(We, axis=(1, 2))
        f_relu, f_reln = np.einsum("soi,si->so", We, X), np.einsum("soi,si->so", M, X)
        out_err[k] = np.linalg.norm(f_relu - f_reln) / np.linalg.norm(f_relu)

    start = _time.perf_counter()
    loss_int = gdln.integrate(
        net, X, Y, twin.initial, times, twin.gates, callback=visit, with_weights=False, **flow
    ).loss
    seconds_reln = _time.perf_counter() - start
    # the neural-race reduction, where the gated correlations are mutually diagonalisable
    loss_red = np.full(T, np.nan)
    residual = np.nan
    if len(net.paths) <= cfg["reduce_max_paths"]:
        corr = gdln.gated_correlations(net, X, Y, twin.gates)
        try:
            modes = gdln.shared_modes(net, corr, tol=np.inf, seed=seed)
            residual = modes.residual
        except gdln.NotDiagonalisableError:  # e.g. a hidden node narrower than the mode count
            residual = np.nan
        if residual <= cfg["reduce_tol"]:
            B0 = aligned_scale(net, std)
            loss_red = gdln.reduce(
                net, modes, gdln.aligned_init(net, modes, B0), times, with_weights=False
            ).loss
    # the aligned start: exact flow of the parallel pathways from the silent-alignment start
    # (one hidden layer only: deeper pathways share edges)
    loss_aligned = np.full(T, np.nan)
    seconds_aligned = np.nan
    if depth == 1:
        start = _time.perf_counter()
        small, W_aligned = twin.aligned_start(X, Y, std)
        loss_aligned = gdln.pathway_flow(
            small,
            X,
            Y,
            W_aligned,
            times,
            twin.gates,
            solver="RKC",
            rtol=cfg["rtol_aligned"],
            atol=1e-6 * std,
            with_weights=False,
        ).loss
        seconds_aligned = _time.perf_counter() - start
    # the staged twin: a linear phase until its loss reaches the context-mean plateau
    staged = staged_schedule(twin, X, Y, task.context, float(times[-1]), **flow)
    loss_staged = gdln.integrate(
        net, X, Y, twin.initial, times, schedule=staged.schedule, with_weights=False, **flow
    ).loss
    # the per-unit twin: the ReLU net's own units from its initial weights (nothing read from the
    # trained net) on its clock (gradient descent with its step, the gates re-read before every
    # step), on cells cut from the data before any training: each context split by the sign of
    # its strongest target mode beyond the context mean (here the tree's first split), and each
    # cell again, split_cuts times in all, per hidden layer
    units = gdln.ReLN.from_gates(snaps[0]["weights"], snaps[0]["gates"], initial=init)
    cuts = cfg["split_cuts"]
    split_cuts = [cuts[min(layer, len(cuts) - 1)] for layer in range(depth)]
    split_layers = [split_cells(Y, task.context, cuts=c) for c in split_cuts]
    start = _time.perf_counter()
    self_consistent_split_gd = self_consistent_descent(units, X, Y, split_layers, times, eta)
    seconds_self_consistent_split_gd = _time.perf_counter() - start
    # depth-graded cells: hidden layer l on the contexts cut l times (at depth 1 the split cells)
    graded = [split_cells(Y, task.context, cuts=layer) for layer in range(1, depth + 1)]
    if all(np.array_equal(g, c) for g, c in zip(graded, split_layers, strict=True)):
        # the split twin's cells (depth 1 by default): its run, not computed twice
        self_consistent_graded_gd = self_consistent_split_gd
        seconds_self_consistent_graded_gd = seconds_self_consistent_split_gd
    else:
        start = _time.perf_counter()
        self_consistent_graded_gd = self_consistent_descent(units, X, Y, graded, times, eta)
        seconds_self_consistent_graded_gd = _time.perf_counter() - start
    # the split twin's cells with expected gates: each unit's gate on a cell is the fraction of
    # the cell's samples where its pre-activation is positive
    start = _time.perf_counter()
    self_consistent_expected_gd = self_consistent_descent(
        units, X, Y, split_layers, times, eta, expected=True
    )
    seconds_self_consistent_expected_gd = _time.perf_counter() - start
    # node gates read from the ReLU snapshots over time
    loss_sched = np.full(T, np.nan)
    if depth in cfg["schedule_depths"]:
        schedule = gdln.GateSchedule(times[1:], [twin.gates_from(s["gates"]) for s in snaps])
        loss_sched = gdln.integrate(
            net, X, Y, twin.initial, times, schedule=schedule, with_weights=False, **flow
        ).loss
    # gate settling: per-unit gates frozen at snapshot k, from the ReLU init
    n_settle = cfg["n_settle"]
    settle_idx = np.unique(np.round(np.geomspace(1, T, n_settle)).astype(int) - 1)
    settle_time = np.full(n_settle, np.nan)
    loss_settled = np.full((n_settle, T), np.nan)
    if depth in cfg["settle_depths"]:
        for j, k in enumerate(settle_idx):
            frozen = gdln.ReLN.from_gates(snaps[k]["weights"], snaps[k]["gates"], initial=init)
            loss_settled[j] = gdln.integrate(
                frozen.network,
                X,
                Y,
                frozen.initial,
                times,
                frozen.gates,
                with_weights=False,
                **flow,
            ).loss
            settle_time[j] = times[k]
    loss_relu = relu["loss"]
    final_groups = gg.layer_groups(
        final.weights,
        final.gates,
        X,
        task.context,
        C,
        cfg["active_threshold"],
        cfg["strength_fraction"],
    )
    labels = twin.pathway_labels
    ds = xr.Dataset(
        {
            "loss_relu": _var(loss_relu, ("time",), "ReLU net mean training loss"),
            "step": _var(record, ("time",), "gradient-descent step (epoch) of each time"),
            "loss_theory": _var(loss_int, ("time",), "ReLN mean loss (best variant: integrate)"),
            "loss_integrate": _var(loss_int, ("time",), "ReLN mean loss, exact flow (integrate)"),
            "loss_reduced": _var(loss_red, ("time",), "ReLN mean loss, neural-race reduction"),
            "loss_settled": _var(
                loss_settled,
                ("settle", "time"),
                "GDLN loss with per-unit gates frozen at a snapshot",
            ),
            "settle_time": _var(
                settle_time, ("settle",), "time of the frozen gates (NaN: not run)"
            ),
            "rel_l2_loss": _var(
                rel_l2(loss_int, loss_relu),
                (),
                "relative L2 error of the loss curve, ReLN (integrate) vs ReLU",
            ),
            "rel_l2_loss_reduced": _var(
                rel_l2(loss_red, loss_relu),
                (),
                "relative L2 error of the loss curve, reduced vs ReLU",
            ),
            "rel_l2_log_loss": _var(
                rel_l2_log(loss_int, loss_relu),
                (),
                "relative L2 error of log10 loss, ReLN (integrate) vs ReLU",
            ),
            **_variant_vars("aligned", loss_aligned, loss_relu),
            **_variant_vars("staged", loss_staged, loss_relu),
            "staged_switch_time": _var(
                staged.switch_time,
                (),
                "time the staged twin's linear phase reaches the context-mean plateau (NaN: never)",
            ),
            **_self_consistent_vars(
                "self_consistent_split_gd",
                self_consistent_split_gd,
                seconds_self_consistent_split_gd,
                loss_relu,
            ),
            **_self_consistent_vars(
                "self_consistent_graded_gd",
                self_consistent_graded_gd,
                seconds_self_consistent_graded_gd,
                loss_relu,
            ),
            **_self_consistent_vars(
                "self_consistent_expected_gd",
                self_consistent_expected_gd,
                seconds_self_consistent_expected_gd,
                loss_relu,
            ),
            "n_split_cells": _var(
                [int(cells.max()) + 1 for cells in split_layers],
                ("layer",),
                "cells of the split twin's partition of this hidden layer",
            ),
            "split_cuts": _var(
                split_cuts, ("layer",), "times the contexts were cut into this layer's split cells"
            ),
            "context_mean_plateau": _var(
                staged.plateau,
                (),
                "context-mean plateau (1/2P) sum ||y - mean y of its context||^2",
            ),
            "global_mean_plateau": _var(
                cell_mean_loss(Y, np.zeros(P, dtype=int)),
                (),
                "global-mean plateau (1/2P) sum ||y - mean y||^2",
            ),
            "linear_plateau": _var(
                linear_map_loss(X, Y), (), "loss of the best linear map y = A x (least squares)"
            ),
            "split_cell_plateau": _var(
                cell_mean_loss(Y, split_layers[0]),
                (),
                "cell-mean plateau of the split twin's first-layer cells, (1/2P) sum "
                "||y - mean y of its cell||^2",
            ),
            **_variant_vars("scheduled", loss_sched, loss_relu),
            "rel_l2_settled": _var(
                [rel_l2(s, loss_relu) for s in loss_settled],
                ("settle",),
                "relative L2 error of the loss curve, frozen gates vs ReLU",
            ),
            "reduction_residual": _var(
                residual,
                (),
                "relative off-diagonal residual of the shared modes "
                "(NaN: no shared basis, a node is narrower than the modes)",
            ),
            "sv_relu": _var(
                sv_relu,
                ("time", "pathway", "sv"),
                "singular values of the ReLU pathway product W_out[:,b]...W_in[a,:]",
            ),
            "sv_theory": _var(
                sv_reln, ("time", "pathway", "sv"), "singular values of the ReLN pathway weight W_p"
            ),
            "rsa": _var(cka, ("time", "layer"), "linear CKA of hidden activity, ReLN vs ReLU"),
            "weff_rel_error": _var(
                weff_err,
                ("time", "sample"),
                "||W_eff ReLU - W_eff ReLN|| / ||W_eff ReLU|| per data point",
            ),
            "output_rel_error": _var(
                out_err,
                ("time",),
                "||f ReLU - f ReLN|| / ||f ReLU|| over the data points, f(x) = W_eff(x) x",
            ),
            "census": _var(
                census,
                ("time", "layer", "subset"),
                "number of strong hidden units active in exactly this context set",
            ),
            "mixed_selectivity_time": _var(
                mixed, ("time", "layer"), "fraction of strong units active in >1, <C contexts"
            ),
            "mixed_selectivity": _var(
                np.mean([gg.mixed_selectivity(g, C) for g in final_groups]),
                (),
                "mixed selectivity at the end, mean over layers",
            ),
            "reln_node_size": _var(
                [len(twin.units[v]) for nodes in twin.layer_nodes for v in nodes],
                ("node",),
                "ReLU units behind each ReLN hidden node",
            ),
            "pathway_label": _var(
                [labels[k] for k in followed],
                ("pathway",),
                "context sets of the pathway's nodes",
            ),
            "n_reln_pathways": _var(len(labels), (), "number of ReLN pathways"),
            "n_samples": _var(P, (), "P = 8C data points (summed loss = P x mean loss)"),
            "seconds_relu": _var(relu["seconds"], (), "wall time of ReLU training", "s"),
            "seconds_aligned": _var(
                seconds_aligned, (), "wall time of the aligned-start ReLN prediction", "s"
            ),
            "seconds_reln": _var(
                seconds_reln, (), "wall time of the ReLN integration (with its measurements)", "s"
            ),
        },
        coords={
            "time": (
                "time",
                times,
                {"long_name": "time t = step x P x lr (mean-loss clock)", "units": "1"},
            ),
            "pathway": (
                "pathway",
                np.arange(len(followed)),
                {"long_name": "ReLN pathway, by final ReLU strength (0 = strongest)", "units": "1"},
            ),
            "sv": ("sv", np.arange(n_sv), {"long_name": "singular value rank", "units": "1"}),
            "layer": (
                "layer",
                np.arange(1, depth + 1),
                {"long_name": "hidden layer", "units": "1"},
            ),
            "sample": ("sample", np.arange(P), {"long_name": "data point c*8+o", "units": "1"}),
            "subset": (
                "subset",
                [gg.subset_label(cells) for cells in subsets],
                {"long_name": "set of contexts", "units": "1"},
            ),
            "node": (
                "node",
                [v for nodes in twin.layer_nodes for v in nodes],
                {"long_name": "ReLN hidden node", "units": "1"},
            ),
        },
    )
    learned = bool(loss_relu[-1] < LEARNED_FRACTION * loss_relu[0])
    ds["relu_learned"] = _var(
        int(learned), (), f"1 if the ReLU loss fell below {LEARNED_FRACTION} x its initial value"
    )
    if not learned:  # two flat curves agree trivially: the comparison means nothing
        for name in ds.data_vars:
            if name.startswith("rel_l2"):
                ds[name] = ds[name].where(False)
    return ds


# ----------------------------------------------------------------------------- the study


def run(config: Config) -> xr.Dataset:
    """Run the (context_count, depth, seed) sweep and return one Dataset (see the module
    docstring). Failed cells are NaN and named in the ``failed_cells`` attr."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_CELL}
    result = run_sweep(
        context_cell,
        {
            "context_count": list(config.contexts),
            "depth": list(config.depths),
            "seed": [config.seed + s for s in range(config.seeds)],
        },
        cache_dir(NAME, config, _NOT_CELL, config.cache_dir),
        fixed=settings,
        scheduler=config.scheduler,
        n_workers=config.workers,
        processes=config.processes,
    )
    return describe(result, config)


def describe(result: SweepResult, config: Config) -> xr.Dataset:
    """The combined Dataset of a sweep with its coordinate and provenance attrs."""
    ds = result.dataset
    ds["rel_l2_seed_spread"] = seed_spread(ds.loss_relu)
    ds["context_count"].attrs.update(long_name="number of contexts C", units="1")
    ds["depth"].attrs.update(long_name="number of hidden layers", units="1")
    ds["seed"].attrs.update(long_name="seed of the ReLU init", units="1")
    ds.attrs.update(
        clock=(
            "mean loss L = (1/2P) sum ||y - f||^2, t = step x eta with eta = P x lr_summed; the "
            "published summed loss is P x L (variable n_samples)"
        ),
        lr_summed=config.lr_summed,
        context_scaling=config.context_scaling,
        different_structure=int(config.different_structure),
        reln_init="ReLU initial weights restricted to each group's units",
        loss_theory_variant="integrate",
        aligned_start=(
            "every pathway in its own singular vectors of Sigma_yx(p), path strength "
            "n_p std^2 / 2 (n_p units, std the ReLU init std); depth 1 only"
        ),
        failed_cells="; ".join(f"{f.cell}: {f.error.splitlines()[0]}" for f in result.failures),
        cells_not_learned="; ".join(_not_learned(ds)),
        cells_computed=len(result.computed),
        cells_reused=len(result.reused),
    )
    return io.finalize(ds, NAME, config)


def _not_learned(ds: xr.Dataset) -> list[str]:
    """The cells whose ReLU net did not learn (their comparisons are NaN)."""
    if "relu_learned" not in ds:
        return []
    flat = ds.relu_learned.stack(cell=("context_count", "depth", "seed"))
    return [
        f"C={c}, depth={d}, seed={s}: the ReLU net did not learn (raise init std or steps)"
        for (c, d, s), ok in zip(flat.cell.values, flat.values, strict=True)
        if ok == 0
    ]


def summary(ds: xr.Dataset) -> dict[str, float | str]:
    """Headline numbers per (C, depth): mean and spread over seeds of the loss-curve errors and
    the mixed-selectivity index, and the census at C = 3 (mean over seeds, last layer)."""
    out: dict[str, float | str] = {}
    for C in ds.context_count.values:
        for D in ds.depth.values:
            cell = ds.sel(context_count=C, depth=D)
            for name in (
                "rel_l2_loss",
                "rel_l2_log_loss",
                "rel_l2_loss_reduced",
                *(f"rel_l2{log}_loss_{var.name}" for var in VARIANTS for log in ("", "_log")),
                "mixed_selectivity",
            ):
                v = cell[name].values if name in cell else np.array(np.nan)
                if np.isfinite(v).any():
                    out[f"{name}_C{C}_depth{D}"] = float(np.nanmean(v))
                    out[f"{name}_C{C}_depth{D}_std"] = float(np.nanstd(v))
    if 3 in ds.context_count.values:
        for D in (D for D in ds.depth.values if _computed(ds, 3, D)):
            census = _last_valid(ds.census.sel(context_count=3, depth=D)).isel(time=-1)
            census = census.dropna("layer", how="all").isel(layer=-1).mean("seed")
            for subset in census.subset.values:
                value = float(census.sel(subset=subset))
                if np.isfinite(value):
                    out[f"census_C3_depth{D}_{subset}"] = value
    return out


def _last_valid(da: xr.DataArray) -> xr.DataArray:
    """``da`` on the times of its own grid (cells of other C or depth have other times)."""
    return da.dropna("time", how="all")


def _computed(ds: xr.Dataset, C: int, D: int) -> bool:
    """Whether any seed of cell (C, depth D) was computed (a failed cell, listed in the
    attribute ``failed_cells``, is NaN throughout)."""
    return bool(ds.loss_relu.sel(context_count=C, depth=D).notnull().any())


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """Loss curves, pathway singular values, census bars and representation similarity."""
    figs: dict[str, Figure] = {}
    Cs, Ds = list(ds.context_count.values), list(ds.depth.values)
    seed0 = ds.seed.values[0]
    for D in Ds:
        fig, axes = plt.subplots(1, len(Cs), figsize=(4.4 * len(Cs), 3.4), squeeze=False)
        for j, C in enumerate(Cs):
            ax = axes[0, j]
            if not _computed(ds, C, D):
                ax.set_title(f"C={C}, depth {D}: not computed (failed_cells)", fontsize=8)
                continue
            cell = ds.sel(context_count=C, depth=D)
            for s in cell.seed.values:
                lr = _last_valid(cell.loss_relu.sel(seed=s))
                ax.plot(lr.time, lr, color="k", lw=1, label="ReLU" if s == seed0 else None)
                lt = _last_valid(cell.loss_theory.sel(seed=s))
                ax.plot(
                    lt.time,
                    lt,
                    color="C1",
                    ls="--",
                    lw=1,
                    label="ReLN (fixed gates)" if s == seed0 else None,
                )
                for v in VARIANTS:
                    name = f"loss_{v.name}"
                    if name not in cell:  # files written before the variant existed
                        continue
                    curve = _last_valid(cell[name].sel(seed=s))
                    if curve.size:
                        ax.plot(
                            curve.time,
                            curve,
                            color=v.color,
                            ls=v.ls,
                            lw=1,
                            label=v.legend if s == seed0 else None,
                        )
            for name, text in (
                ("global_mean_plateau", "global mean"),
                ("context_mean_plateau", "context means"),
                ("linear_plateau", "best linear"),
                ("split_cell_plateau", "split-cell means"),
            ):
                if name in cell and np.isfinite(cell[name].values).any():
                    level = float(np.nanmean(cell[name].values))
                    ax.axhline(level, color="0.6", lw=0.6, ls=":")
                    ax.annotate(text, (0.99, level), xycoords=("axes fraction", "data"),
                                ha="right", va="bottom", fontsize=6, color="0.4")  # fmt: skip
            ax.set_yscale("log")
            errors = [f"fixed {float(cell.rel_l2_loss.mean()):.3f}"]
            for v in VARIANTS:
                values = cell.get(f"rel_l2_loss_{v.name}", xr.DataArray(np.nan)).values
                if np.isfinite(values).any():
                    errors.append(f"{v.short} {np.nanmean(values):.3f}")
            if "rel_l2_seed_spread" in ds and np.isfinite(
                ds.rel_l2_seed_spread.sel(context_count=C, depth=D)
            ):
                errors.append(
                    f"seeds {float(ds.rel_l2_seed_spread.sel(context_count=C, depth=D)):.3f}"
                )
            lines = [", ".join(errors[i : i + 3]) for i in range(0, len(errors), 3)]
            ax.set_title(f"C={C}, depth {D}, rel L2:\n" + "\n".join(lines), fontsize=8)
            ax.set_xlabel("t (mean-loss clock)")
            ax.set_ylabel("mean loss")
        drawn = [ax for ax in axes[0] if ax.lines]
        if drawn:
            drawn[0].legend(fontsize=7)
        fig.tight_layout()
        figs[f"loss_depth{D}"] = fig

    fig, axes = plt.subplots(len(Ds), len(Cs), figsize=(3.6 * len(Cs), 3 * len(Ds)), squeeze=False)
    for i, D in enumerate(Ds):
        for j, C in enumerate(Cs):
            ax = axes[i, j]
            if not _computed(ds, C, D):
                ax.set_title(f"C={C}, depth {D}: not computed (failed_cells)", fontsize=9)
                continue
            cell = ds.sel(context_count=C, depth=D, seed=seed0)
            relu = _last_valid(cell.sv_relu.isel(sv=0))
            theory = _last_valid(cell.sv_theory.isel(sv=0))
            for n, p in enumerate(range(min(6, relu.sizes["pathway"]))):
                if relu.isel(pathway=p).isnull().all():  # this cell has fewer pathways
                    break
                name = str(cell.pathway_label.values[p])
                ax.plot(relu.time, relu.isel(pathway=p), color=f"C{n}", lw=1, label=name)
                ax.plot(theory.time, theory.isel(pathway=p), color=f"C{n}", ls="--", lw=1)
            ax.set_title(f"C={C}, depth {D}: top singular value per pathway", fontsize=9)
            ax.set_xlabel("t")
            ax.legend(fontsize=6, title="solid ReLU, dashed ReLN", title_fontsize=6)
    fig.tight_layout()
    figs["pathway_singular_values"] = fig

    done = [D for D in Ds if any(_computed(ds, C, D) for C in Cs)]
    panels = [(D, l) for D in done for l in range(1, int(D) + 1)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (D, l) in zip(axes[0], panels, strict=True):
        for j, C in enumerate(Cs):
            if not _computed(ds, C, D):
                continue
            census = _last_valid(ds.census.sel(context_count=C, depth=D, layer=l)).isel(time=-1)
            census = census.mean("seed").dropna("subset")
            size = np.array([s.count(",") + 1 for s in census.subset.values])
            counts = [float(census.values[size == k].sum()) for k in range(1, int(C) + 1)]
            ax.bar(
                np.arange(1, int(C) + 1) + (j - len(Cs) / 2 + 0.5) * 0.8 / len(Cs),
                counts,
                width=0.8 / len(Cs),
                label=f"C={C}",
            )
        ax.set_title(f"depth {D}, layer {l}: strong units at the end", fontsize=9)
        ax.set_xlabel("number of contexts in which a unit is active")
        ax.set_ylabel("units (mean over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    figs["census"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for D in Ds:
        for C in Cs:
            r = _last_valid(ds.rsa.sel(context_count=C, depth=D, seed=seed0))
            for l in r.layer.values:
                rl = r.sel(layer=l).dropna("time")
                if rl.size:
                    axes[0].plot(rl.time, rl, lw=1, label=f"C={C} d{D} L{l}")
        ms = ds.mixed_selectivity.sel(depth=D)
        axes[1].errorbar(
            ds.context_count,
            ms.mean("seed"),
            yerr=ms.std("seed"),
            marker="o",
            capsize=3,
            label=f"depth {D}",
        )
    axes[0].set_xlabel("t")
    axes[0].set_ylabel("linear CKA (ReLN vs ReLU)")
    axes[0].legend(fontsize=6)
    axes[1].set_xlabel("contexts C")
    axes[1].set_ylabel("mixed-selectivity index")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    figs["representation"] = fig
    return figs
