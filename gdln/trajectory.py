"""One result type for every prediction: ``closed_form``, ``reduce``, ``integrate`` and
``pathway_flow`` (and the gradient-descent simulation) all return a :class:`Trajectory`, so a
study can swap them; :func:`check_times` is their one check of the record times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from gdln.network import Array, Network

TIME_LONG_NAME = "time t (mean-loss gradient-flow clock; k GD steps of size eta sit at t = k eta)"


@dataclass
class Trajectory:
    """A learning trajectory sampled at ``time``.

    Attributes:
        time: (time,)
        loss: (time,)  mean loss L(t).
        method: "closed_form", "reduce", "integrate" or "gradient_descent".
        tau: time constant of the flow, tau dW/dt = -dL/dW.
        mode_strength: (time, mode, path) or None: u_{p,alpha}(t), the strength of path p in mode
            alpha (for a network, diag(U_v^T W_p V_u); in the reduction, prod_{e in p} B_e).
        edge_strength: (time, mode, edge) or None: B_{e,alpha}(t), the diagonal of U^T W_e V.
        weights: {edge: (time, n_target, n_source)} or None.
        paths: labels of the ``path`` coordinate.
        edges: labels of the ``edge`` coordinate.
        network: the architecture, when the trajectory is of a network (needed for W_eff).
        attrs: extra netCDF-safe attrs (e.g. the ODE solver's tolerances).
    """

    time: Array
    loss: Array
    method: str
    tau: float = 1.0
    mode_strength: Array | None = None
    edge_strength: Array | None = None
    weights: dict[str, Array] | None = None
    paths: tuple[str, ...] = ()
    edges: tuple[str, ...] = ()
    network: Network | None = None
    attrs: dict[str, str | float | int] = field(default_factory=dict)

    def weights_at(self, k: int) -> dict[str, Array]:
        """The weights at the k-th time point."""
        if self.weights is None:
            raise ValueError(f"this {self.method} trajectory carries no weights")
        return {name: w[k] for name, w in self.weights.items()}

    def effective_map(
        self, gates: Mapping[str, Array] | None = None, n_samples: int = 1
    ) -> dict[tuple[str, str], Array]:
        """W_eff(x, t) = sum_p g_p(x) W_p(t) for every (output, input) node pair:
        ``{(v, u): array (time, sample, n_v, n_u)}``."""
        if self.network is None or self.weights is None:
            raise ValueError(f"this {self.method} trajectory has no network weights for W_eff")
        maps = [
            self.network.effective_map(self.weights_at(k), gates, n_samples)
            for k in range(len(self.time))
        ]
        return {key: np.stack([m[key] for m in maps]) for key in maps[0]}

    def function(
        self, X: Mapping[str, Array] | Array, gates: Mapping[str, Array] | None = None
    ) -> dict[str, Array]:
        """The network's outputs f(x, t) for a batch: ``{v: array (time, sample, n_v)}``."""
        if self.network is None or self.weights is None:
            raise ValueError(f"this {self.method} trajectory has no network weights")
        net = self.network
        outs = [net.forward(self.weights_at(k), X, gates) for k in range(len(self.time))]
        return {v: np.stack([o[v] for o in outs]) for v in net.outputs}

    def to_dataset(self, include_weights: bool = False) -> xr.Dataset:
        """The trajectory as a Dataset: dims ``time``, ``mode``, ``path``, ``edge`` (and
        ``<edge>_row``, ``<edge>_col`` for weights); every variable has long_name and units."""
        coords = {"time": ("time", self.time, {"long_name": TIME_LONG_NAME, "units": "1"})}
        loss_name = self.attrs.get("loss", "squared_error")
        data = {
            "loss": (
                "time",
                self.loss,
                {
                    "long_name": f"mean training loss L ({loss_name})",
                    "units": "1",
                },
            )
        }
        if self.mode_strength is not None:
            coords["mode"] = (
                "mode",
                np.arange(self.mode_strength.shape[1]),
                {"long_name": "singular mode index", "units": "1"},
            )
            coords["path"] = (
                "path",
                list(self.paths),
                {"long_name": "path (edges in order)", "units": "1"},
            )
            data["mode_strength"] = (
                ("time", "mode", "path"),
                self.mode_strength,
                {
                    "long_name": "path mode strength u_p (singular value of W_p in the mode)",
                    "units": "1",
                },
            )
        if self.edge_strength is not None:
            coords["edge"] = (
                "edge",
                list(self.edges),
                {"long_name": "edge (weight matrix)", "units": "1"},
            )
            data["edge_strength"] = (
                ("time", "mode", "edge"),
                self.edge_strength,
                {"long_name": "edge mode strength B_e (diagonal of U^T W_e V)", "units": "1"},
            )
        if include_weights and self.weights is not None:
            for name, w in self.weights.items():
                data[f"W_{name}"] = (
                    ("time", f"{name}_row", f"{name}_col"),
                    w,
                    {"long_name": f"weight matrix W_{name}", "units": "1"},
                )
        attrs = {"method": self.method, "tau": float(self.tau), **self.attrs}
        return xr.Dataset(data, coords=coords, attrs=attrs)


def check_times(times: Sequence[float] | Array, tau: float) -> Array:
    """Record times as a float array (non-empty, finite, increasing, from t >= 0); tau > 0."""
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be positive, got {tau}")
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError("times must be a non-empty 1-d array of finite numbers")
    if times[0] < 0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be increasing and start at t >= 0")
    return times
