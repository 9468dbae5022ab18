"""Early neuron alignment on an MNIST digit pair: the MNIST figure of Min, Mallada & Vidal 2024.

Two-layer bias-free ReLU net f(x) = sum_j v_j relu(w_j^T x), h = 50, on two centred digit
classes (0 vs 1 by default; 3 vs 8 and 1 vs 7 are the paper's other pairs, and the preset
``pairs`` runs all three), labels +1 for the first digit and -1 for the second. The paper's
settings: both layers initialised from N(0, 1e-12) (std 1e-6, not balanced), gradient descent
with step 2e-3 for 15,000 iterations, exponential loss.

Several pairs (``digits`` = (a1, b1, a2, b2, ...)) are trained one after the other; their
Datasets are stacked along a ``pair`` dim (the snapshot index becomes the dim ``snapshot``, and
``time``, which depends on each pair's sample count, a variable over (pair, snapshot)). One
pair keeps the single-pair layout (dim ``time``). A pair that does not reach directional
alignment within the iterations is named in the ``cells_not_learned`` attr with why: the
largest min-cosine it reached and how far its loss had fallen (still at its initial value:
still in the alignment phase).

Normalisation (our choice; the paper does not state its sample count or normalisation): the
step is taken on the MEAN loss, i.e. eta/n on the summed loss of the paper's theory. On the
summed loss the step 2e-3 is unstable for hundreds of samples (the small-weight growth rate
||x_a|| ~ n ||x|| times 2e-3 exceeds one). Times are recorded both as iterations and in the
paper's summed-loss clock t = k eta / n (attrs say so).

Measured over time: cos(w_j, x+) for j in V+ and cos(w_j, x-) for j in V- (mean with min-max
band), the summed loss, the stable rank and ||W||_2^2, the fraction of neurons in allowed
regions, t_align, and at the end the mean positive and negative neurons beside the class means
(images). The bound's ingredients are computed; centred MNIST pairs are usually not well
separated (mu <= 0), in which case the bound is reported as not applicable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import xarray as xr

from gdln import alignment_bound as ab
from studies import io
from studies.config import check_numbers

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "alignment_mnist"


@dataclass(frozen=True)
class Config:
    """Settings of the MNIST alignment run.

    Attributes:
        digits: (positive digit, negative digit), or several such pairs in a row
            (a1, b1, a2, b2, ...), each run on its own.
        per_class: samples per digit (the first ones after a seeded shuffle); None: all.
        hidden: width h.
        init: "gaussian" (paper: every entry N(0, init_scale^2)) or "balanced"
            (W = init_scale * sqrt(D) * W0 with W0 ~ N(0, 1/D), v_j = +-||w_j||).
        init_scale: std of the Gaussian init (paper: 1e-6).
        eta: step on the mean loss (paper: 2e-3).
        iterations: gradient-descent steps (paper: 15,000).
        snapshots: recorded snapshots.
        loss: "exp" or "logistic".
        cos_threshold: directional alignment, used when S+ / S- are empty or unreachable
            (mu <= 0): every live neuron has cos(w_j, x_{sign v_j}) >= cos_threshold.
        mnist_dir: folder of full-MNIST IDX files; None uses the bundled 5,000-digit subset.
        seed: seed of the sample choice and the init.
        device: torch device.
    """

    digits: tuple[int, ...] = (0, 1)
    per_class: int | None = None
    hidden: int = 50
    init: Literal["gaussian", "balanced"] = "gaussian"
    init_scale: float = 1e-6
    eta: float = 2e-3
    iterations: int = 5000
    snapshots: int = 100
    loss: Literal["exp", "logistic"] = "exp"
    cos_threshold: float = 0.9
    mnist_dir: str | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("init_scale", "eta"),
            counts=("hidden", "iterations", "snapshots", "per_class"),
        )
        if not all(0 <= d <= 9 for d in self.digits):
            raise ValueError(f"digits must be MNIST digits 0..9, got {self.digits}")
        if not -1 <= self.cos_threshold <= 1:
            raise ValueError(f"cos_threshold must lie in [-1, 1], got {self.cos_threshold}")
        if len(self.digits) % 2 or any(a == b for a, b in pairs_of(self.digits)):
            raise ValueError(
                f"digits must be pairs of two different digits (a1, b1, a2, b2, ...), "
                f"got {self.digits}"
            )
        if self.iterations < self.snapshots or self.snapshots < 2:
            raise ValueError("need iterations >= snapshots >= 2")


def pairs_of(digits: tuple[int, ...]) -> list[tuple[int, int]]:
    """(a1, b1, a2, b2, ...) -> [(a1, b1), (a2, b2), ...]."""
    return list(zip(digits[::2], digits[1::2], strict=True))


PRESETS = {
    "quick": Config(),
    "paper": Config(per_class=None, iterations=15_000, snapshots=150),
    "pairs": Config(digits=(0, 1, 3, 8, 1, 7), per_class=None, iterations=15_000, snapshots=150),
}


def digit_pair(
    config: Config, pair: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Centred inputs X (sample, 784) and labels y (+1 first digit, -1 second digit) of
    ``pair`` (default: the first pair of ``config.digits``)."""
    from relu_lens.data import load_mnist

    images, labels = load_mnist(config.mnist_dir)
    rng = np.random.default_rng(config.seed)
    parts = []
    for digit in pair or config.digits[:2]:
        idx = rng.permutation(np.flatnonzero(labels == digit))
        if idx.size == 0:
            raise ValueError(f"digit {digit} does not occur in the MNIST data")
        parts.append(idx[: config.per_class] if config.per_class else idx)
    X = images[np.concatenate(parts)]
    y = np.concatenate([np.ones(parts[0].size), -np.ones(parts[1].size)])
    return X - X.mean(axis=0), y


def _var(data: object, dims: tuple[str, ...], long_name: str, units: str) -> xr.Variable:
    return xr.Variable(dims, np.asarray(data), {"long_name": long_name, "units": units})


def _not_aligned(ds: xr.Dataset, pair: tuple[int, int], config: Config) -> str:
    """Why a pair has no directional alignment time (empty if it has one)."""
    if np.isfinite(float(ds.iteration_cos_align)):
        return ""
    best = np.nan_to_num(ds.min_cos_own.values, nan=-np.inf)
    k = int(np.argmax(best))
    fall = float(ds.loss[-1] / ds.loss[0])
    phase = (
        "the loss is still at its initial value, training is still in the alignment phase"
        if fall > 0.99
        else f"the loss fell to {fall:.3g} of its initial value, past the alignment phase"
    )
    return (
        f"digits {pair[0]} vs {pair[1]}: no directional alignment (every live neuron at cos >= "
        f"{config.cos_threshold}) within {config.iterations} iterations; the smallest cosine "
        f"over live neurons reached at most {float(best[k]):.3f} "
        f"(iteration {int(ds.iteration[k])}) and {phase}"
    )


def run(config: Config) -> xr.Dataset:
    """Train one net per digit pair and return a Dataset with dims (time, hidden, pixel) for
    one pair, (pair, snapshot, hidden, pixel) for several (module docstring)."""
    pairs = pairs_of(config.digits)
    parts = [_run_pair(config, pair) for pair in pairs]
    notes = "; ".join(
        note for ds, p in zip(parts, pairs, strict=True) if (note := _not_aligned(ds, p, config))
    )
    if len(parts) == 1:
        ds = parts[0]
    else:
        per_pair = ("samples", "bound_applicable", "X_min", "X_max")
        stacked = []
        for part in parts:
            part = part.drop_indexes("time").rename_dims(time="snapshot").reset_coords("time")
            for name, long_name in zip(
                per_pair,
                ("samples of the pair", "bound applicable (mu > 0) (0/1)",
                 "smallest input norm", "largest input norm"),
                strict=True,
            ):  # fmt: skip
                part[name] = _var(part.attrs.pop(name), (), long_name, "1")
            stacked.append(part.drop_vars("iteration"))
        labels = [f"{a} vs {b}" for a, b in pairs]
        ds = xr.concat(stacked, "pair", combine_attrs="drop_conflicts")
        ds = ds.assign_coords(
            pair=("pair", labels, {"long_name": "digit pair (+1 vs -1)", "units": "1"})
        )
        first = parts[0].iteration
        ds["iteration"] = ("snapshot", first.values, first.attrs)  # the same for every pair
        ds.attrs.update(
            digits="; ".join(f"{a} (+1) vs {b} (-1)" for a, b in pairs),
            bound_reason="; ".join(
                f"{lab}: {p.attrs['bound_reason']}" for lab, p in zip(labels, parts, strict=True)
            ),
        )
    ds.attrs["cells_not_learned"] = notes
    return io.finalize(ds, NAME, config)


def _run_pair(config: Config, pair: tuple[int, int]) -> xr.Dataset:
    """Train one net on one digit pair: a Dataset with dims (time, hidden, pixel)."""
    import torch

    from relu_lens import alignment as al
    from relu_lens import two_layer as tl

    X, y = digit_pair(config, pair)
    n, D = X.shape
    h = config.hidden
    if config.init == "gaussian":
        W, v = tl.init_gaussian(1, h, D, config.init_scale, config.seed)
    else:
        W, v = tl.init_balanced(1, h, D, config.init_scale * np.sqrt(D), config.seed)
    device = torch.device(config.device)
    Xt = torch.as_tensor(X, device=device)[None]
    yt = torch.as_tensor(y, device=device)[None]
    eta_sum = config.eta / n
    traj = tl.train(
        W.to(device),
        v.to(device),
        Xt,
        yt,
        eta_sum,
        config.iterations,
        loss=config.loss,
        record_every=config.iterations // config.snapshots,
        monitor=al.aligned_monitor(yt),
        num_threads=1,
    )
    Ws, vs = traj.W[:, 0], traj.v[:, 0]  # (time, hidden, in), (time, hidden)
    bound = ab.bound_ingredients(X, y, h, xi_samples=2000, seed=config.seed)
    x_plus, x_minus = bound.x_plus, bound.x_minus
    cos_plus = al.cosine(Ws, x_plus)
    cos_minus = al.cosine(Ws, x_minus)
    codes = al.regions(Ws, X, y)
    t_align = float(al.t_align(traj.monitors["aligned"], eta_sum)[0])
    own = al.own_class_cosine(Ws, vs, x_plus, x_minus)
    live = codes != al.S_DEAD
    min_own = np.where(live, own, np.inf).min(1)
    # first time every live neuron is within the cap (reached, not held: after the early
    # alignment phase the fitting phase turns neurons away from x+ / x- again)
    reached = np.flatnonzero(min_own >= config.cos_threshold)
    t_cos = float(traj.time[reached[0]]) if reached.size else float("nan")
    final = Ws[-1] / np.linalg.norm(Ws[-1], axis=1, keepdims=True)
    sign_final = np.sign(vs[-1])
    iters = np.rint(traj.time / eta_sum).astype(np.int64)
    th, px = ("time", "hidden"), ("pixel",)
    ds = xr.Dataset(
        {
            "iteration": _var(iters, ("time",), "gradient-descent iteration", "1"),
            "loss": _var(traj.loss[:, 0], ("time",), "summed loss L", "1"),
            "stable_rank": _var(
                al.stable_rank(Ws), ("time",), "stable rank ||W||_F^2/||W||_2^2", "1"
            ),
            "W_spec_sq": _var(al.spectral_norm_sq(Ws), ("time",), "||W||_2^2", "1"),
            "frac_allowed": _var(
                al.allowed(codes, vs).mean(1),
                ("time",),
                "fraction of neurons in allowed regions",
                "1",
            ),
            "cos_plus": _var(cos_plus, th, "cos(w_j, x+)", "1"),
            "cos_minus": _var(cos_minus, th, "cos(w_j, x-)", "1"),
            "v": _var(vs, th, "second-layer weight v_j", "1"),
            "region": _var(codes, th, "region of w_j (0 neither, 1 S+, 2 S-, 3 S_dead)", "1"),
            "neuron_mean_plus": _var(
                final[sign_final > 0].mean(0), px, "mean unit neuron over V+ (end)", "1"
            ),
            "neuron_mean_minus": _var(
                final[sign_final < 0].mean(0), px, "mean unit neuron over V- (end)", "1"
            ),
            "class_mean_plus": _var(
                x_plus / np.linalg.norm(x_plus), px, "x+ / ||x+|| (centred)", "1"
            ),
            "class_mean_minus": _var(
                x_minus / np.linalg.norm(x_minus), px, "x- / ||x-|| (centred)", "1"
            ),
            "t_align": _var(t_align, (), "measured alignment time", "time (summed loss)"),
            "iteration_align": _var(
                t_align / eta_sum if np.isfinite(t_align) else np.nan,
                (),
                "iteration of alignment",
                "1",
            ),
            "min_cos_own": _var(
                np.where(np.isinf(min_own), np.nan, min_own),
                ("time",),
                "min over live neurons of cos(w_j, x_sign(v_j))",
                "1",
            ),
            "t_cos_align": _var(
                t_cos,
                (),
                f"first time min_cos_own >= {config.cos_threshold} (reached, not necessarily held)",
                "time (summed loss)",
            ),
            "iteration_cos_align": _var(
                t_cos / eta_sum if np.isfinite(t_cos) else np.nan,
                (),
                "iteration of directional alignment",
                "1",
            ),
            "mu": _var(bound.mu, (), "measured separability mu", "1"),
            "t1_bound": _var(
                bound.t1, (), "bound t1 on the alignment time (NaN: n/a)", "time (summed loss)"
            ),
            "sign_changes": _var(
                int((np.sign(vs) != np.sign(vs[0])).any(0).sum()),
                (),
                "neurons whose sign of v changed",
                "1",
            ),
        },
        coords={"time": _var(traj.time, ("time",), "time t = k eta / n", "time (summed loss)")},
    )
    ds.attrs.update(
        digits=f"{pair[0]} (+1) vs {pair[1]} (-1)",
        samples=n,
        clock="paper's summed-loss clock t = k eta / n; GD step eta on the mean loss",
        bound_applicable=int(bound.applicable),
        bound_reason=bound.reason,
        X_min=bound.X_min,
        X_max=bound.X_max,
    )
    return ds


def _time_dim(ds: xr.Dataset) -> str:
    return "time" if "time" in ds.dims else "snapshot"


def _summary_pair(ds: xr.Dataset) -> dict[str, float | str]:
    """Headline numbers of one pair."""
    last = {_time_dim(ds): -1}
    plus = ds.cos_plus.where(ds.v > 0)
    minus = ds.cos_minus.where(ds.v < 0)
    samples = ds["samples"] if "samples" in ds else ds.attrs.get("samples", np.nan)
    applicable = int(ds["bound_applicable"] if "bound_applicable" in ds else ds.attrs.get(
        "bound_applicable", 0))  # fmt: skip
    return {
        "samples": float(samples),
        "mu": float(ds.mu),
        "bound": "applicable" if applicable else "not applicable",
        "iteration_align": float(ds.iteration_align),
        "iteration_cos_align": float(ds.iteration_cos_align),
        "t_align": float(ds.t_align),
        "final_loss": float(ds.loss.isel(last)),
        "final_stable_rank": float(ds.stable_rank.isel(last)),
        "final_mean_cos_plus": float(plus.isel(last).mean()),
        "final_mean_cos_minus": float(minus.isel(last).mean()),
        "final_frac_allowed": float(ds.frac_allowed.isel(last)),
    }


def summary(ds: xr.Dataset) -> dict[str, float | str]:
    """Headline numbers: alignment iteration, final loss, stable rank, mean cosines (per pair,
    the pair as suffix, when there are several)."""
    if "pair" not in ds.dims:
        return _summary_pair(ds)
    out: dict[str, float | str] = {}
    for label in ds.pair.values:
        tag = str(label).replace(" vs ", "_vs_")
        out.update({f"{k}_{tag}": v for k, v in _summary_pair(ds.sel(pair=label)).items()})
    return out


def _dynamics(axes: np.ndarray, ds: xr.Dataset, title: str) -> None:
    """One pair's row of the paper's MNIST figure: cosines with min-max bands, loss, stable
    rank, ||W||_2^2 against iterations."""
    it = ds.iteration.values
    for cos, sel, label in (
        (ds.cos_plus, ds.v > 0, "V+: cos(w_j, x+)"),
        (ds.cos_minus, ds.v < 0, "V-: cos(w_j, x-)"),
    ):
        c = cos.where(sel)
        line = axes[0].plot(it, c.mean("hidden"), label=label)[0]
        axes[0].fill_between(
            it, c.min("hidden"), c.max("hidden"), alpha=0.25, color=line.get_color()
        )
    for name, style in (("iteration_align", ":"), ("iteration_cos_align", "--")):
        if np.isfinite(float(ds[name])):
            axes[0].axvline(
                float(ds[name]), c="k", ls=style, lw=1, label=ds[name].attrs["long_name"]
            )
    axes[0].set_ylabel("cosine")
    axes[0].set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].semilogy(it, ds.loss)
    axes[1].set_ylabel("summed loss")
    axes[2].plot(it, ds.stable_rank)
    axes[2].set_ylabel("stable rank")
    axes[3].semilogy(it, ds.W_spec_sq)
    axes[3].set_ylabel("||W||_2^2")
    for ax in axes:
        ax.set_xlabel("iteration")


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """The paper's MNIST figure (a row per pair): cosines with min-max bands, loss, stable
    rank, ||W||_2^2, and the mean positive / negative neurons beside the class means."""
    import matplotlib.pyplot as plt

    if "pair" in ds.dims:
        pairs = [(str(p), ds.sel(pair=p)) for p in ds.pair.values]
        samples = [int(part["samples"]) for _, part in pairs]
    else:
        pairs = [(ds.attrs.get("digits", ""), ds)]
        samples = [ds.attrs.get("samples", "?")]
    rows = len(pairs)
    fig, axes = plt.subplots(rows, 4, figsize=(17, 3.8 * rows), squeeze=False)
    for row, (label, part), n in zip(axes, pairs, samples, strict=True):
        _dynamics(row, part, f"MNIST {label}, n = {n}")
    fig.tight_layout()
    figs = {"dynamics": fig}

    fig, axes = plt.subplots(rows, 4, figsize=(11, 3 * rows), squeeze=False)
    for row, (label, part) in zip(axes, pairs, strict=True):
        for ax, name, title in zip(
            row,
            ("neuron_mean_plus", "class_mean_plus", "neuron_mean_minus", "class_mean_minus"),
            ("mean V+ neuron", "x+ (class sum)", "mean V- neuron", "x- (class sum)"),
            strict=True,
        ):
            img = part[name].values.reshape(28, 28)
            lim = np.nanmax(np.abs(img))
            ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(f"{label}: {title}", fontsize=8)
            ax.axis("off")
    figs["neurons"] = fig
    return figs
