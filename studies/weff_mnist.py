"""Linear lens on MNIST: per-sample effective weights W_eff(x) of a ReLU net over training.

Ye 2025 (arXiv 2511.05628): a bias-free ReLU MLP computes f(x) = W_eff(x) x; during training
same-class W_eff converge and different-class W_eff diverge. The paper gives no architecture,
optimiser or metric; ours (documented in the Dataset attrs): a 784-256-256-10 MLP, inputs
standardised by the training set's mean and std, SGD on the mean cross-entropy, metrics of
:mod:`relu_lens.metrics` on the held-out set at log-spaced snapshots, computed on the exact
isometric representation Z(x) (W_eff(x) = Z(x) Q^T), t-SNE at the first and last snapshot.
With ``bias=True`` each sample's map is affine, f(x) = W_eff(x) x + b_eff(x), and the metrics
use the rows [W_eff(x), b_eff(x)].

``arch`` asks the same question of other piecewise-linear nets (the paper leaves them to
future work): "cnn" (:func:`relu_lens.models.cnn`: two conv -> BatchNorm -> ReLU -> max-pool
blocks and a linear readout) and "resnet" (:func:`relu_lens.models.resnet`: a stem and three
residual blocks with BatchNorm, average pooling, a linear readout). Both are trained in train
mode (BatchNorm on batch statistics) and read in eval mode, where they are affine per input,
W_eff(x) x + b_eff(x) with b_eff from the BatchNorm shifts; the metrics stay on W_eff (with
b_eff appended only when ``bias``), and ``bias_fraction`` is recorded for them.
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
from relu_lens.models import cnn, mlp, resnet
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

    ``arch``: "mlp" (hidden ``widths``), "cnn" or "resnet" (conv ``channels`` per block; None
    is (16, 32) for the CNN and (16, 32, 64) for the ResNet). For the CNN and ResNet ``bias``
    is the readout's bias and Z is W_eff itself (their padded first convolution leaves no
    smaller exact basis, :func:`relu_lens.effective.isometric_basis`). ``optimizer``, ``lr``
    and ``epochs`` left at None take the architecture's defaults (:data:`TRAINING`): SGD at
    0.2 for 10 epochs for the MLP; Adam at 1e-3 for the CNN (with dropout 0.5 before its
    readout; 20 epochs, where 10 leave it at 96.8% held-out accuracy at the paper preset) and
    the ResNet (10 epochs), where SGD at 0.2 spikes in its first steps (:func:`training`; the
    Dataset attrs record the values used).
    """

    arch: str = "mlp"
    widths: tuple[int, ...] = (256, 256)
    channels: tuple[int, ...] | None = None
    bias: bool = False
    n_train: int = 4000
    n_test: int = 1000
    epochs: int | None = None
    batch_size: int = 32
    lr: float | None = None
    optimizer: str | None = None
    standardize: bool = True
    n_snapshots: int = 12
    tsne_every: bool = False
    store: str = "none"
    mnist_dir: str | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        check_numbers(
            self,
            positive=("lr",),
            counts=(
                "widths",
                "channels",
                "n_train",
                "n_test",
                "epochs",
                "batch_size",
                "n_snapshots",
            ),
        )
        if self.optimizer not in (None, "sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.store not in ("none", "W_eff", "Z"):
            raise ValueError(f"store must be 'none', 'W_eff' or 'Z', got {self.store!r}")
        if self.n_snapshots < 2:
            raise ValueError("n_snapshots must be >= 2 (init and end)")


ARCHITECTURES = ("mlp", "cnn", "resnet")
DEFAULT_CHANNELS = {"cnn": (16, 32), "resnet": (16, 32, 64)}
#: optimizer, learning rate and epochs per architecture, where Config leaves them at None
TRAINING = {"mlp": ("sgd", 0.2, 10), "cnn": ("adam", 1e-3, 20), "resnet": ("adam", 1e-3, 10)}

PRESETS = {
    "quick": Config(n_train=2000, n_test=500, epochs=4, n_snapshots=8),
    "paper": Config(store="W_eff"),
    "bias": Config(n_train=2000, n_test=500, epochs=4, n_snapshots=8, bias=True),
}


def _features(
    model: torch.nn.Module, x: torch.Tensor, bias: bool
) -> tuple[np.ndarray, torch.Tensor]:
    """Rows isometric to W_eff(x) (flattened Z(x)), with b_eff(x) appended when ``bias``, and
    b_eff(x) (sample, out)."""
    rows, offsets = [], []
    for _, Z, b in iter_effective_weights(model, x, isometric=True):
        rows.append(torch.cat([Z.flatten(1), b], dim=1) if bias else Z.flatten(1))
        offsets.append(b)
    return torch.cat(rows).double().cpu().numpy(), torch.cat(offsets)


def training(config: Config) -> tuple[str, float, int]:
    """The optimizer, learning rate and epochs of a run: the Config's, or the architecture's
    default."""
    optimizer, lr, epochs = TRAINING[config.arch]
    return (
        config.optimizer or optimizer,
        lr if config.lr is None else config.lr,
        epochs if config.epochs is None else config.epochs,
    )


def _model(config: Config, n_in: int) -> tuple[torch.nn.Module, str]:
    """The network of ``config.arch`` for flat inputs of ``n_in`` square-image pixels, and its
    description for the attrs."""
    if config.arch == "mlp":
        description = "-".join(map(str, [n_in, *config.widths, 10]))
        return mlp(n_in, config.widths, 10, bias=config.bias), description
    side = round(n_in**0.5)
    if side * side != n_in:
        raise ValueError(f"arch={config.arch} needs square images; got {n_in} pixels per image")
    channels = config.channels or DEFAULT_CHANNELS[config.arch]
    widths = "-".join(map(str, channels))
    if config.arch == "cnn":
        model = cnn((1, side, side), channels, 10, bias=config.bias, dropout=0.5)
        description = (
            f"cnn {side}x{side}: [conv5-BN-ReLU-maxpool2] x ({widths}) - dropout 0.5 - linear 10"
        )
    else:
        model = resnet((1, side, side), channels, 10, bias=config.bias)
        description = (
            f"resnet {side}x{side}: stem conv3/2-BN-ReLU, residual blocks ({widths}), "
            "average pool - linear 10"
        )
    return model, description


def _attrs(long_name: str, units: str = "1") -> dict[str, str]:
    return {"long_name": long_name, "units": units}


def run(config: Config) -> xr.Dataset:
    """Train the network, measure W_eff class structure at every snapshot; returns the Dataset."""
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    Xtr, ytr, Xte, yte = mnist_split(
        config.mnist_dir, config.n_train, config.n_test, config.seed, config.standardize
    )
    xtr = torch.tensor(Xtr, dtype=torch.float32, device=device)
    ttr = torch.tensor(ytr, device=device)
    xte = torch.tensor(Xte, dtype=torch.float32, device=device)
    tte = torch.tensor(yte, device=device)
    model, architecture = _model(config, xtr.shape[1])
    model = model.to(device)
    affine = config.bias or config.arch != "mlp"  # b_eff can be nonzero
    optimizer, lr, epochs = training(config)
    steps = epochs * int(np.ceil(config.n_train / config.batch_size))
    snaps = log_spaced_steps(steps, config.n_snapshots)
    ce = torch.nn.functional.cross_entropy

    def measure(m: torch.nn.Module) -> dict[str, object]:
        out_tr, out_te = m(xtr), m(xte)
        feats, b = _features(m, xte, config.bias)
        record: dict[str, object] = {
            "loss": float(ce(out_tr, ttr)),
            "test_loss": float(ce(out_te, tte)),
            "train_accuracy": float((out_tr.argmax(1) == ttr).float().mean()),
            "accuracy": float((out_te.argmax(1) == tte).float().mean()),
            "metrics": class_metrics(feats, yte),
            "features": feats if keep_features(len(recorder.values)) else None,
        }
        if affine:
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
                lr,
            )
        )
    train(
        model,
        xtr,
        ttr,
        steps=steps,
        lr=lr,
        optimizer=optimizer,
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
    time = np.array(snaps, dtype=np.float64) * lr
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
            "architecture": architecture,
            "bias": int(config.bias),
            "loss_function": f"mean cross-entropy; clock t = step * lr ({optimizer} minibatch)",
            "optimizer": optimizer,
            "lr": lr,
            "epochs": epochs,
            "metric_space": "normalised rows of W_eff (exact isometric Z representation)"
            + (" with b_eff appended" if config.bias else ""),
        },
    )
    if affine:
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
