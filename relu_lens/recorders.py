"""Recorders for :func:`relu_lens.train.train`: called with the model at each snapshot.

:class:`EffectiveWeightStream` writes W_eff(x) (or its isometric representation Z(x), with
Q per snapshot) for a fixed set of inputs to a netCDF file, chunk by chunk, so that peak
memory stays near one chunk whatever the number of samples and snapshots. The file is written
under the temporary name ``.<name>.tmp<pid>@<host>`` and renamed on ``close``; it can be opened
lazily with ``xr.open_dataset(path, chunks={})``. The temporary name follows
:func:`studies.io.partial_path`, so a partial file left by a killed process is removed by
:func:`studies.io.remove_stale` (``relu_lens`` does not import ``studies``).
"""

from __future__ import annotations

import copy
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import netCDF4
import numpy as np
import torch
from torch import Tensor, nn

from relu_lens.effective import isometric_basis, iter_effective_weights, prepare

_HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"


class CallbackRecorder:
    """Stores ``fn(model)`` at every snapshot in ``values`` (index order)."""

    def __init__(self, fn: Callable[[nn.Module], Any]) -> None:
        self.fn = fn
        self.values: list[Any] = []
        self.steps: list[int] = []

    def record(self, index: int, step: int, model: nn.Module) -> None:
        with torch.no_grad():
            self.values.append(self.fn(model))
        self.steps.append(step)

    def close(self) -> None:
        return None


class EffectiveWeightStream:
    """Stream W_eff(x) (time, sample, out, in) or Z(x) (time, sample, out, rank) to netCDF.

    ``representation="Z"`` stores Z(x) and Q (time, in, rank) with W_eff(x) = Z(x) Q^T (see
    :func:`relu_lens.effective.isometric_weights`); b_eff (time, sample, out) is stored in
    both cases. The model and ``x`` are checked when the stream is made (UnsupportedModuleError,
    InputError), on a copy of the model in eval mode, the mode in which
    :func:`relu_lens.train.train` calls recorders.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        x: Tensor,
        model: nn.Module,
        representation: Literal["W", "Z"] = "W",
        chunk_size: int = 256,
        dtype: type[np.floating] = np.float32,
        time_per_step: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}@{_HOST}")
        self.x = x
        self.representation = representation
        self.chunk_size = chunk_size
        self.time_per_step = time_per_step
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # checked and shaped before training, on a copy in eval mode (as train() records it:
        # a BatchNorm in train mode has no fixed map, and running the model would update it)
        frozen = copy.deepcopy(model).eval()
        lens = prepare(frozen, x)
        n_out, n_in = lens.n_out, lens.n_in
        rank = isometric_basis(frozen, x).shape[1] if representation == "Z" else n_in
        self._nc = netCDF4.Dataset(self.tmp, "w", format="NETCDF4")
        nc = self._nc
        nc.createDimension("time", None)
        nc.createDimension("sample", x.shape[0])
        nc.createDimension("out", n_out)
        nc.createDimension("in", n_in)
        name, last = ("W_eff", "in") if representation == "W" else ("Z", "rank")
        if representation == "Z":
            nc.createDimension("rank", rank)
            q = nc.createVariable("Q", dtype, ("time", "in", "rank"), zlib=False)
            q.long_name, q.units = "orthonormal basis with W_eff = Z Q^T", "1"
        var = nc.createVariable(
            name,
            dtype,
            ("time", "sample", "out", last),
            chunksizes=(1, min(chunk_size, x.shape[0]), n_out, rank),
        )
        var.long_name = (
            "effective weights W_eff(x)"
            if representation == "W"
            else ("isometric effective weights Z(x) = W_eff(x) Q")
        )
        var.units = "1"
        b = nc.createVariable("b_eff", dtype, ("time", "sample", "out"))
        b.long_name, b.units = "effective bias b_eff(x)", "1"
        for coord, long_name, kind in (
            ("time", "training time t = step * lr", "f8"),
            ("step", "optimiser step", "i8"),
        ):
            v = nc.createVariable(coord, kind, ("time",))
            v.long_name, v.units = long_name, "1"
        self._name = name
        self._count = 0

    def record(self, index: int, step: int, model: nn.Module) -> None:
        nc, k = self._nc, self._count
        nc["time"][k] = step * self.time_per_step
        nc["step"][k] = step
        isometric = self.representation == "Z"
        if isometric:
            nc["Q"][k] = isometric_basis(model, self.x).detach().cpu().numpy()
        for rows, W_or_Z, b in iter_effective_weights(model, self.x, self.chunk_size, isometric):
            nc[self._name][k, rows] = W_or_Z.cpu().numpy()
            nc["b_eff"][k, rows] = b.cpu().numpy()
        nc.sync()
        self._count += 1

    def close(self) -> None:
        """Close the file and move it to its final name (kept even if training diverged)."""
        if self._nc.isopen():
            self._nc.close()
            os.replace(self.tmp, self.path)
