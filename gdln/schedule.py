"""Gates that change over time: piecewise-constant gates with their switch times.

A ReLU network's gates move while it learns; its twin can follow them by switching its own
gates at given times. A :class:`GateSchedule` holds gates G_0, G_1, ..., G_J and switch times
0 < s_1 < ... < s_J: the gates are G_j on [s_j, s_{j+1}) (s_0 = 0, s_{J+1} = inf), i.e. they are
right-continuous, and a record at a switch time sees the new gates. ``gdln.integrate`` restarts
its solver at every switch (the flow's right-hand side jumps there; the weights do not), and
``gdln.gradient_descent`` uses at step k the gates in force at t = k eta.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gdln.network import Array

Gates = Mapping[str, Array]


@dataclass(frozen=True)
class GateSchedule:
    """Gates ``gates[j]`` in force from ``switch_times[j - 1]`` (0 for j = 0) until the next
    switch (module docstring). Each entry of ``gates`` is a gate dict as ``gdln.integrate``
    takes it ({node or edge: (sample,) or (sample, n_v)}; missing names are 1)."""

    switch_times: tuple[float, ...]
    gates: tuple[Gates, ...]

    def __init__(self, switch_times: Sequence[float], gates: Sequence[Gates | None]) -> None:
        times = tuple(float(t) for t in switch_times)
        if len(gates) != len(times) + 1:
            raise ValueError(
                f"a schedule with {len(times)} switch times needs {len(times) + 1} sets of "
                f"gates (one before the first switch and one after each), got {len(gates)}"
            )
        if not all(np.isfinite(times)) or any(t <= 0 for t in times[:1]):
            raise ValueError(f"switch times must be finite and > 0, got {times}")
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"switch times must increase strictly, got {times}")
        object.__setattr__(self, "switch_times", times)
        object.__setattr__(self, "gates", tuple(dict(g or {}) for g in gates))

    @classmethod
    def constant(cls, gates: Gates | None) -> GateSchedule:
        """The same gates at all times."""
        return cls((), [gates])

    def piece_at(self, t: float) -> int:
        """Index j of the gates in force at time t (right-continuous)."""
        return int(np.searchsorted(self.switch_times, t, side="right"))

    def pieces(self, t_end: float) -> list[tuple[int, float, float]]:
        """(j, start, stop) of every piece that starts by ``t_end``, stop capped at ``t_end``
        (a switch exactly at t_end gives a last piece of length zero: its gates hold there)."""
        bounds = (0.0, *self.switch_times, np.inf)
        return [
            (j, bounds[j], min(bounds[j + 1], t_end))
            for j in range(len(self.gates))
            if bounds[j] <= t_end
        ]
