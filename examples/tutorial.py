# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # relu-gdln: a researcher's first hour
#
# Three steps, each a few cells:
#
# 1. **The lens on your own model**: the exact effective linear map of a torch ReLU MLP at
#    every input, and its activation patterns.
# 2. **The twin of your own net**: train a bias-free MLP, read it into arrays, build its gated
#    linear twin and put the twin's predicted loss curve next to the measured one.
# 3. **A result as a Dataset**: run a study in-process, slice it with xarray, plot theory
#    against experiment, save it and open it again.
#
# This file is a [jupytext](https://jupytext.readthedocs.io) "percent" script: run it as it is
# (`python examples/tutorial.py`, well under a minute on a laptop CPU) or open it as a notebook
# (`jupytext --to ipynb examples/tutorial.py`). Settings are small so that it runs quickly;
# files go to a temporary folder, never into the repository.

# %%
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import torch
from torch import nn

if "ipykernel" not in sys.modules:  # run as a script: draw into files, open no window
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

import gdln
from gdln.context_task import context_task
from relu_lens import activation_patterns, effective_weights, read_mlp
from relu_lens.models import mlp
from relu_lens.train import train
from studies import race
from studies.io import load_dataset, save_dataset

torch.manual_seed(0)
OUT = Path(tempfile.mkdtemp(prefix="relu-gdln-tutorial-"))
print(f"figures and files go to {OUT}")

# %% [markdown]
# ## 1. The lens on your own model
#
# A ReLU MLP alternates affine layers $z_l = W_l h_{l-1} + c_l$ and ReLUs
# $h_l = D_l(x)\, z_l$, where the *gate* $D_l(x) = \mathrm{diag}(\mathbb{1}[z_l(x) > 0])$ says
# which units are on for the input $x$. With the gates fixed the net is affine, so at every
# input it is exactly
#
# $$ f(x) = W_{\mathrm{eff}}(x)\, x + b_{\mathrm{eff}}(x), \qquad
#    W_{\mathrm{eff}}(x) = W_L D_{L-1}(x) W_{L-1} \cdots D_1(x) W_1 ,$$
#
# with $b_{\mathrm{eff}}(x)$ collecting the biases pushed through the same gates (zero for a
# bias-free net). `relu_lens.effective_weights` computes $W_{\mathrm{eff}}$ and
# $b_{\mathrm{eff}}$ for a whole batch; `relu_lens.activation_patterns` returns the gates. Any
# piecewise-linear model is accepted (convolutions, max-pooling, BatchNorm in eval mode,
# residual connections: the table is in the README, "The lens in code"); anything else is
# refused with the name of the graph node and its source line, because the map would no
# longer be exact.

# %%
model = nn.Sequential(
    nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3)
).double()
x = torch.randn(8, 5, dtype=torch.float64)

eff = effective_weights(model, x)  # eff.W: (sample, out, in), eff.b: (sample, out)
with torch.no_grad():
    y = model(x)
rebuilt = torch.einsum("soi,si->so", eff.W, x) + eff.b
lens_error = float((rebuilt - y).abs().max())
print(f"W_eff {tuple(eff.W.shape)}, b_eff {tuple(eff.b.shape)}")
print(f"lens identity: max |W x + b - model(x)| = {lens_error:.3g}")

# %% [markdown]
# The gates are one boolean `(sample, units)` tensor per hidden layer, in graph order, also
# by graph node name (`gates.names`). For one sample, the product of the layer weights with
# its gates in between is $W_{\mathrm{eff}}$ itself:

# %%
gates = activation_patterns(model, x)
print("gates:", [tuple(g.shape) for g in gates])
print("share of units on, per layer:", [round(float(g.double().mean()), 2) for g in gates])

W1, W2, W3 = (m.weight.detach() for m in model if isinstance(m, nn.Linear))
D1, D2 = (torch.diag(g[0].double()) for g in gates)
by_hand = W3 @ D2 @ W2 @ D1 @ W1
print(f"sample 0: max |W3 D2 W2 D1 W1 - W_eff| = {float((by_hand - eff.W[0]).abs().max()):.3g}")

# %% [markdown]
# Image-shaped input works the same way when the model starts with `nn.Flatten`:
# $W_{\mathrm{eff}}(x)$ is then taken with respect to the flattened image, so each of its rows
# reshapes into an image, the template that output reads from this input.

# %%
image_model = mlp(28 * 28, (64,), 10, bias=True, flatten=True, dtype=torch.float64)
images = torch.rand(4, 1, 28, 28, dtype=torch.float64)
eff_img = effective_weights(image_model, images)
with torch.no_grad():
    rebuilt = torch.einsum("soi,si->so", eff_img.W, images.flatten(1)) + eff_img.b
    flatten_error = float((rebuilt - image_model(images)).abs().max())
print(f"W_eff {tuple(eff_img.W.shape)} for images {tuple(images.shape)}")
print(f"lens identity with nn.Flatten: max |W x + b - model(x)| = {flatten_error:.3g}")

fig, (left, right) = plt.subplots(1, 2, figsize=(5, 2.6))
left.imshow(images[0, 0], cmap="gray")
left.set_title("image 0")
right.imshow(eff_img.W[0, 3].reshape(28, 28), cmap="RdBu")  # what output 3 reads from it
right.set_title("row 3 of W_eff(image 0)")
for axis in (left, right):
    axis.set_axis_off()
fig.savefig(OUT / "template.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# ## 2. The twin of your own network
#
# Take a **bias-free** ReLU MLP, $f(x) = W_L D_{L-1}(x) \cdots D_1(x) W_1 x$. Freeze its gates
# and it is a *gated deep linear network* (GDLN; Saxe, Sodhani & Lewallen 2022): nodes $v$
# with activities
#
# $$ h_v = g_v(x) \sum_{e:\, t(e) = v} W_e\, h_{s(e)} ,$$
#
# trained by the exact gradient flow $\frac{dW_e}{dt} = -\frac{\partial L}{\partial W_e}$ of
# the mean loss $L = \frac{1}{2P} \sum_i \lVert y_i - f(x_i) \rVert^2$. Gradient descent with
# step $\eta$ is on the same clock: step $k$ sits at $t = k \eta$.
#
# Two twins are built from the same arrays:
#
# - the **frozen-gate twin**: one node per layer, gated unit by unit with the net's own gates.
#   It *is* the ReLU net for as long as no gate flips;
# - the **ReLN** (Jarvis, Klein, Rosman & Saxe 2025): units that are on in the same contexts
#   form one node, gated by the context, $g_v(x) = \mathbb{1}[c(x) \in S_v]$. Its gradient
#   flow, from the net's own initial weights, predicts how the ReLU net learns.
#
# The task: 8 objects seen in 3 contexts, each with a hierarchy of features to output
# (`gdln.context_task`). The net is trained here for 3000 steps (the README uses 8000).

# %%
task = context_task(3)  # or your own X (sample, d), Y (sample, m) and a label per sample
X, Y, eta = torch.as_tensor(task.X), torch.as_tensor(task.Y), task.n_samples * 1e-3
steps, every = 3000, 100
net = mlp(11, (700,), 60, dtype=torch.float64, init_std=0.005 / 700)
start = read_mlp(net, X)  # layer weights [W_1, W_2] and gates [(sample, 700)], numpy
run = train(net, X, Y, steps=steps, lr=eta, loss="mse", progress=False)
end = read_mlp(net, X)
print(
    f"trained {steps} steps (t = {steps * eta:g}): loss {run.step_loss[0]:.3f} -> "
    f"{run.step_loss[-1]:.3f}"
)

# %% [markdown]
# The ReLN groups the units by the contexts they are on in (gates read at the end of
# training) and starts from the ReLU net's initial weights. Its nodes are labelled by their
# context sets:

# %%
twin = gdln.ReLN.from_gates(end.weights, end.gates, task.context, X=task.X, initial=start.weights)
print("ReLN nodes:", twin.node_labels)
print("units per node:", {v: len(u) for v, u in twin.units.items()})

# %% [markdown]
# Integrate the twin's gradient flow on the same clock and compare with the measured loss by
# the relative L2 error $\lVert L_{\mathrm{twin}} - L_{\mathrm{ReLU}} \rVert_2 /
# \lVert L_{\mathrm{ReLU}} \rVert_2$ over the recorded times.

# %%
times = eta * np.arange(0, steps, every)
pred = gdln.integrate(
    twin.network,
    task.X,
    task.Y,
    twin.initial,
    times,
    twin.gates,
    solver="RKC",
    rtol=1e-4,
    atol=1e-10,
    with_weights=False,
)
measured = np.array(run.step_loss)[::every]  # mean loss at the same times (t = step x eta)
twin_error = np.linalg.norm(pred.loss - measured) / np.linalg.norm(measured)
print(f"twin vs ReLU net: relative L2 error of the loss curve = {twin_error:.3f}")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(times, measured, label="ReLU net (gradient descent)")
ax.plot(times, pred.loss, "k--", label="ReLN twin (gradient flow)")
ax.set(xlabel="t = step x eta", ylabel="mean loss L", title="context task, 3 contexts")
ax.legend()
fig.savefig(OUT / "twin_loss.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# Without a partition, `ReLN.from_gates` gives the frozen-gate twin. On the inputs its gates
# were read on, its outputs are the ReLU net's:

# %%
frozen = gdln.ReLN.from_gates(end.weights, end.gates)
out_twin = frozen.network.forward(frozen.initial, task.X, frozen.gates)["y"]
with torch.no_grad():
    out_relu = net(X).numpy()
frozen_gap = float(np.abs(out_twin - out_relu).max())
print(f"frozen-gate twin: max |twin(x) - relu(x)| = {frozen_gap:.3g}")

# %% [markdown]
# ## 3. A result as an xarray Dataset
#
# Every study returns one `xarray.Dataset`: theory and experiment are separate variables on
# the same coordinates, every variable carries `long_name` and `units`, and the attrs hold the
# provenance (study, config, git commit, versions). Here the `race` study (Saxe, Sodhani &
# Lewallen 2022: a routing GDLN, reduced "neural race" theory against gradient descent) runs
# in-process at a tiny setting: one init scale, t up to 10.
#
# The command line does the same and writes the file for you:
# `relu-gdln run race --preset quick`.

# %%
config = dataclasses.replace(
    race.PRESETS["quick"], t_max=10.0, eta=0.02, n_times=101, init_scales=(0.08,)
)
ds = race.run(config)
print(ds)

# %% [markdown]
# Select by coordinate values with `.sel`, by position with `.isel`; the theory is a
# variable without the `init` dimension, so the gap between theory and experiment is one line
# (xarray aligns the coordinates). The reduced theory starts from the aligned initial
# condition, so compare it with `init="aligned"`; the orthogonal start shows how far a random
# start strays from it.

# %%
cell = ds.sel(init_scale=0.08)
gd = cell.loss_gd.sel(init="aligned")
gap = cell.loss_theory - gd
print(
    f"loss at t = 5: gd {float(gd.sel(time=5.0, method='nearest')):.3f}, "
    f"theory {float(cell.loss_theory.sel(time=5.0, method='nearest')):.3f}"
)
print(
    "theory - gd at t = 2, 4, 6, 8, 10:",
    gap.sel(time=[2.0, 4.0, 6.0, 8.0, 10.0], method="nearest").values.round(3),
)
print("relative L2 error per init:", cell.rel_l2_error.to_series().round(3).to_dict())
early = ds.sel(time=slice(0.0, 2.0))  # a time window
print(f"{early.sizes['time']} records with t <= 2")
final = cell.isel(time=-1)  # the last record
print(f"final loss at t = {float(final.time):g}:", final.loss_gd.to_series().round(3).to_dict())

# %% [markdown]
# Theory against experiment on one axes: xarray's plotting labels the axes from the
# variables' `long_name` and `units`.

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
cell.loss_gd.plot.line(x="time", hue="init", ax=ax)
cell.loss_theory.plot.line(x="time", ax=ax, color="k", linestyle="--")
ax.legend(["GD, aligned init", "GD, orthogonal init", "reduced theory"])
ax.set_title("race: init scale 0.08")
fig.savefig(OUT / "race_loss.png", dpi=100, bbox_inches="tight")

# %% [markdown]
# Save the Dataset as netCDF (atomically: a temporary name, then a rename) and open it again.
# The configuration comes back from the attrs.

# %%
path = save_dataset(ds, OUT / "race.nc")
back = load_dataset(path)
np.testing.assert_allclose(back.loss_theory, ds.loss_theory)
saved_config = json.loads(back.attrs["config"])
print(
    f"reopened {path.name}: study {back.attrs['study']}, t_max {saved_config['t_max']}, "
    f"init_scales {saved_config['init_scales']}"
)

# %% [markdown]
# ## Where next
#
# - `relu-gdln list` shows every study; `relu-gdln run STUDY --preset quick` runs one and
#   writes its Dataset and figures; `relu-gdln show FILE` summarises a result file.
# - `--set FIELD=VALUE` changes any field of a study's `Config`, e.g. your own 1-D target:
#   `relu-gdln run one_hidden_1d --set targets="abs(x-0.3)+0.5*sin(7*x)"`.
# - The README has the lens and the twin in short form; each study's module docstring says
#   what it measures and what its quick preset found.

# %%
print("tutorial finished")
