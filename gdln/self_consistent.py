"""Self-consistent gates: a twin whose gates follow its own pre-activations, per cell.

A grouped ReLN (:mod:`gdln.twin`) takes its gates from the trained ReLU net: node v is on in the
cells of its group's set from t = 0. Here the grouping still comes from the trained net (which
units are pooled into one node), but the gates come out of the twin's own dynamics, as a ReLU
unit's gate comes out of its own pre-activation. Node v is on for every sample of cell c while
its group pre-activation there is positive,

    g_v(x, t) = 1[ sum_{x' in cell(x)} sum_{u in v} a_{v,u}(x', t) > 0 ],
    a_v(x) = sum_{e: t(e) = v} W_e h_{s(e)}(x)      (the node's pre-gate input),

with h computed through the twin's current gates. Between two checks the gates are frozen and
the flow is the exact gradient flow of the GDLN with those gates; at every check time the gates
are re-read from the weights reached, layer by layer from the input (a layer's pre-activations
use the new gates of the layers below). So switch times are the dynamics' own, resolved to the
check interval, and nothing is read from the ReLU run's clock. The checks are
``gdln.integrate``'s gate rule: one solver run while the gates hold, a restart where they
change.

If no sign changes between checks, the flow is that of fixed gates: a twin whose group
pre-activations never change sign is exactly the fixed-gate twin with the gates of its start.
On the context task's grouped twin (paper settings, 3 seeds) it follows the ReLU net to a
relative L2 of 0.149-0.226 at two hidden layers and 0.166-0.247 at three, never closer than
the per-unit twins on finer cells below (docs/theory/reln-measured.md).

The gates are discontinuous in the weights, so the flow must be far more accurate than a loss
curve alone needs: a small timing error moves a sign change to another check, and the runs
part from there. Measured on the depth-2 twin of the context task (C = 3, seed 0, 301 checks):
RKC at rtol 1e-4 and at 1e-6 moved the loss curve by 7-9% (relative L2) from the converged
flow, while RK45 at rtol 1e-6, atol 1e-8 x init std is within 1e-5 of RK45 at rtol 1e-10
(the defaults below are of that accuracy; 21 s against 8 s for RKC at 1e-4).

**Per-unit gates.** The same rule applies to a per-unit twin (``ReLN.from_gates`` without a
partition: one node per layer, a gate per unit). Each unit is then on for every sample of cell
c while its own pre-activation, summed over the samples of c, is positive,

    g_{v,u}(x, t) = 1[ sum_{x' in cell(x)} a_{v,u}(x', t) > 0 ],

a ReLU network whose units are gated per cell instead of per sample. Nothing is read from the
trained net: built from the initial weights and their gates, the twin's groups and switch times
both come out of its own dynamics, unit by unit. On the context task at two hidden layers
(paper settings, mean of 3 seeds) it follows the ReLU net's loss to a relative L2 of 0.087 /
0.106 / 0.090 / 0.102 at C = 2 / 3 / 4 / 5, against 0.097 / 0.103 / 0.114 / 0.126 for the
staged twin (:mod:`gdln.staging`). At three hidden layers it is better only at C = 5, and at
C = 2 to 4 it stalls on plateaus that the ReLU net leaves (0.248 / 0.215 / 0.204 / 0.160,
staged 0.179 / 0.186 / 0.198 / 0.162).

**On the experiment's clock.** :func:`self_consistent_descent` lets the twin learn by gradient
descent with the step of the ReLU run instead of by the flow, its gates re-read before every
step, so a switch is resolved to one step as a ReLU unit's is (``gdln.gradient_descent``'s gate
rule). With one cell per sample a per-unit twin is then the ReLU network itself, step for step.
With context cells at two hidden layers it follows the ReLU net to 0.175 / 0.093 / 0.070 / 0.087
at C = 2 / 3 / 4 / 5 (3 seeds): closer than the flow from C = 3 on, further at C = 2, where it
holds the context-mean plateau 2,100-4,800 epochs too long. With each context cut in two by
its strongest target mode (``gdln.partitions.split_cells``, fixed from the data before
training) it follows the ReLU net to 0.106 / 0.069 / 0.082 / 0.058, and holds the
context-mean plateau where the ReLU net does; one seed in three still stalls at C = 2.

**Cells per layer.** ``partition`` may also give one partition per hidden layer
(:func:`layer_partitions`), so that one layer is gated per sample, as the ReLU net's, while
another pools cells. This is a diagnostic, not a cheaper twin: at two hidden layers on the
split cells (C = 2 and 3, 3 seeds) the first layer per sample brings the twin to 0.085 / 0.040
of the ReLU net, the second per sample to 0.064 / 0.067, and the stall at C = 2 comes from the
second layer's pooling (docs/theory/reln-measured.md, "Which layer's pooling costs what").

**Expected gates.** With ``expected=True`` a unit's gate on a cell is the mean of its signs
there instead of the sign of its sum,

    g_{v,u}(x, t) = (1/|c|) sum_{x' in c} 1[a_{v,u}(x', t) > 0],     c = cell(x),

the expected ReLU gate of a sample drawn from the cell. A unit on for part of a cell then
learns from it in that proportion, as a ReLU unit learns from the samples where it is on,
instead of all or nothing; but it cannot turn off on part of the cell. At one hidden layer on
split cells (the ReLU step, seeds 0-2) it follows the ReLU net to 0.046 / 0.040 at C = 2 / 3
(sign gates 0.066 / 0.045), and less closely at C = 4 / 5 (0.049 / 0.051 against 0.044 /
0.050); its tail stops at a summed loss of 1.1-2.1 where the ReLU net reaches 0.002-1.2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gdln.dynamics import gradient_descent, integrate
from gdln.network import Array
from gdln.partitions import check_partition
from gdln.twin import ReLN

#: cell labels (sample,) shared by every hidden layer, or one such array per hidden layer
Partitions = Array | Sequence[Array]


def layer_partitions(twin: ReLN, partition: Partitions, n_samples: int) -> list[Array]:
    """The partition of each hidden layer: ``partition`` itself for every layer if it is one
    array of cell labels (sample,), or its entries, one per hidden layer from the input (so a
    layer can be gated per sample, ``np.arange(n_samples)``, while another pools cells).
    ValueError names a wrong count of layers or a wrong partition."""
    if len(partition) == 0 or np.ndim(partition[0]) == 0:  # one array of labels
        parts = [np.asarray(partition)] * twin.depth
    else:
        parts = [np.asarray(p) for p in partition]
        if len(parts) != twin.depth:
            raise ValueError(
                f"one partition per hidden layer: the twin has {twin.depth}, got {len(parts)}"
            )
    for p in parts:
        check_partition(p, n_samples)
    return parts


def cell_gates(
    twin: ReLN,
    weights: Mapping[str, Array],
    X: Array,
    partition: Partitions,
    expected: bool = False,
) -> dict[str, Array]:
    """{hidden node: gates} read layer by layer from the input at the weights given (module
    docstring): for a grouped twin (sample,), g_v(x) = 1[group pre-activation of v on cell(x)
    > 0]; for a per-unit twin (sample, unit), each unit's own summed pre-activation.
    ``partition``: the cells of every layer, or one partition per hidden layer
    (:func:`layer_partitions`).

    ``expected=True``: instead of the sign of the sum, the mean of the signs over the cell,
    g_v(x) = (1/|c|) sum_{x' in c} 1[a_v(x') > 0] with c = cell(x) (a group's a_v summed over
    its units): the expected ReLU gate of a sample drawn from the cell, in [0, 1]. With one
    sample per cell both rules give the ReLU gates."""
    per_unit = twin.groups is None
    parts = layer_partitions(twin, partition, X.shape[0])
    net = twin.network
    h: dict[str, Array] = {"x": np.asarray(X, dtype=np.float64)}
    gates: dict[str, Array] = {}
    for nodes, partition in zip(twin.layer_nodes, parts, strict=True):
        onehot = np.eye(int(partition.max()) + 1)[partition]  # (sample, cell)
        for v in nodes:
            a = sum(h[e.source] @ weights[e.name].T for e in net.incoming(v))
            # over the node's units for a group, then over the samples of each cell
            a_v = a if per_unit else a.sum(axis=1, keepdims=True)
            if expected:
                on = (onehot.T @ (a_v > 0) / onehot.sum(axis=0)[:, None])[partition]
            else:
                on = ((onehot.T @ a_v)[partition] > 0).astype(np.float64)  # (sample, unit or 1)
            h[v] = on * a  # the layer above reads only this layer's h
            gates[v] = on if per_unit else on[:, 0]
    return gates


@dataclass(frozen=True)
class SelfConsistentRun:
    """The self-consistent twin's learning, by the flow (:func:`self_consistent_flow`) or by
    gradient descent (:func:`self_consistent_descent`).

    Attributes:
        time: (time,) the record (and check) times.
        loss: (time,) mean loss.
        n_switches: (time,) number of (node, cell) gates, or (unit, cell) gates of a per-unit
            twin, that changed at each check (0 at the first record); on the step of a
            gradient-descent run, the changes of every step since the previous record.
        gates: {hidden node: (time, cell)} 0/1 (in [0, 1] for expected gates), each node's
            gate on each cell of its layer's partition over time ((time, cell, unit) for a
            per-unit twin).
    """

    time: Array
    loss: Array
    n_switches: Array
    gates: dict[str, Array]


class _GateLog:
    """The cell gates of a run: those in force (read by :func:`cell_gates` through ``rule``),
    their values at every record (``record``, a run's callback) and the count of (node or
    unit, cell) changes since the previous record."""

    def __init__(self, twin: ReLN, X: Array, partition: Partitions, expected: bool) -> None:
        self.twin, self.X, self.expected = twin, X, expected
        self.parts = layer_partitions(twin, partition, X.shape[0])
        # the first sample of each cell of each node's layer: where its gate on the cell is read
        self.first = {
            v: np.unique(part, return_index=True)[1]
            for nodes, part in zip(twin.layer_nodes, self.parts, strict=True)
            for v in nodes
        }
        self.gates = cell_gates(twin, twin.initial, X, self.parts, expected)
        self.history = {v: [g[self.first[v]]] for v, g in self.gates.items()}
        self.changes = [0]

    def rule(self, _: float, weights: dict[str, Array]) -> dict[str, Array]:
        new = cell_gates(self.twin, weights, self.X, self.parts, self.expected)
        first = self.first
        self.changes[-1] += sum(
            int(np.count_nonzero(new[v][first[v]] != self.gates[v][first[v]])) for v in new
        )
        self.gates = new
        return new

    def record(self, k: int, *_: object) -> None:
        if k:  # the gates in force at record k close the count of their changes
            for v, g in self.gates.items():
                self.history[v].append(g[self.first[v]])
            self.changes.append(0)

    def result(self, times: Array, loss: Array) -> SelfConsistentRun:
        switches = np.array([0, *self.changes[:-1]], dtype=int)
        history = {v: np.stack(h) for v, h in self.history.items()}
        return SelfConsistentRun(times, loss, switches, history)


def _check_times(times: Array) -> Array:
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or times.size < 2 or times[0] != 0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be increasing from 0, with at least two entries")
    return times


def self_consistent_flow(
    twin: ReLN,
    X: Array,
    Y: Array,
    partition: Partitions,
    times: Array,
    solver: str = "RK45",
    rtol: float = 1e-6,
    atol: float = 1e-12,
    expected: bool = False,
) -> SelfConsistentRun:
    """Integrate the twin from ``twin.initial`` with gates re-read by :func:`cell_gates` at
    every time of ``times`` (increasing, from 0); between two checks the exact flow of
    ``gdln.integrate`` (``solver``, ``rtol``, ``atol``) with the gates frozen. Keep the
    solver accurate (module docstring): atol about 1e-8 times the scale of the weights.
    ``expected``: the expected gates of :func:`cell_gates` instead of the signs."""
    times = _check_times(times)
    log = _GateLog(twin, X, partition, expected)
    loss = integrate(
        twin.network, X, Y, twin.initial, times, log.gates, solver=solver, rtol=rtol,
        atol=atol, with_weights=False, callback=log.record, gate_rule=log.rule,
    ).loss  # fmt: skip
    return log.result(times, loss)


def self_consistent_descent(
    twin: ReLN,
    X: Array,
    Y: Array,
    partition: Partitions,
    times: Array,
    eta: float,
    expected: bool = False,
) -> SelfConsistentRun:
    """The twin learning by gradient descent with step ``eta`` (the experiment's:
    ``gdln.gradient_descent``), its gates re-read by :func:`cell_gates` before every step
    (``expected``: its expected gates instead of the signs); recorded at ``times`` (increasing
    from 0, multiples of eta). ``n_switches`` counts the changes of every step since the
    previous record."""
    times = _check_times(times)
    if not (eta > 0 and np.isfinite(eta)):
        raise ValueError(f"the step eta must be finite and > 0, got {eta}")
    steps = np.rint(times / eta).astype(np.int64)
    if not np.allclose(steps * eta, times, rtol=1e-9, atol=0):
        raise ValueError(f"the record times must be multiples of the step eta = {eta}")
    log = _GateLog(twin, X, partition, expected)
    loss = gradient_descent(
        twin.network, X, Y, twin.initial, eta, int(steps[-1]), log.gates, with_weights=False,
        record_steps=steps, gate_rule=log.rule, callback=log.record,
    ).loss  # fmt: skip
    return log.result(times, loss)
