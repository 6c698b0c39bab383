"""What a minimisation returns, and the one damped step of a held-out fold's fit.

Every fit minimises through the compiled kernel's Levenberg-Marquardt
(:mod:`._kernel`, rows through :mod:`._rows`). :func:`lowering_step` is one
damped Gauss-Newton step on the numpy objective, for the held-out folds of
:class:`~._selection.PointFolds`, whose Jacobian is shared by every fold.
"""

from dataclasses import dataclass

import numpy as np

# Relative loss decrease that counts as "no digit left to gain".
NO_GAIN = 1e-15
FTOL_MESSAGE = "relative decrease below ftol"
# The step's first and largest damping, relative to the Gauss-Newton diagonal.
INITIAL_DAMPING = 1e-3
MAX_DAMPING = 1e16


@dataclass
class OptimizationResult:
    theta: np.ndarray
    loss: float
    n_iter: int
    converged: bool
    message: str


def _free_variables(theta, gradient, bounds):
    """Variables not held at a bound by a gradient that pushes outwards."""
    at_lower = (theta <= bounds[:, 0]) & (gradient > 0)
    at_upper = (theta >= bounds[:, 1]) & (gradient < 0)
    return ~(at_lower | at_upper)


def _damped_step(theta, gradient, sub_matrix, free, damping, bounds):
    """``theta + step`` with ``(H + diag(damping)) step = -gradient`` on the free
    variables (``sub_matrix`` is ``H`` restricted to them), clipped to the
    bounds; None if the system is singular."""
    step = np.zeros_like(theta)
    try:
        step[free] = np.linalg.solve(sub_matrix + np.diag(damping[free]), -gradient[free])
    except np.linalg.LinAlgError:
        return None
    return np.clip(theta + step, bounds[:, 0], bounds[:, 1])


def lowering_step(theta, value, gradient, matrix, bounds, objective):
    """One Levenberg-Marquardt step from ``theta`` that lowers ``objective`` below ``value``.

    ``value``, ``gradient`` and ``matrix`` are the objective, its gradient and
    its Gauss-Newton matrix at ``theta``. The damping starts as the
    kernel's Levenberg-Marquardt's and grows fourfold until the step lowers the
    objective, up to the solver's own limit; ``theta`` itself is returned if
    no step does (it is then a stationary point along every direction tried).
    """
    bounds = np.asarray(bounds, dtype=float)
    free = _free_variables(theta, gradient, bounds)
    sub_matrix = matrix[np.ix_(free, free)]
    scaling = np.maximum(np.diag(matrix), np.finfo(float).tiny)
    damping = INITIAL_DAMPING
    while damping < MAX_DAMPING:
        candidate = _damped_step(theta, gradient, sub_matrix, free, damping * scaling, bounds)
        if candidate is not None and objective(candidate) < value:
            return candidate
        damping *= 4.0
    return theta
