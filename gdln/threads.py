"""One BLAS thread for small problems, and for vector operations.

The flows of gated linear twins are long sequences of small matrix products (tens of samples,
hundreds of units). Spreading such a product over threads costs more in synchronisation than
it gains: on a 2-core machine, a depth-2 twin of the context task integrated ten times slower
with two OpenBLAS threads than with one (1.7 ms against 17 ms per evaluation). Every flow of
the package therefore runs under :func:`blas_threads`, which limits BLAS to one thread when
the work per matrix product is below :data:`SMALL_WORK` multiply-adds and leaves the user's
setting alone otherwise (a 784-256-256-10 net on 1,000 MNIST samples keeps its threads).

Vector operations (BLAS level 1: axpy, norms) gain little from threads, and a threaded one can
stall when other threads spin nearby: right after torch trained a net with two threads, a
gradient-descent step of its twin that used a two-thread daxpy took 32 ms instead of 10 ms.
:func:`one_blas_thread` runs such a block on one thread (a few microseconds to enter).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController, threadpool_limits

SMALL_WORK = 2**23  # multiply-adds of the largest matrix product of one evaluation


@contextmanager
def blas_threads(work: float) -> Iterator[None]:
    """One BLAS thread inside the block if ``work`` (multiply-adds of the largest product) is
    below :data:`SMALL_WORK`; otherwise the threads as they are."""
    if work < SMALL_WORK:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    else:
        yield


_CONTROLLER: ThreadpoolController | None = None


def one_blas_thread() -> object:
    """A context manager that limits BLAS to one thread inside its block."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")
