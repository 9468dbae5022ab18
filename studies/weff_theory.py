"""Lens meets theory on MNIST: W_eff(x, t) of a ReLU net against a frozen-gate GDLN's prediction.

A bias-free ReLU MLP f(x) = W_L D_{L-1}(x) ... D_1(x) W_1 x is trained by full-batch gradient
descent (mean cross-entropy, step eta; clock t = steps * eta). At snapshot k its gates D_l(x)
are read on the training and held-out sets and frozen: the network becomes a gated deep linear
network (Saxe et al. 2022) with per-unit node gates, the frozen-gate twin
``gdln.ReLN.from_gates(weights_k, gates_k)`` of the arrays ``relu_lens.read_mlp`` reads,
started from the ReLU weights at k and
trained with the same loss (cross-entropy on its gated-linear outputs, ``gdln.CrossEntropy``)
and the same steps (``gdln.gradient_descent``, or the exact flow ``gdln.integrate`` with
``theory="flow"``). Its effective map W_eff(x, t) = sum_p g_p(x) W_p(t) = W_L(t) D_{L-1}(x) ...
D_1(x) W_1(t) (gates of k) predicts the ReLU net's W_eff(x, t) for t > t_k (Ye 2025's lens).
Where prediction and measurement agree, learning after k is a linear race inside fixed
pathways; where they part, the gates are still being learned.

Both sides take the same discrete steps, so their difference is the gates alone; the step's
own effect is measured by re-running the ReLU net with half the step (``step_halving_*``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from matplotlib.figure import Figure
from tqdm.auto import tqdm

import gdln
from relu_lens import read_mlp
from relu_lens.data import mnist_split
from relu_lens.effective import effective_weights
from relu_lens.gates import gate_flip_fraction
from relu_lens.metrics import class_metrics, tsne_embedding
from relu_lens.models import mlp
from relu_lens.recorders import CallbackRecorder
from relu_lens.train import log_spaced_steps, train
from studies import io
from studies.config import check_numbers

NAME = "weff_theory"
N_CLASSES = 10


@dataclass(frozen=True)
class Config:
    """Settings of one run (full-batch GD on both sides; ``time`` is step * lr).

    ``theory``: "gd" (the twin takes the ReLU net's own gradient-descent steps) or "flow" (its
    exact gradient flow, RKC at relative tolerance ``flow_rtol``); ``check_step`` re-runs the
    ReLU net at half the step, which measures how far the steps are from the flow.
    ``twin_dtype``: the arithmetic of the twin's gradients with ``theory="gd"`` ("float32":
    about 1.6 times faster, float64 weights; the flow is always float64). On the paper preset
    float32 moved ``weff_rel_error`` by at most 7e-7 and ``loss_theory`` by at most 8e-6
    (relative) from float64, where halving the step moves the measured W_eff by 1-8e-2.
    """

    widths: tuple[int, ...] = (256, 256)
    n_train: int = 1000
    n_test: int = 500
    lr: float = 0.05
    steps: int = 3000
    n_snapshots: int = 16
    n_k: int = 5
    theory: str = "gd"
    twin_dtype: str = "float32"
    flow_rtol: float = 1e-4
    check_step: bool = True
    tsne_k_index: int = 1
    standardize: bool = True
    mnist_dir: str | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("lr", "flow_rtol"),
            counts=("widths", "n_train", "n_test", "steps", "n_snapshots", "n_k"),
            nonnegative=("seed", "tsne_k_index"),
        )
        if self.theory not in ("gd", "flow"):
            raise ValueError(f"theory must be 'gd' or 'flow', got {self.theory!r}")
        if self.twin_dtype not in ("float32", "float64"):
            raise ValueError(f"twin_dtype must be 'float32' or 'float64', got {self.twin_dtype!r}")
        if self.n_snapshots < 2:
            raise ValueError("n_snapshots must be >= 2 (init and end)")


PRESETS = {
    "quick": Config(
        widths=(128, 128), n_train=500, n_test=300, lr=0.05, steps=800, n_snapshots=10, n_k=4
    ),
    "paper": Config(),
}


@dataclass
class ReluRun:
    """Snapshots of a full-batch ReLU run: steps, layer weights and gates (train and held-out
    samples, as numpy arrays: what the twin is built from), losses."""

    steps: list[int]
    weights: list[list[np.ndarray]]
    gates_train: list[list[np.ndarray]]
    gates_test: list[list[np.ndarray]]
    loss: list[float]


def relu_run(
    config: Config,
    xtr: torch.Tensor,
    ytr: torch.Tensor,
    xte: torch.Tensor,
    lr: float,
    steps: int,
    snaps: list[int],
) -> ReluRun:
    """Train the bias-free MLP by full-batch GD in float64 and keep what the theory needs."""
    torch.manual_seed(config.seed)
    model = mlp(xtr.shape[1], config.widths, N_CLASSES, dtype=torch.float64).to(xtr.device)

    def snapshot(m: torch.nn.Module) -> dict[str, object]:
        train_arrays = read_mlp(m, xtr)
        return {
            "weights": train_arrays.weights,
            "gates_train": train_arrays.gates,
            "gates_test": read_mlp(m, xte).gates,
            "loss": float(torch.nn.functional.cross_entropy(m(xtr), ytr)),
        }

    rec = CallbackRecorder(snapshot)
    train(
        model,
        xtr,
        ytr,
        steps=steps,
        lr=lr,
        loss="cross_entropy",
        snapshot_steps=snaps,
        recorders=[rec],
        seed=config.seed,
    )
    values = rec.values
    return ReluRun(
        steps=rec.steps,
        weights=[v["weights"] for v in values],
        gates_train=[v["gates_train"] for v in values],
        gates_test=[v["gates_test"] for v in values],
        loss=[v["loss"] for v in values],
    )


def measured_weff(weights: list[np.ndarray], x: torch.Tensor) -> np.ndarray:
    """W_eff(x) of the bias-free ReLU MLP with these layer weights: (sample, out, in)."""
    model = mlp(weights[0].shape[1], [w.shape[0] for w in weights[:-1]], weights[-1].shape[0])
    model = model.to(torch.float64)
    with torch.no_grad():
        for lin, w in zip(
            [m for m in model if isinstance(m, torch.nn.Linear)], weights, strict=True
        ):
            lin.weight.copy_(torch.from_numpy(w))
    return effective_weights(model, x.cpu()).W.numpy()


def rel_error(pred: np.ndarray, meas: np.ndarray) -> float:
    """Mean over samples of ||W_pred(x) - W_meas(x)||_F / ||W_meas(x)||_F."""
    num = np.linalg.norm((pred - meas).reshape(len(meas), -1), axis=1)
    den = np.linalg.norm(meas.reshape(len(meas), -1), axis=1)
    return float(np.mean(num / den))


def theory_run(
    config: Config, run: ReluRun, k: int, X: np.ndarray, Y: np.ndarray
) -> tuple[gdln.ReLN, list[dict[str, np.ndarray]]]:
    """The frozen-gate twin of snapshot k (``gdln.ReLN.from_gates``) and its weights at every
    snapshot from k on: the same gradient-descent steps as the ReLU net (``theory="gd"``) or
    the exact flow (``theory="flow"``, RKC), both with the mean cross-entropy; the steps'
    gradients in ``config.twin_dtype``."""
    twin = gdln.ReLN.from_gates(run.weights[k], run.gates_train[k])
    steps = np.array(run.steps[k:]) - run.steps[k]
    loss = gdln.CrossEntropy()
    if config.theory == "flow":
        traj = gdln.integrate(
            twin.network, X, Y, twin.initial, config.lr * steps, twin.gates, loss=loss,
            solver="RKC", rtol=config.flow_rtol, atol=1e-9,
        )  # fmt: skip
    else:
        traj = gdln.gradient_descent(
            twin.network, X, Y, twin.initial, config.lr, int(steps[-1]), twin.gates, loss=loss,
            record_steps=steps, dtype=np.dtype(config.twin_dtype).type,
        )  # fmt: skip
    return twin, [traj.weights_at(j) for j in range(len(steps))]


def _attrs(long_name: str, units: str = "1") -> dict[str, str]:
    return {"long_name": long_name, "units": units}


def run(config: Config) -> xr.Dataset:
    """ReLU run, frozen-gate GDLN predictions from several snapshots k, and their comparison."""
    device = torch.device(config.device)
    Xtr, ytr, Xte, yte = mnist_split(
        config.mnist_dir, config.n_train, config.n_test, config.seed, config.standardize
    )
    xtr = torch.tensor(Xtr, dtype=torch.float64, device=device)
    xte = torch.tensor(Xte, dtype=torch.float64, device=device)
    ttr = torch.tensor(ytr, device=device)
    snaps = log_spaced_steps(config.steps, config.n_snapshots)
    run_ = relu_run(config, xtr, ttr, xte, config.lr, config.steps, snaps)
    n_t = len(snaps)
    # snapshots are log-spaced in time, so k evenly spaced in snapshot index is log-spaced too
    k_idx = sorted(set(np.round(np.linspace(0, n_t - 2, config.n_k)).astype(int).tolist()))
    Y = np.eye(N_CLASSES)[ytr]
    layers = len(config.widths)

    # measured W_eff is recomputed when needed (cheap) rather than held for every snapshot
    meas_metrics, meas_acc = [], []
    for w in run_.weights:
        meas = measured_weff(w, xte)
        meas_metrics.append(class_metrics(meas, yte))
        meas_acc.append(float(np.mean(np.einsum("soi,si->so", meas, Xte).argmax(1) == yte)))

    shape = (len(k_idx), n_t)
    err, ratio_p, sil_p, acc_p, loss_t = (np.full(shape, np.nan) for _ in range(5))
    tsne_pred = np.full((len(yte), 2), np.nan)
    tsne_k = k_idx[min(config.tsne_k_index, len(k_idx) - 1)]
    for row, k in enumerate(tqdm(k_idx, desc="GDLN from snapshot k", leave=False, disable=None)):
        twin, weights = theory_run(config, run_, k, Xtr, Y)
        test_gates = twin.gates_from(run_.gates_test[k])
        for j, W in enumerate(weights, start=k):
            pred = twin.network.effective_map(W, test_gates)[("y", "x")]
            err[row, j] = rel_error(pred, measured_weff(run_.weights[j], xte))
            metrics = class_metrics(pred, yte)
            ratio_p[row, j], sil_p[row, j] = metrics["ratio_inter_intra"], metrics["silhouette"]
            acc_p[row, j] = np.mean(np.einsum("soi,si->so", pred, Xte).argmax(1) == yte)
            logits = twin.network.forward(W, Xtr, twin.gates)["y"]
            loss_t[row, j] = gdln.CrossEntropy().value({"y": logits}, {"y": Y})
            if k == tsne_k and j == n_t - 1:
                tsne_pred = tsne_embedding(pred, seed=config.seed)
    tsne_meas = tsne_embedding(measured_weff(run_.weights[-1], xte), seed=config.seed)

    flips = np.full((n_t, layers), np.nan)  # no previous snapshot at t = 0
    flips_final = np.zeros((n_t, layers))
    for j in range(n_t):
        if j > 0:
            flips[j] = gate_flip_fraction(run_.gates_train[j - 1], run_.gates_train[j])
        flips_final[j] = gate_flip_fraction(run_.gates_train[j], run_.gates_train[-1])

    halving = np.full(n_t, np.nan)
    halving_loss = np.full(n_t, np.nan)
    if config.check_step:
        half = relu_run(
            config, xtr, ttr, xte, config.lr / 2, 2 * config.steps, [2 * s for s in snaps]
        )
        for j, w in enumerate(half.weights):
            full = measured_weff(run_.weights[j], xte)
            halving[j] = rel_error(measured_weff(w, xte), full)
            halving_loss[j] = abs(half.loss[j] - run_.loss[j]) / run_.loss[j]

    ratio_m = np.array([m["ratio_inter_intra"] for m in meas_metrics])
    sil_m = np.array([m["silhouette"] for m in meas_metrics])
    with np.errstate(invalid="ignore"):
        ratio_gap = np.nanmax(np.abs(ratio_p - ratio_m) / np.abs(ratio_m), axis=1)
        sil_gap = np.nanmax(np.abs(sil_p - sil_m) / np.abs(sil_m), axis=1)
    time = config.lr * np.array(snaps, dtype=np.float64)
    k_steps = np.array([snaps[k] for k in k_idx])
    ds = xr.Dataset(
        {
            "weff_rel_error": (
                ("k", "time"),
                err,
                _attrs("mean relative Frobenius error of predicted vs measured W_eff (held-out)"),
            ),
            "loss_relu": ("time", np.array(run_.loss), _attrs("ReLU training cross-entropy")),
            "loss_theory": (
                ("k", "time"),
                loss_t,
                _attrs("frozen-gate GDLN training cross-entropy"),
            ),
            "accuracy_measured": ("time", np.array(meas_acc), _attrs("ReLU held-out accuracy")),
            "accuracy_predicted": (
                ("k", "time"),
                acc_p,
                _attrs("held-out accuracy of the frozen-gate GDLN"),
            ),
            "ratio_inter_intra_measured": (
                "time",
                ratio_m,
                _attrs("inter / intra-class distance of normalised W_eff, ReLU net"),
            ),
            "ratio_inter_intra_predicted": (
                ("k", "time"),
                ratio_p,
                _attrs("inter / intra-class distance of normalised W_eff, GDLN prediction"),
            ),
            "silhouette_measured": (
                "time",
                sil_m,
                _attrs("silhouette of W_eff by class, ReLU net"),
            ),
            "ratio_rel_gap": (
                "k",
                ratio_gap,
                _attrs("max over t >= t_k of |predicted - measured| / measured inter/intra ratio"),
            ),
            "silhouette_rel_gap": (
                "k",
                sil_gap,
                _attrs("max over t >= t_k of |predicted - measured| / |measured| silhouette"),
            ),
            "silhouette_predicted": (
                ("k", "time"),
                sil_p,
                _attrs("silhouette of W_eff by class, GDLN prediction"),
            ),
            "gate_flip_fraction": (
                ("time", "layer"),
                flips,
                _attrs("fraction of training-set gates flipped since the previous snapshot"),
            ),
            "gate_flip_to_final": (
                ("time", "layer"),
                flips_final,
                _attrs("fraction of training-set gates that differ from the final gates"),
            ),
            "step_halving_weff_change": (
                "time",
                halving,
                _attrs("relative change of measured W_eff when the step is halved"),
            ),
            "step_halving_loss_change": (
                "time",
                halving_loss,
                _attrs("relative change of the ReLU loss when the step is halved"),
            ),
            "tsne_measured": (
                ("sample", "component"),
                tsne_meas,
                _attrs("t-SNE of measured W_eff at the end"),
            ),
            "tsne_predicted": (
                ("sample", "component"),
                tsne_pred,
                _attrs("t-SNE of predicted W_eff at the end, gates from k = tsne_k"),
            ),
        },
        coords={
            "time": ("time", time, _attrs("training time t = step * lr (full-batch GD)")),
            "step": ("time", np.array(snaps), _attrs("gradient-descent step")),
            "k": ("k", k_steps, _attrs("step of the snapshot the gates come from")),
            "t_k": ("k", config.lr * k_steps.astype(np.float64), _attrs("time of snapshot k")),
            "layer": ("layer", np.arange(1, layers + 1), _attrs("hidden layer")),
            "sample": ("sample", np.arange(len(yte)), _attrs("held-out sample index")),
            "label": ("sample", yte, _attrs("digit class of the sample")),
            "component": ("component", np.arange(2), _attrs("t-SNE component")),
        },
        attrs={
            "architecture": "-".join(map(str, [Xtr.shape[1], *config.widths, N_CLASSES])),
            "loss_function": "mean cross-entropy on both sides; clock t = step * lr",
            "theory": config.theory,
            "twin_dtype": config.twin_dtype if config.theory == "gd" else "float64",
            "tsne_k": int(snaps[tsne_k]),
        },
    )
    return io.finalize(ds, NAME, config)


def summary(ds: xr.Dataset) -> dict[str, float]:
    """Headline numbers: prediction error at the end per k, gate settling, step check."""
    out: dict[str, float] = {}
    for k in ds.k.values:
        out[f"weff_rel_error_end_k{int(k)}"] = float(ds.weff_rel_error.sel(k=k).isel(time=-1))
    out["ratio_inter_intra_measured_end"] = float(ds.ratio_inter_intra_measured[-1])
    out["ratio_inter_intra_predicted_end_k0"] = float(ds.ratio_inter_intra_predicted[0, -1])
    out["accuracy_measured_end"] = float(ds.accuracy_measured[-1])
    out["accuracy_predicted_end_k0"] = float(ds.accuracy_predicted[0, -1])
    for metric in ("ratio", "silhouette"):
        within = (ds[f"{metric}_rel_gap"] <= 0.1).values
        # the first k from which every later k keeps the metric within 10% of the measured one
        settled = [bool(within[i:].all()) for i in range(len(within))]
        out[f"first_k_{metric}_within_10pct"] = (
            float(ds.k[settled.index(True)]) if True in settled else float("nan")
        )
    out["gate_flip_last_interval"] = float(ds.gate_flip_fraction[-1].mean())
    out["step_halving_weff_change_max"] = float(ds.step_halving_weff_change.max())
    return out


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """Error against k and t; metrics measured vs predicted; gate flips; t-SNE for one k."""
    t = ds.time.values
    tt = np.maximum(t, t[1] / 3)
    fig = Figure(figsize=(13, 8))
    ax = fig.subplots(2, 3).ravel()
    colors = [f"C{i}" for i in range(ds.sizes["k"])]
    for i in range(ds.sizes["k"]):
        label = f"gates from t_k = {float(ds.t_k[i]):.3g}"
        ax[0].plot(tt, ds.weff_rel_error[i], "o-", ms=3, color=colors[i], label=label)
        ax[1].plot(tt, ds.ratio_inter_intra_predicted[i], "o--", ms=3, color=colors[i])
        ax[2].plot(tt, ds.accuracy_predicted[i], "o--", ms=3, color=colors[i])
        ax[3].plot(tt, ds.loss_theory[i], "o--", ms=3, color=colors[i])
    ax[1].plot(tt, ds.ratio_inter_intra_measured, "k-", lw=2, label="ReLU (measured)")
    ax[2].plot(tt, ds.accuracy_measured, "k-", lw=2, label="ReLU (measured)")
    ax[3].plot(tt, ds.loss_relu, "k-", lw=2, label="ReLU")
    for layer in ds.layer.values:
        ax[4].plot(
            tt[1:],
            ds.gate_flip_fraction.sel(layer=layer)[1:],
            "o-",
            ms=3,
            label=f"layer {layer}, since previous snapshot",
        )
        ax[4].plot(
            tt,
            ds.gate_flip_to_final.sel(layer=layer),
            "s:",
            ms=3,
            label=f"layer {layer}, vs final gates",
        )
    if np.isfinite(ds.step_halving_weff_change).any():
        ax[5].plot(tt, ds.step_halving_weff_change, "o-", ms=3, label="W_eff")
        ax[5].plot(tt, ds.step_halving_loss_change, "s-", ms=3, label="loss")
    titles = [
        "W_eff prediction error",
        "inter/intra ratio (dashed: GDLN)",
        "held-out accuracy (dashed: GDLN)",
        "training loss (dashed: GDLN)",
        "gate flips",
        "relative change when the step is halved",
    ]
    for a, title in zip(ax, titles, strict=True):
        a.set_xscale("log")
        a.set_title(title, fontsize=10)
        a.set_xlabel("t = step * lr")
        if a.get_legend_handles_labels()[0]:  # the step-halving panel is empty without check
            a.legend(fontsize=7)
    fig.suptitle(f"ReLU net vs frozen-gate GDLN ({ds.attrs.get('architecture', '')})")
    fig.tight_layout()
    figs = {"comparison": fig}
    if np.isfinite(ds.tsne_predicted).all():
        fig2 = Figure(figsize=(10, 4.6))
        axes = fig2.subplots(1, 2)
        for a, name, title in (
            (axes[0], "tsne_measured", "ReLU W_eff (measured)"),
            (axes[1], "tsne_predicted", f"GDLN W_eff (gates from step {ds.attrs['tsne_k']})"),
        ):
            emb = ds[name].values
            a.scatter(
                emb[:, 0], emb[:, 1], c=ds.label.values, cmap="tab10", s=6, vmin=-0.5, vmax=9.5
            )
            a.set_title(f"{title}, t = {float(t[-1]):.3g}")
            a.set_xticks([])
            a.set_yticks([])
        figs["tsne"] = fig2
    return figs
