"""The autograd reference model: pure functions of ``(theta, data)``.

Everything here works in the *standardised* coordinates of a fit (see
:mod:`.parameters`) and is written with ``autograd.numpy``:
:func:`objective` is the reference definition of the loss that autograd
differentiates (exact Hessians for the Newton polish and the standard
errors). The optimiser's inner loop uses the compiled gradient and
Gauss-Newton matrix of :mod:`.kernel`, which the tests check against
autograd's.

The model is ``f(x) = exp(log_scale) * sum_k w_k N(x; mu_k, Sigma_k)``. The
squared Mahalanobis distance is a quadratic polynomial in ``x``, so it is
evaluated as one matrix product of fixed quadratic features of the grid
(:func:`~.covariance.quadratic_features`) with a small coefficient matrix
per component: ``maha = Phi(x) @ C.T``. That keeps the work at one
``(n_points, n_coef) @ (n_coef, K)`` product and no ``(n_points, K,
n_features)`` temporaries; the expansion is accurate because the grid is
standardised (coordinates of order one).

A background (``data.background``) adds a polynomial ``b`` to the model:
``f = m + b``, the loss then taken of ``f`` itself (see
:func:`model_with_background`).

Binned data (``data.cells`` set) model each value as the mixture's average
over its cell: ``f_i = exp(log_scale) * sum_k w_k P_k(cell_i) / volume_i``
with ``P_k`` the mass of component ``k`` in the cell
(:func:`~.cells.log_cell_masses_reference`).
"""

import autograd.numpy as anp
import numpy as np
from autograd import hessian
from autograd.scipy.special import logsumexp

from .cells import log_cell_masses_reference
from .covariance import LOG_2PI, triu_indices, upper_from_raw


def _coefficients_from_precision(precisions, means):
    rows, cols = triu_indices(means.shape[1])
    off_diagonal_factor = np.where(rows == cols, 1.0, 2.0)
    quad = precisions[:, rows, cols] * off_diagonal_factor
    prec_means = anp.einsum("kij,kj->ki", precisions, means)
    const = anp.sum(means * prec_means, axis=1, keepdims=True)
    return anp.concatenate([quad, -2.0 * prec_means, const], axis=1)


def _coef_full(means, raw):
    n_components, n_features = means.shape
    upper = upper_from_raw(anp.reshape(raw, (n_components, -1)), n_features)
    precisions = anp.einsum("kij,klj->kil", upper, upper)
    rows, cols = triu_indices(n_features)
    log_det = anp.sum(anp.reshape(raw, (n_components, -1))[:, rows == cols], axis=1)
    return _coefficients_from_precision(precisions, means), log_det


def _coef_tied(means, raw):
    n_components, n_features = means.shape
    upper = upper_from_raw(raw, n_features)
    precision = anp.dot(upper, upper.T)
    precisions = anp.ones((n_components, 1, 1)) * precision
    rows, cols = triu_indices(n_features)
    log_det = anp.ones(n_components) * anp.sum(raw[rows == cols])
    return _coefficients_from_precision(precisions, means), log_det


def _coef_diag(means, raw):
    raw = anp.reshape(raw, means.shape)
    precisions = anp.exp(2.0 * raw)
    coef = anp.concatenate(
        [
            precisions,
            -2.0 * precisions * means,
            anp.sum(precisions * means**2, axis=1, keepdims=True),
        ],
        axis=1,
    )
    return coef, anp.sum(raw, axis=1)


def _coef_spherical(means, raw):
    precisions = anp.exp(2.0 * raw)
    coef = anp.concatenate(
        [
            precisions[:, None],
            -2.0 * precisions[:, None] * means,
            (precisions * anp.sum(means**2, axis=1))[:, None],
        ],
        axis=1,
    )
    return coef, means.shape[1] * raw


_COEFFICIENTS = {
    "full": _coef_full,
    "tied": _coef_tied,
    "diag": _coef_diag,
    "spherical": _coef_spherical,
}


# --------------------------------------------------------------------------
# Log densities and losses
# --------------------------------------------------------------------------
def log_weights_from_logits(logits):
    full = anp.concatenate([logits, anp.zeros(1)])
    return full - logsumexp(full)


def log_component_densities(theta, features, layout):
    """``log N(x_i; mu_k, Sigma_k)``, shape ``(n_points, n_components)``."""
    _, _, means, raw = layout.split(theta)
    coef, log_det = _COEFFICIENTS[layout.covariance_type](means, raw)
    maha = anp.dot(features, coef.T)
    return -0.5 * maha + log_det - 0.5 * layout.n_features * LOG_2PI


def log_model_density(theta, features, layout, fixed_log_scale=0.0):
    """Log of the scaled mixture density at each grid point."""
    log_scale, logits, _, _ = layout.split(theta)
    if log_scale is None:
        log_scale = fixed_log_scale
    weighted = log_component_densities(theta, features, layout) + log_weights_from_logits(logits)
    return log_scale + logsumexp(weighted, axis=1)


def log_binned_model(theta, cells, layout, fixed_log_scale=0.0):
    """Log of the scaled mixture's average over each cell (*autograd-safe*)."""
    log_scale, logits, means, raw = layout.split(theta)
    if log_scale is None:
        log_scale = fixed_log_scale
    log_mass = log_cell_masses_reference(cells, means, raw, layout.covariance_type)
    weighted = log_mass + log_weights_from_logits(logits)
    return log_scale + logsumexp(weighted, axis=1) - np.log(cells.volume)


def log_model_of(theta, data):
    """Log of the model of every value of ``data``: at its point, or averaged over its cell."""
    if data.cells is not None:
        return log_binned_model(theta, data.cells, data.layout, data.fixed_log_scale)
    return log_model_density(theta, data.features, data.layout, data.fixed_log_scale)


def l2_loss(log_model, data):
    """Relative squared L2 error ``sum q (t - f)^2 / sum q t^2``."""
    residual = data.target - anp.exp(log_model)
    return anp.sum(data.quadrature * residual**2) / data.normaliser


def poisson_loss(log_model, data):
    """Generalised Kullback-Leibler divergence ``sum q (t log(t/f) - t + f)``.

    Divided by the target mass ``sum q t``; half the Poisson deviance.
    """
    value = anp.sum(data.quadrature * (anp.exp(log_model) - data.target * log_model))
    return (value + data.poisson_constant) / data.normaliser


LOSSES = {"l2": l2_loss, "poisson": poisson_loss}


def model_with_background(theta, data):
    """``f = m + b``: the mixture's model of each value plus the background under it."""
    background = data.background
    values = background.values(theta[data.layout.n_parameters :])
    return anp.exp(log_model_of(theta, data)) + values


def objective(theta, data):
    """The loss minimised by the fit, a pure function of ``(theta, data)``."""
    if data.background is not None:
        model = model_with_background(theta, data)
        if data.loss == "l2":
            residual = data.target - model
            return anp.sum(data.quadrature * residual**2) / data.normaliser
        value = anp.sum(data.quadrature * (model - data.target * anp.log(model)))
        return (value + data.poisson_constant) / data.normaliser
    return LOSSES[data.loss](log_model_of(theta, data), data)


_objective_hessian = hessian(objective)


def objective_hessian(theta, data):
    """The exact Hessian of :func:`objective` in ``theta``, by autograd.

    Symmetrised against rounding; every entry is an exact second derivative
    of the reference model (no finite differences).
    """
    matrix = _objective_hessian(np.asarray(theta, dtype=float), data)
    return 0.5 * (matrix + matrix.T)
