"""gdln: gated deep linear networks (theory side; numpy, scipy, sympy; never torch).

Saxe, Sodhani, Lewallen (ICML 2022) for the gated networks and the neural race; Saxe, McClelland,
Ganguli (2014) for the closed forms; Jarvis, Klein, Rosman, Saxe (ICLR 2025) for the ReLN, the
gated linear twin of a ReLU network (:class:`ReLN`, built from arrays alone). ``closed_form``,
``reduce``, ``integrate``, ``gradient_descent`` and ``pathway_flow`` return one
:class:`Trajectory` type. Synthetic tasks (``gdln.tasks``, ``gdln.context_task``) live here too.
"""

from gdln.closed_form import closed_form, mode_strength, time_to_learn, time_to_reach
from gdln.correlations import Correlations, correlation_loss, gated_correlations, path_gradient
from gdln.dynamics import gradient_descent, integrate, loss_gradient
from gdln.losses import CrossEntropy, Loss, SquaredError
from gdln.network import Edge, GateError, GraphError, Network, Path, ShapeError, chain
from gdln.ode import DivergenceError
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
from gdln.schedule import GateSchedule
from gdln.trajectory import Trajectory
from gdln.twin import ReLN

__all__ = [
    "Correlations",
    "CrossEntropy",
    "DivergenceError",
    "Edge",
    "GateError",
    "GateSchedule",
    "GraphError",
    "Loss",
    "ModeBasis",
    "Network",
    "NotAlignedError",
    "NotDiagonalisableError",
    "Path",
    "ReLN",
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
