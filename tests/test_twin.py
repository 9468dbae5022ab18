"""gdln.ReLN.from_gates against the torch ReLU nets it is read from (float64), at depths 1-3.

The frozen-gate twin is the ReLU net as long as no gate flips: same outputs, loss and gradient
at any point, and the same gradient-descent steps. The grouped twin of a net whose units are
switched per context has exactly the known nodes and node gates.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gdln
from gdln.context_task import context_task
from relu_lens import ArrayRecorder, read_mlp
from relu_lens.effective import UnsupportedModuleError
from relu_lens.gates import activation_patterns
from relu_lens.models import mlp
from relu_lens.train import loss_fn, train


def random_net(
    depth: int, seed: int, n_in: int = 5
) -> tuple[torch.nn.Sequential, torch.Tensor, torch.Tensor]:
    """A bias-free float64 MLP n_in -> 7 -> ... -> 3 with `depth` hidden layers, 11 samples
    (with n_in >= 8 the flow runs its first layer through the input kernel, P <= 1.5 d)."""
    torch.manual_seed(seed)
    widths = (7, 6, 8)[:depth]
    model = mlp(n_in, widths, 3, dtype=torch.float64)
    X = torch.randn(11, n_in, dtype=torch.float64)
    Y = torch.randn(11, 3, dtype=torch.float64)
    return model, X, Y


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_frozen_gate_twin_has_the_relu_outputs_loss_and_gradient(depth: int) -> None:
    model, X, Y = random_net(depth, seed=depth)
    arrays = read_mlp(model, X)
    twin = gdln.ReLN.from_gates(arrays.weights, arrays.gates, X=X.numpy())
    assert twin.per_unit and twin.depth == depth
    assert len(twin.network.edges) == depth + 1
    out = twin.network.forward(twin.initial, X.numpy(), twin.gates)["y"]
    with torch.no_grad():
        f = model(X).numpy()
    np.testing.assert_allclose(out, f, rtol=1e-10, atol=1e-12 * np.abs(f).max())
    loss = loss_fn("mse")(model(X), Y)
    mean = gdln.SquaredError().value({"y": out}, {"y": Y.numpy()})
    assert mean == pytest.approx(float(loss.detach()), rel=1e-10)
    loss.backward()
    grads = gdln.loss_gradient(twin.network, twin.initial, X.numpy(), Y.numpy(), twin.gates)
    layers = [m for m in model if isinstance(m, torch.nn.Linear)]
    for l, layer in enumerate(layers):
        g = layer.weight.grad.numpy()
        np.testing.assert_allclose(grads[f"W{l + 1}"], g, rtol=1e-10, atol=1e-12 * np.abs(g).max())


@pytest.mark.parametrize(
    ("depth", "loss", "n_in"),
    [(1, "mse", 5), (2, "mse", 5), (3, "mse", 5), (2, "ce", 5), (1, "mse", 20), (3, "ce", 20)],
)
def test_frozen_gate_twin_descends_like_the_relu_net_while_no_gate_flips(
    depth: int, loss: str, n_in: int
) -> None:
    """Same discrete steps in float64: the twin's gradient descent is the ReLU run (to 1e-8)
    over steps in which no gate flips (checked at every step)."""
    model, X, Y = random_net(depth, seed=10 + depth, n_in=n_in)
    target = Y.argmax(dim=1) if loss == "ce" else Y
    start = read_mlp(model, X)
    recorder = ArrayRecorder(X)
    steps, lr = 30, 0.005
    train(
        model,
        X,
        target,
        steps=steps,
        lr=lr,
        loss="cross_entropy" if loss == "ce" else "mse",
        snapshot_steps=list(range(steps + 1)),
        recorders=[recorder],
        progress=False,
    )
    flips = [
        k
        for k, a in enumerate(recorder.values)
        if any(not np.array_equal(g, g0) for g, g0 in zip(a.gates, start.gates, strict=True))
    ]
    assert flips == [] or flips[0] > 5, "the test needs a stretch of steps without flips"
    n = flips[0] - 1 if flips else steps
    twin = gdln.ReLN.from_gates(start.weights, start.gates)
    gd_loss = gdln.CrossEntropy() if loss == "ce" else gdln.SquaredError()
    Yn = np.eye(3)[target.numpy()] if loss == "ce" else Y.numpy()
    traj = gdln.gradient_descent(
        twin.network, X.numpy(), Yn, twin.initial, lr, n, twin.gates, loss=gd_loss
    )
    for k in range(n + 1):
        for l, w in enumerate(recorder.values[k].weights):
            np.testing.assert_allclose(traj.weights[f"W{l + 1}"][k], w, rtol=1e-8, atol=1e-12)


def test_grouped_twin_nodes_gates_and_cuts() -> None:
    """One hidden layer switched per context (gdln.groups' hand-built net): one node per
    context set, node gates 1[context in set], edge weights cut from the layer weights, and
    (gates constant within each context and group) exactly the ReLU net's outputs."""
    C = 3
    task = context_task(C)
    sets = [0b111, 0b111, 0b011, 0b110, 0b011, 0b101, 0b001]
    W1 = np.zeros((len(sets), 8 + C))
    W1[:, :8] = 0.5
    W1[:, 8:] = np.where(np.array(sets)[:, None] >> np.arange(C) & 1, 1.0, -1.0)
    rng = np.random.default_rng(0)
    W2 = rng.standard_normal((4, len(sets)))
    D = [(task.X @ W1.T > 0).astype(float)]
    twin = gdln.ReLN.from_gates([W1, W2], D, task.context, X=task.X)
    assert not twin.per_unit and twin.depth == 1
    by_label = {twin.node_labels[v]: v for v in twin.layer_nodes[0]}
    assert set(by_label) == {"{1}", "{1,2}", "{2,3}", "{1,3}", "{1,2,3}"}
    assert twin.units[by_label["{1,2}"]].tolist() == [2, 4]
    assert twin.units[by_label["{1,2,3}"]].tolist() == [0, 1]
    for label, v in by_label.items():
        members = [int(c) - 1 for c in label.strip("{}").split(",")]
        np.testing.assert_array_equal(twin.gates[v], np.isin(task.context, members))
        np.testing.assert_array_equal(twin.initial[f"in_{v}"], W1[twin.units[v]])
        np.testing.assert_array_equal(twin.initial[f"out_{v}"], W2[:, twin.units[v]])
    assert sorted(twin.pathway_labels) == sorted(by_label)
    out = twin.network.forward(twin.initial, task.X, twin.gates)["y"]
    np.testing.assert_allclose(out, np.maximum(task.X @ W1.T, 0) @ W2.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(
        twin.cell_gates(task.context)[by_label["{2,3}"]], twin.gates[by_label["{2,3}"]]
    )
    # node gates read back from per-unit gates: the fraction of the node's units that are on
    soft = twin.gates_from(D)
    for v in twin.layer_nodes[0]:
        np.testing.assert_array_equal(soft[v], twin.gates[v])


def test_grouped_twin_at_depth_two_gates_paths_by_both_layers() -> None:
    """Layer 1: units in all contexts and in {1,2}; layer 2: units in {2,3} and in all
    contexts (switched by the context inputs reaching them through layer-1 units that carry
    the context one-hot). A path through groups (a, b) is open where both sets hold."""
    C = 3
    task = context_task(C)
    # layer 1: units 0-1 see object + context 1/2/3 positively (all contexts); units 2-3 are
    # off in context 3; units 4-6 carry the context one-hot (on only in their own context)
    W1 = np.zeros((7, 8 + C))
    W1[:2, :8], W1[:2, 8:] = 0.5, 1.0
    W1[2:4, :8], W1[2:4, 8:] = 0.5, [1.0, 1.0, -1.0]
    for c in range(C):
        W1[4 + c, 8 + c] = 1.0
    # layer 2: unit 0 on everywhere; unit 1 off in context 1 (inhibited by layer-1 unit 4)
    W2 = np.full((2, 7), 0.1)  # every layer-1 unit passes something on
    W2[:, 0] = 1.0
    W2[1, 4] = -3.0
    W3 = np.array([[1.0, 2.0], [0.5, -1.0]])
    D, h = [], task.X
    for W in (W1, W2):
        z = h @ W.T
        D.append((z > 0).astype(float))
        h = np.maximum(z, 0)
    twin = gdln.ReLN.from_gates([W1, W2, W3], D, task.context, X=task.X)
    labels = [twin.node_labels[v] for v in twin.layer_nodes[0]]
    assert labels == ["{1}", "{2}", "{1,2}", "{3}", "{1,2,3}"]
    assert [twin.node_labels[v] for v in twin.layer_nodes[1]] == ["{2,3}", "{1,2,3}"]
    assert len(twin.network.paths) == 10 and len(twin.network.edges) == 5 + 10 + 2
    net = twin.network
    gp = net.path_gates(net.check_gates(twin.gates, 24), 24)
    k = twin.pathway_labels.index("{1,2}>{2,3}")
    np.testing.assert_array_equal(gp[:, k], task.context == 1)  # only context 2 passes both
    a, b = twin.layer_nodes[0][2], twin.layer_nodes[1][0]
    np.testing.assert_array_equal(
        twin.initial[f"mid_{a}_{b}"], W2[np.ix_(twin.units[b], twin.units[a])]
    )
    out = net.forward(twin.initial, task.X, twin.gates)["y"]
    np.testing.assert_allclose(out, h @ W3.T, rtol=1e-12, atol=1e-12)


def test_from_gates_refuses_what_it_cannot_build() -> None:
    model, X, _ = random_net(2, seed=0)
    a = read_mlp(model, X)
    with pytest.raises(gdln.ShapeError, match="one gate array per hidden layer"):
        gdln.ReLN.from_gates(a.weights, a.gates[:1])
    with pytest.raises(gdln.ShapeError, match="list of layer matrices"):
        gdln.ReLN.from_gates(dict(enumerate(a.weights)), a.gates)
    with pytest.raises(gdln.ShapeError, match="rows"):
        gdln.ReLN.from_gates([a.weights[0], a.weights[2]], a.gates[:1])
    with pytest.raises(ValueError, match="0 or 1"):
        gdln.ReLN.from_gates(a.weights, [0.5 * g for g in a.gates])
    with pytest.raises(ValueError, match="needs X"):
        gdln.ReLN.from_gates(a.weights, a.gates, np.zeros(11, dtype=int))
    with pytest.raises(ValueError, match="same snapshot"):
        gdln.ReLN.from_gates(a.weights, [1 - g for g in a.gates], X=X.numpy())
    with pytest.raises(ValueError, match="no sample is in cell 2"):
        gdln.ReLN.from_gates(a.weights, a.gates, np.arange(11) % 2, X=X.numpy(), n_cells=3)
    with pytest.raises(ValueError, match="one hidden layer"):
        gdln.ReLN.from_gates(a.weights, a.gates).aligned_start(X.numpy(), X.numpy(), 0.1)


def test_read_mlp_reads_the_gates_and_refuses_other_models() -> None:
    model, X, _ = random_net(3, seed=1)
    a = read_mlp(model, X)
    assert a.depth == 3 and [w.shape for w in a.weights] == [(7, 5), (6, 7), (8, 6), (3, 8)]
    for g, mask in zip(a.gates, activation_patterns(model, X), strict=True):
        np.testing.assert_array_equal(g, mask.numpy().astype(float))
    with pytest.raises(UnsupportedModuleError, match="bias"):
        read_mlp(mlp(5, (4,), 2, bias=True), X.float())
    with pytest.raises(UnsupportedModuleError, match="exactly one ReLU"):
        read_mlp(torch.nn.Sequential(torch.nn.Linear(5, 4, bias=False)), X.float())


def test_grouped_twin_runs_through_the_reduction_where_its_check_passes() -> None:
    """Units active in every context form one node per layer: the twin is a plain chain whose
    correlations share singular vectors, so gdln.reduce applies, and from the aligned start it
    is the exact flow of the twin (checked against gdln.integrate)."""
    C = 2
    task = context_task(C)
    W1 = np.full((12, 8 + C), 0.5)  # on for every sample; 12 units for the 9 modes
    W2 = np.linspace(-1.0, 1.0, 12 * task.Y.shape[1]).reshape(task.Y.shape[1], 12)
    D = [(task.X @ W1.T > 0).astype(float)]
    twin = gdln.ReLN.from_gates([W1, W2], D, task.context, X=task.X)
    assert [twin.node_labels[v] for v in twin.layer_nodes[0]] == ["{1,2}"]
    net = twin.network
    modes = gdln.shared_modes(net, gdln.gated_correlations(net, task.X, task.Y, twin.gates))
    start = gdln.aligned_init(net, modes, 0.05)
    times = np.linspace(0.0, 20.0, 5)
    reduced = gdln.reduce(net, modes, start, times)
    exact = gdln.integrate(net, task.X, task.Y, start, times, twin.gates, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(reduced.loss, exact.loss, rtol=1e-6)
    assert reduced.loss[-1] < 0.5 * reduced.loss[0]
