"""studies.contexts: ReLU nets against their ReLN on multi-context tasks."""

from __future__ import annotations

import dataclasses

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
import xarray as xr

import gdln
from relu_lens import gate_groups as gg
from relu_lens.context_task import context_task
from relu_lens.gates import activation_patterns
from relu_lens.models import mlp
from relu_lens.train import train
from studies import contexts, io
from studies.sweep import combine_cells


def _weights(net: torch.nn.Sequential) -> list[np.ndarray]:
    return [m.weight.detach().numpy().copy() for m in net if isinstance(m, torch.nn.Linear)]


def _context_gated_net(C: int, sets: list[int], n_out: int, seed: int) -> torch.nn.Sequential:
    """One hidden layer; unit u starts with pre-activation 0.5 + small + (+-1 per context),
    so it is on for every object of exactly the contexts of the bitmask sets[u]."""
    rng = np.random.default_rng(seed)
    masks = np.array(sets)
    net = mlp(8 + C, (len(sets),), n_out, dtype=torch.float64)
    W1 = 0.5 + 0.05 * rng.standard_normal((len(sets), 8 + C))
    W1[:, 8:] = np.where(masks[:, None] >> np.arange(C) & 1, 1.0, -1.0)
    with torch.no_grad():
        net[0].weight.copy_(torch.as_tensor(W1))
        net[2].weight.copy_(torch.as_tensor(0.1 * rng.standard_normal((n_out, len(sets)))))
    return net


def test_reln_of_a_net_with_fixed_gates_reproduces_its_training() -> None:
    """Gates that never change make the ReLU net a GDLN exactly (float64, to 1e-8): both the
    per-unit GDLN and the ReLN built from the gate groups reproduce gradient descent."""
    C = 3
    task = context_task(C)
    sets = [0b111, 0b111, 0b011, 0b110, 0b101, 0b011, 0b001]
    net = _context_gated_net(C, sets, task.Y.shape[1], seed=1)
    W_init = _weights(net)
    masks0 = activation_patterns(net, torch.as_tensor(task.X))[0].numpy()
    eta, steps = 0.05, 200
    seen = []
    result = train(
        net,
        torch.as_tensor(task.X),
        torch.as_tensor(task.Y),
        steps=steps,
        lr=eta,
        loss="mse",
        snapshot_steps=list(range(0, steps + 1, 20)),
        recorders=[_GateRecorder(task.X, seen)],
        progress=False,
    )
    assert all(np.array_equal(m, masks0) for m in seen), "the gates changed during training"
    assert result.step_loss[-1] < 0.7 * result.step_loss[0]  # it did learn
    # per-unit gates on the plain chain
    chain = contexts.unit_gate_network(8 + C, (len(sets),), task.Y.shape[1])
    traj = gdln.gradient_descent(
        chain, task.X, task.Y, {"W1": W_init[0], "W2": W_init[1]}, eta, steps - 1,
        gates={"h1": masks0.astype(float)},
    )  # fmt: skip
    np.testing.assert_allclose(traj.loss, result.step_loss, rtol=1e-8, atol=0)
    # the ReLN: one node per context set, cut from the same initial weights
    acts, W_next = gg.layer_activities(net, task.X)
    groups = gg.gate_groups(acts[0], W_next[0], task.context, C, strength_fraction=0.0)
    assert sorted(gg.subset_mask(groups.group_contexts)) == sorted(set(sets))
    reln = contexts.build_reln([groups], task.context, 8 + C, task.Y.shape[1], C)
    assert len(reln.network.paths) == len(set(sets))
    W0 = contexts.reln_weights(reln, W_init)
    traj = gdln.gradient_descent(reln.network, task.X, task.Y, W0, eta, steps, gates=reln.gates)
    np.testing.assert_allclose(traj.loss[:-1], result.step_loss, rtol=1e-8, atol=0)
    final = contexts.reln_weights(reln, _weights(net))
    for name, w in final.items():
        np.testing.assert_allclose(traj.weights[name][-1], w, rtol=1e-8, atol=1e-12)


class _GateRecorder:
    def __init__(self, X: np.ndarray, out: list) -> None:
        self.X, self.out = torch.as_tensor(X), out

    def record(self, index: int, step: int, model: torch.nn.Module) -> None:
        self.out.append(activation_patterns(model, self.X)[0].numpy())

    def close(self) -> None:
        return None


def test_depth_two_reln_gates_paths_by_both_layers() -> None:
    C = 3
    task = context_task(C)
    context = task.context
    g1 = gg.GateGroups(np.array([0, 0, 1]), np.array([[1, 1, 1], [1, 1, 0]], bool),
                       np.ones((3, C)), np.ones(3))  # fmt: skip
    g2 = gg.GateGroups(np.array([0, 1, 1, -1]), np.array([[0, 1, 1], [1, 1, 1]], bool),
                       np.ones((4, C)), np.ones(4))  # fmt: skip
    reln = contexts.build_reln([g1, g2], context, 11, 60, C)
    net = reln.network
    assert len(net.paths) == 4
    assert set(reln.pathways) == {"{1,2,3}>{2,3}", "{1,2,3}>{1,2,3}", "{1,2}>{2,3}",
                                  "{1,2}>{1,2,3}"}  # fmt: skip
    gp = net.path_gates(net.check_gates(reln.gates, len(context)), len(context))
    k = reln.pathways.index("{1,2}>{2,3}")
    np.testing.assert_array_equal(gp[:, k], context == 1)  # only context 2 passes both gates
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((3, 11)), rng.standard_normal((4, 3)), rng.standard_normal((60, 4))]
    W = contexts.reln_weights(reln, Ws)
    np.testing.assert_array_equal(W["mid_h1_1_h2_1"], Ws[1][np.ix_([1, 2], [2])])
    np.testing.assert_array_equal(W["out_h2_0"], Ws[2][:, [0]])


def test_metrics() -> None:
    rng = np.random.default_rng(0)
    H = rng.standard_normal((20, 5))
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert contexts.linear_cka(H, 3.0 * H @ Q) == pytest.approx(1.0, abs=1e-12)
    assert contexts.linear_cka(H, rng.standard_normal((20, 7))) < 0.6
    b = np.array([4.0, 2.0, 1.0, 0.5])
    assert contexts.rel_l2(1.1 * b, b) == pytest.approx(0.1)
    assert contexts.rel_l2_log(b, b) == 0.0
    assert contexts.rel_l2_log(10 * b, b) == pytest.approx(
        np.linalg.norm(np.ones(4)) / np.linalg.norm(np.log10(b))
    )


def test_chunked_flow_equals_one_integration() -> None:
    task = context_task(2)
    net = gdln.chain([10, 6, 45])
    rng = np.random.default_rng(0)
    W0 = {"W1": 0.1 * rng.standard_normal((6, 10)), "W2": 0.1 * rng.standard_normal((45, 6))}
    times = np.linspace(0.0, 20.0, 23)
    whole = gdln.integrate(net, task.X, task.Y, W0, times, rtol=1e-10, atol=1e-12).loss
    seen: list[int] = []
    chunked = contexts.flow(net, task.X, task.Y, W0, times, {}, 1e-10, 1e-12,
                            visit=lambda k, W: seen.append(k), chunk=5)  # fmt: skip
    np.testing.assert_allclose(chunked, whole, rtol=1e-7)
    assert seen == list(range(len(times)))


def test_scheduled_flow_switches_gates_between_records() -> None:
    """Constant gates give the one-piece flow; gates switched off after a record freeze the
    gated pathway's contribution there (a node gated to 0 has no gradient and no output)."""
    task = context_task(2)
    edges = {"ia": ("x", "a"), "oa": ("a", "y"), "ib": ("x", "b"), "ob": ("b", "y")}
    net = gdln.Network({"x": 10, "a": 4, "b": 4, "y": 45}, edges)
    rng = np.random.default_rng(0)
    W0 = {e: 0.1 * rng.standard_normal(net.weight_shape(e)) for e in net.edges}
    times = np.linspace(0.0, 10.0, 6)
    on = {"a": np.ones(16), "b": (task.context == 0).astype(float)}
    whole = gdln.integrate(net, task.X, task.Y, W0, times, on, rtol=1e-10, atol=1e-12).loss
    steady = contexts.scheduled_flow(net, task.X, task.Y, W0, times, [on] * 6, 1e-10, 1e-12)
    np.testing.assert_allclose(steady, whole, rtol=1e-7)
    off = {"a": np.ones(16), "b": np.zeros(16)}
    switched = contexts.scheduled_flow(
        net, task.X, task.Y, W0, times, [on, on, off, off, off, off], 1e-10, 1e-12
    )
    np.testing.assert_allclose(switched[:3], whole[:3], rtol=1e-7)  # same until t_2
    assert abs(switched[3] - whole[3]) > 1e-3 * whole[3]  # then pathway b is gone
    with pytest.raises(ValueError, match="one set of gates per time"):
        contexts.scheduled_flow(net, task.X, task.Y, W0, times, [on], 1e-6, 1e-9)


def _cell_settings(**changes: object) -> dict:
    config = dataclasses.replace(contexts.PRESETS["quick"], **changes)
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in contexts._NOT_CELL}


def test_reln_predicts_the_relu_loss_curve_at_three_contexts() -> None:
    """One cell of the published setting (C = 3, depth 1, 8000 steps), without the sweep."""
    ds = contexts.context_cell(
        3, 1, 0, **_cell_settings(n_times=41, n_settle=0, schedule_depths=(1,))
    )
    for name, var in ds.variables.items():
        assert {"long_name", "units"} <= set(var.attrs), name
    theory, relu = ds.loss_theory.values, ds.loss_relu.values
    assert theory[0] == pytest.approx(relu[0], rel=1e-8)  # same initial weights
    assert theory[-1] < 1e-2 * theory[0] and np.all(np.diff(theory) <= 1e-12)
    # the published initial summed loss is 96 at C = 3
    assert float(relu[0] * ds.n_samples) == pytest.approx(96.0)
    # the ReLN's prediction of the ReLU loss curve, nothing fitted to the ReLU run
    # (measured 0.055 at 301 records; the published closed form had 0.039)
    assert float(ds.rel_l2_loss) < 0.08
    # the aligned start (silent alignment, strength from the init statistics) from its own
    # initial loss; measured 0.052 at 301 records
    aligned = ds.loss_aligned.values
    assert aligned[0] == pytest.approx(relu[0], rel=1e-6)  # tiny weights: the loss of f = 0
    assert np.all(np.diff(aligned) <= 1e-12) and float(ds.rel_l2_loss_aligned) < 0.08
    # gates read from the snapshots over time (here every 200 steps): same start, and it
    # follows the ReLU curve too
    scheduled = ds.loss_scheduled.values
    assert scheduled[0] == pytest.approx(relu[0], rel=1e-8)
    # (measured 0.140 and 0.061 on log10; 0.067 and 0.080 with gates read every 27 steps)
    assert float(ds.rel_l2_loss_scheduled) < 0.25 and float(ds.rel_l2_log_loss_scheduled) < 0.15
    assert float(ds.rsa.min()) > 0.8  # hidden representations stay similar
    assert float(ds.output_rel_error[-1]) < 0.05  # and so do the learned functions


def test_quick_preset_dataset(tmp_path) -> None:
    config = dataclasses.replace(contexts.PRESETS["quick"], cache_dir=str(tmp_path / "cache"))
    ds = contexts.run(config)
    io.check_dataset(ds)
    for name in ("loss_relu", "loss_theory"):
        assert ds[name].dims == ("context_count", "depth", "seed", "time")
    for name in ("rel_l2_loss", "rel_l2_log_loss", "mixed_selectivity"):
        assert ds[name].dims == ("context_count", "depth", "seed")
    theory = ds.loss_theory.isel(context_count=0, depth=0, seed=0).values
    assert theory[-1] < 1e-2 * theory[0] and np.all(np.diff(theory) <= 1e-12)
    assert float(ds.rel_l2_loss.squeeze()) < 0.08
    back = io.load_dataset(io.save_dataset(ds, tmp_path / "contexts.nc"))
    figs = contexts.plot(back)
    assert set(figs) == {"loss", "pathway_singular_values", "census", "representation"}
    summary = contexts.summary(back)
    assert "rel_l2_loss_C3_depth1" in summary and "census_C3_depth1_{1,2,3}" in summary


def _fake_cell(n_pathways: int, n_times: int, shift: float) -> xr.Dataset:
    rng = np.random.default_rng(n_pathways)
    sv = rng.random((n_times, n_pathways, 2))
    return xr.Dataset(
        {"sv_relu": (("time", "pathway", "sv"), sv, {"long_name": "sv", "units": "1"})},
        coords={
            "time": np.arange(n_times) * shift,
            "pathway": [f"{k}:{{{k}}}" for k in range(n_pathways)],
        },
    )


def test_strongest_pathways_put_cells_on_one_pathway_index() -> None:
    """Cells with different pathway labels and time grids combine on a shared pathway index
    of the n strongest (not on the union of all labels)."""
    a, b = _fake_cell(40, 5, 1.0), _fake_cell(3, 7, 0.5)
    small = contexts.strongest_pathways(a, 4)
    final = a.sv_relu.isel(time=-1, sv=0).values
    order = np.argsort(-final)[:4]
    np.testing.assert_array_equal(small.pathway.values, np.arange(4))
    assert list(small.pathway_label.values) == [f"{{{k}}}" for k in order]
    np.testing.assert_array_equal(small.sv_relu.values, a.sv_relu.values[:, order])
    combined = combine_cells(
        [({"seed": 0}, small), ({"seed": 1}, contexts.strongest_pathways(b, 4))], {"seed": [0, 1]}
    )
    assert combined.sizes["pathway"] == 4 and combined.sizes["seed"] == 2
    assert np.isnan(combined.sv_relu.sel(seed=1, pathway=3)).all()  # b has only 3 pathways
