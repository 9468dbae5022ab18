"""Speed and memory of the effective-weight lens (a script, not a test).

Measures, in one process on the same model and batch (784-256-256-10, float32, 2,000 samples):
- samples/s of ``effective_weights`` (explicit W_eff), of the isometric representation Z, and of
  ``torch.func.vmap(torch.func.jacrev(model))``, the usual way to get per-sample Jacobians;
- the achieved GFLOP/s of the explicit W_eff against plain torch matmuls with the same FLOPs
  (the masked right-to-left product does exactly C * sum_l n_l n_{l-1} multiply-adds);
- in a child process, the peak resident memory of streaming W_eff for 10,000 samples x 50
  snapshots to disk (15.7 GB of float32 if held whole), against the same child doing nothing
  but build model and data.

    python benchmarks/weff_speed.py [--samples 2000] [--record-samples 10000] [--snapshots 50]
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from timing import best_time

from relu_lens import effective_weights
from relu_lens.effective import isometric_weights
from relu_lens.models import mlp

SIZES = (784, 256, 256, 10)


def flops_per_sample() -> int:
    """2 * C * sum over layers below the last of n_l n_{l-1} (the masked product)."""
    C = SIZES[-1]
    return 2 * C * sum(a * b for a, b in itertools.pairwise(SIZES[:-1]))


def speed(n: int) -> None:
    torch.manual_seed(0)
    model = mlp(SIZES[0], SIZES[1:-1], SIZES[-1])
    x = torch.randn(n, SIZES[0])
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: model(xi[None])[0]))
    with torch.no_grad():
        t_w = best_time(lambda: effective_weights(model, x), 5, warmup=True)
        t_z = best_time(lambda: isometric_weights(model, x), 5, warmup=True)
    t_j = best_time(lambda: jac(x), 5, warmup=True)
    C = SIZES[-1]
    a = torch.randn(n * C, SIZES[2])
    b = torch.randn(n * C, SIZES[1])
    W2, W1 = torch.randn(SIZES[2], SIZES[1]), torch.randn(SIZES[1], SIZES[0])
    t_mm = best_time(lambda: (a @ W2, b @ W1), 5, warmup=True)
    gflop = flops_per_sample() * n / 1e9
    arch = "-".join(map(str, SIZES))
    print(f"model {arch}, {n} samples, float32, {torch.get_num_threads()} threads")
    print(f"  effective_weights (W_eff): {n / t_w:10.0f} samples/s  {gflop / t_w:6.1f} GFLOP/s")
    print(f"  isometric Z:               {n / t_z:10.0f} samples/s")
    print(f"  vmap(jacrev(model)):       {n / t_j:10.0f} samples/s")
    print(f"  plain matmuls, same FLOPs:                      {gflop / t_mm:6.1f} GFLOP/s")
    print(f"  ratio W_eff / vmap-jacrev rate: {t_j / t_w:.2f}  (target >= 1)")
    print(f"  ratio W_eff / matmul GFLOP/s:   {t_mm / t_w:.2f}  (target >= 0.60)")
    print(f"  ratio Z / vmap-jacrev rate:     {t_j / t_z:.2f}  (target >= 2)")


CHILD = """
import resource, sys, time, torch
from relu_lens.models import mlp
from relu_lens.recorders import EffectiveWeightStream
n, snaps, path, record = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
torch.manual_seed(0)
model = mlp(784, (256, 256), 10)
x = torch.randn(n, 784)
start = time.perf_counter()
if record:
    stream = EffectiveWeightStream(path, x, model, "W", chunk_size=256)
    for k in range(snaps):
        stream.record(k, k, model)
    stream.close()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - start)
"""


def memory(n: int, snaps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "w.nc")
        results = []
        for record in ("0", "1"):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(n), str(snaps), path, record],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            results.append((float(out[0]), float(out[1])))
        size = Path(path).stat().st_size / 2**30
    held = n * snaps * 10 * 784 * 4 / 2**30
    (base, _), (peak, seconds) = results
    print(f"recording {n} samples x {snaps} snapshots of W_eff ({held:.1f} GiB if held whole)")
    print(
        f"  peak RSS baseline {base:.0f} MiB, with recording {peak:.0f} MiB "
        f"(+{peak - base:.0f} MiB); file {size:.1f} GiB written in {seconds:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--record-samples", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=50)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if not args.skip_speed:
        speed(args.samples)
    if not args.skip_memory:
        memory(args.record_samples, args.snapshots)


if __name__ == "__main__":
    main()
