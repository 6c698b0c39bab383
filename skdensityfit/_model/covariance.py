"""Covariance types: shapes, checks, full matrices, the raw Cholesky values a fit varies,
log-determinants and the Gaussian log-density.

Every per-type difference of the package's arithmetic on fitted parameters
lives here, written once (the reference model's differentiated coefficient
maps are a dictionary of per-type functions in :mod:`.reference`; the kernel reads
:func:`cholesky_parameter_map`). Parameters follow scikit-learn's conventions: a
precision Cholesky factor ``U`` is upper-triangular with ``U @ U.T`` the
precision, shaped

- 'full': ``(K, d, d)``, one factor per component;
- 'tied': ``(d, d)``, one factor shared by all components;
- 'diag': ``(K, d)``, the diagonal of each component's factor;
- 'spherical': ``(K,)``, one value per component.

Functions marked *autograd-safe* use :mod:`autograd.numpy` only, so the
delta method can differentiate through them.
"""

from functools import lru_cache

import autograd.numpy as anp
import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
LOG_2PI = np.log(2.0 * np.pi)
# 'full' and 'tied' store matrices; 'diag' and 'spherical' store diagonals.
MATRIX_TYPES = ("full", "tied")


def own_covariances(covariance_type):
    """Whether each component has a covariance of its own (all but 'tied')."""
    return covariance_type != "tied"


def axis_aligned(covariance_type, n_features):
    """Whether every component's axes are the grid's ('diag', 'spherical', or one
    dimension): a component's mass in a cell is then a product of normal cdf
    differences, else a cubature."""
    return covariance_type not in MATRIX_TYPES or n_features == 1


def check_covariance_type(covariance_type):
    """Raise a ValueError naming the types unless ``covariance_type`` is one of them."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {COVARIANCE_TYPES}; got {covariance_type!r}."
        )


def parameter_shape(covariance_type, n_components, n_features):
    """The shape of ``covariances_``, ``precisions_`` and ``precisions_cholesky_``."""
    k, d = n_components, n_features
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]


def holds_type(prec_chol, covariance_type, n_components, n_features):
    """Whether ``prec_chol`` can be ``covariance_type``'s precision Cholesky factors: its
    shape, and where two types share a shape ('tied' and 'diag' when K = d), what only
    this one holds (zeros below a tied factor's diagonal; positive diagonal values)."""
    if np.shape(prec_chol) != parameter_shape(covariance_type, n_components, n_features):
        return False
    if covariance_type == "tied":
        return n_features == 1 or bool(np.all(np.tril(prec_chol, -1) == 0))
    return covariance_type == "full" or bool(np.all(np.asarray(prec_chol) > 0))


def n_cholesky_values(covariance_type, n_components, n_features):
    """Free values of the precision Cholesky factors (the packed upper triangles)."""
    k, d = n_components, n_features
    triangle = d * (d + 1) // 2
    return {"full": k * triangle, "tied": triangle, "diag": k * d, "spherical": k}[covariance_type]


def as_matrices(values, covariance_type, n_components, n_features):
    """Covariances, precisions or their factors as ``(K, d, d)`` matrices (views if possible)."""
    k, d = n_components, n_features
    if covariance_type == "full":
        return values
    if covariance_type == "tied":
        return np.broadcast_to(values, (k, d, d))
    if covariance_type == "diag":
        return values[..., None] * np.eye(d)
    return values[..., None, None] * np.eye(d)


def as_matrices_rows(values, covariance_type, n_components, n_features):
    """:func:`as_matrices` of values with a leading axis of rows: ``(R, K, d, d)``."""
    k, d = n_components, n_features
    if covariance_type == "tied":
        return np.broadcast_to(values[:, None], (len(values), k, d, d))
    return as_matrices(values, covariance_type, k, d)


def as_reported(matrices, covariance_type):
    """``(..., K, d, d)`` matrices in ``covariance_type``'s shape (scikit-learn's): 'full'
    as they are, 'tied' the first component's, 'diag' the diagonals, 'spherical' the
    first diagonal entry (*autograd-safe*)."""
    if covariance_type == "full":
        return matrices
    if covariance_type == "tied":
        return matrices[..., 0, :, :]
    if covariance_type == "diag":
        return anp.sum(matrices * np.eye(matrices.shape[-1]), axis=-1)
    return matrices[..., 0, 0]


@lru_cache(maxsize=32)
def triu_indices(n_features):
    """``np.triu_indices(n_features)``, cached and read-only."""
    rows, cols = np.triu_indices(n_features)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def upper_from_raw(raw, n_features):
    """Upper-triangular matrices from packed rows, exponentiating the diagonal.

    ``raw`` has shape ``(..., d(d+1)/2)`` in ``np.triu_indices`` order.
    *autograd-safe*.
    """
    is_diag, basis = _triu_basis(n_features)
    values = is_diag * anp.exp(raw * is_diag) + (1.0 - is_diag) * raw
    return anp.einsum("...m,mij->...ij", values, basis)


@lru_cache(maxsize=32)
def _triu_basis(n_features):
    """``(is_diag (m,), basis (m, d, d))``: which packed values are diagonal, and the unit
    matrix each one fills (read-only)."""
    rows, cols = triu_indices(n_features)
    is_diag = (rows == cols).astype(float)
    basis = np.zeros((rows.size, n_features, n_features))
    basis[np.arange(rows.size), rows, cols] = 1.0
    is_diag.flags.writeable = basis.flags.writeable = False
    return is_diag, basis


def raw_from_upper(upper):
    """Inverse of :func:`upper_from_raw` (numpy only)."""
    n_features = upper.shape[-1]
    rows, cols = triu_indices(n_features)
    raw = upper[..., rows, cols].copy()
    diag = rows == cols
    raw[..., diag] = np.log(raw[..., diag])
    return raw


def cholesky_from_raw(raw, covariance_type, n_components, n_features):
    """The precision Cholesky factors stored in ``raw`` (*autograd-safe*)."""
    k, d, cov = n_components, n_features, covariance_type
    if cov == "full":
        return upper_from_raw(anp.reshape(raw, (k, -1)), d)
    if cov == "tied":
        return upper_from_raw(raw, d)
    if cov == "diag":
        return anp.reshape(anp.exp(raw), (k, d))
    return anp.exp(raw)


def raw_from_cholesky(prec_chol, covariance_type):
    """The packed raw values of precision Cholesky factors (numpy)."""
    if covariance_type in MATRIX_TYPES:
        return raw_from_upper(np.asarray(prec_chol)).ravel()
    return np.log(np.asarray(prec_chol)).ravel()


def constrained(covariances, covariance_type):
    """``(..., d, d)`` covariance matrices as ``covariance_type`` holds them: 'diag' keeps
    their diagonals, 'spherical' the mean of each diagonal; 'full' and 'tied' keep them
    whole."""
    if covariance_type in MATRIX_TYPES:
        return covariances
    variances = np.diagonal(covariances, axis1=-2, axis2=-1)
    if covariance_type == "spherical":
        variances = np.repeat(variances.mean(axis=-1, keepdims=True), variances.shape[-1], -1)
    return variances[..., None] * np.eye(covariances.shape[-1])


def cholesky_diagonals(prec_chol, covariance_type, n_components, n_features):
    """The diagonals of the precision Cholesky factors, shape ``(K, d)``."""
    k, d = n_components, n_features
    if covariance_type == "full":
        return np.diagonal(prec_chol, axis1=-2, axis2=-1)
    if covariance_type == "tied":
        return np.broadcast_to(np.diag(prec_chol), (k, d))
    if covariance_type == "diag":
        return prec_chol
    return np.broadcast_to(prec_chol[:, None], (k, d))


def log_det_cholesky(prec_chol, covariance_type, n_components, n_features):
    """``log det U_k`` of each component, shape ``(K,)``."""
    diagonals = cholesky_diagonals(prec_chol, covariance_type, n_components, n_features)
    return np.log(diagonals).sum(axis=1)


def log_peak_density(prec_chol, covariance_type, n_components, n_features):
    """Log of each component's pdf at its mean."""
    log_det = log_det_cholesky(prec_chol, covariance_type, n_components, n_features)
    return log_det - 0.5 * n_features * LOG_2PI


_FAR = 1e150  # a whitened distance whose square, summed over dimensions, stays finite


def log_gaussian_density(X, means, prec_chol, covariance_type, center=None):
    """``log N(x_i; mu_k, Sigma_k)`` from precision Cholesky factors, shape ``(n, K)``.

    The one Gaussian log-density of the package (starts, moves, prediction
    and plots use it): the whitened residual ``(x - mu_k) @ U_k`` is formed
    directly, so no expansion of the square cancels. ``center`` (a point
    near the components, e.g. the mixture's mean) is subtracted from the
    points and the means first, which keeps every digit on grids far from
    the origin.
    """
    n_points, n_features = X.shape
    n_components = len(means)
    if center is not None:
        X, means = X - center, means - center
    with np.errstate(over="ignore", invalid="ignore"):
        if covariance_type in MATRIX_TYPES:
            factors = np.broadcast_to(prec_chol, (n_components, n_features, n_features))
            # (x - mu) @ U for every component in one product: x @ [U_1 ... U_K] - mu_k @ U_k
            whitened = X @ np.swapaxes(factors, 0, 1).reshape(n_features, -1)
            whitened = whitened.reshape(n_points, n_components, n_features)
            whitened -= np.einsum("kd,kde->ke", means, factors)
            whitened[np.isnan(whitened)] = _FAR  # inf - inf of an overflow, finite points
        else:
            scale = prec_chol if covariance_type == "diag" else prec_chol[:, None]
            whitened = (X[:, None, :] - means) * scale
    # points so far that the residual overflows get a finite, vanishing density
    np.clip(whitened, -_FAR, _FAR, out=whitened)
    log_peak = log_peak_density(prec_chol, covariance_type, n_components, n_features)
    return log_peak - 0.5 * np.einsum("nkd,nkd->nk", whitened, whitened)


def upper_cholesky(precisions):
    """Upper-triangular ``U`` with ``U @ U.T == precisions`` (batched)."""
    flip = np.arange(precisions.shape[-1])[::-1]
    reversed_lower = np.linalg.cholesky(precisions[..., flip[:, None], flip])
    return reversed_lower[..., flip[:, None], flip]


def cholesky_from_precisions(precisions, covariance_type):
    """Precision Cholesky factors from precisions (raises ``LinAlgError`` if not definite)."""
    if covariance_type in MATRIX_TYPES:
        return upper_cholesky(precisions)
    return np.sqrt(precisions)


def cholesky_from_covariances(covariances, covariance_type):
    """Precision Cholesky factors from covariances (raises ``LinAlgError`` if not definite)."""
    if covariance_type in MATRIX_TYPES:
        return np.swapaxes(np.linalg.inv(np.linalg.cholesky(covariances)), -1, -2)
    return 1.0 / np.sqrt(covariances)


def precisions_and_covariances(prec_chol, covariance_type):
    """``(precisions, covariances)`` from precision Cholesky factors (*autograd-safe*)."""
    if covariance_type in MATRIX_TYPES:
        precisions = anp.matmul(prec_chol, anp.swapaxes(prec_chol, -1, -2))
        inverse = anp.linalg.inv(prec_chol)
        return precisions, anp.matmul(anp.swapaxes(inverse, -1, -2), inverse)
    precisions = prec_chol**2
    return precisions, 1.0 / precisions


def rescale_cholesky(prec_chol, covariance_type, spread, inverse=False):
    """The factors of the same components after dividing coordinate ``j`` by ``spread[j]``.

    A precision factor scales with the unit: ``U' = diag(spread) U``;
    ``inverse`` undoes that change (divides). *autograd-safe*.
    """
    if covariance_type == "tied":
        factor = spread[:, None]
    elif covariance_type == "full":
        factor = spread[None, :, None]
    elif covariance_type == "diag":
        factor = spread
    else:
        factor = spread[0]
    return prec_chol / factor if inverse else prec_chol * factor


def quadratic_features(X, covariance_type):
    """Fixed design ``Phi(X)`` such that the squared Mahalanobis distance is ``Phi @ C.T``.

    ``C`` holds each component's coefficients (see :mod:`.reference`): the
    upper triangle of the precision (off-diagonal doubled) for 'full' and
    'tied', its diagonal for 'diag', one value for 'spherical', then
    ``-2 Lambda mu`` and ``mu^T Lambda mu``.
    """
    n_points, n_features = X.shape
    if covariance_type in MATRIX_TYPES:
        rows, cols = triu_indices(n_features)
        quad = X[:, rows] * X[:, cols]
    elif covariance_type == "diag":
        quad = X**2
    else:
        quad = np.sum(X**2, axis=1, keepdims=True)
    return np.hstack([quad, X, np.ones((n_points, 1))])


@lru_cache(maxsize=64)
def cholesky_parameter_map(covariance_type, n_components, n_features):
    """Where each precision Cholesky factor comes from in the packed raw values.

    Returns ``(index, log)``, both ``(K, d, d)``: entry ``(k, i, j)`` of component
    ``k``'s upper-triangular factor is ``raw[index]`` (``exp(raw[index])`` where
    ``log``), or zero where ``index`` is -1. The raw values are laid out as
    :mod:`.parameters` packs them: 'full' the upper triangle of each component in
    ``np.triu_indices`` order, 'tied' one shared triangle, 'diag' ``d`` diagonal
    values a component, 'spherical' one a component; diagonals as logarithms.
    This table is the one description of the covariance types that the compiled
    kernel reads. Cached: the arrays are read-only.
    """
    k, d = n_components, n_features
    index = np.full((k, d, d), -1, dtype=np.int64)
    log = np.zeros((k, d, d), dtype=np.bool_)
    rows, cols = triu_indices(d)
    diagonal = np.arange(d)
    if covariance_type in MATRIX_TYPES:
        per_component = len(rows) if covariance_type == "full" else 0
        for component in range(k):
            index[component, rows, cols] = component * per_component + np.arange(len(rows))
    elif covariance_type == "diag":
        index[:, diagonal, diagonal] = np.arange(k * d).reshape(k, d)
    else:
        index[:, diagonal, diagonal] = np.arange(k)[:, None]
    log[:, diagonal, diagonal] = True
    index.flags.writeable = log.flags.writeable = False
    return index, log
