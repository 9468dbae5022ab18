"""One BLAS thread for small problems.

The flows of gated linear twins are long sequences of small matrix products (tens of samples,
hundreds of units). Spreading such a product over threads costs more in synchronisation than
it gains: on a 2-core machine, a depth-2 twin of the context task integrated ten times slower
with two OpenBLAS threads than with one (1.7 ms against 17 ms per evaluation). Every flow of
the package therefore runs under :func:`blas_threads`, which limits BLAS to one thread when
the work per matrix product is below :data:`SMALL_WORK` multiply-adds and leaves the user's
setting alone otherwise (a 784-256-256-10 net on 1,000 MNIST samples keeps its threads).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

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
