"""ReLN: ReLU networks against their gated-linear twin on multi-context hierarchical tasks.

Jarvis, Klein, Rosman & Saxe (ICLR 2025) show that a ReLU network trained on a multi-context
task behaves like a gated deep linear network (GDLN; Saxe, Sodhani & Lewallen, ICML 2022) whose
gates switch pathways on per context: a ReLN. This study reads the gates of the ReLU network
automatically, builds the ReLN and predicts the ReLU network's learning with nothing fitted to
the ReLU run.

Experiment (``relu_lens``): the task of :mod:`relu_lens.context_task` (8 objects, 15 tree
features, C contexts); a bias-free ReLU MLP 11 -> 700 -> 60 (init N(0, (0.005/700)^2), 8,000
steps) or 11 -> 420 -> 420 -> 60 (init N(0, 6e-4^2), 30,000 steps), float64, full-batch
gradient descent with lr 1e-3 on the summed loss (1/2) sum_i ||y_i - f(x_i)||^2 (the published
settings, REFERENCE.md section 3).

Clock (DESIGN.md): mean loss L = (1/2P) sum_i ||y_i - f(x_i)||^2, t = k eta. The summed loss is
P L, and lr on the summed loss equals the step eta = P lr on the mean loss, so step k sits at
t = k P lr. ``loss_*`` variables are mean losses; multiply by ``n_samples`` = P = 8C for the
published (summed) numbers (attrs ``clock`` and ``lr_summed``).

Gates (:mod:`relu_lens.gate_groups`): at the last snapshot, every live hidden unit of layer l is
put in the group of the contexts in which it is active. The ReLN has one hidden node per group
and layer, of as many units as the group, with node gate g(x) = 1[context(x) in the group's
set]; in depth 2 every layer-1 node connects to every layer-2 node, so a path through groups
(a, b) is gated by 1[c in S_a and c in S_b]. Its initial weights are the ReLU network's own
initial weights restricted to the group's units (W_1[units_a, :], W_2[units_b, units_a], ...):
the same init statistics, nothing tuned.

Theory variants:

- ``integrate`` (always): the exact gradient flow of the ReLN, ``gdln.integrate``;
- ``reduced``: the neural-race reduction ``gdln.reduce`` from the aligned init whose mode
  strengths have the variance of the ReLU init (B_e = std_e sqrt(n_e / 2) per edge,
  n_e the number of units at the edge's hidden end: the growing part of a random
  start), used only where ``gdln.shared_modes`` finds the gated correlations mutually
  diagonalisable (relative residual <= ``reduce_tol``); otherwise NaN, with the measured
  residual in ``reduction_residual``. On this task the object-context cross-correlations of
  the inputs keep the residual near 0.4, so the reduction does not apply and is reported so.
- ``aligned`` (one hidden layer): the exact flow of the ReLN from the silent-alignment start
  (each pathway in its own singular vectors of Sigma_yx(p), strength n_p std^2 / 2 from the
  ReLU init statistics), ``gdln.pathway_flow`` on the hidden nodes cut to the pathways' mode
  counts (exact for that start). It needs no shared basis, so it works with and without the
  published context scaling, and it is the fast prediction (``benchmarks/reln_speed.py``).
  At depth 2 the pathways share edges and it is NaN.
- ``scheduled`` (depths in ``schedule_depths``): the same ReLN with node gates read from the
  ReLU snapshots over time, g_v(x, t) = fraction of node v's units active on x at the last
  snapshot before t (soft gates in [0, 1]; the published depth-2 ReLN switched its context
  pathways on by hand instead).
- ``settled``: the GDLN with the per-unit gates of the ReLU net frozen at snapshot k, from the
  ReLU net's initial weights (gate settling: when do gates stop mattering?).

Comparisons (dims ``time``, ``context_count``, ``depth``, ``seed``): losses, relative L2 error
of the loss curves ||a - b|| / ||b|| on the shared time grid, the same on log10 of the losses,
singular values of every pathway's product W_out[:, b] ... W_in[a, :] in the ReLU net against
those of the ReLN's pathway weight W_p(t), linear CKA of hidden activity (ReLU vs ReLN), and
the ReLU W_eff(x, t) per data point against the ReLN's map sum_p g_p(x) W_p(t). Census of
groups over training and the mixed-selectivity index (strong units active in more than one but
not all contexts), per layer.

The grid (context_count x depth x seed) runs on dask.distributed via :mod:`studies.sweep`
(resumable; one cell per run).
"""

from __future__ import annotations

import dataclasses
import itertools
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

import gdln
from relu_lens import gate_groups as gg
from relu_lens.context_task import context_task, published_context_scale
from studies import io
from studies.sweep import SweepResult, cache_dir, run_sweep

NAME = "contexts"

_GRID_FIELDS = {"contexts", "depths", "seeds", "seed"}
_NOT_CELL = _GRID_FIELDS | {"scheduler", "workers", "processes", "cache_dir"}
Array = np.ndarray


@dataclass(frozen=True)
class Config:
    """Settings of the contexts sweep.

    Attributes:
        contexts: context counts C (grid dim ``context_count``).
        depths: numbers of hidden layers, 1 and/or 2 (grid dim ``depth``).
        seeds: runs per cell, seeds ``seed`` .. ``seed + seeds - 1`` (grid dim ``seed``).
        context_scaling: "none" (plain one-hot) or "published" (1.1 at C = 4, 1.35 at C = 5).
        different_structure: the task variant whose contexts permute the objects.
        width_1, init_std_1, steps_1: the one-hidden-layer net (published 700, 0.005/700, 8000).
        width_2, init_std_2, steps_2: the two-hidden-layer net (published 420, 6e-4, 30000).
        lr_summed: gradient-descent learning rate on the summed loss (published 1e-3).
        n_times: records on a linear grid from step 0 to the last step (shared time grid).
        n_settle: snapshots k from which frozen per-unit gates are taken (0: skip).
        schedule_depths: depths at which the ``scheduled`` variant runs (one more integration
            of the ReLN, about as long as ``integrate``).
        settle_depths: depths at which gate settling runs (it costs n_settle integrations of
            the full per-unit network).
        n_sv: singular values kept per pathway.
        n_pathways: pathways kept in the combined Dataset's ``sv_*`` variables (the strongest
            by the ReLU net's final top singular value; a depth-2 ReLN at C = 5 has ~600).
        active_threshold, strength_fraction: the census filter (see relu_lens.gate_groups).
        reln_strength_fraction: strength filter for ReLN membership (0: every live unit).
        reduce_tol: largest diagonalisation residual for which the reduction is used.
        rtol: relative tolerance of the ODE solver (absolute tolerance 1e-6 x init std).
        rtol_aligned: the same for the ``aligned`` variant (second-order RKC solver).
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
    rtol: float = 1e-6
    rtol_aligned: float = 1e-4
    scheduler: str | None = None
    workers: int = 2
    processes: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.contexts or min(self.contexts) < 2:
            raise ValueError(f"contexts must all be >= 2, got {self.contexts}")
        if not self.depths or not set(self.depths) <= {1, 2}:
            raise ValueError(f"depths must be 1 and/or 2, got {self.depths}")
        counts = (self.n_sv, self.n_pathways)
        if self.seeds < 1 or self.n_times < 3 or self.n_settle < 0 or min(counts) < 1:
            raise ValueError(
                "need seeds >= 1, n_times >= 3, n_settle >= 0, n_sv >= 1 and n_pathways >= 1"
            )
        if self.context_scaling not in ("none", "published"):
            raise ValueError(
                f"context_scaling must be 'none' or 'published', not {self.context_scaling!r}"
            )
        if min(self.width_1, self.width_2, self.steps_1, self.steps_2) < 1:
            raise ValueError("widths and steps must be positive")
        if min(self.init_std_1, self.init_std_2, self.lr_summed, self.rtol, self.rtol_aligned) <= 0:
            raise ValueError("init stds, lr_summed and the rtols must be positive")


PRESETS = {
    "quick": Config(contexts=(3,), depths=(1,), seeds=1, n_times=61, n_settle=2),
    "paper": Config(),
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


def linear_cka(H1: Array, H2: Array) -> float:
    """Linear centred kernel alignment of two representations (sample, features):
    <K1c, K2c>_F / (||K1c|| ||K2c||), K = H H^T, Kc its double-centred form (Kornblith 2019)."""
    Hc1 = H1 - H1.mean(axis=0)
    Hc2 = H2 - H2.mean(axis=0)
    K1, K2 = Hc1 @ Hc1.T, Hc2 @ Hc2.T
    denom = np.linalg.norm(K1) * np.linalg.norm(K2)
    return float(np.sum(K1 * K2) / denom) if denom > 0 else np.nan


# ----------------------------------------------------------------------------- the ReLN


@dataclass(frozen=True)
class ReLN:
    """A ReLN: the GDLN, its node gates, and the ReLU units behind every hidden node.

    Attributes:
        network: nodes ``x``, ``y`` and ``h{layer}_{group}``; edges ``in_a`` (x -> layer-1 node
            a), ``mid_a_b`` (layer 1 a -> layer 2 b), ``out_b`` (last layer b -> y).
        gates: {node: (sample,)} node gates 1[context in the group's set].
        units: {node: ReLU unit indices of that node's layer}.
        pathways: (pathway,) labels, e.g. "{1,2}" or "{1,2}>{1,2,3}", one per network path.
    """

    network: gdln.Network
    gates: dict[str, Array]
    units: dict[str, Array]
    pathways: tuple[str, ...]


def build_reln(
    groups: list[gg.GateGroups], context: Array, n_in: int, n_out: int, n_contexts: int
) -> ReLN:
    """One hidden node per (layer, group) with node gates from the group's context set."""
    nodes: dict[str, int] = {"x": n_in, "y": n_out}
    edges: dict[str, tuple[str, str]] = {}
    gates: dict[str, Array] = {}
    units: dict[str, Array] = {}
    layer_nodes: list[list[str]] = []
    for layer, g in enumerate(groups):
        names = []
        node_gates = g.node_gates(context)
        for k in range(g.n_groups):
            name = f"h{layer + 1}_{k}"
            nodes[name] = int(g.sizes()[k])
            gates[name] = node_gates[:, k]
            units[name] = g.members(k)
            names.append(name)
        if not names:
            raise ValueError(f"hidden layer {layer + 1} has no unit in any group")
        layer_nodes.append(names)
    for a in layer_nodes[0]:
        edges[f"in_{a}"] = ("x", a)
    for lower, upper in itertools.pairwise(layer_nodes):
        for a in lower:
            for b in upper:
                edges[f"mid_{a}_{b}"] = (a, b)
    for b in layer_nodes[-1]:
        edges[f"out_{b}"] = (b, "y")
    network = gdln.Network(nodes, edges)

    def label(node: str) -> str:
        layer, k = (int(s) for s in node[1:].split("_"))
        mask = int(gg.subset_mask(groups[layer - 1].group_contexts[k]))
        return gg.subset_label(mask, n_contexts)

    pathways = tuple(">".join(label(v) for v in p.nodes[1:-1]) for p in network.paths)
    return ReLN(network, gates, units, pathways)


def reln_weights(reln: ReLN, weights: list[Array]) -> dict[str, Array]:
    """The ReLN's edge weights cut from the ReLU net's layer weights [W_1, ..., W_L]:
    W_in_a = W_1[units_a], W_mid_a_b = W_2[units_b][:, units_a], W_out_b = W_L[:, units_b]."""
    out = {}
    for name, edge in reln.network.edges.items():
        if edge.source == "x":
            out[name] = weights[0][reln.units[edge.target]]
        elif edge.target == "y":
            out[name] = weights[-1][:, reln.units[edge.source]]
        else:
            out[name] = weights[1][np.ix_(reln.units[edge.target], reln.units[edge.source])]
    return out


def path_products(network: gdln.Network, W: Mapping[str, Array]) -> list[Array]:
    """W_p = product of the edge weights along every path, (n_out, n_in) each."""
    return [network.path_weight(W, p) for p in network.paths]


def unit_gate_network(n_in: int, widths: tuple[int, ...], n_out: int) -> gdln.Network:
    """The GDLN chain x -> h1 -> ... -> y of a ReLU MLP, to be gated per unit by its
    activation pattern: h_l = D_l(x) W_l h_{l-1} (Saxe et al. 2022 with diagonal node gates)."""
    return gdln.chain([n_in, *widths, n_out])


def flow(
    network: gdln.Network,
    X: Array,
    Y: Array,
    initial: Mapping[str, Array],
    times: Array,
    gates: Mapping[str, Array],
    rtol: float,
    atol: float,
    visit: Callable[[int, dict[str, Array]], None] | None = None,
    chunk: int = 50,
) -> Array:
    """Mean loss of ``gdln.integrate``'s gradient flow at ``times`` (starting at 0), integrated
    in chunks of ``chunk`` records so that only one chunk of weights is held; ``visit(k, W)`` is
    called with the weights at every record k."""
    losses = np.empty(len(times))
    W = dict(initial)
    t_start = 0.0
    for idx in np.array_split(np.arange(len(times)), max(1, int(np.ceil(len(times) / chunk)))):
        traj = gdln.integrate(
            network, X, Y, W, times[idx] - t_start, gates=gates, rtol=rtol, atol=atol
        )
        losses[idx] = traj.loss
        if visit is not None:
            for j, k in enumerate(idx):
                visit(int(k), traj.weights_at(j))
        W = traj.weights_at(len(idx) - 1)
        t_start = float(times[idx[-1]])
    return losses


def aligned_scale(network: gdln.Network, stds: Mapping[str, float]) -> dict[str, float]:
    """Mode strength B_e(0) of the aligned start with the statistics of a random start:
    B_e = std_e sqrt(n_e / 2), n_e the size of the edge's hidden end (the larger one for a
    hidden-to-hidden edge). For one hidden layer this gives the product B_in B_out = n std^2 / 2
    = E||v + w||^2 / 4 of the growing balanced part of a random start (v = W_out^T a,
    w = W_in b; Saxe, McClelland & Ganguli 2014, silent alignment)."""
    out = {}
    for name, e in network.edges.items():
        hidden = [network.sizes[v] for v in (e.source, e.target) if v not in ("x", "y")]
        out[name] = stds[name] * np.sqrt(max(hidden) / 2.0)
    return out


def soft_node_gates(reln: ReLN, acts: list[Array]) -> dict[str, Array]:
    """g_v(x) = fraction of node v's ReLU units active on x, from the hidden activities
    [(sample, width)] of one snapshot: a node gate in [0, 1] per sample."""
    out = {}
    for v, units in reln.units.items():
        layer = int(v[1:].split("_")[0]) - 1
        out[v] = (acts[layer][:, units] > 0).mean(axis=1)
    return out


def scheduled_flow(
    network: gdln.Network,
    X: Array,
    Y: Array,
    initial: Mapping[str, Array],
    times: Array,
    schedule: list[dict[str, Array]],
    rtol: float,
    atol: float,
) -> Array:
    """Mean loss at ``times`` of the gradient flow with the gates held at ``schedule[k]`` on
    [times[k], times[k + 1]) (piecewise-constant gates, one ``gdln.integrate`` per interval)."""
    if len(schedule) != len(times):
        raise ValueError(f"need one set of gates per time: {len(schedule)} != {len(times)}")
    losses = np.empty(len(times))
    W = dict(initial)
    for k in range(len(times) - 1):
        traj = gdln.integrate(
            network, X, Y, W, [0.0, times[k + 1] - times[k]], schedule[k], rtol=rtol, atol=atol
        )
        if k == 0:
            losses[0] = traj.loss[0]
        losses[k + 1] = traj.loss[1]
        W = traj.weights_at(1)
    return losses


def aligned_loss(
    reln: ReLN, X: Array, Y: Array, std: float, times: Array, rtol: float, solver: str = "RKC"
) -> Array:
    """Mean loss of the ReLN's exact flow from the aligned (silent-alignment) start whose path
    strength has the statistics of the ReLU init (``aligned_scale``: n_p std^2 / 2 for a
    pathway of n_p units), every pathway in its own singular vectors of Sigma_yx(p); the
    hidden nodes are cut to the pathways' mode counts, which is exact (gdln.pathways)."""
    net = reln.network
    B = aligned_scale(net, dict.fromkeys(net.edges, std))
    strength = {k: float(np.prod([B[e] for e in p.edges])) for k, p in enumerate(net.paths)}
    small, W0 = gdln.aligned_pathways(net, X, Y, reln.gates, strength)
    return gdln.pathway_flow(
        small,
        X,
        Y,
        W0,
        times,
        reln.gates,
        solver=solver,
        rtol=rtol,
        atol=1e-6 * std,
        with_weights=False,
    ).loss


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
    """Train the ReLU net (float64, full batch) and record weights, activities, W_eff."""
    import torch

    from relu_lens.effective import effective_weights
    from relu_lens.models import mlp
    from relu_lens.recorders import CallbackRecorder
    from relu_lens.train import torch_threads, train

    with torch_threads(1):  # tiny matrices: one thread is several times faster
        torch.manual_seed(seed)
        model = mlp(X.shape[1], widths, Y.shape[1], bias=False, dtype=torch.float64, init_std=std)
        x = torch.as_tensor(X)

        def measure(m: torch.nn.Module) -> dict[str, Any]:
            acts, _ = gg.layer_activities(m, X)
            weights = [
                layer.weight.detach().numpy().copy()
                for layer in m
                if isinstance(layer, torch.nn.Linear)
            ]
            big = [w.astype(np.float32) if w.size > 100_000 else w for w in weights]
            return {"acts": acts, "weights": big, "W_eff": effective_weights(m, x).W.numpy()}

        init = [
            layer.weight.detach().numpy().copy()
            for layer in model
            if isinstance(layer, torch.nn.Linear)
        ]
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
        with torch.no_grad():
            final = float(0.5 * ((model(x) - torch.as_tensor(Y)) ** 2).sum(1).mean())
    loss = np.array([*result.step_loss, final])
    return {"loss": loss[record], "snaps": recorder.values, "init": init, "seconds": seconds}


def context_cell(context_count: int, depth: int, seed: int, **cfg: Any) -> xr.Dataset:
    """One run: train the ReLU net, build its ReLN, integrate, compare (dims time, ...)."""
    C = int(context_count)
    kappa = published_context_scale(C) if cfg["context_scaling"] == "published" else 1.0
    task = context_task(C, kappa, cfg["different_structure"])
    X, Y, P = task.X, task.Y, task.n_samples
    width, std, steps = (cfg[f"{k}_{depth}"] for k in ("width", "init_std", "steps"))
    widths = (width,) * depth
    eta = P * cfg["lr_summed"]
    record = np.unique(np.round(np.linspace(0, steps, cfg["n_times"])).astype(int))
    times = record * eta
    T = len(times)
    relu = _train_relu(X, Y, widths, std, steps, eta, record, seed)
    snaps = relu["snaps"]
    init = relu["init"]

    def groups_at(k: int, fraction: float) -> list[gg.GateGroups]:
        s = snaps[k]
        return [
            gg.gate_groups(
                s["acts"][l],
                s["weights"][l + 1],
                task.context,
                C,
                cfg["active_threshold"],
                fraction,
            )
            for l in range(depth)
        ]

    # census and mixed selectivity over training
    subsets = gg.all_subsets(C)
    census = np.zeros((T, depth, len(subsets)))
    mixed = np.zeros((T, depth))
    for k in range(T):
        for l, g in enumerate(groups_at(k, cfg["strength_fraction"])):
            census[k, l] = gg.census(g, C)
            mixed[k, l] = gg.mixed_selectivity(g, C)
    # the ReLN from the last snapshot's gates, started from the ReLU init
    reln = build_reln(
        groups_at(T - 1, cfg["reln_strength_fraction"]), task.context, X.shape[1], Y.shape[1], C
    )
    net = reln.network
    W0 = reln_weights(reln, init)
    n_path, n_sv = len(net.paths), cfg["n_sv"]
    sv_relu = np.full((T, n_path, n_sv), np.nan)
    sv_reln = np.full((T, n_path, n_sv), np.nan)
    cka = np.full((T, depth), np.nan)
    weff_err = np.full((T, P), np.nan)
    out_err = np.full(T, np.nan)
    layer_nodes = [[v for v in net.order if v.startswith(f"h{l + 1}_")] for l in range(depth)]

    def top_sv(M: Array) -> Array:
        s = np.linalg.svd(M, compute_uv=False)[:n_sv]
        return np.pad(s, (0, n_sv - len(s)), constant_values=np.nan)

    def visit(k: int, W: dict[str, Array]) -> None:
        relu_W = reln_weights(reln, [w.astype(np.float64) for w in snaps[k]["weights"]])
        for p, (A, B) in enumerate(
            zip(path_products(net, relu_W), path_products(net, W), strict=True)
        ):
            sv_relu[k, p], sv_reln[k, p] = top_sv(A), top_sv(B)
        h = net.forward(W, X, reln.gates)
        for l in range(depth):
            H = np.concatenate([h[v] for v in layer_nodes[l]], axis=1)
            cka[k, l] = linear_cka(snaps[k]["acts"][l], H)
        M = net.effective_map(W, reln.gates)[("y", "x")]
        We = snaps[k]["W_eff"]
        weff_err[k] = np.linalg.norm(We - M, axis=(1, 2)) / np.linalg.norm(We, axis=(1, 2))
        f_relu, f_reln = np.einsum("soi,si->so", We, X), np.einsum("soi,si->so", M, X)
        out_err[k] = np.linalg.norm(f_relu - f_reln) / np.linalg.norm(f_relu)

    atol = 1e-6 * std
    start = _time.perf_counter()
    loss_int = flow(net, X, Y, W0, times, reln.gates, cfg["rtol"], atol, visit=visit)
    seconds_reln = _time.perf_counter() - start
    # the neural-race reduction, where the gated correlations are mutually diagonalisable
    corr = gdln.gated_correlations(net, X, Y, reln.gates)
    loss_red = np.full(T, np.nan)
    try:
        modes = gdln.shared_modes(net, corr, tol=np.inf, seed=seed)
        residual = modes.residual
    except gdln.NotDiagonalisableError:  # e.g. a hidden node narrower than the mode count
        residual = np.nan
    if residual <= cfg["reduce_tol"]:
        B0 = aligned_scale(net, dict.fromkeys(net.edges, std))
        loss_red = gdln.reduce(
            net, modes, gdln.aligned_init(net, modes, B0), times, with_weights=False
        ).loss
    # the aligned start: exact flow of the parallel pathways from the silent-alignment start
    # (one hidden layer only: in depth 2 pathways share edges)
    loss_aligned = np.full(T, np.nan)
    seconds_aligned = np.nan
    if depth == 1:
        start = _time.perf_counter()
        loss_aligned = aligned_loss(reln, X, Y, std, times, cfg["rtol_aligned"])
        seconds_aligned = _time.perf_counter() - start
    # node gates read from the ReLU snapshots over time
    loss_sched = np.full(T, np.nan)
    if depth in cfg["schedule_depths"]:
        schedule = [soft_node_gates(reln, snaps[k]["acts"]) for k in range(T)]
        loss_sched = scheduled_flow(net, X, Y, W0, times, schedule, cfg["rtol"], atol)
    # gate settling: per-unit gates frozen at snapshot k, from the ReLU init
    n_settle = cfg["n_settle"]
    settle_idx = np.unique(np.round(np.geomspace(1, T, n_settle)).astype(int) - 1)
    settle_time = np.full(n_settle, np.nan)
    loss_settled = np.full((n_settle, T), np.nan)
    if depth in cfg["settle_depths"]:
        chain = unit_gate_network(X.shape[1], widths, Y.shape[1])
        chain_W0 = {f"W{l + 1}": w for l, w in enumerate(init)}
        for j, k in enumerate(settle_idx):
            gates = {f"h{l + 1}": (snaps[k]["acts"][l] > 0).astype(float) for l in range(depth)}
            loss_settled[j] = flow(chain, X, Y, chain_W0, times, gates, cfg["rtol"], atol)
            settle_time[j] = times[k]
    loss_relu = relu["loss"]
    final_groups = groups_at(T - 1, cfg["strength_fraction"])
    return xr.Dataset(
        {
            "loss_relu": _var(loss_relu, ("time",), "ReLU net mean training loss"),
            "step": _var(record, ("time",), "gradient-descent step (epoch) of each time"),
            "loss_theory": _var(loss_int, ("time",), "ReLN mean loss (best variant: integrate)"),
            "loss_integrate": _var(loss_int, ("time",), "ReLN mean loss, exact flow (integrate)"),
            "loss_reduced": _var(loss_red, ("time",), "ReLN mean loss, neural-race reduction"),
            "loss_aligned": _var(
                loss_aligned,
                ("time",),
                "ReLN mean loss, exact flow from the aligned start (depth 1; NaN at depth 2)",
            ),
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
            "rel_l2_loss_aligned": _var(
                rel_l2(loss_aligned, loss_relu),
                (),
                "relative L2 error of the loss curve, aligned-start ReLN vs ReLU",
            ),
            "rel_l2_log_loss_aligned": _var(
                rel_l2_log(loss_aligned, loss_relu),
                (),
                "relative L2 error of log10 loss, aligned-start ReLN vs ReLU",
            ),
            "loss_scheduled": _var(
                loss_sched,
                ("time",),
                "ReLN mean loss, node gates read from the ReLU snapshots over time",
            ),
            "rel_l2_loss_scheduled": _var(
                rel_l2(loss_sched, loss_relu),
                (),
                "relative L2 error of the loss curve, scheduled-gate ReLN vs ReLU",
            ),
            "rel_l2_log_loss_scheduled": _var(
                rel_l2_log(loss_sched, loss_relu),
                (),
                "relative L2 error of log10 loss, scheduled-gate ReLN vs ReLU",
            ),
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
                [len(reln.units[v]) for l in range(depth) for v in layer_nodes[l]],
                ("node",),
                "ReLU units behind each ReLN hidden node",
            ),
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
                [f"{k}:{p}" for k, p in enumerate(reln.pathways)],
                {"long_name": "ReLN pathway (context sets of its nodes)", "units": "1"},
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
                [gg.subset_label(int(m), C) for m in gg.subset_mask(subsets)],
                {"long_name": "set of contexts", "units": "1"},
            ),
            "node": (
                "node",
                [v for l in range(depth) for v in layer_nodes[l]],
                {"long_name": "ReLN hidden node", "units": "1"},
            ),
        },
    )


# ----------------------------------------------------------------------------- the study


def strongest_pathways(ds: xr.Dataset, n: int) -> xr.Dataset:
    """A cell's Dataset with only its ``n`` strongest pathways (by the ReLU net's top singular
    value at the last time), on an integer ``pathway`` index (0 = strongest) and with their
    labels in ``pathway_label``: pathway labels differ from cell to cell, so the combined
    Dataset would otherwise carry the union of all of them (thousands at depth 2)."""
    final = ds.sv_relu.isel(time=-1, sv=0).fillna(-np.inf).values
    keep = np.argsort(-final, kind="stable")[:n]
    out = ds.isel(pathway=keep)
    labels = [str(p).split(":", 1)[1] for p in out.pathway.values]
    out = out.assign_coords(
        pathway=(
            "pathway",
            np.arange(len(keep)),
            {"long_name": "ReLN pathway, by final ReLU strength (0 = strongest)", "units": "1"},
        )
    )
    out["pathway_label"] = _var(labels, ("pathway",), "context sets of the pathway's nodes")
    return out


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
        prepare=lambda cell: strongest_pathways(cell, config.n_pathways),
    )
    return describe(result, config)


def describe(result: SweepResult, config: Config) -> xr.Dataset:
    """The combined Dataset of a sweep with its coordinate and provenance attrs."""
    ds = result.dataset
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
        cells_computed=len(result.computed),
        cells_reused=len(result.reused),
    )
    return io.finalize(ds, NAME, config)


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
                "rel_l2_loss_aligned",
                "rel_l2_log_loss_aligned",
                "rel_l2_loss_scheduled",
                "rel_l2_log_loss_scheduled",
                "mixed_selectivity",
            ):
                v = cell[name].values if name in cell else np.array(np.nan)
                if np.isfinite(v).any():
                    out[f"{name}_C{C}_depth{D}"] = float(np.nanmean(v))
                    out[f"{name}_C{C}_depth{D}_std"] = float(np.nanstd(v))
    if 3 in ds.context_count.values:
        for D in ds.depth.values:
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


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """Loss curves, pathway singular values, census bars and representation similarity."""
    figs: dict[str, Figure] = {}
    Cs, Ds = list(ds.context_count.values), list(ds.depth.values)
    seed0 = ds.seed.values[0]
    fig, axes = plt.subplots(len(Ds), len(Cs), figsize=(3.6 * len(Cs), 3 * len(Ds)), squeeze=False)
    for i, D in enumerate(Ds):
        for j, C in enumerate(Cs):
            ax = axes[i, j]
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
                    label="ReLN (integrate)" if s == seed0 else None,
                )
                for name, color, ls, label in (
                    ("loss_aligned", "C2", ":", "ReLN (aligned start)"),
                    ("loss_scheduled", "C3", "-.", "ReLN (gates over time)"),
                ):
                    if name not in cell:  # files written before the variant existed
                        continue
                    curve = _last_valid(cell[name].sel(seed=s))
                    if curve.size:
                        ax.plot(
                            curve.time,
                            curve,
                            color=color,
                            ls=ls,
                            lw=1,
                            label=label if s == seed0 else None,
                        )
            ax.set_yscale("log")
            title = f"C={C}, depth {D}: rel L2 {float(cell.rel_l2_loss.mean()):.3f}"
            aligned = cell.get("rel_l2_loss_aligned", xr.DataArray(np.nan)).values
            if np.isfinite(aligned).any():
                title += f" (aligned {np.nanmean(aligned):.3f})"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("t (mean-loss clock)")
            ax.set_ylabel("mean loss")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    figs["loss"] = fig

    fig, axes = plt.subplots(len(Ds), len(Cs), figsize=(3.6 * len(Cs), 3 * len(Ds)), squeeze=False)
    for i, D in enumerate(Ds):
        for j, C in enumerate(Cs):
            ax = axes[i, j]
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

    panels = [(D, l) for D in Ds for l in range(1, int(D) + 1)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (D, l) in zip(axes[0], panels, strict=True):
        for j, C in enumerate(Cs):
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
