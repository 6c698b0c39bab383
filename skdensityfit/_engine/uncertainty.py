"""Standard errors of fitted parameters: exact curvature and the delta method, by autograd.

The covariance of the flat parameter vector comes from the exact Hessian of
the reference objective (:func:`~.reference.objective_hessian`); the errors of
the reported parameters (weights, means, covariances, scale in grid units)
follow by the delta method, with the exact Jacobian of the map from the
flat vector to them (:meth:`~.parameters.Standardisation.to_grid`, which
autograd differentiates). No finite differences anywhere.
"""

import autograd.numpy as anp
import numpy as np
from autograd import jacobian
from autograd.scipy.special import logsumexp

from .._compat import warn_at_caller
from .._data.validation import quadrature_weights
from .._model.covariance import as_reported, cholesky_parameter_map
from .._model.parameters import canonical_order, rows_split
from .._model.reference import objective_hessian
from .rows import curvatures_of, losses_of

# The curvature does not determine the parameters when its smallest
# eigenvalue is below this fraction of its largest.
FLAT_CURVATURE = 1e-12


# Cell sizes this close (relative) are read as one: a uniform grid printed with a few decimals.
EQUAL_CELLS = 0.01


def warn_if_cells_differ(X, sizes=None):
    """Warn that counts per point on unequal cells (the grid's, or ``sizes``: the bins')
    are read inconsistently (cells within ``EQUAL_CELLS`` of each other are equal: a
    uniform grid rounded when written)."""
    message = cells_differ_message(X, sizes)
    if message is not None:
        warn_at_caller(message)


def cells_differ_message(X, sizes=None):
    """The text of :func:`warn_if_cells_differ`, or None where the cells are equal."""
    sizes = quadrature_weights(X) if sizes is None else sizes
    if sizes.max() > sizes.min() * (1 + EQUAL_CELLS):
        return (
            "The grid's cells differ in size (with bins, the bins), and y holds integers: if "
            "they are counts per cell, they depend on the cell's size as much as on the "
            "density, while the fit weighted points by cell size. Then pass y as a density "
            "(counts / cell size) with the cell sizes as sample_weight, to fit and here alike. "
            "Equal bins with some left out (a gap) give the points beside the gap larger "
            "cells: pass sample_weight=np.ones(len(y)) there."
        )
    return None


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
        loss_value = losses_of(problem.kernel, theta)[0]
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


# ----------------------------------------------------------------------
# many densities at once (fit_many)
# ----------------------------------------------------------------------
def rows_reported(thetas, layout, standardisation, log_units, fixed_log_scale, take, background):
    """:func:`reported_vector` of every row of ``thetas`` ``(R, p)`` at once, ``(R, m)``
    (*autograd-safe*): ``log_units`` ``(R,)`` the rows' log scale units, ``take`` the
    canonical order of their components (:func:`~.parameters.canonical_order`)."""
    n_rows = thetas.shape[0]
    k, d = layout.n_components, layout.n_features
    offsets = layout.offsets
    logits = anp.concatenate([thetas[:, offsets[1] : offsets[2]], np.zeros((n_rows, 1))], axis=1)
    weights = anp.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    means = anp.reshape(thetas[:, offsets[2] : offsets[3]], (n_rows, k, d))
    means = standardisation.center + standardisation.spread * means
    # the precision Cholesky factors: the raw values gathered into every entry they fill
    index, log = cholesky_parameter_map(layout.covariance_type, k, d)
    filled = np.flatnonzero(index.ravel() >= 0)
    values = thetas[:, offsets[3] + index.ravel()[filled]]
    values = anp.where(log.ravel()[filled], anp.exp(values), values)
    scatter = np.zeros((filled.size, k * d * d))
    scatter[np.arange(filled.size), filled] = 1.0
    upper = anp.reshape(anp.dot(values, scatter), (n_rows, k, d, d))
    inverse = anp.linalg.inv(upper / standardisation.spread[:, None])
    covariances = anp.einsum("rkji,rkjl->rkil", inverse, inverse)
    weights, means, covariances = weights[take], means[take], covariances[take]
    covariances = as_reported(covariances, layout.covariance_type)
    log_scale = thetas[:, 0] if layout.fit_scale else fixed_log_scale
    parts = [
        weights,
        anp.reshape(means, (n_rows, -1)),
        anp.reshape(covariances, (n_rows, -1)),
        anp.reshape(anp.exp(log_scale + log_units), (n_rows, 1)),
    ]
    if background is not None:
        units = np.exp(log_units - np.sum(np.log(standardisation.spread)))
        parts.append(
            background.to_grid(
                thetas[:, layout.n_parameters :],
                standardisation.center - standardisation.background_origin,
                standardisation.spread,
                units[:, None],
            )
        )
    return anp.concatenate(parts, axis=1)


def rows_standard_errors(problem, inputs, thetas, log_units, cells):
    """Standard errors of :func:`rows_reported` for every row, ``(R, m)``; NaN rows where
    the curvature does not determine them.

    The curvature is the kernel's Gauss-Newton matrix (the Fisher information of the
    Poisson counts; ``J^T J`` scaled by the residual variance for 'l2', as
    :func:`scipy.optimize.curve_fit`'s ``pcov``), where :func:`standard_errors` takes
    the exact Hessian: the two agree up to terms in the residuals. The delta method's
    Jacobian is autograd's, of all rows in one pass a reported value.
    """
    layout, data = problem.layout, problem.data
    n_rows, p = thetas.shape
    losses, curvature = curvatures_of(inputs, thetas)
    n_points = np.count_nonzero(
        np.broadcast_to(inputs.Q, (len(inputs.Y), inputs.Q.shape[1])) > 0, 1
    )
    eigenvalues = np.linalg.eigvalsh(np.where(np.isfinite(curvature), curvature, 0.0))
    determined = (
        np.isfinite(losses)
        & (n_points > p)
        & (eigenvalues[:, 0] > FLAT_CURVATURE * np.maximum(eigenvalues[:, -1], 0.0))
    )
    fixed = inputs.fixed_log_scale
    take = canonical_order(*_weights_and_means(thetas, layout, fixed))
    m = rows_reported(thetas[:1], layout, problem.standardisation, log_units[:1], fixed[:1],
                      (take[0][:1], take[1][:1]), data.background).shape[1]  # fmt: skip
    errors = np.full((n_rows, m), np.nan)
    rows = np.flatnonzero(determined)
    if rows.size == 0:
        return errors
    inverse = np.linalg.inv(curvature[rows])
    if data.loss == "l2":
        covariance = (2.0 * losses[rows] / (n_points[rows] - p))[:, None, None] * inverse
    else:
        units = np.exp(log_units[rows] - np.sum(np.log(problem.standardisation.spread)))
        information = units * np.sum(cells[rows], axis=1) * inputs.normaliser[rows]
        covariance = inverse / information[:, None, None]

    def reported_sums(t):
        chosen = (np.arange(rows.size)[:, None], take[1][rows])
        values = rows_reported(
            t, layout, problem.standardisation, log_units[rows], fixed[rows], chosen,
            data.background,
        )  # fmt: skip
        return anp.sum(values, axis=0)

    gradient = np.moveaxis(jacobian(reported_sums)(thetas[rows]), 0, 1)  # (rows, m, p)
    variances = np.einsum("rip,rpq,riq->ri", gradient, covariance, gradient)
    errors[rows] = np.sqrt(np.maximum(variances, 0.0))
    return errors


def _weights_and_means(thetas, layout, fixed_log_scale):
    _, log_weights, means, _ = rows_split(thetas, layout, fixed_log_scale)
    return log_weights, means
