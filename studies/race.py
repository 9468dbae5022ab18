"""The neural race in a routing network: reduced GDLN theory vs gradient descent.

Saxe, Sodhani, Lewallen (ICML 2022), routing experiment: M input domains, each an input module
4 -> 64 reading one-hot items; one shared 64 -> 64 layer; M output modules 64 -> 7. Each input
domain is gated to K of the M output domains (here the cyclic routes {m, m+1, ..., m+K-1} mod M),
and every trained route has the same target, a small hierarchy over the 4 items
(docs/theory/gated-networks.md, section "The routing network"). A sample is one (domain, item)
pair: P = 4 M samples; node gates switch on its input domain and its K output domains (pathway
gates).

Theory: the reduced ODE per mode and path (``gdln.reduce``) from the aligned initial condition of
scale b (every edge has strength b in every mode). Experiment: full-batch gradient descent in numpy
on the same gated network, from the aligned initial condition and from random (semi-)orthogonal
weights with gain b. Clock: mean loss over the P samples, t = steps x eta (docs/design.md,
section "Time"). The paper's SGD (lr 0.02, 500 epochs of P = 28 single samples) would span
t = 280 on this clock; with the mean loss every mode is learned by t ~ 30 from scale 0.08, so the
presets stop at t = 40. Gradient descent is the Euler discretisation of the flow: its loss curve
differs from the flow's by O(eta) (measured: relative L2 error 0.042 / 0.022 / 0.011 at
eta = 0.02 / 0.01 / 0.005 from the aligned scale-0.08 start), hence eta = 0.005 in the paper
preset.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

import gdln
from gdln.routing_task import HIERARCHY, RoutingTask, routing_task
from studies import io
from studies.config import check_numbers

NAME = "race"

LAYERS = ("input_module", "shared", "output_module")


@dataclass(frozen=True)
class Config:
    """Routing-network race. ``init_scales``: aligned-init scale b (and orthogonal gain);
    ``t_max`` in the mean-loss clock (a whole number of steps); ``eta``: gradient-descent step;
    ``n_times``: records, evenly spread over the steps, the last at ``t_max``."""

    seed: int = 0
    n_domains: int = 7
    n_routes: int = 4
    hidden: int = 64
    init_scales: tuple[float, ...] = (0.08, 0.2, 2.0)
    t_max: float = 40.0
    eta: float = 0.005
    n_times: int = 2001

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("eta", "t_max", "init_scales"),
            counts=("n_domains", "n_routes", "hidden", "n_times"),
        )
        if not 1 <= self.n_routes <= self.n_domains:
            raise ValueError(f"need 1 <= n_routes <= n_domains, got {self.n_routes}")
        if self.hidden < HIERARCHY.shape[1]:
            raise ValueError(f"hidden must be >= {HIERARCHY.shape[1]} (the number of modes)")
        if self.n_times < 2:
            raise ValueError(f"n_times must be >= 2, got {self.n_times}")
        if abs(self.n_steps * self.eta - self.t_max) > 1e-9 * self.t_max:
            raise ValueError(
                f"t_max = {self.t_max} is not a whole number of steps eta = {self.eta} "
                f"(t_max / eta = {self.t_max / self.eta:.6g})"
            )

    @property
    def n_steps(self) -> int:
        """Gradient-descent steps to t_max."""
        return round(self.t_max / self.eta)

    def record_steps(self) -> np.ndarray:
        """The steps recorded: n_times evenly spread from 0 to n_steps (fewer if there are
        fewer steps), so the last record is at t_max."""
        return np.unique(np.round(np.linspace(0, self.n_steps, self.n_times)).astype(int))


PRESETS = {
    "quick": Config(init_scales=(0.08, 2.0), eta=0.02, n_times=401),
    "paper": Config(),
}


def routing(config: Config) -> RoutingTask:
    """The routing network and its data at the config's sizes (:mod:`gdln.routing_task`)."""
    return routing_task(config.n_domains, config.n_routes, config.hidden)


def orthogonal_init(net: gdln.Network, gain: float, rng: np.random.Generator) -> dict:
    """W_e = gain * Q_e with Q_e a random matrix with orthonormal rows or columns."""
    out = {}
    for name in net.edges:
        rows, cols = net.weight_shape(name)
        q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
        q = q * np.sign(np.diag(r))
        out[name] = gain * (q if rows >= cols else q.T)
    return out


def relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b||_2 / ||b||_2 over a shared time grid."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _routed_mean(task: RoutingTask, strength: np.ndarray) -> np.ndarray:
    """Mean over trained routes of path mode strengths (..., mode, path) -> (..., mode)."""
    return strength[..., task.routed_paths()].mean(axis=-1)


def _layer_mean(net: gdln.Network, strength: np.ndarray) -> np.ndarray:
    """Edge mode strengths (..., mode, edge) averaged per layer kind -> (..., mode, layer)."""
    names = list(net.edges)
    groups = [
        [k for k, n in enumerate(names) if n.startswith("in")],
        [names.index("shared")],
        [k for k, n in enumerate(names) if n.startswith("out")],
    ]
    return np.stack([strength[..., g].mean(axis=-1) for g in groups], axis=-1)


def half_time(times: np.ndarray, loss: np.ndarray) -> float:
    """First recorded time at which the loss is at most half its initial value (NaN if never)."""
    below = np.flatnonzero(loss <= 0.5 * loss[0])
    return float(times[below[0]]) if below.size else float("nan")


def run(config: Config) -> xr.Dataset:
    """Reduced theory vs gradient descent at every init scale, from aligned and orthogonal init."""
    task = routing(config)
    net, X, Y, gates = task.network, task.X, task.Y, task.gates
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, X, Y, gates), seed=config.seed)
    record = config.record_steps()
    times = config.eta * record
    rng = np.random.default_rng(config.seed)
    inits = ("aligned", "orthogonal")
    n_scale, n_modes = len(config.init_scales), modes.n_modes
    loss_gd = np.empty((2, n_scale, len(times)))
    loss_th = np.empty((n_scale, len(times)))
    u_gd = np.empty((2, n_scale, len(times), n_modes))
    u_th = np.empty((n_scale, len(times), n_modes))
    b_th = np.empty((n_scale, len(times), n_modes, len(LAYERS)))
    for i, scale in enumerate(config.init_scales):
        aligned = gdln.aligned_init(net, modes, scale)
        theory = gdln.reduce(net, modes, aligned, times, with_weights=False)
        loss_th[i] = theory.loss
        u_th[i] = _routed_mean(task, theory.mode_strength)
        b_th[i] = _layer_mean(net, theory.edge_strength)
        for k, init in enumerate((aligned, orthogonal_init(net, scale, rng))):
            gd = gdln.gradient_descent(
                net, X, Y, init, config.eta, config.n_steps, gates, modes=modes,
                record_steps=record,
            )  # fmt: skip
            loss_gd[k, i] = gd.loss
            u_gd[k, i] = _routed_mean(task, gd.mode_strength)
    first = task.routed_paths()[0]
    final = modes.S[:, first] / modes.D[:, first, first]
    ds = xr.Dataset(
        {
            "loss_gd": (
                ("init", "init_scale", "time"),
                loss_gd,
                {"long_name": "loss, gradient descent (mean squared error)", "units": "1"},
            ),
            "loss_theory": (
                ("init_scale", "time"),
                loss_th,
                {"long_name": "loss, reduced GDLN theory (neural race ODE)", "units": "1"},
            ),
            "mode_strength_gd": (
                ("init", "init_scale", "time", "mode"),
                u_gd,
                {"long_name": "mode strength of trained routes, gradient descent", "units": "1"},
            ),
            "mode_strength_theory": (
                ("init_scale", "time", "mode"),
                u_th,
                {"long_name": "mode strength of trained routes, reduced theory", "units": "1"},
            ),
            "edge_strength_theory": (
                ("init_scale", "time", "mode", "layer"),
                b_th,
                {
                    "long_name": "edge mode strength B_e per layer kind, reduced theory",
                    "units": "1",
                },
            ),
            "t_half_gd": (
                ("init", "init_scale"),
                np.array(
                    [[half_time(times, loss_gd[k, i]) for i in range(n_scale)] for k in range(2)]
                ),
                {"long_name": "time at which the GD loss first halves", "units": "1"},
            ),
            "t_half_theory": (
                "init_scale",
                np.array([half_time(times, loss_th[i]) for i in range(n_scale)]),
                {"long_name": "time at which the theory's loss first halves", "units": "1"},
            ),
            "mode_target": (
                "mode",
                final,
                {"long_name": "final path mode strength s/d (singular value of Y^T)", "units": "1"},
            ),
            "rel_l2_error": (
                ("init", "init_scale"),
                np.array(
                    [
                        [relative_l2(loss_th[i], loss_gd[k, i]) for i in range(n_scale)]
                        for k in range(2)
                    ]
                ),
                {"long_name": "relative L2 error ||L_theory - L_gd|| / ||L_gd||", "units": "1"},
            ),
        },
        coords={
            "time": ("time", times, {"long_name": gdln.trajectory.TIME_LONG_NAME, "units": "1"}),
            "init_scale": (
                "init_scale",
                np.asarray(config.init_scales, dtype=np.float64),
                {"long_name": "initial scale b (aligned strength / orthogonal gain)", "units": "1"},
            ),
            "init": ("init", list(inits), {"long_name": "initial condition", "units": "1"}),
            "mode": ("mode", np.arange(n_modes), {"long_name": "singular mode", "units": "1"}),
            "layer": ("layer", list(LAYERS), {"long_name": "layer of the route", "units": "1"}),
        },
        attrs={
            "clock": "mean loss over P samples; t = steps x eta; tau = 1",
            "n_samples": int(next(iter(X.values())).shape[0]),
            "eta": config.eta,
            "diagonalisation_residual": modes.residual,
        },
    )
    return io.finalize(ds, NAME, config)


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """``loss``: GD (aligned, orthogonal init) vs reduced theory per init scale; ``modes``: mode
    strengths of the trained routes. Time axes are linear up to t = 1, logarithmic beyond, so the
    fast large-scale (lazy) runs and the slow small-scale (rich) runs show on one axis."""
    scales = ds.init_scale.values
    size = (4.4 * len(scales), 3.8)
    fig_loss, axes = plt.subplots(1, len(scales), figsize=size, squeeze=False)
    for ax, b in zip(axes[0], scales, strict=True):
        cell = ds.sel(init_scale=b)
        ax.plot(ds.time, cell.loss_gd.sel(init="aligned"), label="GD, aligned init")
        ax.plot(ds.time, cell.loss_gd.sel(init="orthogonal"), label="GD, orthogonal init")
        ax.plot(ds.time, cell.loss_theory, "k--", label="reduced theory (aligned)")
        ax.set_title(f"init scale {b:g}")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(0.0, float(ds.time[-1]))
        ax.set_xlabel("t")
        ax.set_ylabel("mean loss L")
    axes[0][0].legend()
    fig_loss.tight_layout()
    fig_modes, axes = plt.subplots(1, len(scales), figsize=size, squeeze=False)
    for ax, b in zip(axes[0], scales, strict=True):
        cell = ds.sel(init_scale=b)
        for a in ds.mode.values:
            color = f"C{int(a)}"
            gd = cell.mode_strength_gd.sel(mode=a)
            ax.plot(ds.time, gd.sel(init="aligned"), color=color, label=f"mode {int(a)}")
            ax.plot(ds.time, gd.sel(init="orthogonal"), color=color, alpha=0.4, lw=0.8)
            ax.plot(ds.time, cell.mode_strength_theory.sel(mode=a), "--", color="k", lw=0.8)
            ax.axhline(float(ds.mode_target.sel(mode=a)), color=color, ls=":", lw=0.8)
        ax.set_title(f"init scale {b:g}")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(0.0, float(ds.time[-1]))
        ax.set_xlabel("t")
        ax.set_ylabel("mode strength u of trained routes")
    axes[0][0].legend(
        title="GD aligned (solid), orthogonal (faint),\ntheory (dashed)",
        fontsize=7,
        title_fontsize=7,
    )
    fig_modes.tight_layout()
    return {"loss": fig_loss, "modes": fig_modes}


def summary(ds: xr.Dataset) -> dict[str, float | str]:
    """Relative L2 errors of the theory's loss curve against GD, and the times at which the loss
    first halves, per init and scale."""
    out: dict[str, float | str] = {}
    for b in ds.init_scale.values:
        out[f"t_half_theory_scale_{b:g}"] = float(ds.t_half_theory.sel(init_scale=b))
        for init in ds.init.values:
            cell = ds.sel(init=init, init_scale=b)
            out[f"rel_l2_{init}_scale_{b:g}"] = float(cell.rel_l2_error)
            out[f"t_half_gd_{init}_scale_{b:g}"] = float(cell.t_half_gd)
    return out
