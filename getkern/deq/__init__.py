"""DEQ solvers and gradients under GET (specification: docs/solvers.md).

- :func:`solve`: fixed point or Anderson, per-sample traces and best iterate, no per-iteration host sync.
- :func:`train_iterates`: the states GET decodes in training, with unrolled, phantom or implicit gradients.
"""

from getkern.deq.anderson import bordered_solve
from getkern.deq.core import SOLVER_BACKENDS, SOLVERS, solve
from getkern.deq.grad import GRADS, train_iterates

__all__ = ["solve", "train_iterates", "bordered_solve", "SOLVERS", "SOLVER_BACKENDS", "GRADS"]
