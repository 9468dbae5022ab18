"""Early neuron alignment on synthetic data: t_align against the bound t1 (Min, Mallada & Vidal).

A sweep over the sample count n and the target separability mu (and seeds) of two-layer
bias-free ReLU nets f(x) = sum_j v_j relu(w_j^T x) trained by small-step gradient descent on
the exponential (or logistic) loss SUMMED over samples (the paper's clock: step k is at
t = k eta with that loss; the toolkit's default mean loss, docs/design.md, section "Time", would
stretch times by n). Two initialisations per cell: ``random`` (W = eps W0, W0 ~ N(0, 1/D),
balanced v) and ``worst_case`` (each neuron active on a single point of its own class, nearly
orthogonal to it; :func:`relu_lens.two_layer.worst_case_directions`).

Per cell the measured alignment time t_align is set beside the theorem's
t1 = 16 log n / (min{zeta, xi} sqrt(mu) X_min) (:mod:`gdln.alignment_bound`), with whether the
theorem's assumptions held. The eps condition of the theorem, eps <= h^(-1/2)
exp(-4 n X_max t1), is far below anything representable (log_eps_max ~ -1e4 and less), so the
stated relaxation is used: the network output stays small, max_i |f(x_i)| <= f_small, until
alignment (the alignment-phase approximation -l'(y f) ~ -l'(0) that the eps condition secures).
Cells run on dask.distributed via :mod:`studies.sweep` (resumable). The theorem, its
constants and our readings of zeta and xi: docs/theory/early-alignment.md.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from gdln import alignment_bound as ab
from studies import io
from studies.config import check_numbers
from studies.sweep import cache_dir, run_sweep

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "alignment"
INITS = ("random", "worst_case")
_NOT_CELL = {"n_values", "mu_values", "scheduler", "workers", "processes", "cache_dir"}


@dataclass(frozen=True)
class Config:
    """Settings of the alignment sweep.

    Attributes:
        n_values: sample counts n (grid dim ``n``).
        mu_values: target separabilities (grid dim ``mu_target``); the measured mu is stored.
        seeds: seeds per cell (data and init), numbered from ``seed``.
        seed: first seed.
        hidden: width h.
        input_dim: input dimension D; None uses D = n (so single points can be isolated for
            the worst-case init).
        eps: init scale of W = eps W0.
        loss: "exp" or "logistic", summed over samples.
        step_scale: eta = step_scale / (n X_max_range), X_max_range = norm_high.
        horizon: trained time T = horizon / n (the summed-loss clock speeds up with n).
        snapshots: number of recorded snapshots over the horizon, at steps ~ (i/snapshots)^2
            (denser early; fewer if steps < snapshots^2 makes some coincide).
        norm_low, norm_high: range of the input norms (X_min, X_max bounds).
        f_small: relaxed eps condition, max_i |f(x_i)| <= f_small until alignment.
        xi_samples: directions sampled to estimate xi.
        scheduler: address of a dask scheduler; None starts a LocalCluster.
        workers: LocalCluster workers; processes: worker processes (True) or threads.
        cache_dir: folder of finished cells; None uses $RELU_GDLN_CACHE or ~/.cache/relu-gdln.
        device: torch device.
    """

    n_values: tuple[int, ...] = (8, 16, 32, 64)
    mu_values: tuple[float, ...] = (0.2, 0.6)
    seeds: int = 2
    seed: int = 0
    hidden: int = 20
    input_dim: int | None = None
    eps: float = 1e-30
    loss: Literal["exp", "logistic"] = "exp"
    step_scale: float = 0.04
    horizon: float = 300.0
    snapshots: int = 60
    norm_low: float = 1.0
    norm_high: float = 2.0
    f_small: float = 0.1
    xi_samples: int = 20_000
    scheduler: str | None = None
    workers: int = 2
    processes: bool = False
    cache_dir: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_numbers(
            self,
            positive=("eps", "step_scale", "horizon", "norm_low", "norm_high", "f_small"),
            counts=("n_values", "seeds", "hidden", "snapshots", "xi_samples", "workers"),
        )
        if self.input_dim is not None and self.input_dim < 2:
            raise ValueError(f"input_dim must be >= 2 (or none), got {self.input_dim}")
        if not all(np.isfinite(m) and -1 < m <= 1 for m in self.mu_values) or not self.mu_values:
            raise ValueError(f"mu_values must lie in (-1, 1], got {self.mu_values}")
        if self.norm_low > self.norm_high:
            raise ValueError(f"need norm_low <= norm_high, got {self.norm_low}, {self.norm_high}")
        if min(self.n_values) < 2:
            raise ValueError("n_values must all be >= 2 (log n of the bound)")
        if self.hidden < 2:
            raise ValueError(f"hidden must be >= 2, got {self.hidden}")


PRESETS = {
    "quick": Config(),
    "paper": Config(
        n_values=(8, 16, 32, 64, 128),
        mu_values=(0.1, 0.2, 0.4, 0.8),
        seeds=5,
        hidden=50,
        step_scale=0.02,
        snapshots=100,
    ),
}


def _var(data: object, dims: tuple[str, ...], long_name: str, units: str) -> xr.Variable:
    return xr.Variable(dims, np.asarray(data), {"long_name": long_name, "units": units})


def alignment_cell(n: int, mu_target: float, **settings: Any) -> xr.Dataset:
    """One grid cell: ``seeds`` data sets x two inits trained as one batch of runs.

    ``settings`` are the Config fields other than the grid and cluster ones. Returns a
    Dataset with dims (seed, init, snapshot); see :func:`run` for the variables."""
    import torch

    from gdln.tasks import separable_binary
    from relu_lens import alignment as al
    from relu_lens import two_layer as tl

    cfg = settings
    seeds = cfg["seed"] + np.arange(cfg["seeds"])
    D = cfg["input_dim"] or n
    h = cfg["hidden"]
    device = torch.device(cfg["device"])
    tasks = [
        separable_binary(n, D, mu_target, int(s), norm_range=(cfg["norm_low"], cfg["norm_high"]))
        for s in seeds
    ]
    W_rand, _ = tl.init_balanced(len(seeds), h, D, cfg["eps"], seed=int(seeds[0]))
    W_worst = torch.cat(
        [
            tl.init_worst_case(t.X, t.y, h, cfg["eps"], int(s))[0]
            for s, t in zip(seeds, tasks, strict=True)
        ]
    )
    W, v = tl.balance(torch.cat([W_rand, W_worst]))  # runs ordered (init, seed)
    X = torch.as_tensor(np.stack([t.X for t in tasks] * 2), device=device)
    y = torch.as_tensor(np.stack([t.y for t in tasks] * 2), device=device)
    eta = cfg["step_scale"] / (n * cfg["norm_high"])
    steps = int(np.ceil(cfg["horizon"] / n / eta))
    # snapshots at steps ~ steps (i / S)^2: dense early, where alignment happens
    record = np.round(steps * (np.arange(cfg["snapshots"] + 1) / cfg["snapshots"]) ** 2)
    traj = tl.train(
        W.to(device),
        v.to(device),
        X,
        y,
        eta,
        steps,
        loss=cfg["loss"],
        record_every=[int(k) for k in record],
        monitor=al.aligned_monitor(y),
    )
    S, I = len(seeds), len(INITS)

    def per_run(a: np.ndarray) -> np.ndarray:  # (..., run) -> (seed, init, ...)
        a = np.moveaxis(np.asarray(a), -1, 0)
        return np.swapaxes(a.reshape(I, S, *a.shape[1:]), 0, 1)

    t_align = per_run(al.t_align(traj.monitors["aligned"], eta))
    max_f = traj.monitors["max_abs_f"]
    signs = tl.balanced_signs(h)
    W0 = traj.W[0]
    bounds = [
        [
            ab.bound_ingredients(
                t.X,
                t.y,
                h,
                W0=W0[i * S + s],
                signs=signs,
                xi_samples=cfg["xi_samples"],
                seed=int(seeds[s]),
            )
            for i in range(I)
        ]
        for s, t in enumerate(tasks)
    ]
    field = np.vectorize(lambda b, name: getattr(b, name), otypes=[float])
    barr = np.array(bounds, dtype=object)
    t1 = field(barr, "t1")
    applicable = field(barr, "applicable").astype(bool)
    log_eps = np.log(cfg["eps"])
    # The relaxed small-init condition must hold on [0, min(t_align, t1, horizon)]: a run whose
    # output grows before it aligns late (after t1) is a violation, not a failed assumption.
    window = np.fmin(np.fmin(t_align, np.where(np.isfinite(t1), t1, np.nan)), steps * eta)
    end_runs = np.moveaxis(np.round(window / eta), 0, 1).reshape(-1).astype(int)  # (init, seed)
    f_until = per_run([max_f[: e + 1, r].max() for r, e in enumerate(end_runs)])
    strict = applicable & (log_eps <= field(barr, "log_eps_max"))
    relaxed = applicable & (f_until <= cfg["f_small"])
    hold = strict | relaxed
    horizon = steps * eta
    verdict = np.where(np.isfinite(t_align), t_align <= t1, np.where(horizon >= t1, 0.0, np.nan))
    held = np.where(hold, verdict, np.nan)  # NaN: not applicable, or undecided (T < t1)

    loss = per_run(traj.loss)  # (seed, init, snapshot)
    Ws = per_run(np.moveaxis(traj.W, 1, -1))  # (seed, init, snapshot, hidden, in)
    vs = per_run(np.moveaxis(traj.v, 1, -1))  # (seed, init, snapshot, hidden)
    codes = np.stack(
        [al.regions(Ws[s], tasks[s].X, tasks[s].y) for s in range(S)]
    )  # (seed, init, snapshot, hidden)
    frac_allowed = al.allowed(codes, vs).mean(-1)
    srank = al.stable_rank(Ws)
    spec = al.spectral_norm_sq(Ws)
    slope = np.full((S, I), np.nan)
    r2 = np.full((S, I), np.nan)
    for s in range(S):
        for i in range(I):
            low = np.flatnonzero(loss[s, i] <= loss[s, i, 0] / 10)
            start = max(t_align[s, i], traj.time[low[0]] if low.size else np.nan)
            slope[s, i], r2[s, i] = al.inverse_rate_fit(traj.time, loss[s, i], start)
    alpha = np.array([barr[s, 0].alpha for s in range(S)])
    sd = ("seed", "init")
    return xr.Dataset(
        {
            "mu": _var([t.mu for t in tasks], ("seed",), "measured separability mu", "1"),
            "X_min": _var(field(barr[:, 0], "X_min"), ("seed",), "smallest input norm", "1"),
            "X_max": _var(field(barr[:, 0], "X_max"), ("seed",), "largest input norm", "1"),
            "zeta1": _var(field(barr[:, 0], "zeta1"), ("seed",), "cap zeta1 inside S+/S-", "1"),
            "xi": _var(
                field(barr[:, 0], "xi"), ("seed",), "separation constant xi (sampled estimate)", "1"
            ),
            "zeta_init": _var(field(barr, "zeta_init"), sd, "initial-angle term zeta_init", "1"),
            "zeta": _var(field(barr, "zeta"), sd, "zeta = min(zeta1, zeta_init)", "1"),
            "alpha": _var(alpha, ("seed",), "O(1/t) rate constant alpha", "1/time"),
            "t1_bound": _var(t1, sd, "bound t1 on the alignment time", "time (summed loss)"),
            "log_eps_max": _var(field(barr, "log_eps_max"), sd, "log of the eps condition", "1"),
            "t_align": _var(t_align, sd, "measured alignment time", "time (summed loss)"),
            "ratio": _var(t_align / t1, sd, "t_align / t1_bound", "1"),
            "eps_condition_strict": _var(strict.astype(np.int8), sd, "eps <= eps_max (0/1)", "1"),
            "small_output": _var(
                relaxed.astype(np.int8), sd, "max|f| <= f_small until alignment (0/1)", "1"
            ),
            "assumptions_hold": _var(
                hold.astype(np.int8), sd, "mu > 0 and eps condition or relaxation (0/1)", "1"
            ),
            "bound_held": _var(
                held, sd, "t_align <= t1 where assumptions hold (1/0; NaN n/a or T < t1)", "1"
            ),
            "max_abs_f_until_align": _var(f_until, sd, "max_i |f(x_i)| up to t_align", "1"),
            "rate_slope": _var(slope, sd, "fitted slope of 1/L(t) after alignment", "1/time"),
            "rate_r2": _var(r2, sd, "R^2 of the 1/L = a + b t fit", "1"),
            "rate_over_alpha": _var(slope / alpha[:, None], sd, "fitted slope / alpha", "1"),
            "time": _var(traj.time, ("snapshot",), "time t = k eta", "time (summed loss)"),
            "eta": _var(eta, (), "gradient-descent step", "time (summed loss)"),
            "horizon": _var(horizon, (), "trained time T", "time (summed loss)"),
            "loss": _var(loss, (*sd, "snapshot"), "summed loss L", "1"),
            "stable_rank": _var(srank, (*sd, "snapshot"), "stable rank ||W||_F^2/||W||_2^2", "1"),
            "W_spec_sq": _var(spec, (*sd, "snapshot"), "||W||_2^2", "1"),
            "frac_allowed": _var(
                frac_allowed, (*sd, "snapshot"), "fraction of neurons in allowed regions", "1"
            ),
        },
        coords={
            "seed": ("seed", seeds, {"long_name": "random seed", "units": "1"}),
            "init": ("init", list(INITS), {"long_name": "initialisation", "units": "1"}),
        },
    )


def _fit_constant(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares C per init in t_align = C log n / (sqrt(mu) X_min) (through the origin),
    and the exponent p of t_align ~ n^p (log-log fit of the seed-mean at each mu, averaged)."""
    x = np.log(ds.n) / (np.sqrt(ds.mu.where(ds.mu > 0)) * ds.X_min)
    C, p = [], []
    for init in ds.init.values:
        t = ds.t_align.sel(init=init)
        xx, tt = xr.broadcast(x, t)
        ok = np.isfinite(tt.values) & np.isfinite(xx.values)
        C.append(
            float((xx.values[ok] * tt.values[ok]).sum() / (xx.values[ok] ** 2).sum())
            if ok.any()
            else np.nan
        )
        mean_t = t.mean("seed")
        slopes = []
        for mu in ds.mu_target.values:
            m = mean_t.sel(mu_target=mu).values
            good = np.isfinite(m) & (m > 0)
            if good.sum() >= 2:
                slopes.append(np.polyfit(np.log(ds.n.values[good]), np.log(m[good]), 1)[0])
        p.append(float(np.mean(slopes)) if slopes else np.nan)
    return np.array(C), np.array(p)


def run(config: Config) -> xr.Dataset:
    """Run the sweep and return a Dataset with dims (n, mu_target, seed, init, snapshot).

    Per cell and run: ``mu`` (measured), ``t_align``, ``t1_bound`` (NaN where the theorem does
    not apply), ``ratio`` = t_align / t1, ``assumptions_hold`` (0/1), ``bound_held``, the bound's
    ingredients, loss / stable rank / ||W||_2^2 / fraction of aligned neurons over time, and
    the fitted O(1/t) slope. Per init: ``fit_constant`` C of t_align ~ C log n / (sqrt(mu)
    X_min) and ``n_exponent`` p of t_align ~ n^p. Failed cells are NaN and listed in the
    ``failed_cells`` attr.
    """
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_CELL}
    result = run_sweep(
        alignment_cell,
        {"n": list(config.n_values), "mu_target": list(config.mu_values)},
        cache_dir(NAME, config, _NOT_CELL, config.cache_dir),
        fixed=settings,
        scheduler=config.scheduler,
        n_workers=config.workers,
        processes=config.processes,
    )
    ds = result.dataset
    for failure in result.failures:
        warnings.warn(f"alignment cell {failure.cell} failed: {failure.error}", stacklevel=2)
    ds["n"].attrs.update(long_name="number of samples", units="1")
    ds["mu_target"].attrs.update(long_name="target separability", units="1")
    ds["seed"].attrs.update(long_name="seed of data and init", units="1")
    C, p = _fit_constant(ds)
    ds["fit_constant"] = _var(
        C, ("init",), "C in t_align = C log n / (sqrt(mu) X_min)", "time (summed loss)"
    )
    ds["n_exponent"] = _var(p, ("init",), "exponent p of t_align ~ n^p (fixed mu)", "1")
    ds.attrs.update(
        loss=config.loss,
        clock="loss summed over samples (Min, Mallada & Vidal 2024); t = k eta",
        eps=config.eps,
        hidden=config.hidden,
        eps_relaxation=f"max_i |f(x_i)| <= {config.f_small} until t_align",
        failed_cells="; ".join(f"{f.cell}: {f.error.splitlines()[0]}" for f in result.failures),
        cells_computed=len(result.computed),
        cells_reused=len(result.reused),
    )
    return io.finalize(ds, NAME, config)


def summary(ds: xr.Dataset) -> dict[str, float | str]:
    """Headline numbers: whether t1 held, ratios, fitted constants, rate and stable rank."""
    hold = ds.assumptions_hold == 1
    out: dict[str, float | str] = {
        "runs": float(ds.t_align.size),
        "runs_aligned": float(np.isfinite(ds.t_align).sum()),
        "runs_assumptions_hold": float(hold.sum()),
        # decided: assumptions hold and either aligned or trained past t1 (else NaN)
        "runs_bound_violated": float(((ds.bound_held == 0) & hold).sum()),
        "runs_undecided": float((np.isnan(ds.bound_held) & hold).sum()),
        "bound_held_in_all_decided_runs": str(bool(((ds.bound_held == 0) & hold).sum() == 0)),
        "max_ratio_t_align_over_t1": float(ds.ratio.where(hold).max()),
        "median_ratio_t_align_over_t1": float(ds.ratio.where(hold).median()),
        "final_stable_rank_max": float(ds.stable_rank.isel(snapshot=-1).max()),
        "median_rate_over_alpha": float(ds.rate_over_alpha.median()),
    }
    for init in ds.init.values:
        out[f"fit_constant_{init}"] = float(ds.fit_constant.sel(init=init))
        out[f"n_exponent_{init}"] = float(ds.n_exponent.sel(init=init))
    return out


def plot(ds: xr.Dataset) -> dict[str, Figure]:
    """Figures: t_align and t1 against log n / (sqrt(mu) X_min); t_align / t1 per cell;
    training curves (1/L, stable rank, fraction aligned) of the largest-n cell."""
    import matplotlib.pyplot as plt

    figs = {}
    x = np.log(ds.n) / (np.sqrt(ds.mu.where(ds.mu > 0)) * ds.X_min)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for init, marker in zip(ds.init.values, "os", strict=False):
        xx, tt = xr.broadcast(x, ds.t_align.sel(init=init))
        ax.scatter(
            xx.values.ravel(), tt.values.ravel(), marker=marker, s=18, label=f"t_align ({init})"
        )
        C = float(ds.fit_constant.sel(init=init))
        grid = np.linspace(0, float(np.nanmax(xx)), 50)
        ax.plot(grid, C * grid, lw=1, label=f"fit C={C:.3g} ({init})")
    xx, t1 = xr.broadcast(x, ds.t1_bound.sel(init="random"))
    ax.scatter(
        xx.values.ravel(), t1.values.ravel(), marker="^", s=18, c="k", label="t1 bound (random)"
    )
    ax.set_yscale("log")
    ax.set_xlabel("log n / (sqrt(mu) X_min)")
    ax.set_ylabel(f"time [{ds.t_align.attrs['units']}]")
    ax.legend(fontsize=7)
    ax.set_title("alignment time vs the bound t1")
    figs["t_align"] = fig

    ratio = ds.ratio.median("seed")
    fig, axes = plt.subplots(
        1, ds.sizes["init"], figsize=(5 * ds.sizes["init"], 3.8), squeeze=False
    )
    for ax, init in zip(axes[0], ds.init.values, strict=True):
        r = ratio.sel(init=init).transpose("n", "mu_target").values
        im = ax.imshow(np.log10(r), origin="lower", aspect="auto", cmap="viridis")
        for (a, b), val in np.ndenumerate(r):
            ax.text(b, a, f"{val:.1e}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(ds.sizes["mu_target"]), [f"{m:g}" for m in ds.mu_target.values])
        ax.set_yticks(range(ds.sizes["n"]), [str(int(n)) for n in ds.n.values])
        ax.set_xlabel("mu_target")
        ax.set_ylabel("n")
        ax.set_title(f"median t_align / t1 ({init})")
        fig.colorbar(im, ax=ax, label="log10 ratio")
    figs["ratio"] = fig

    cell = ds.isel(n=-1, mu_target=-1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for init in ds.init.values:
        for s in cell.seed.values:
            c = cell.sel(init=init, seed=s)
            lab = f"{init} seed {int(s)}"
            axes[0].plot(c.time, 1 / c.loss, lw=1, label=lab)
            axes[1].plot(c.time, c.stable_rank, lw=1, label=lab)
            axes[2].plot(c.time, c.frac_allowed, lw=1, label=lab)
    axes[2].set_xscale("log")
    axes[0].set_ylabel("1 / L")
    axes[1].set_ylabel("stable rank")
    axes[1].axhline(2, c="k", ls=":", lw=1)
    axes[2].set_ylabel("fraction of neurons in allowed regions")
    for ax in axes:
        ax.set_xlabel(f"time [{cell.time.attrs['units']}]")
    axes[2].legend(fontsize=6)
    fig.suptitle(f"n = {int(cell.n)}, mu_target = {float(cell.mu_target):g}")
    figs["training"] = fig
    return figs
