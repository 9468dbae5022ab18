"""gdln: gated deep linear networks (theory side; numpy, scipy, sympy; never torch).

Saxe, Sodhani, Lewallen (ICML 2022) for the gated networks and the neural race; Saxe, McClelland,
Ganguli (2014) for the closed forms. ``closed_form``, ``reduce``, ``integrate`` and
``pathway_flow`` return one :class:`Trajectory` type.
"""

from gdln.closed_form import closed_form, mode_strength, time_to_learn, time_to_reach
from gdln.correlations import Correlations, correlation_loss, gated_correlations, path_gradient
from gdln.dynamics import DivergenceError, gradient_descent, integrate, loss_gradient
from gdln.losses import CrossEntropy, Loss, SquaredError
from gdln.network import Edge, GateError, GraphError, Network, Path, ShapeError, chain
from gdln.pathways import aligned_pathways, check_parallel, pathway_flow
from gdln.reduction import (
    ModeBasis,
    NotAlignedError,
    NotDiagonalisableError,
    aligned_init,
    project,
    reduce,
    shared_modes,
)
from gdln.trajectory import Trajectory

__all__ = [
    "Correlations",
    "CrossEntropy",
    "DivergenceError",
    "Edge",
    "GateError",
    "GraphError",
    "Loss",
    "ModeBasis",
    "Network",
    "NotAlignedError",
    "NotDiagonalisableError",
    "Path",
    "ShapeError",
    "SquaredError",
    "Trajectory",
    "aligned_init",
    "aligned_pathways",
    "chain",
    "check_parallel",
    "closed_form",
    "correlation_loss",
    "gated_correlations",
    "gradient_descent",
    "integrate",
    "loss_gradient",
    "mode_strength",
    "path_gradient",
    "pathway_flow",
    "project",
    "reduce",
    "shared_modes",
    "time_to_learn",
    "time_to_reach",
]
