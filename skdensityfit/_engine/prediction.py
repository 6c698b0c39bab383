"""Predictions of a fitted mixture: the pdf, the model of y (bin averages), the background.

Pure functions of a fitted :class:`~._estimator.DensityGMM`'s public
attributes and the points, so the estimator's prediction methods, the
plots and the command line share them.
"""

import numpy as np
from sklearn.utils import gen_batches

from .._model.cells import cells_from_edges, log_cell_masses
from .._model.covariance import log_gaussian_density
from .problem import background_spec, polynomial_powers, user_basis

PREDICT_BATCH_SIZE = 65536


def background_at(model, points, cells=None):
    """The fitted background at ``points`` (with ``cells``, its average over each)."""
    return background_values(
        points, model.background, model.background_, model.background_origin_, cells
    )


def background_values(points, background, coefficients, origin=None, cells=None):
    """The baseline ``background`` (the estimator's parameter) with ``coefficients``
    (``background_``, or one row of them a density) at ``points``: a polynomial's
    monomials or ``A exp(rate x)`` in the coordinates from ``origin``
    (``background_origin_``), or a user's basis. With ``cells`` (``(lo, hi)`` arrays like
    ``points``) a polynomial's exact average over each cell. Shape ``(n,)``, or ``(R, n)``."""
    kind, detail = background_spec(background)
    coefficients = np.asarray(coefficients, dtype=float)
    if kind == "basis":
        return (user_basis(detail, points) @ coefficients.T).T
    shift = 0.0 if origin is None else np.asarray(origin, dtype=float)
    if kind == "exponential":
        x = points[:, 0] - (0.0 if origin is None else float(np.ravel(origin)[0]))
        with np.errstate(over="ignore", invalid="ignore"):
            return coefficients[..., 0, None] * np.exp(coefficients[..., 1, None] * x)
    powers = polynomial_powers(detail, points.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        if cells is None:
            columns = np.prod((points - shift)[:, None, :] ** powers[None], axis=2)
        else:
            # the average of u**k over [a, b] is (b**(k+1) - a**(k+1)) / ((k + 1) (b - a))
            lo, hi = cells[0] - shift, cells[1] - shift
            k = powers[None] + 1.0
            span = (hi - lo)[:, None, :]
            averages = (hi[:, None, :] ** k - lo[:, None, :] ** k) / (k * span)
            values = lo[:, None, :] ** powers[None]
            columns = np.prod(np.where(span > 0, averages, values), axis=2)
        result = (columns @ coefficients.T).T
    overflowed = np.isnan(result)
    if overflowed.any() and cells is None:
        result[overflowed] = _dominant_infinity(points - shift, powers, coefficients)[overflowed]
    return result


def _dominant_infinity(u, powers, coefficients):
    """``±inf`` of a polynomial whose terms overflow at the points ``u``: the sign of its
    largest term (by the logarithms of their magnitudes), so that ``inf - inf`` far from
    the grid is not NaN. Shaped like the polynomial's values."""
    with np.errstate(divide="ignore"):
        log_u = np.log(np.abs(u))[:, None, :] * powers[None]  # (n, J, d)
        log_terms = np.sum(np.where(powers[None] > 0, log_u, 0.0), axis=2)  # (n, J)
        log_terms = log_terms + np.log(np.abs(coefficients))[..., None, :]
    signs = np.prod(np.where(powers[None] % 2 == 1, np.sign(u)[:, None, :], 1.0), axis=2)
    signs = signs * np.sign(coefficients)[..., None, :]
    largest = np.argmax(np.where(np.isnan(log_terms), -np.inf, log_terms), axis=-1)
    return np.take_along_axis(signs, largest[..., None], axis=-1)[..., 0] * np.inf


def model_of_y(model, X):
    """The model of ``y`` at validated points ``X`` and the default quadrature weights.

    With bins, the averages over the fitted bins that hold the points (and their
    volumes); otherwise the density at the points (and None). Both include the
    background.
    """
    if getattr(model, "bin_edges_", None) is not None:
        cells = fitted_cells(model, X)
        predicted = bin_averages(model, cells)
        if getattr(model, "background_", None) is not None:
            predicted += background_at(model, 0.5 * (cells.lo + cells.hi), (cells.lo, cells.hi))
        return predicted, cells.volume
    with np.errstate(under="ignore"):
        predicted = model.scale_ * np.exp(model.score_samples(X))
    if getattr(model, "background_", None) is not None:
        predicted += background_at(model, X)
    return predicted, None


def fitted_cells(model, X):
    """The fitted bins that contain the points of ``X`` (validated)."""
    try:
        return cells_from_edges(X, model.bin_edges_, shared=True)
    except ValueError as error:
        raise ValueError(
            f"{error} With bins, predict and score give bin averages over the fitted "
            "bins (bin_edges_); for the density at any point use "
            "scale_ * exp(score_samples(X))."
        ) from None


def bin_averages(model, cells):
    """``scale_ * sum_k w_k P_k(cell) / volume`` of each cell."""
    out = np.empty(cells.n_cells)
    for batch in gen_batches(cells.n_cells, PREDICT_BATCH_SIZE):
        part = cells.subset(batch)
        log_mass = log_cell_masses(
            part, model.means_, model.precisions_cholesky_, model.covariance_type
        )
        log_joint = log_mass + np.log(model.weights_)
        peak = log_joint.max(axis=1, keepdims=True)
        log_average = np.log(np.exp(log_joint - peak).sum(axis=1)) + peak[:, 0]
        with np.errstate(under="ignore"):
            out[batch] = model.scale_ * np.exp(log_average - np.log(part.volume))
    return out


def log_joint_of(model, X):
    """``log w_k N_k(x_i)`` of a fitted model, shape ``(n, K)``, exact at any offset."""
    center = model.weights_ @ model.means_
    with np.errstate(under="ignore"):  # far from every component the pdf underflows by design
        log_pdf = log_gaussian_density(
            X, model.means_, model.precisions_cholesky_, model.covariance_type, center=center
        )
    return log_pdf + np.log(model.weights_)


def log_mixture_pdf(model, X):
    log_joint = log_joint_of(model, X)
    peak = log_joint.max(axis=1, keepdims=True)
    return np.log(np.exp(log_joint - peak).sum(axis=1)) + peak[:, 0]
