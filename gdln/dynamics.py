"""Exact learning dynamics of a GDLN: matrix gradient flow and its gradient-descent discretisation.

Gradient flow (Saxe et al. 2022, eq. 4, on the toolkit's clock: the mean loss, so that k
gradient-descent steps of size eta sit at t = k eta):

    tau dW_e/dt = -dL/dW_e,     L = (1/2P) sum_i sum_{v in outputs} ||y_{v,i} - h_{v,i}||^2,

and gradient descent W <- W - (eta / tau) dL/dW is its Euler scheme.

Two equal forms of -dL/dW_e are available:

- ``form="layers"`` (default): back-propagation through the gated layers, vectorised over samples.
  Forward h_v = g_v * sum_e g_e W_e h_s; backward delta_v = dL/dh_v, with
  dL/dW_e = (g_e g_v delta_v)^T h_s and delta_s += (g_e g_v delta_v) W_e. Per-unit node gates
  (ReLU activation patterns) are masks here: nothing enumerates per-unit paths. A *complete
  layered* network (``Network.layers``: a chain, or the ReLN of an MLP with grouped units)
  without edge gates is run as the MLP it is: each layer's nodes stacked into one dense
  weight matrix, node gates spread over their units, one matrix product per layer; with fewer
  inputs than samples, the first-layer units active on every sample run through the inputs
  (``_Problem._input_factor``).
- ``form="paths"``: the path-sum form of Saxe et al. 2022 from the gated correlations
  (``gdln.correlations.path_gradient``); its cost does not grow with the number of samples, but
  it needs per-sample (pathway) gates and the squared error.

Gates may change over time, at given times (:class:`gdln.schedule.GateSchedule`) or by a rule
read from the weights at every record (``gate_rule``: gates that follow the network's own
state), and a callback may see the weights at every record, so that long runs of wide networks
need not keep them all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np

from gdln.correlations import gated_correlations, path_gradient
from gdln.losses import Loss, SquaredError
from gdln.network import Array, Network, _as_column
from gdln.ode import DivergenceError, check_solver, solve_flow
from gdln.reduction import ModeBasis, project
from gdln.schedule import GateSchedule
from gdln.threads import blas_threads
from gdln.trajectory import Trajectory, check_times

Gates = Mapping[str, Array]
Callback = Callable[[int, float, dict[str, Array]], None]
GateRule = Callable[[float, dict[str, Array]], Gates]

__all__ = [
    "Callback",
    "DivergenceError",
    "GateRule",
    "gradient_descent",
    "integrate",
    "loss_gradient",
]


class _Layout:
    """Where each edge's weight lives in the flat parameter vector theta.

    For a complete layered network (``Network.layers``) theta holds one dense matrix per layer,
    (n_{k+1} stacked, n_k stacked), whose blocks are the edge weights; otherwise one block per
    edge.

    Input kernel (dense layout, few samples, ungated inputs): the first layer's gradient
    -dL/dW_1 = -delta_1^T X always lies in the row space of the P inputs, so
    W_1(t) = W_1(0) + Phi(t) X exactly, and theta holds Phi^T (P, n_1) instead of W_1 (n_1, d).
    Its pre-activations are X W_1^T = X W_1(0)^T + K Phi^T with K = X X^T, and -dL/dPhi^T =
    -delta_1 needs no product at all: the first layer costs P^2 n_1 multiply-adds per
    evaluation instead of 2 P d n_1, a saving when P < 2 d (used for P <= 1.5 d).

    ``dtype``: the arithmetic of the dense form's products (float64, or float32 for gradient
    descent); theta itself (``pack``, ``unpack``) is float64.
    """

    def __init__(
        self,
        network: Network,
        dense: bool,
        kernel_inputs: Array | None = None,
        reference: Mapping[str, Array] | None = None,
        dtype: type[np.floating] = np.float64,
    ) -> None:
        self.net = network
        self.dense = dense
        self.dtype = dtype
        self.blocks: dict[str, tuple[int, slice, slice]] = {}
        self.matrices: list[tuple[slice, tuple[int, int]]] = []
        self.kernel = dense and kernel_inputs is not None
        offset = 0
        if dense:
            layers = network.layers
            assert layers is not None
            self.offsets = [self._offsets(layer) for layer in layers]
            self.widths = [sum(network.sizes[v] for v in layer) for layer in layers]
            for k in range(len(layers) - 1):
                shape = (self.widths[k + 1], self.widths[k])
                if k == 0 and self.kernel:
                    shape = (kernel_inputs.shape[0], self.widths[1])  # Phi^T
                self.matrices.append((slice(offset, offset + shape[0] * shape[1]), shape))
                offset += shape[0] * shape[1]
                for e in network.edges.values():
                    if e.source in self.offsets[k] and e.target in self.offsets[k + 1]:
                        rows, cols = self.offsets[k + 1][e.target], self.offsets[k][e.source]
                        self.blocks[e.name] = (k, rows, cols)
        else:
            for name in network.edges:
                shape = network.weight_shape(name)
                self.matrices.append((slice(offset, offset + shape[0] * shape[1]), shape))
                self.blocks[name] = (len(self.matrices) - 1, slice(None), slice(None))
                offset += shape[0] * shape[1]
        self.size = offset
        if self.kernel:
            assert reference is not None
            self.x0 = kernel_inputs
            self.W1_ref = np.zeros((self.widths[1], self.widths[0]))
            for name, (k, rows, cols) in self.blocks.items():
                if k == 0:
                    self.W1_ref[rows, cols] = reference[name]
            self.K = (self.x0 @ self.x0.T).astype(dtype, copy=False)
            self.A0 = (self.x0 @ self.W1_ref.T).astype(dtype, copy=False)

    def _offsets(self, layer: tuple[str, ...]) -> dict[str, slice]:
        out, start = {}, 0
        for v in layer:
            out[v] = slice(start, start + self.net.sizes[v])
            start += self.net.sizes[v]
        return out

    def views(self, theta: Array) -> list[Array]:
        """The matrices of theta (views, no copy)."""
        return [theta[sl].reshape(shape) for sl, shape in self.matrices]

    def pack(self, weights: Mapping[str, Array]) -> Array:
        """theta of the weights (with the input kernel: of the reference weights, Phi = 0)."""
        theta = np.zeros(self.size)
        mats = self.views(theta)
        for name, (k, rows, cols) in self.blocks.items():
            if not (k == 0 and self.kernel):
                mats[k][rows, cols] = weights[name]
        return theta

    def unpack(self, theta: Array, direction: bool = False) -> dict[str, Array]:
        """{edge: weight} (copies) of a state theta, or of a direction (a gradient) of it."""
        mats = self.views(theta)
        if self.kernel:
            mats[0] = mats[0].T @ self.x0 + (0.0 if direction else self.W1_ref)
        return {name: mats[k][rows, cols].copy() for name, (k, rows, cols) in self.blocks.items()}

    @classmethod
    def choose(
        cls,
        network: Network,
        x: Mapping[str, Array],
        gate_names: set[str],
        form: str,
        reference: Mapping[str, Array],
        dtype: type[np.floating] = np.float64,
    ) -> _Layout:
        """The fastest exact layout: dense if the network is complete layered (layers form, no
        edge gates), with the input kernel if moreover the inputs are ungated and few."""
        dense = _can_be_dense(network, gate_names, form)
        if dtype is not np.float64 and not dense:
            raise ValueError(
                f"dtype {np.dtype(dtype).name} needs the dense layer form (a complete layered "
                "network, form='layers', no edge gates); this network runs in float64 only"
            )
        if not dense or gate_names & set(network.inputs):
            return cls(network, dense, dtype=dtype)
        layers = network.layers
        assert layers is not None
        x0 = np.concatenate([x[u] for u in layers[0]], axis=1)
        n_samples, d = x0.shape
        if n_samples <= min(1.5 * d, MAX_KERNEL_SAMPLES):
            return cls(network, dense, x0, reference, dtype)
        return cls(network, dense, dtype=dtype)


#: the input kernel K = X X^T is (P, P): not for more samples than this
MAX_KERNEL_SAMPLES = 4096
#: the input factor of always-on units must save this fraction of the multiply-adds of the
#: products through the first hidden layer (``_Problem._input_factor``)
MIN_FACTOR_SAVING = 0.25


class _Problem:
    """Checked data, one gating, and the fast -dL/dtheta on the flat parameters theta."""

    def __init__(
        self,
        network: Network,
        X: Mapping[str, Array] | Array,
        Y: Mapping[str, Array] | Array,
        gates: Gates | None,
        loss: Loss,
        form: Literal["layers", "paths"],
        layout: _Layout | None = None,
    ) -> None:
        self.net = network
        self.x = network.check_inputs(X)
        self.y = network.check_targets(Y)
        self.n_samples = next(iter(self.x.values())).shape[0]
        if next(iter(self.y.values())).shape[0] != self.n_samples:
            raise ValueError("inputs and targets have different numbers of samples")
        self.g = network.check_gates(gates, self.n_samples)
        self.loss = loss
        if form not in ("layers", "paths"):
            raise ValueError(f"form must be 'layers' or 'paths', got {form!r}")
        self.form = form
        if form == "paths":
            if not isinstance(loss, SquaredError):
                raise ValueError("form='paths' holds for the squared error only; use 'layers'")
            self.corr = gated_correlations(network, self.x, self.y, self.g)
        self.layout = layout or _Layout(network, _can_be_dense(network, set(self.g), form))
        largest = max(shape[0] * shape[1] for _, shape in self.layout.matrices)
        self.work = largest * (self.n_samples if form == "layers" else max(network.sizes.values()))
        if self.layout.dense:
            self._dense_data()

    def _dense_data(self) -> None:
        """Stacked inputs and targets, and per-unit gates (sample, width) per layer (None if
        the whole layer is ungated)."""
        net, layers = self.net, self.net.layers
        assert layers is not None
        dtype = self.layout.dtype
        self.x0 = np.concatenate([self.x[u] for u in layers[0]], axis=1).astype(dtype, copy=False)
        self.y = {v: y.astype(dtype, copy=False) for v, y in self.y.items()}
        self.gate: list[Array | None] = []
        for layer in layers:
            if not any(v in self.g for v in layer):
                self.gate.append(None)
                continue
            g = np.concatenate(
                [
                    np.broadcast_to(_as_column(self.g[v]), (self.n_samples, net.sizes[v]))
                    if v in self.g
                    else np.ones((self.n_samples, net.sizes[v]))
                    for v in layer
                ],
                axis=1,
            )
            self.gate.append(g.astype(dtype, copy=False))
        if self.gate[0] is not None:
            self.x0 = self.x0 * self.gate[0]
        self.out_slices = self.layout.offsets[-1]
        widths = self.layout.widths[1:]
        self._h = [np.empty((self.n_samples, w), dtype=dtype) for w in widths]
        self._delta = [np.empty((self.n_samples, w), dtype=dtype) for w in widths]
        self.factor = self._input_factor()
        if self.factor is not None:
            n_on = self.factor[0].stop - self.factor[0].start
            d = self.x0.shape[1]
            self._M = np.empty((d, widths[1]), dtype=dtype)  # (W_2[:, on] W_1[on])^T
            self._dW1_on = np.empty((d, n_on), dtype=dtype)

    def _input_factor(self) -> tuple[slice, list[slice]] | None:
        """The longest run of first-layer units that are active on every sample ("on"), and
        the first layer's other units as up to two runs, when products through "on" are
        cheaper in the input dimension than in the samples.

        On those units h_1 = W_1 x is linear, so every product through them factors through
        the d inputs (X: (P, d), D_2 the error signal of the next layer):

            H_1[:, on] W_2[:, on]^T = X (W_2[:, on] W_1[on])^T,
            -dL/dW_2[:, on] = D_2^T H_1[:, on] = (D_2^T X) W_1[on]^T,
            -dL/dW_1[on] = W_2[:, on]^T D_2^T X,

        d multiply-adds per weight of W_2[:, on] instead of P: used when that saves at least
        :data:`MIN_FACTOR_SAVING` of the products through the first layer (a twin of the
        context task: 11 inputs, 24 samples, 334 of 398 first-layer units always on)."""
        if self.layout.kernel or len(self.layout.matrices) < 2:
            return None
        if self.x0.shape[1] >= self.n_samples:
            return None
        width = self.layout.widths[1]
        g = self.gate[1]
        on = np.ones(width, dtype=bool) if g is None else np.all(g == 1.0, axis=0)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        if not edges.size:
            return None
        starts, stops = edges[::2], edges[1::2]
        longest = int(np.argmax(stops - starts))
        a, b = int(starts[longest]), int(stops[longest])
        d, P = self.x0.shape[1], self.n_samples
        if (b - a) * (P - d) < MIN_FACTOR_SAVING * width * P:
            return None  # a few scattered units: the extra products cost more than they save
        off = [s for s in (slice(0, a), slice(b, width)) if s.stop > s.start]
        return slice(a, b), off

    def pack(self, weights: Mapping[str, Array]) -> Array:
        return self.layout.pack(self.net.check_weights(weights))

    def unpack(self, theta: Array) -> dict[str, Array]:
        return self.layout.unpack(theta)

    def _dense_forward(self, mats: list[Array]) -> list[Array]:
        """Activities of every layer, in the problem's work buffers (overwritten by the next
        call: fresh arrays of this size would cost page faults at every evaluation). With the
        input factor (:meth:`_input_factor`) the first layer's always-on columns are not
        computed: nothing reads them."""
        h = [self.x0]
        for k, W in enumerate(mats):
            a = self._h[k]
            g = self.gate[k + 1]
            if self.factor is not None and k < 2:
                self._factored_forward(k, mats, a)
            elif k == 0 and self.layout.kernel:  # X W_1^T = X W_1(0)^T + K Phi^T
                np.matmul(self.layout.K, W, out=a)
                a += self.layout.A0
            else:
                np.matmul(h[-1], W.T, out=a)
            if g is not None and not (self.factor is not None and k == 0):
                a *= g
            h.append(a)
        return h

    def _factored_forward(self, k: int, mats: list[Array], a: Array) -> None:
        """Activities of hidden layer 1 (k = 0: only the columns of the units that are not
        always on, gated) or pre-activations of layer 2 (k = 1), with the always-on
        first-layer units factored through the inputs (:meth:`_input_factor`)."""
        on, off = self.factor
        W1 = mats[0]
        if k == 0:
            g = self.gate[1]
            for s in off:
                np.matmul(self.x0, W1[s].T, out=a[:, s])
                a[:, s] *= g[:, s]
            return
        W2, h1 = mats[1], self._h[0]
        np.matmul(W1[on].T, W2[:, on].T, out=self._M)
        np.matmul(self.x0, self._M, out=a)
        for s in off:
            a += h1[:, s] @ W2[:, s].T

    def _outputs(self, h_out: Array) -> dict[str, Array]:
        return {v: h_out[:, sl] for v, sl in self.out_slices.items()}

    def loss_at(self, theta: Array) -> float:
        """The mean loss at parameters theta."""
        if self.layout.dense:
            h_out = self._dense_forward(self.layout.views(theta))[-1]
            return self.loss.value(self._outputs(h_out), self.y)
        return self.loss_value(self.unpack(theta))

    def loss_value(self, W: Mapping[str, Array]) -> float:
        """The mean loss at edge weights W."""
        _, h = self.net._forward(W, self.x, self.g)
        return self.loss.value({v: h[v] for v in self.net.outputs}, self.y)

    def rhs(self, theta: Array, out: Array | None = None) -> Array:
        """-dL/dtheta, in ``out`` if given (else a fresh array)."""
        if not self.layout.dense:
            return self.layout.pack(self.descent(self.unpack(theta)))
        mats = self.layout.views(theta)
        h = self._dense_forward(mats)
        grads = self.loss.gradient(self._outputs(h[-1]), self.y)
        delta = self._delta[-1]
        for v, sl in self.out_slices.items():
            np.negative(grads[v], out=delta[:, sl])
        if not np.isfinite(delta.sum()):  # any NaN or inf in theta reaches the outputs
            raise DivergenceError("the outputs are NaN or inf: the weights diverged")
        out = np.empty_like(theta) if out is None else out
        dmats = self.layout.views(out)
        for k in range(len(mats) - 1, -1, -1):
            g = self.gate[k + 1]
            if g is not None:
                delta *= g
            if k == 1 and self.factor is not None:
                self._factored_backward(mats, dmats, h[1], delta)
                break
            if not (k == 0 and self.layout.kernel):  # there -dL/dPhi^T = -delta_1, in place
                np.matmul(delta.T, h[k], out=dmats[k])
            if k > 0:
                kernel_next = k == 1 and self.layout.kernel
                delta = np.matmul(
                    delta, mats[k], out=dmats[0] if kernel_next else self._delta[k - 1]
                )
        return out

    def _factored_backward(
        self, mats: list[Array], dmats: list[Array], h1: Array, delta: Array
    ) -> None:
        """-dL/dW_2 and -dL/dW_1 from the gated error signal ``delta`` of layer 2, the
        always-on first-layer units factored through the inputs (:meth:`_input_factor`)."""
        on, off = self.factor
        W1, W2, g = mats[0], mats[1], self.gate[1]
        E = delta.T @ self.x0  # D_2^T X
        np.matmul(E, W1[on].T, out=dmats[1][:, on])
        np.matmul(E.T, W2[:, on], out=self._dW1_on)
        dmats[0][on] = self._dW1_on.T
        for s in off:
            np.matmul(delta.T, h1[:, s], out=dmats[1][:, s])
            back = delta @ W2[:, s]
            if g is not None:
                back *= g[:, s]
            np.matmul(back.T, self.x0, out=dmats[0][s])

    def descent(self, W: Mapping[str, Array]) -> dict[str, Array]:
        """-dL/dW_e for every edge (edge by edge; see ``rhs`` for the flat form)."""
        if self.form == "paths":
            return path_gradient(self.net, self.corr, W)
        net, g = self.net, self.g
        _, h = net._forward(W, self.x, g)
        delta = self.loss.gradient({v: h[v] for v in net.outputs}, self.y)
        out: dict[str, Array] = {}
        for v in reversed(net.order):
            if v in net.inputs or v not in delta:
                continue
            dv = delta[v] * _as_column(g[v]) if v in g else delta[v]
            for e in net.incoming(v):
                de = dv * g[e.name][:, None] if e.name in g else dv
                out[e.name] = -(de.T @ h[e.source])
                if e.source in net.inputs:
                    continue  # no error signal is needed below an input node
                back = de @ W[e.name]
                delta[e.source] = delta[e.source] + back if e.source in delta else back
        for name in net.edges:
            out.setdefault(name, np.zeros(net.weight_shape(name)))
        return out


def _can_be_dense(network: Network, gate_names: set[str], form: str) -> bool:
    """The dense layer-by-layer form applies: layers form, complete layered, no edge gates."""
    return form == "layers" and network.layers is not None and not gate_names & set(network.edges)


def loss_gradient(
    network: Network,
    weights: Mapping[str, Array],
    X: Mapping[str, Array] | Array,
    Y: Mapping[str, Array] | Array,
    gates: Gates | None = None,
    loss: Loss | None = None,
    form: Literal["layers", "paths"] = "layers",
) -> dict[str, Array]:
    """dL/dW_e for every edge (see the module docstring for the two forms)."""
    problem = _Problem(network, X, Y, gates, loss or SquaredError(), form)
    descent = problem.layout.unpack(problem.rhs(problem.pack(weights)), direction=True)
    return {k: -v for k, v in descent.items()}


class _Gating:
    """The problems of a run, one per set of gates of the schedule (built when first needed),
    sharing one parameter layout."""

    def __init__(
        self,
        network: Network,
        X: Mapping[str, Array] | Array,
        Y: Mapping[str, Array] | Array,
        gates: Gates | None,
        schedule: GateSchedule | None,
        loss: Loss,
        form: Literal["layers", "paths"],
        initial: Mapping[str, Array],
        dtype: type[np.floating] = np.float64,
    ) -> None:
        if gates is not None and schedule is not None:
            raise ValueError("give constant gates or a gate schedule, not both")
        self.schedule = schedule or GateSchedule.constant(gates)
        self.args = (network, X, Y)
        self.loss, self.form = loss, form
        names = set().union(*(set(g) for g in self.schedule.gates))
        self.initial = network.check_weights(initial)
        x = network.check_inputs(X)
        self.layout = _Layout.choose(network, x, names, form, self.initial, dtype)
        self._problems: dict[int, _Problem] = {}
        self.problem(0)  # checks the arguments before any long work

    def problem(self, j: int) -> _Problem:
        if j not in self._problems:
            self._problems[j] = self.problem_for(self.schedule.gates[j])
        return self._problems[j]

    def problem_for(self, gates: Gates) -> _Problem:
        """The problem of other gates on the same names (those of a gate rule)."""
        if set(gates) != set(self.schedule.gates[0]):
            raise ValueError(
                f"a gate rule returned gates on {sorted(gates)}, not on the names of the "
                f"initial gates {sorted(self.schedule.gates[0])}"
            )
        return _Problem(*self.args, gates, self.loss, self.form, self.layout)


class _Switch(Exception):
    """Raised from a record to stop the solver where a gate rule changes the gates."""

    def __init__(self, k: int, theta: Array, gates: Gates) -> None:
        super().__init__(k)
        self.k, self.theta, self.gates = k, theta, gates


def _same_gates(a: Gates, b: Gates) -> bool:
    return set(a) == set(b) and all(np.array_equal(a[v], b[v]) for v in a)


class _Records:
    """Losses (and weights unless not kept) at the record times, and the callback."""

    def __init__(
        self, times: Array, layout: _Layout, callback: Callback | None, keep_weights: bool
    ) -> None:
        self.times, self.layout, self.callback = times, layout, callback
        self.loss = np.full(len(times), np.nan)
        self.weights: list[dict[str, Array] | None] | None = (
            [None] * len(times) if keep_weights else None
        )

    def __call__(
        self, k: int, theta: Array, problem: _Problem, master: Array | None = None
    ) -> None:
        """Record state theta (in the problem's dtype); weights from ``master``, its float64
        copy, if given."""
        self.loss[k] = problem.loss_at(theta)
        if self.weights is None and self.callback is None:
            return
        W = self.layout.unpack(theta if master is None else master)
        if self.weights is not None:
            self.weights[k] = W
        if self.callback is not None:
            self.callback(k, float(self.times[k]), W)

    def stacked(self, network: Network) -> dict[str, Array] | None:
        if self.weights is None:
            return None
        return {n: np.stack([w[n] for w in self.weights]) for n in network.edges}


def _trajectory(
    network: Network,
    times: Array,
    records: _Records,
    method: str,
    tau: float,
    modes: ModeBasis | None,
    attrs: dict[str, str | float | int],
) -> Trajectory:
    weights = records.stacked(network)
    mode_strength = edge_strength = None
    if modes is not None:
        if weights is None:
            raise ValueError("mode strengths need the weights: leave with_weights=True")
        edge_strength, mode_strength = project(network, modes, weights)
    return Trajectory(
        time=np.asarray(times, dtype=np.float64),
        loss=records.loss,
        method=method,
        tau=tau,
        mode_strength=mode_strength,
        edge_strength=edge_strength,
        weights=weights,
        paths=tuple(p.name for p in network.paths) if modes is not None else (),
        edges=tuple(network.edges),
        network=network,
        attrs=attrs,
    )


def integrate(
    network: Network,
    X: Mapping[str, Array] | Array,
    Y: Mapping[str, Array] | Array,
    initial: Mapping[str, Array],
    times: Sequence[float] | Array,
    gates: Gates | None = None,
    tau: float = 1.0,
    loss: Loss | None = None,
    form: Literal["layers", "paths"] = "layers",
    modes: ModeBasis | None = None,
    solver: str = "RK45",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    schedule: GateSchedule | None = None,
    callback: Callback | None = None,
    with_weights: bool = True,
    gate_rule: GateRule | None = None,
) -> Trajectory:
    """Integrate the exact gradient flow tau dW_e/dt = -dL/dW_e from ``initial`` at t = 0.

    Args:
        times: increasing times (from 0 or later) at which to record.
        initial: {edge: (n_target, n_source)}.
        gates: per-sample node/edge gates (node gates may be per unit), see ``gdln.network``; or
        schedule: gates that switch at given times (:class:`gdln.schedule.GateSchedule`); the
            solver restarts at every switch.
        form: "layers" (back-propagation, any gates) or "paths" (path-sum form, pathway gates).
        modes: a ``ModeBasis``; if given, the trajectory also carries mode strengths
            diag(U_v^T W_p V_u) per path and diag(U^T W_e V) per edge.
        solver: a ``scipy.integrate`` method (adaptive step size) or "RKC" (:mod:`gdln.rkc`;
            second order, for stiff late flows, with rtol around 1e-4).
        rtol: relative tolerance of the solver.
        atol: absolute tolerance of the solver.
        callback: called as ``callback(k, t_k, weights)`` at every record, in order.
        with_weights: keep the weights at every record in the trajectory (False: loss only, for
            long runs of wide networks; the callback still sees them).
        gate_rule: gates that follow the weights: ``gate_rule(t_k, weights)`` is called once at
            every record after the first and returns gates on the names of ``gates`` (those in
            force from t = 0). Where they differ from the gates in force, the solver stops at
            t_k and restarts from the weights there with the new gates, and the record at t_k
            sees them; between changes the flow is that of fixed gates, in one solver run.

    Returns a :class:`~gdln.trajectory.Trajectory` with loss, weights and (optionally) modes;
    ``attrs["nfev"]`` counts the evaluations of the right-hand side, ``attrs["gate_switches"]``
    the switches (of the schedule, or where the rule changed the gates).
    """
    times = check_times(times, tau)
    check_solver(solver)
    if gate_rule is not None and schedule is not None:
        raise ValueError("give a gate schedule or a gate rule, not both")
    gating = _Gating(network, X, Y, gates, schedule, loss or SquaredError(), form, initial)
    records = _Records(times, gating.layout, callback, with_weights)
    theta = gating.layout.pack(gating.initial)
    attrs = {"solver": solver, "rtol": rtol, "atol": atol, "form": form, "loss": gating.loss.name}

    def rhs_of(problem: _Problem) -> Callable[[Array], Array]:
        def rhs(theta: Array) -> Array:
            out = problem.rhs(theta)
            if tau != 1.0:
                out /= tau
            return out

        return rhs

    if gate_rule is not None:
        nfev, n_switches = _follow_rule(
            gating, records, theta, times, gate_rule, rhs_of, solver, rtol, atol
        )
        attrs |= {"nfev": nfev, "gate_switches": n_switches}
        return _trajectory(network, times, records, "integrate", tau, modes, attrs)
    owner = np.array([gating.schedule.piece_at(t) for t in times])
    nfev = 0
    for j, start, stop in gating.schedule.pieces(float(times[-1])):
        problem = gating.problem(j)
        own = np.flatnonzero(owner == j)  # the records that see this piece's gates
        local = times[own] - start
        if not own.size or local[-1] < stop - start:
            local = np.append(local, stop - start)  # carry the state to the next switch
        end: list[Array] = []

        def record(
            i: int,
            state: Array,
            problem: _Problem = problem,
            own: Array = own,
            end: list = end,
            last: int = local.size - 1,
        ) -> None:
            if i < own.size:
                records(int(own[i]), state, problem)
            if i == last:
                end.append(state.copy())  # the solver may reuse the buffer

        with blas_threads(problem.work):
            nfev += solve_flow(rhs_of(problem), theta, local, record, solver, rtol, atol)
        theta = end[-1]
    attrs |= {"nfev": nfev, "gate_switches": len(gating.schedule.switch_times)}
    return _trajectory(network, times, records, "integrate", tau, modes, attrs)


def _follow_rule(
    gating: _Gating,
    records: _Records,
    theta: Array,
    times: Array,
    gate_rule: GateRule,
    rhs_of: Callable[[_Problem], Callable[[Array], Array]],
    solver: str,
    rtol: float,
    atol: float,
) -> tuple[int, int]:
    """The flow of ``integrate`` under a gate rule: one solver run per stretch of unchanged
    gates, restarted at the record where the rule changes them. Returns (evaluations,
    switches)."""
    k0, gates, problem = 0, gating.schedule.gates[0], gating.problem(0)
    nfev = n_switches = 0

    def counted(rhs: Callable[[Array], Array]) -> Callable[[Array], Array]:
        def f(theta: Array) -> Array:  # a run stopped at a switch returns no count
            nonlocal nfev
            nfev += 1
            return rhs(theta)

        return f

    while True:

        def record(
            i: int, state: Array, k0: int = k0, gates: Gates = gates, problem: _Problem = problem
        ) -> None:
            k = k0 + i
            if i:
                new = gate_rule(float(times[k]), gating.layout.unpack(state))
                if not _same_gates(new, gates):
                    raise _Switch(k, state.copy(), new)
            records(k, state, problem)

        try:
            with blas_threads(problem.work):
                solve_flow(
                    counted(rhs_of(problem)), theta, times[k0:] - times[k0], record, solver,
                    rtol, atol,
                )  # fmt: skip
            return nfev, n_switches
        except _Switch as switch:
            k0, theta, gates = switch.k, switch.theta, switch.gates
            problem = gating.problem_for(gates)
            n_switches += 1


def gradient_descent(
    network: Network,
    X: Mapping[str, Array] | Array,
    Y: Mapping[str, Array] | Array,
    initial: Mapping[str, Array],
    eta: float,
    n_steps: int,
    gates: Gates | None = None,
    record_every: int = 1,
    tau: float = 1.0,
    loss: Loss | None = None,
    form: Literal["layers", "paths"] = "layers",
    modes: ModeBasis | None = None,
    schedule: GateSchedule | None = None,
    callback: Callback | None = None,
    with_weights: bool = True,
    record_steps: Sequence[int] | None = None,
    dtype: type[np.floating] = np.float64,
    gate_rule: GateRule | None = None,
) -> Trajectory:
    """Full-batch gradient descent W <- W - (eta / tau) dL/dW, recorded every ``record_every``
    steps (or at the increasing steps ``record_steps``, within 0 .. n_steps) at t = k eta: the
    Euler discretisation of ``integrate``'s flow. With a ``schedule`` step k uses the gates in
    force at t = k eta; ``callback`` and ``with_weights`` as in :func:`integrate`.

    ``gate_rule``: gates that follow the weights, as in :func:`integrate` but read at every
    step: ``gate_rule(k eta, weights)`` is called before every step k >= 1 with the weights
    reached, and step k (and a record at step k) uses the gates it returns. This is the
    discrete counterpart of a gate rule's flow, with the switches resolved to one step, as a
    ReLU net's gates are; ``attrs["gate_switches"]`` counts the steps whose gates changed.

    ``dtype=np.float32`` computes the gradient in single precision (the dense layer form only:
    a complete layered network without edge gates) and adds it to float64 weights: its matrix
    products cost about half those of float64, the recorded weights are float64 (exact at step
    0), and the recorded losses carry float32 rounding (relative ~1e-7). The rounding of the
    gradients accumulates over the steps; check it against a float64 run where the answer
    matters."""
    if not (eta > 0 and np.isfinite(eta)) or n_steps < 0 or record_every < 1:
        raise ValueError("need a finite eta > 0, n_steps >= 0 and record_every >= 1")
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be np.float64 or np.float32, got {dtype!r}")
    if gate_rule is not None and schedule is not None:
        raise ValueError("give a gate schedule or a gate rule, not both")
    if record_steps is None:
        steps = np.arange(0, n_steps + 1, record_every)
    else:
        steps = np.asarray(record_steps, dtype=np.int64)
        if steps.ndim != 1 or not steps.size or steps[0] < 0 or steps[-1] > n_steps:
            raise ValueError(f"record_steps must lie in 0 .. n_steps = {n_steps}")
        if np.any(np.diff(steps) <= 0):
            raise ValueError("record_steps must increase strictly")
    gating = _Gating(network, X, Y, gates, schedule, loss or SquaredError(), form, initial, dtype)
    times = eta * steps.astype(np.float64)
    records = _Records(times, gating.layout, callback, with_weights)
    master = gating.layout.pack(network.check_weights(initial))  # float64
    theta = master if dtype is np.float64 else master.astype(dtype)
    step_size = eta / tau
    record = n_switches = 0
    step: Array | None = None
    gates, problem = gating.schedule.gates[0], gating.problem(0)
    with blas_threads(problem.work):
        for k in range(n_steps + 1):
            if gate_rule is None:
                problem = gating.problem(gating.schedule.piece_at(k * eta))
            elif k:
                new = gate_rule(k * eta, gating.layout.unpack(master))
                if not _same_gates(new, gates):
                    gates, problem = new, gating.problem_for(new)
                    n_switches += 1
            with np.errstate(over="ignore", invalid="ignore"):
                if record < len(steps) and k == steps[record]:
                    records(record, theta, problem, master)
                    record += 1
                if k == steps[-1]:
                    break
                try:  # the dense form checks its outputs, which NaN or inf in theta reach
                    step = problem.rhs(theta, out=step)
                    step *= step_size  # numpy's loops: no BLAS threads to wake or limit
                    master += step
                    if theta is not master:
                        theta[...] = master
                    if not (gating.layout.dense or np.isfinite(theta.sum())):
                        raise DivergenceError("NaN or inf in the weights")
                except DivergenceError as err:
                    raise DivergenceError(
                        f"gradient descent diverged (NaN/inf) by step {k + 1} with eta = {eta}; "
                        "use a smaller step"
                    ) from err
    if not np.isfinite(theta.sum()):
        raise DivergenceError(f"gradient descent diverged (NaN/inf) with eta = {eta}")
    attrs = {"eta": eta, "form": form, "loss": gating.loss.name, "dtype": np.dtype(dtype).name}
    if gate_rule is not None:
        attrs["gate_switches"] = n_switches
    return _trajectory(network, times, records, "gradient_descent", tau, modes, attrs)
