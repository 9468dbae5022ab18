"""Speed of the lens on MLP, conv and residual nets against vmap(jacrev) (a script, not a test).

In one process, on the same model and batch (float32, eval mode), for each model:
``relu_lens.effective_weights`` (W_eff and b_eff, exact by construction) against
``torch.func.vmap(torch.func.jacrev(model))`` (the per-sample Jacobian a user would otherwise
compute: no b_eff, no gates, and no check that the net is piecewise linear). The two are timed
alternately, ``--repeats`` times after one warm-up each, and the best time of each is kept, so
that load from other processes on a shared machine hits both alike. Models:

- MLP 784-256-256-10 (the masked chain);
- LeNet-style ReLU CNN on 1x28x28: conv5x6, ReLU, max-pool, conv5x16, ReLU, max-pool, 120, 84,
  10 (ReLUs between);
- the weff_mnist CNN (``relu_lens.models.cnn``: conv-BatchNorm-ReLU-max-pool x 2, linear);
- a small ResNet with BatchNorm in eval mode on 3x32x32 (``relu_lens.models.resnet``: stem,
  three residual blocks 16-32-64, average pool, linear).

Prints samples/s of both, the ratio time(vmap-jacrev) / time(lens) (target >= 1), and the
largest difference between the two Jacobians relative to the largest entry.

    python benchmarks/lens_speed.py [--samples 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

from relu_lens import effective_weights
from relu_lens.models import cnn, mlp, resnet


def lenet() -> nn.Sequential:
    """LeNet-5 with ReLU and max-pool, on flat 784-pixel rows."""
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


MODELS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "MLP 784-256-256-10": (lambda: mlp(784, (256, 256), 10, bias=True), 784),
    "LeNet-5 CNN, 1x28x28": (lenet, 784),
    "weff_mnist CNN, 1x28x28": (cnn, 784),
    "ResNet (BatchNorm, eval), 3x32x32": (lambda: resnet((3, 32, 32), stem_stride=1), 3072),
}


def interleaved_best(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function, timed in turn ``repeats`` times after one warm-up."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.samples
    print(f"{n} samples, float32, {torch.get_num_threads()} threads; best of {args.repeats}")
    for name, (build, n_in) in MODELS.items():
        torch.manual_seed(0)
        model = build().eval()
        x = torch.randn(n, n_in)
        jac = torch.func.vmap(torch.func.jacrev(lambda xi, m=model: m(xi[None])[0]))
        with torch.no_grad():
            W = effective_weights(model, x).W
        J = jac(x).detach()
        error = float((W - J).abs().max() / J.abs().max())
        t_lens, t_jac = interleaved_best(
            [lambda m=model, x=x: effective_weights(m, x), lambda f=jac, x=x: f(x)], args.repeats
        )
        print(f"{name}")
        print(f"  effective_weights:    {n / t_lens:9.0f} samples/s")
        print(f"  vmap(jacrev(model)):  {n / t_jac:9.0f} samples/s")
        print(f"  ratio lens / vmap-jacrev rate: {t_jac / t_lens:.2f}  (target >= 1)")
        print(f"  max |W_eff - J| / max |J|: {error:.1e}")


if __name__ == "__main__":
    main()
