"""Early neuron alignment on an MNIST digit pair: the MNIST figure of Min, Mallada & Vidal 2024.

Two-layer bias-free ReLU net f(x) = sum_j v_j relu(w_j^T x), h = 50, on two centred digit
classes (0 vs 1 by default; 3 vs 8 and 1 vs 7 are the paper's other pairs), labels +1 for the
first digit and -1 for the second. The paper's settings: both layers initialised from
N(0, 1e-12) (std 1e-6, not balanced), gradient descent with step 2e-3 for 15,000 iterations,
exponential loss.

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
        digits: (positive digit, negative digit).
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
        if len(self.digits) != 2 or self.digits[0] == self.digits[1]:
            raise ValueError(f"digits must be two different digits, got {self.digits}")
        if self.iterations < self.snapshots or self.snapshots < 2:
            raise ValueError("need iterations >= snapshots >= 2")


PRESETS = {
    "quick": Config(),
    "paper": Config(per_class=None, iterations=15_000, snapshots=150),
}


def digit_pair(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """Centred inputs X (sample, 784) and labels y (+1 first digit, -1 second digit)."""
    from relu_lens.data import load_mnist

    images, labels = load_mnist(config.mnist_dir)
    rng = np.random.default_rng(config.seed)
    parts = []
    for digit in config.digits:
        idx = rng.permutation(np.flatnonzero(labels == digit))
        if idx.size == 0:
            raise ValueError(f"digit {digit} does not occur in the MNIST data")
        parts.append(idx[: config.per_class] if config.per_class else idx)
    X = images[np.concatenate(parts)]
    y = np.concatenate([np.ones(parts[0].size), -np.ones(parts[1].size)])
    return X - X.mean(axis=0), y


def _var(data: object, dims: tuple[str, ...], long_name: str, units: str) -> xr.Variable:
    return xr.Variable(dims, np.asarray(data), {"long_name": long_name, "units": units})


def run(config: Config) -> xr.Dataset:
    """Train one net and return a Dataset with dims (time, hidden, pixel)."""
    import torch

    from relu_lens import alignment as al
    from relu_lens import two_layer as tl

    X, y = digit_pair(config)
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
        digits=f"{config.digits[0]} (+1) vs {config.digits[1]} (-1)",
        samples=n,
        clock="paper's summed-loss clock t = k eta / n; GD step eta on the mean loss",
        bound_applicable=int(bound.applicable),
        bound_reason=bound.reason,
        X_min=bound.X_min,
        X_max=bound.X_max,
    )
    return io.finalize(ds, NAME, config)


def summary(ds: xr.Dataset) -> dict[str, float | str]:
    """Headline numbers: alignment iteration, final loss, stable rank, mean cosines."""
    plus = ds.cos_plus.where(ds.v > 0)
    minus = ds.cos_minus.where(ds.v < 0)
    return {
        "samples": float(ds.attrs.get("samples", np.nan)),
        "mu": float(ds.mu),
        "bound": "applicable" if int(ds.attrs.get("bound_applicable", 0)) else "not applicable",
        "iteration_align": float(ds.iteration_align),
        "iteration_cos_align": float(ds.iteration_cos_align),
        "t_align": float(ds.t_align),
        "final_loss": float(ds.loss[-1]),
        "final_stable_rank": float(ds.stable_rank[-1]),
        "final_mean_cos_plus": float(plus.isel(time=-1).mean()),
        "final_mean_cos_minus": float(minus.isel(time=-1).mean()),
        "final_frac_allowed": float(ds.frac_allowed[-1]),
    }


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """The paper's MNIST figure: cosines with min-max bands, loss, stable rank, ||W||_2^2, and
    the mean positive / negative neurons beside the class means."""
    import matplotlib.pyplot as plt

    it = ds.iteration.values
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
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
    axes[0].legend(fontsize=7)
    axes[1].semilogy(it, ds.loss)
    axes[1].set_ylabel("summed loss")
    axes[2].plot(it, ds.stable_rank)
    axes[2].set_ylabel("stable rank")
    axes[3].semilogy(it, ds.W_spec_sq)
    axes[3].set_ylabel("||W||_2^2")
    for ax in axes:
        ax.set_xlabel("iteration")
    fig.suptitle(f"MNIST {ds.attrs.get('digits', '')}, n = {ds.attrs.get('samples', '?')}")
    figs = {"dynamics": fig}

    fig, axes = plt.subplots(1, 4, figsize=(11, 3))
    for ax, name, title in zip(
        axes,
        ("neuron_mean_plus", "class_mean_plus", "neuron_mean_minus", "class_mean_minus"),
        ("mean V+ neuron", "x+ (class sum)", "mean V- neuron", "x- (class sum)"),
        strict=True,
    ):
        img = ds[name].values.reshape(28, 28)
        lim = np.nanmax(np.abs(img))
        ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    figs["neurons"] = fig
    return figs
