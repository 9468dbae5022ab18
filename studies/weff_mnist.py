"""Linear lens on MNIST: per-sample effective weights W_eff(x) of a ReLU MLP over training.

Ye 2025 (arXiv 2511.05628): a bias-free ReLU MLP computes f(x) = W_eff(x) x; during training
same-class W_eff converge and different-class W_eff diverge. The paper gives no architecture,
optimiser or metric; ours (documented in the Dataset attrs): a 784-256-256-10 MLP, inputs
standardised by the training set's mean and std, SGD on the mean cross-entropy, metrics of
:mod:`relu_lens.metrics` on the held-out set at log-spaced snapshots, computed on the exact
isometric representation Z(x) (W_eff(x) = Z(x) Q^T), t-SNE at the first and last snapshot.
With ``bias=True`` each sample's map is affine, f(x) = W_eff(x) x + b_eff(x), and the metrics
use the rows [W_eff(x), b_eff(x)].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from matplotlib.figure import Figure

from relu_lens.data import mnist_split
from relu_lens.effective import iter_effective_weights
from relu_lens.metrics import class_metrics, tsne_embedding
from relu_lens.models import mlp
from relu_lens.recorders import CallbackRecorder, EffectiveWeightStream
from relu_lens.train import log_spaced_steps, train
from studies import io
from studies.config import check_numbers

NAME = "weff_mnist"


@dataclass(frozen=True)
class Config:
    """Settings of one run; ``time`` in the Dataset is step * lr.

    ``store``: "none"; "W_eff" streams W_eff(x) (time, sample, out, in) of the held-out set into
    the result; "Z" streams the isometric Z(x) (time, sample, out, rank) with Q (time, in, rank),
    W_eff = Z Q^T, about 3x smaller for a 256-wide first layer. b_eff comes with both.
    """

    widths: tuple[int, ...] = (256, 256)
    bias: bool = False
    n_train: int = 4000
    n_test: int = 1000
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.2
    optimizer: str = "sgd"
    standardize: bool = True
    n_snapshots: int = 12
    tsne_every: bool = False
    store: str = "none"
    mnist_dir: str | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("lr",),
            counts=("widths", "n_train", "n_test", "epochs", "batch_size", "n_snapshots"),
        )
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.store not in ("none", "W_eff", "Z"):
            raise ValueError(f"store must be 'none', 'W_eff' or 'Z', got {self.store!r}")
        if self.n_snapshots < 2:
            raise ValueError("n_snapshots must be >= 2 (init and end)")


PRESETS = {
    "quick": Config(n_train=2000, n_test=500, epochs=4, n_snapshots=8),
    "paper": Config(store="W_eff"),
    "bias": Config(n_train=2000, n_test=500, epochs=4, n_snapshots=8, bias=True),
}


def _features(model: torch.nn.Module, x: torch.Tensor, bias: bool) -> np.ndarray:
    """Rows isometric to W_eff(x) (flattened Z(x)), with b_eff(x) appended when ``bias``."""
    rows = []
    for _, Z, b in iter_effective_weights(model, x, isometric=True):
        rows.append(torch.cat([Z.flatten(1), b], dim=1) if bias else Z.flatten(1))
    return torch.cat(rows).double().cpu().numpy()


def _attrs(long_name: str, units: str = "1") -> dict[str, str]:
    return {"long_name": long_name, "units": units}


def run(config: Config) -> xr.Dataset:
    """Train the MLP, measure W_eff class structure at every snapshot; returns the Dataset."""
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    Xtr, ytr, Xte, yte = mnist_split(
        config.mnist_dir, config.n_train, config.n_test, config.seed, config.standardize
    )
    xtr = torch.tensor(Xtr, dtype=torch.float32, device=device)
    ttr = torch.tensor(ytr, device=device)
    xte = torch.tensor(Xte, dtype=torch.float32, device=device)
    tte = torch.tensor(yte, device=device)
    model = mlp(xtr.shape[1], config.widths, 10, bias=config.bias).to(device)
    steps = config.epochs * int(np.ceil(config.n_train / config.batch_size))
    snaps = log_spaced_steps(steps, config.n_snapshots)
    ce = torch.nn.functional.cross_entropy

    def measure(m: torch.nn.Module) -> dict[str, object]:
        out_tr, out_te = m(xtr), m(xte)
        feats = _features(m, xte, config.bias)
        record: dict[str, object] = {
            "loss": float(ce(out_tr, ttr)),
            "test_loss": float(ce(out_te, tte)),
            "train_accuracy": float((out_tr.argmax(1) == ttr).float().mean()),
            "accuracy": float((out_te.argmax(1) == tte).float().mean()),
            "metrics": class_metrics(feats, yte),
            "features": feats if keep_features(len(recorder.values)) else None,
        }
        if config.bias:
            b = torch.cat([b for _, _, b in iter_effective_weights(m, xte)])
            record["bias_fraction"] = float((b.norm(dim=1) / out_te.norm(dim=1)).mean())
        return record

    def keep_features(index: int) -> bool:
        return config.tsne_every or index in (0, len(snaps) - 1)

    recorder = CallbackRecorder(measure)
    recorders: list = [recorder]
    stream_path = None
    if config.store != "none":
        stream_path = io.scratch_path("weff_stream.nc")
        recorders.append(
            EffectiveWeightStream(
                stream_path,
                xte,
                model,
                "W" if config.store == "W_eff" else "Z",
                256,
                np.float32,
                config.lr,
            )
        )
    train(
        model,
        xtr,
        ttr,
        steps=steps,
        lr=config.lr,
        optimizer=config.optimizer,
        batch_size=config.batch_size,
        snapshot_steps=snaps,
        recorders=recorders,
        seed=config.seed,
    )
    records = recorder.values

    n_t, n_s = len(snaps), len(yte)
    tsne = np.full((n_t, n_s, 2), np.nan)
    for k, rec in enumerate(records):
        if rec["features"] is not None:
            tsne[k] = tsne_embedding(rec["features"], seed=config.seed)

    def series(key: str) -> np.ndarray:
        return np.array([r["metrics"][key] if key in r["metrics"] else r[key] for r in records])

    classes = np.arange(10)
    time = np.array(snaps, dtype=np.float64) * config.lr
    ds = xr.Dataset(
        {
            "loss": ("time", series("loss"), _attrs("training cross-entropy (mean)")),
            "test_loss": ("time", series("test_loss"), _attrs("held-out cross-entropy (mean)")),
            "train_accuracy": ("time", series("train_accuracy"), _attrs("training accuracy")),
            "accuracy": ("time", series("accuracy"), _attrs("held-out accuracy")),
            "intra_distance": (
                "time",
                series("intra"),
                _attrs("mean intra-class distance of normalised W_eff"),
            ),
            "inter_distance": (
                "time",
                series("inter"),
                _attrs("mean inter-class distance of normalised W_eff"),
            ),
            "ratio_inter_intra": (
                "time",
                series("ratio_inter_intra"),
                _attrs("inter / intra-class distance of normalised W_eff"),
            ),
            "silhouette": ("time", series("silhouette"), _attrs("silhouette of W_eff by class")),
            "nn_agreement": (
                "time",
                series("nn_agreement"),
                _attrs("1-nearest-neighbour class agreement of W_eff"),
            ),
            "spread": (
                ("time", "class"),
                series("spread"),
                _attrs("mean intra-class distance of normalised W_eff, per class"),
            ),
            "n_subclusters": (
                ("time", "class"),
                series("n_subclusters"),
                _attrs("sub-clusters per class (Ward, best silhouette >= 0.15, else 1)"),
            ),
            "tsne": (
                ("time", "sample", "component"),
                tsne,
                _attrs("t-SNE of normalised W_eff (NaN where not computed)"),
            ),
        },
        coords={
            "time": ("time", time, _attrs("training time t = step * lr")),
            "step": ("time", np.array(snaps), _attrs("optimiser step")),
            "sample": ("sample", np.arange(n_s), _attrs("held-out sample index")),
            "label": ("sample", yte, _attrs("digit class of the sample")),
            "class": ("class", classes, _attrs("digit class")),
            "component": ("component", np.arange(2), _attrs("t-SNE component")),
        },
        attrs={
            "architecture": "-".join(map(str, [Xtr.shape[1], *config.widths, 10])),
            "bias": int(config.bias),
            "loss_function": "mean cross-entropy; clock t = step * lr (SGD minibatch)",
            "metric_space": "normalised rows of W_eff (exact isometric Z representation)"
            + (" with b_eff appended" if config.bias else ""),
        },
    )
    if config.bias:
        ds["bias_fraction"] = (
            "time",
            series("bias_fraction"),
            _attrs("mean ||b_eff(x)|| / ||f(x)|| on held-out samples"),
        )
    if stream_path is not None:
        stream = xr.open_dataset(stream_path, chunks={})
        for name in set(stream.data_vars) - {"step"}:  # W_eff or (Z, Q), and b_eff
            ds[name] = stream[name].assign_coords(time=ds.time).drop_vars("step", errors="ignore")
    return io.finalize(ds, NAME, config)


def summary(ds: xr.Dataset) -> dict[str, float]:
    """Headline numbers: accuracy and class structure of W_eff at init and end."""
    first, last = ds.isel(time=0), ds.isel(time=-1)
    return {
        "test_accuracy_end": float(last.accuracy),
        "ratio_inter_intra_init": float(first.ratio_inter_intra),
        "ratio_inter_intra_end": float(last.ratio_inter_intra),
        "silhouette_init": float(first.silhouette),
        "silhouette_end": float(last.silhouette),
        "nn_agreement_end": float(last.nn_agreement),
    } | ({"bias_fraction_end": float(last.bias_fraction)} if "bias_fraction" in ds else {})


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """The paper's t-SNE figure (init vs trained) and the metrics over training."""
    figs: dict[str, Figure] = {}
    done = [k for k in range(ds.sizes["time"]) if np.isfinite(ds.tsne.isel(time=k)).all()]
    if done:
        fig = Figure(figsize=(10, 4.6))
        axes = fig.subplots(1, 2)
        for ax, k, title in ((axes[0], done[0], "(a) initial"), (axes[1], done[-1], "(b) trained")):
            emb = ds.tsne.isel(time=k).values
            sc = ax.scatter(
                emb[:, 0], emb[:, 1], c=ds.label.values, cmap="tab10", s=6, vmin=-0.5, vmax=9.5
            )
            ax.set_title(f"{title}: t = {float(ds.time[k]):.3g}")
            ax.set_xticks([])
            ax.set_yticks([])
        fig.colorbar(sc, ax=axes, ticks=range(10), label="class")
        fig.suptitle("t-SNE of W_eff(x), held-out digits")
        figs["tsne"] = fig
    fig = Figure(figsize=(12, 7))
    axes = fig.subplots(2, 3).ravel()
    t = np.maximum(ds.time.values, ds.time.values[1] / 3)
    for ax, names in zip(
        axes,
        (
            ("loss", "test_loss"),
            ("train_accuracy", "accuracy"),
            ("ratio_inter_intra",),
            ("intra_distance", "inter_distance"),
            ("silhouette", "nn_agreement"),
            ("n_subclusters",),
        ),
        strict=True,
    ):
        for name in names:
            values = ds[name].mean("class") if "class" in ds[name].dims else ds[name]
            ax.plot(t, values, marker="o", ms=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("t = step * lr (t = 0 drawn at left)")
        ax.legend(fontsize=7)
    fig.suptitle(f"W_eff class structure over training ({ds.attrs.get('architecture', '')})")
    fig.tight_layout()
    figs["metrics"] = fig
    return figs
