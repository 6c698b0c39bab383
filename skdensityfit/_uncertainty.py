"""Standard errors of fitted parameters: exact curvature and the delta method, by autograd.

The covariance of the flat parameter vector comes from the exact Hessian of
the reference objective (:func:`~._model.objective_hessian`); the errors of
the reported parameters (weights, means, covariances, scale in grid units)
follow by the delta method, with the exact Jacobian of the map from the
flat vector to them (:meth:`~._parameters.Standardisation.to_grid`, which
autograd differentiates). No finite differences anywhere.
"""

import autograd.numpy as anp
import numpy as np
from autograd import jacobian

from ._compat import warn_at_caller
from ._model import objective_hessian
from ._objective import value_and_gradient
from ._validation import quadrature_weights

# The curvature does not determine the parameters when its smallest
# eigenvalue is below this fraction of its largest.
FLAT_CURVATURE = 1e-12


def warn_if_cells_differ(X):
    """Warn that Poisson counts per point on unequal cells are read inconsistently."""
    weights = quadrature_weights(X)
    if weights.max() > weights.min() * (1 + 1e-6):
        warn_at_caller(
            "The grid's cells differ in size, but y is read as Poisson counts per point "
            "while the fit weighted points by cell size. Pass y as a density (counts / "
            "cell size) with the cell sizes as sample_weight, to fit and here alike."
        )


def parameter_covariance(problem, theta, X, y, sample_weight):
    """Covariance of the flat parameter vector ``theta``, or None if it is not determined.

    'l2': the inverse Hessian of the loss scaled by the residual variance (as
    :func:`scipy.optimize.curve_fit` scales ``pcov``). 'poisson': the inverse
    of the observed information of Poisson counts ``y`` per point (or
    ``y * sample_weight`` when ``y`` is a density): the exact Hessian of the
    binned negative log-likelihood at the fit.
    """
    data = problem.data
    hessian = objective_hessian(theta, data)
    n_points, n_parameters = np.count_nonzero(data.quadrature), theta.size
    eigenvalues = np.linalg.eigvalsh(hessian)
    if n_points <= n_parameters or eigenvalues[0] <= FLAT_CURVATURE * eigenvalues[-1]:
        return None
    if data.loss == "l2":
        loss_value, _ = value_and_gradient(theta, data)
        return 2.0 * loss_value / (n_points - n_parameters) * np.linalg.inv(hessian)
    if sample_weight is None:
        warn_if_cells_differ(X)
    cells = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
    # the objective is the negative log-likelihood divided by the number of
    # counts (in the density's unit): undo that scaling
    information = problem.standardisation.density_unit * cells.sum() * data.normaliser * hessian
    return np.linalg.inv(information)


def reported_vector(problem, theta):
    """``[weights, means, covariances, scale]`` in grid units, flat (*autograd-safe*);
    then the background's coefficients, if any."""
    named = problem.to_grid(theta)
    parts = [
        named["weights"],
        anp.ravel(named["means"]),
        anp.ravel(named["covariances"]),
        anp.reshape(named["scale"], (1,)),
    ]
    if problem.data.background is not None:
        parts.append(problem.background_to_grid(theta))
    return anp.concatenate(parts)


def reported_errors(problem, theta, covariance):
    """Standard errors of :func:`reported_vector` by the delta method (exact Jacobian)."""
    gradient = jacobian(lambda t: reported_vector(problem, t))(np.asarray(theta, dtype=float))
    variances = np.einsum("ij,jk,ik->i", gradient, covariance, gradient)
    return np.sqrt(np.maximum(variances, 0.0))


def standard_errors(problem, theta, X, y, sample_weight):
    """Standard errors of ``[weights, means, covariances, scale]``; all NaN, with a warning,
    when the curvature does not determine them."""
    covariance = parameter_covariance(problem, theta, X, y, sample_weight)
    if covariance is None:
        warn_at_caller(
            "The standard errors cannot be estimated: the loss is flat in some "
            "direction (redundant components, or no more points than parameters)."
        )
        return np.full(reported_vector(problem, theta).size, np.nan)
    return reported_errors(problem, theta, covariance)
