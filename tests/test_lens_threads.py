"""relu_lens traces a model while another thread runs torch modules (a threaded sweep)."""

from __future__ import annotations

import threading

import pytest
import torch

from relu_lens import read_mlp
from relu_lens.models import mlp


def test_tracing_leaves_the_modules_of_other_threads_alone() -> None:
    """torch.fx patches nn.Module.__call__ for the whole process while it traces. A net run
    by another thread meanwhile (a second cell of a threaded sweep, training) must keep giving
    its own outputs; before the lens let such calls through, a paper-preset sweep of the
    contexts study failed with "module is not installed as a submodule"."""
    torch.manual_seed(0)
    busy = mlp(5, (16,), 3, dtype=torch.float64)
    x = torch.randn(8, 5, dtype=torch.float64)
    with torch.no_grad():
        expected = busy(x)
    errors: list[BaseException] = []
    calls = [0]
    stop = threading.Event()

    def run_busy() -> None:
        try:
            while not stop.is_set():
                with torch.no_grad():
                    out = busy(x)
                if not torch.equal(out, expected):
                    raise AssertionError("the other thread's net changed its output")
                calls[0] += 1
        except BaseException as err:  # reported to the main thread below
            errors.append(err)

    worker = threading.Thread(target=run_busy)
    worker.start()
    try:
        traced = mlp(5, (7, 6), 3, dtype=torch.float64)
        X = torch.randn(11, 5, dtype=torch.float64).numpy()
        for _ in range(40):
            read_mlp(traced, X)
    finally:
        stop.set()
        worker.join()
    assert not errors, f"{type(errors[0]).__name__}: {errors[0]}"
    assert calls[0] > 0


def test_two_threads_read_their_nets_at_once() -> None:
    """Two threads each reading its own net over and over (two cells of a threaded sweep
    recording snapshots): every read gives that net's own weights and gates, and afterwards
    nn.Module.__call__ is torch's own again. torch.fx's patches of nn.Module are process-wide,
    so two traces that overlap in time see each other's; before the lens traced one model at a
    time, a contexts sweep failed with "Sequential is not an MLP"."""
    call = torch.nn.Module.__call__
    nets = [mlp(5, (7, 6), 3, dtype=torch.float64), mlp(4, (9,), 2, dtype=torch.float64)]
    batches = [torch.randn(11, 5, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)]
    expected = [read_mlp(net, x) for net, x in zip(nets, batches, strict=True)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def read(k: int) -> None:
        try:
            start.wait()
            for _ in range(60):
                got = read_mlp(nets[k], batches[k])
                for a, b in zip(got.weights + got.gates, expected[k].weights + expected[k].gates,
                                strict=True):  # fmt: skip
                    if not (a == b).all():
                        raise AssertionError(f"thread {k} read another net's arrays")
        except BaseException as err:  # reported to the main thread below
            errors.append(err)

    threads = [threading.Thread(target=read, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{type(errors[0]).__name__}: {errors[0]}"
    assert torch.nn.Module.__call__ is call


@pytest.mark.parametrize("init_std", [None, 0.01])
@pytest.mark.parametrize("bias", [False, True])
def test_a_seeded_mlp_needs_no_global_generator(init_std: float | None, bias: bool) -> None:
    """mlp(..., generator=Generator().manual_seed(s)) draws the weights of torch.manual_seed(s);
    mlp(...) and leaves the global generator alone, so that cells of a threaded sweep (which
    share it) get their own seeds' nets whatever the other threads draw meanwhile."""
    torch.manual_seed(5)
    reference = mlp(7, (6, 5), 3, bias=bias, dtype=torch.float64, init_std=init_std)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    seeded = mlp(
        7, (6, 5), 3, bias=bias, dtype=torch.float64, init_std=init_std,
        generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    for a, b in zip(reference.parameters(), seeded.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), state)
    other = mlp(7, (6, 5), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(other[0].weight, seeded[0].weight)
