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
:func:`one_blas_thread` runs such a block on one thread (a few microseconds to enter);
``gdln.gradient_descent`` avoids BLAS for its update altogether (numpy's own loops).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from threadpoolctl import ThreadpoolController

SMALL_WORK = 2**23  # multiply-adds of the largest matrix product of one evaluation
THREADED_VECTOR = 2**15  # elements from which a vector operation is worth guarding


@contextmanager
def blas_threads(work: float) -> Iterator[None]:
    """One BLAS thread inside the block if ``work`` (multiply-adds of the largest product) is
    below :data:`SMALL_WORK`; otherwise the threads as they are."""
    global _ONE_THREAD
    if work < SMALL_WORK and not _ONE_THREAD:
        with one_blas_thread():
            _ONE_THREAD = True
            try:
                yield
            finally:
                _ONE_THREAD = False
    else:
        yield


_CONTROLLER: ThreadpoolController | None = None
_ONE_THREAD = False  # inside blas_threads' one-thread block: vector operations need no guard


def one_blas_thread() -> AbstractContextManager[object]:
    """A context manager that limits BLAS to one thread inside its block."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def vector_threads(size: int) -> AbstractContextManager[object]:
    """One BLAS thread for vector operations on arrays of ``size`` elements where BLAS would
    spread them over threads (:data:`THREADED_VECTOR`); a no-op below (entering a limit costs
    microseconds, as much as a short vector operation)."""
    return one_blas_thread() if size >= THREADED_VECTOR and not _ONE_THREAD else nullcontext()
