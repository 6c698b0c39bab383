"""The objective and its gradient in plain numpy, for the optimiser's inner loop.

:func:`skdensityfit._model.objective` (autograd) defines the model and
is the reference; this module computes the same value with a hand-derived
reverse pass. Reason: autograd's per-operation overhead made one
value-and-gradient call cost about 4 ms on a 75-point grid, where the numpy
arithmetic takes a few tens of microseconds. The tests check this gradient
against autograd's to rounding error for every covariance type and loss.

Notation: ``C`` holds the quadratic-polynomial coefficients of each
component's squared Mahalanobis distance (``maha = Phi @ C.T``), ``ld`` the
log-determinants of the precision Cholesky factors, ``R`` the
responsibilities, ``g`` the derivative of the loss with respect to the log
model density at each point.

Binned data (``data.cells`` set, see :mod:`._problem`): ``log w_k N_k(x_i)``
becomes ``log w_k P_k(cell_i) - log volume_i`` with the cell masses ``P``
and their derivatives from :func:`~._cells.log_cell_masses_and_gradients`;
the responsibilities, the loss's derivatives in ``log f`` and the
Gauss-Newton matrix are the same, and the Jacobian of ``log f`` is the
responsibility-weighted derivative of ``log P``. The centre model's code
paths are untouched by it.
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ._cells import CHUNK_ELEMENTS, log_cell_masses_and_gradients
from ._covariance import LOG_2PI, n_quadratic_coefficients
from ._parameters import triu_indices


def _logsumexp(a, axis=None):
    """``log(sum(exp(a)))`` without overflow (scipy's has more per-call overhead)."""
    peak = np.max(a, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return np.log(np.sum(np.exp(a - peak), axis=axis)) + np.squeeze(peak, axis=axis)


def _symmetric_from_upper(packed, n_features):
    rows, cols = triu_indices(n_features)
    full = np.zeros((*packed.shape[:-1], n_features, n_features))
    full[..., rows, cols] = packed
    full[..., cols, rows] = packed
    return full


def _upper_from_raw(raw, n_features):
    rows, cols = triu_indices(n_features)
    values = np.where(rows == cols, np.exp(np.where(rows == cols, raw, 0.0)), raw)
    upper = np.zeros((*raw.shape[:-1], n_features, n_features))
    upper[..., rows, cols] = values
    return upper


def _matrix_forward(means, upper):
    """Coefficients from means (K, d) and precision Cholesky factors (K, d, d)."""
    d = means.shape[1]
    rows, cols = triu_indices(d)
    precisions = upper @ np.swapaxes(upper, -1, -2)
    prec_means = np.einsum("kij,kj->ki", precisions, means)
    quad = precisions[:, rows, cols] * np.where(rows == cols, 1.0, 2.0)
    const = np.einsum("ki,ki->k", means, prec_means)
    return np.hstack([quad, -2.0 * prec_means, const[:, None]]), precisions, prec_means


def _matrix_backward(dcoef, means, precisions, prec_means):
    """Gradients with respect to the means and to each precision matrix.

    ``dcoef`` may carry leading batch axes before its ``(K, n_coef)`` shape.
    """
    d = means.shape[1]
    m2 = d * (d + 1) // 2
    dquad, dlin, dconst = dcoef[..., :m2], dcoef[..., m2 : m2 + d], dcoef[..., -1]
    dprec = _symmetric_from_upper(dquad, d)
    outer_lin = dlin[..., :, None] * means[:, None, :]
    dprec = (
        dprec
        - (outer_lin + np.swapaxes(outer_lin, -1, -2))
        + dconst[..., None, None] * (means[:, :, None] * means[:, None, :])
    )
    dmeans = (
        -2.0 * np.einsum("kij,...kj->...ki", precisions, dlin)
        + 2.0 * dconst[..., None] * prec_means
    )
    return dmeans, dprec


def _raw_gradient_from_upper(dprec, upper, dlog_det, raw_shape):
    """Chain ``dL/dPrecision`` through ``Precision = U U^T`` to the packed raw values."""
    d = upper.shape[-1]
    rows, cols = triu_indices(d)
    dupper = 2.0 * dprec @ upper
    diag = rows == cols
    draw = dupper[..., rows, cols]
    draw = np.where(diag, draw * upper[..., rows, cols] + dlog_det[..., None], draw)
    return draw.reshape(*draw.shape[: draw.ndim - upper.ndim + 1], *raw_shape)


def _full(means, raw):
    k, d = means.shape
    raw_rows = raw.reshape(k, -1)
    upper = _upper_from_raw(raw_rows, d)
    coef, precisions, prec_means = _matrix_forward(means, upper)
    log_det = raw_rows[:, triu_indices(d)[0] == triu_indices(d)[1]].sum(axis=1)

    def backward(dcoef, dlog_det):
        dmeans, dprec = _matrix_backward(dcoef, means, precisions, prec_means)
        return dmeans, _raw_gradient_from_upper(dprec, upper, dlog_det, raw.shape)

    return coef, log_det, backward


def _tied(means, raw):
    k, d = means.shape
    upper = _upper_from_raw(raw, d)
    uppers = np.broadcast_to(upper, (k, d, d))
    coef, precisions, prec_means = _matrix_forward(means, uppers)
    log_det = np.full(k, raw[triu_indices(d)[0] == triu_indices(d)[1]].sum())

    def backward(dcoef, dlog_det):
        dmeans, dprec = _matrix_backward(dcoef, means, precisions, prec_means)
        return dmeans, _raw_gradient_from_upper(
            dprec.sum(axis=-3), upper, dlog_det.sum(axis=-1), raw.shape
        )

    return coef, log_det, backward


def _diag(means, raw):
    raw = raw.reshape(means.shape)
    precisions = np.exp(2.0 * raw)
    coef = np.hstack(
        [precisions, -2.0 * precisions * means, np.sum(precisions * means**2, axis=1)[:, None]]
    )
    d = means.shape[1]

    def backward(dcoef, dlog_det):
        dquad, dlin, dconst = dcoef[..., :d], dcoef[..., d : 2 * d], dcoef[..., -1:]
        dprec = dquad - 2.0 * dlin * means + dconst * means**2
        dmeans = -2.0 * precisions * dlin + 2.0 * dconst * precisions * means
        draw = 2.0 * precisions * dprec + dlog_det[..., None]
        return dmeans, draw.reshape(*draw.shape[:-2], -1)

    return coef, raw.sum(axis=1), backward


def _spherical(means, raw):
    precisions = np.exp(2.0 * raw)
    sq_norm = np.sum(means**2, axis=1)
    coef = np.hstack(
        [precisions[:, None], -2.0 * precisions[:, None] * means, (precisions * sq_norm)[:, None]]
    )
    d = means.shape[1]

    def backward(dcoef, dlog_det):
        dquad, dlin, dconst = dcoef[..., 0], dcoef[..., 1 : 1 + d], dcoef[..., -1]
        dprec = dquad - 2.0 * np.sum(dlin * means, axis=-1) + dconst * sq_norm
        dmeans = precisions[:, None] * (-2.0 * dlin + 2.0 * dconst[..., None] * means)
        return dmeans, 2.0 * precisions * dprec + d * dlog_det

    return coef, d * raw, backward


_COMPONENTS = {"full": _full, "tied": _tied, "diag": _diag, "spherical": _spherical}


def _components(layout):
    """The coefficient function of the layout's covariance type.

    In 1-D a full precision Cholesky factor is its diagonal, packed the same
    way, so the cheaper diagonal arithmetic gives the same numbers.
    """
    if layout.covariance_type == "full" and layout.n_features == 1:
        return _diag
    return _COMPONENTS[layout.covariance_type]


# Rows per chunk (CHUNK_ELEMENTS, from ._cells): the per-point temporaries are
# (n_components, chunk) arrays, so memory stays bounded by the chunk, not by the
# grid, while chunks stay large enough for numpy's per-call overhead not to matter.


def _log_joint(features, coef, offset):
    """``log w_k N_k(x_i)``, shape ``(K, n)``.

    Components along the first axis: reductions over a handful of components
    then run along contiguous rows, several times faster than over a short
    last axis.
    """
    log_joint = (-0.5 * coef) @ features.T
    log_joint += offset[:, None]
    return log_joint


def _chunk_terms(features, target, q, coef, offset, log_scale, data):
    """Loss and gradient pieces of one chunk of grid points."""
    log_joint = _log_joint(features, coef, offset)
    log_mixture = _logsumexp(log_joint, axis=0)
    log_model = log_scale + log_mixture
    model = np.exp(log_model)
    if data.loss == "l2":
        residual = target - model
        value = np.dot(q * residual, residual)
        g = (-2.0 / data.normaliser) * q * residual * model
    else:
        value = np.dot(q, model - target * log_model)
        g = (q / data.normaliser) * (model - target)
    weighted_resp = np.exp(log_joint - log_mixture) * g
    return value, g.sum(), weighted_resp.sum(axis=1), weighted_resp @ features


class MixtureTerms(NamedTuple):
    """The per-component pieces of a parameter vector that every evaluation needs.

    ``log w_k N_k(x) = Phi(x) @ (-coef_k / 2) + offset_k``: ``offset`` is each
    component's log weight, log-determinant and normalising constant.
    ``backward(dcoef, dlog_det)`` chains derivatives with respect to the
    coefficients and log-determinants to the means and raw Cholesky values.
    """

    log_scale: float
    weights: np.ndarray
    means: np.ndarray
    raw: np.ndarray
    coef: np.ndarray
    backward: Callable
    offset: np.ndarray


def mixture_terms(theta, data):
    """The :class:`MixtureTerms` of a parameter vector."""
    layout = data.layout
    log_scale, logits, means, raw = layout.split(theta)
    if log_scale is None:
        log_scale = data.fixed_log_scale
    all_logits = np.append(logits, 0.0)
    log_weights = all_logits - _logsumexp(all_logits)
    coef, log_det, backward = _components(layout)(means, raw)
    offset = log_det + log_weights - 0.5 * layout.n_features * LOG_2PI
    return MixtureTerms(log_scale, np.exp(log_weights), means, raw, coef, backward, offset)


def point_chunks(n_points, n_columns):
    """Slices of at most ``CHUNK_ELEMENTS / n_columns`` consecutive points.

    The one chunk iterator: per-point temporaries of ``n_columns`` values stay
    bounded by :data:`CHUNK_ELEMENTS`, whatever the grid's size.
    """
    chunk = max(1, CHUNK_ELEMENTS // max(1, n_columns))
    for start in range(0, n_points, chunk):
        yield slice(start, start + chunk)


def value_and_gradient(theta, data):
    """The value of :func:`~skdensityfit._model.objective` and its gradient."""
    if data.background is not None:
        value, gradient = 0.0, np.zeros(len(theta))
        for _, losses, g, _, jacobian_t in _background_jacobian_chunks(theta, data):
            value += losses.sum()
            gradient += jacobian_t @ g
        if data.loss == "poisson":
            value += data.poisson_constant
        return float(value / data.normaliser), gradient
    if data.cells is not None:
        return _binned_value_and_gradient(theta, data)
    layout = data.layout
    log_scale, weights, _, _, coef, backward, offset = mixture_terms(theta, data)
    value, dlog_scale, dlog_joint, dcoef = 0.0, 0.0, 0.0, 0.0
    for rows in point_chunks(len(data.target), layout.n_components):
        terms = _chunk_terms(
            data.features[rows],
            data.target[rows],
            data.quadrature[rows],
            coef,
            offset,
            log_scale,
            data,
        )
        value += terms[0]
        dlog_scale += terms[1]
        dlog_joint = dlog_joint + terms[2]
        dcoef = dcoef + terms[3]
    if data.loss == "poisson":
        value += data.poisson_constant
    value /= data.normaliser

    dmeans, draw = backward(-0.5 * dcoef, dlog_joint)
    dlogits = dlog_joint[:-1] - weights[:-1] * dlog_joint.sum()
    head = [np.atleast_1d(dlog_scale)] if layout.fit_scale else []
    gradient = np.concatenate([*head, dlogits, dmeans.ravel(), np.ravel(draw)])
    return float(value), gradient


# --------------------------------------------------------------------------
# Gauss-Newton: the Jacobian of log f and the loss's curvature in f
# --------------------------------------------------------------------------
def _component_derivatives(layout, means, raw, backward):
    """Derivatives of each component's log-density polynomial with respect to its parameters.

    ``log N_k(x) = Phi(x) @ A_k + const`` with ``A_k = -C_k / 2`` plus the
    log-determinant on the constant feature, so the Jacobian of ``log N_k(x)``
    is ``Phi(x) @ B_k``. Returns ``B`` for the means, shape ``(K, m, d)``, and
    for the raw Cholesky values, shape ``(K, m, r)`` (``r`` values per
    component; for "tied" the shared ones, differentiated per component).
    The backward pass is linear, so a batch of unit inputs gives every column
    in one call.
    """
    k = means.shape[0]
    n_coef = n_quadratic_coefficients(layout.covariance_type, layout.n_features)
    tied = layout.covariance_type == "tied"
    # Batch of unit inputs: one per coefficient, plus one for the log-determinant
    # (which multiplies the constant feature); for "tied", one per component too,
    # since the shared factor's gradient sums over components.
    n_units = n_coef + 1
    unit_dcoef = np.zeros((n_units, n_coef))
    unit_dcoef[np.arange(n_coef), np.arange(n_coef)] = -0.5
    unit_dlog_det = np.zeros(n_units)
    unit_dlog_det[n_coef] = 1.0
    if not tied:
        dcoef = np.broadcast_to(unit_dcoef[:, None, :], (n_units, k, n_coef))
        dlog_det = np.broadcast_to(unit_dlog_det[:, None], (n_units, k))
        dm, dr = backward(dcoef, dlog_det)  # (units, K, d), (units, K * r)
        dr = dr.reshape(n_units, k, -1)
    else:
        eye = np.eye(k)
        dcoef = unit_dcoef[:, None, :, None] * eye[None, :, None, :]  # (units, K, coef, K)
        dcoef = np.swapaxes(dcoef, 2, 3)  # (units, K_unit, K, coef)
        dlog_det = unit_dlog_det[:, None, None] * eye[None, :, :]
        dm, dr = backward(dcoef, dlog_det)  # (units, K_unit, K, d), (units, K_unit, r)
        dm = np.einsum("ukkd->ukd", dm)
    dm = np.swapaxes(dm, 0, 1)  # (K, units, d)
    dr = np.swapaxes(dr, 0, 1)
    d_means = dm[:, :n_coef].copy()
    d_means[:, -1] += dm[:, n_coef]
    d_raw = dr[:, :n_coef].copy()
    d_raw[:, -1] += dr[:, n_coef]
    return d_means, d_raw


def _point_losses(target, q, model, log_model, loss):
    if loss == "l2":
        return q * (target - model) ** 2
    return q * (model - target * log_model)


def _chunk_jacobian(features, target, q, coef, offset, log_scale, weights, derivatives, data):
    """Per-point pieces of the loss of one chunk of grid points.

    Returns the loss at each point, its derivative ``g`` and Gauss-Newton
    curvature ``c`` in ``log f``, and the transposed Jacobian of ``log f``,
    shape ``(n_parameters, n)``.
    """
    layout = data.layout
    log_joint = _log_joint(features, coef, offset)
    # log-sum-exp by hand, keeping the exponentials for the responsibilities
    # (every log_joint is finite: the Mahalanobis terms are bounded quadratics)
    peak = log_joint.max(axis=0)
    resp = np.exp(log_joint - peak)
    total = resp.sum(axis=0)
    resp /= total
    log_model = log_scale + np.log(total) + peak
    model = np.exp(log_model)
    losses = _point_losses(target, q, model, log_model, data.loss)
    if data.loss == "l2":
        g = (-2.0 / data.normaliser) * q * (target - model) * model
        curvature = (2.0 / data.normaliser) * q * model**2
    else:
        g = (q / data.normaliser) * (model - target)
        curvature = (q / data.normaliser) * model
    k, n = resp.shape
    d_means, d_raw = derivatives
    n_params = (
        int(layout.fit_scale)
        + k
        - 1
        + d_means.shape[2] * k
        + d_raw.shape[2] * (1 if layout.covariance_type == "tied" else k)
    )
    jacobian_t = np.empty((n_params, n))  # of log f, one row per parameter
    row = 0
    if layout.fit_scale:
        jacobian_t[0] = 1.0
        row = 1
    np.subtract(resp[:-1], weights[:-1, None], out=jacobian_t[row : row + k - 1])
    row += k - 1
    # (K * r, m) @ (m, n) products go to BLAS; einsum would not
    for derivative in (d_means, d_raw):
        per_point = np.swapaxes(derivative, 1, 2).reshape(-1, features.shape[1]) @ features.T
        per_point = per_point.reshape(k, -1, n) * resp[:, None, :]
        if derivative is d_raw and layout.covariance_type == "tied":
            per_point = per_point.sum(axis=0)
        else:
            per_point = per_point.reshape(-1, n)
        jacobian_t[row : row + len(per_point)] = per_point
        row += len(per_point)
    return model, losses, g, curvature, jacobian_t


def _jacobian_chunks(theta, data):
    """``(rows, losses, g, c, jacobian_t)`` of each chunk of points (:func:`_chunk_jacobian`).

    With a background, ``g`` and ``c`` are the loss's derivative and curvature
    in ``f`` itself and ``jacobian_t`` is the Jacobian of ``f`` (the
    Gauss-Newton matrix ``J^T diag(c) J`` takes the same form).
    """
    if data.background is not None:
        yield from _background_jacobian_chunks(theta, data)
        return
    for rows, _, losses, g, curvature, jacobian_t in _mixture_jacobian_chunks(theta, data):
        yield rows, losses, g, curvature, jacobian_t


def _mixture_jacobian_chunks(theta, data):
    """``(rows, mixture, losses, g, c, jacobian_t)``: :func:`_jacobian_chunks` of the mixture
    alone, with its values (``g``, ``c`` and the Jacobian in ``log f``)."""
    if data.cells is not None:
        yield from _binned_jacobian_chunks(theta, data)
        return
    layout = data.layout
    log_scale, weights, means, raw, coef, backward, offset = mixture_terms(theta, data)
    derivatives = _component_derivatives(layout, means, raw, backward)
    n_coef = n_quadratic_coefficients(layout.covariance_type, layout.n_features)
    for rows in point_chunks(len(data.target), max(len(theta), layout.n_components * n_coef)):
        yield (
            rows,
            *_chunk_jacobian(
                data.features[rows],
                data.target[rows],
                data.quadrature[rows],
                coef,
                offset,
                log_scale,
                weights,
                derivatives,
                data,
            ),
        )


def value_gradient_and_gauss_newton(theta, data):
    """The objective, its gradient and its Gauss-Newton matrix.

    The matrix is ``J^T diag(c) J`` with ``J`` the Jacobian of ``log f`` and
    ``c`` the loss's second derivative in ``log f`` without the residual term
    (``2 q f^2`` for l2, ``q f`` for poisson: the Fisher information). It is
    positive semi-definite and equals the Hessian at a zero-residual optimum.
    """
    n_params = len(theta)
    value, gradient, matrix = 0.0, np.zeros(n_params), np.zeros((n_params, n_params))
    for _, losses, g, curvature, jacobian_t in _jacobian_chunks(theta, data):
        value += losses.sum()
        gradient += jacobian_t @ g
        matrix += (jacobian_t * curvature) @ jacobian_t.T
    if data.loss == "poisson":
        value += data.poisson_constant
    return float(value / data.normaliser), gradient, matrix


def gauss_newton_by_group(theta, data, groups):
    """:func:`value_gradient_and_gauss_newton` of the loss on each group of points.

    ``groups`` has shape ``(n_groups, n_points)``: how many times each point
    counts in each group (booleans for plain membership). The Jacobian is
    computed once and shared by the groups. Returns the values
    ``(n_groups,)``, gradients ``(n_groups, p)`` and matrices
    ``(n_groups, p, p)``; the values leave out the Poisson loss's constant, as
    :func:`point_losses` does.
    """
    n_params = len(theta)
    n_groups = len(groups)
    values = np.zeros(n_groups)
    gradients = np.zeros((n_groups, n_params))
    matrices = np.zeros((n_groups, n_params, n_params))
    for rows, losses, g, curvature, jacobian_t in _jacobian_chunks(theta, data):
        members = np.asarray(groups[:, rows], dtype=float)
        values += members @ losses
        gradients += (members * g) @ jacobian_t.T
        for group, member in enumerate(members):
            inside = np.flatnonzero(member)
            member_t = jacobian_t[:, inside]
            matrices[group] += (member_t * (curvature[inside] * member[inside])) @ member_t.T
    return values / data.normaliser, gradients, matrices


def point_losses(theta, data):
    """The loss at each grid point, on the objective's scale (without its constant)."""
    if data.background is not None:
        model = model_density(theta, data)
        log_model = np.log(np.maximum(model, np.finfo(float).tiny))
        return _point_losses(data.target, data.quadrature, model, log_model, data.loss) / (
            data.normaliser
        )
    losses = np.empty(len(data.target))
    for rows, log_model in _log_model_chunks(theta, data):
        losses[rows] = _point_losses(
            data.target[rows], data.quadrature[rows], np.exp(log_model), log_model, data.loss
        )
    return losses / data.normaliser


def _log_model_chunks(theta, data):
    """``(rows, log f)`` for each chunk of grid points."""
    if data.cells is not None:
        for rows, _, log_model in _binned_log_model_chunks(theta, data):
            yield rows, log_model
        return
    layout = data.layout
    log_scale, _, _, _, coef, _, offset = mixture_terms(theta, data)
    for rows in point_chunks(len(data.target), layout.n_components):
        log_joint = _log_joint(data.features[rows], coef, offset)
        yield rows, log_scale + _logsumexp(log_joint, axis=0)


def component_mass_shares(theta, data):
    """Each component's share of the fitted mass on the grid.

    ``sum_i q_i w_k N_k(x_i) / sum_i q_i f(x_i)`` in the fit's coordinates
    (for binned data, the average of ``w_k N_k`` over each cell).
    """
    layout = data.layout
    if data.cells is not None:
        masses = np.zeros(layout.n_components)
        for rows, log_joint, _ in _binned_log_model_chunks(theta, data):
            masses += np.exp(log_joint) @ data.quadrature[rows]
        return masses / max(masses.sum(), np.finfo(float).tiny)
    _, _, _, _, coef, _, offset = mixture_terms(theta, data)
    masses = np.zeros(layout.n_components)
    for rows in point_chunks(len(data.target), layout.n_components):
        masses += np.exp(_log_joint(data.features[rows], coef, offset)) @ data.quadrature[rows]
    return masses / max(masses.sum(), np.finfo(float).tiny)


def model_density(theta, data):
    """The model ``f`` at every grid point of ``data`` (with its background, if any)."""
    model = np.empty(len(data.target))
    for rows, log_model in _log_model_chunks(theta, data):
        model[rows] = np.exp(log_model)
    if data.background is not None:
        model += data.background.values(theta[data.layout.n_parameters :])
    return model


# --------------------------------------------------------------------------
# Binned data: the mixture's average over each cell
# --------------------------------------------------------------------------
def _binned_columns(data, n_params):
    """Values per point of the binned temporaries (the chunk size's divisor)."""
    layout = data.layout
    k = layout.n_components
    per_component = layout.n_cholesky // (1 if layout.covariance_type == "tied" else k)
    return max(n_params, k * (layout.n_features + per_component + 2))


def _cell_log_joint(terms, data, rows, gradient):
    """``log w_k P_k(cell_i) - log volume_i``, shape ``(K, n)``, and the derivatives of
    ``log P`` in the means ``(n, K, d)`` and the raw values ``(n, K, r)`` (None without
    ``gradient``)."""
    cells = data.cells.subset(rows)
    log_mass, dmeans, draw = log_cell_masses_and_gradients(
        cells, terms.means, terms.raw, data.layout.covariance_type, gradient=gradient
    )
    log_joint = log_mass.T + (np.log(terms.weights)[:, None] - np.log(cells.volume))
    return log_joint, dmeans, draw


def _loss_pieces(target, q, model, data):
    """The loss's value on some points, its derivative ``g`` and its Gauss-Newton curvature
    ``c`` in ``log f`` (as in :func:`_chunk_terms` and :func:`_chunk_jacobian`)."""
    if data.loss == "l2":
        residual = target - model
        value = np.dot(q * residual, residual)
        g = (-2.0 / data.normaliser) * q * residual * model
        curvature = (2.0 / data.normaliser) * q * model**2
    else:
        value = None  # needs log f: the caller forms it
        g = (q / data.normaliser) * (model - target)
        curvature = (q / data.normaliser) * model
    return value, g, curvature


def _binned_value_and_gradient(theta, data):
    layout = data.layout
    terms = mixture_terms(theta, data)
    k, d = layout.n_components, layout.n_features
    value, dlog_scale = 0.0, 0.0
    dlog_joint, dmeans, draw = np.zeros(k), np.zeros((k, d)), 0.0
    for rows in point_chunks(len(data.target), _binned_columns(data, len(theta))):
        log_joint, d_means, d_raw = _cell_log_joint(terms, data, rows, True)
        log_mixture = _logsumexp(log_joint, axis=0)
        log_model = terms.log_scale + log_mixture
        model = np.exp(log_model)
        target, q = data.target[rows], data.quadrature[rows]
        chunk_value, g, _ = _loss_pieces(target, q, model, data)
        if chunk_value is None:
            chunk_value = np.dot(q, model - target * log_model)
        value += chunk_value
        weighted_resp = np.exp(log_joint - log_mixture) * g  # (K, n)
        dlog_scale += g.sum()
        dlog_joint += weighted_resp.sum(axis=1)
        dmeans += np.einsum("kn,nkd->kd", weighted_resp, d_means)
        draw = draw + np.einsum("kn,nkr->kr", weighted_resp, d_raw)
    if data.loss == "poisson":
        value += data.poisson_constant
    value /= data.normaliser
    if layout.covariance_type == "tied":
        draw = draw.sum(axis=0)
    dlogits = dlog_joint[:-1] - terms.weights[:-1] * dlog_joint.sum()
    head = [np.atleast_1d(dlog_scale)] if layout.fit_scale else []
    gradient = np.concatenate([*head, dlogits, dmeans.ravel(), np.ravel(draw)])
    return float(value), gradient


def _binned_jacobian_chunks(theta, data):
    """:func:`_jacobian_chunks` of binned data."""
    layout = data.layout
    terms = mixture_terms(theta, data)
    tied = layout.covariance_type == "tied"
    for rows in point_chunks(len(data.target), _binned_columns(data, len(theta))):
        log_joint, d_means, d_raw = _cell_log_joint(terms, data, rows, True)
        peak = log_joint.max(axis=0)
        resp = np.exp(log_joint - peak)
        total = resp.sum(axis=0)
        resp /= total
        log_model = terms.log_scale + np.log(total) + peak
        model = np.exp(log_model)
        target, q = data.target[rows], data.quadrature[rows]
        losses = _point_losses(target, q, model, log_model, data.loss)
        _, g, curvature = _loss_pieces(target, q, model, data)
        n = resp.shape[1]
        resp_t = resp.T[:, :, None]  # (n, K, 1)
        raw_part = resp_t * d_raw
        raw_part = raw_part.sum(axis=1) if tied else raw_part.reshape(n, -1)
        blocks = [np.ones((1, n))] if layout.fit_scale else []
        blocks += [
            resp[:-1] - terms.weights[:-1, None],
            (resp_t * d_means).reshape(n, -1).T,
            raw_part.T,
        ]
        yield rows, model, losses, g, curvature, np.concatenate(blocks, axis=0)


def _binned_log_model_chunks(theta, data):
    terms = mixture_terms(theta, data)
    for rows in point_chunks(len(data.target), _binned_columns(data, 0)):
        log_joint, _, _ = _cell_log_joint(terms, data, rows, False)
        yield rows, log_joint, terms.log_scale + _logsumexp(log_joint, axis=0)


# --------------------------------------------------------------------------
# A background under the mixture: f = mixture + b, in model space
# --------------------------------------------------------------------------
def _background_jacobian_chunks(theta, data):
    """:func:`_jacobian_chunks` of ``f = m + b``: the loss's pieces in ``f`` and the
    Jacobian of ``f`` (``m`` times that of ``log m``, then the background's rows)."""
    background = data.background
    n_mixture = data.layout.n_parameters
    theta_b = theta[n_mixture:]
    for rows, mixture, _, _, _, jacobian_t in _mixture_jacobian_chunks(theta, data):
        model = mixture + background.values(theta_b, background.basis[rows])
        target, q = data.target[rows], data.quadrature[rows]
        if data.loss == "l2":
            residual = target - model
            losses = q * residual**2
            g = (-2.0 / data.normaliser) * q * residual
            curvature = np.broadcast_to(2.0 / data.normaliser, q.shape) * q
        else:
            # the Poisson likelihood needs a positive model at every point: infinite else
            positive = model > 0
            model = np.where(positive, model, 1.0)
            losses = np.where(positive, q * (model - target * np.log(model)), np.inf)
            g = (q / data.normaliser) * (1.0 - target / model)
            curvature = (q / data.normaliser) / model
        jacobian_f = np.concatenate(
            [jacobian_t * mixture, background.derivatives(theta_b, rows)], axis=0
        )
        yield rows, losses, g, curvature, jacobian_f
