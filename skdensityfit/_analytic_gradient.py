"""The objective and its gradient in plain numpy, for the optimiser's inner loop.

:func:`skdensityfit._mixture_math.objective` (autograd) defines the model and
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
"""

import numpy as np

from ._mixture_math import LOG_2PI, _triu_indices


def _logsumexp(a, axis=None):
    """``log(sum(exp(a)))`` without overflow (scipy's has more per-call overhead)."""
    peak = np.max(a, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return np.log(np.sum(np.exp(a - peak), axis=axis)) + np.squeeze(peak, axis=axis)


def _symmetric_from_upper(packed, n_features):
    rows, cols = _triu_indices(n_features)
    full = np.zeros((*packed.shape[:-1], n_features, n_features))
    full[..., rows, cols] = packed
    full[..., cols, rows] = packed
    return full


def _upper_from_raw(raw, n_features):
    rows, cols = _triu_indices(n_features)
    values = np.where(rows == cols, np.exp(np.where(rows == cols, raw, 0.0)), raw)
    upper = np.zeros((*raw.shape[:-1], n_features, n_features))
    upper[..., rows, cols] = values
    return upper


def _matrix_forward(means, upper):
    """Coefficients from means (K, d) and precision Cholesky factors (K, d, d)."""
    d = means.shape[1]
    rows, cols = _triu_indices(d)
    precisions = upper @ np.swapaxes(upper, -1, -2)
    prec_means = np.einsum("kij,kj->ki", precisions, means)
    quad = precisions[:, rows, cols] * np.where(rows == cols, 1.0, 2.0)
    const = np.einsum("ki,ki->k", means, prec_means)
    return np.hstack([quad, -2.0 * prec_means, const[:, None]]), precisions, prec_means


def _matrix_backward(dcoef, means, precisions, prec_means):
    """Gradients with respect to the means and to each precision matrix."""
    d = means.shape[1]
    m2 = d * (d + 1) // 2
    dquad, dlin, dconst = dcoef[:, :m2], dcoef[:, m2 : m2 + d], dcoef[:, -1]
    dprec = _symmetric_from_upper(dquad, d)
    outer_lin = dlin[:, :, None] * means[:, None, :]
    dprec = (
        dprec
        - (outer_lin + np.swapaxes(outer_lin, 1, 2))
        + dconst[:, None, None] * means[:, :, None] * means[:, None, :]
    )
    dmeans = -2.0 * np.einsum("kij,kj->ki", precisions, dlin) + 2.0 * dconst[:, None] * prec_means
    return dmeans, dprec


def _raw_gradient_from_upper(dprec, upper, dlog_det, raw_shape):
    """Chain ``dL/dPrecision`` through ``Precision = U U^T`` to the packed raw values."""
    d = upper.shape[-1]
    rows, cols = _triu_indices(d)
    dupper = 2.0 * dprec @ upper
    diag = rows == cols
    draw = dupper[..., rows, cols]
    draw = np.where(diag, draw * upper[..., rows, cols] + dlog_det[..., None], draw)
    return draw.reshape(raw_shape)


def _full(means, raw):
    k, d = means.shape
    raw_rows = raw.reshape(k, -1)
    upper = _upper_from_raw(raw_rows, d)
    coef, precisions, prec_means = _matrix_forward(means, upper)
    log_det = raw_rows[:, _triu_indices(d)[0] == _triu_indices(d)[1]].sum(axis=1)

    def backward(dcoef, dlog_det):
        dmeans, dprec = _matrix_backward(dcoef, means, precisions, prec_means)
        return dmeans, _raw_gradient_from_upper(dprec, upper, dlog_det, raw.shape)

    return coef, log_det, backward


def _tied(means, raw):
    k, d = means.shape
    upper = _upper_from_raw(raw, d)
    uppers = np.broadcast_to(upper, (k, d, d))
    coef, precisions, prec_means = _matrix_forward(means, uppers)
    log_det = np.full(k, raw[_triu_indices(d)[0] == _triu_indices(d)[1]].sum())

    def backward(dcoef, dlog_det):
        dmeans, dprec = _matrix_backward(dcoef, means, precisions, prec_means)
        return dmeans, _raw_gradient_from_upper(dprec.sum(axis=0), upper, dlog_det.sum(), raw.shape)

    return coef, log_det, backward


def _diag(means, raw):
    raw = raw.reshape(means.shape)
    precisions = np.exp(2.0 * raw)
    coef = np.hstack(
        [precisions, -2.0 * precisions * means, np.sum(precisions * means**2, axis=1)[:, None]]
    )
    d = means.shape[1]

    def backward(dcoef, dlog_det):
        dquad, dlin, dconst = dcoef[:, :d], dcoef[:, d : 2 * d], dcoef[:, -1:]
        dprec = dquad - 2.0 * dlin * means + dconst * means**2
        dmeans = -2.0 * precisions * dlin + 2.0 * dconst * precisions * means
        return dmeans, (2.0 * precisions * dprec + dlog_det[:, None]).ravel()

    return coef, raw.sum(axis=1), backward


def _spherical(means, raw):
    precisions = np.exp(2.0 * raw)
    sq_norm = np.sum(means**2, axis=1)
    coef = np.hstack(
        [precisions[:, None], -2.0 * precisions[:, None] * means, (precisions * sq_norm)[:, None]]
    )
    d = means.shape[1]

    def backward(dcoef, dlog_det):
        dquad, dlin, dconst = dcoef[:, 0], dcoef[:, 1 : 1 + d], dcoef[:, -1]
        dprec = dquad - 2.0 * np.sum(dlin * means, axis=1) + dconst * sq_norm
        dmeans = precisions[:, None] * (-2.0 * dlin + 2.0 * dconst[:, None] * means)
        return dmeans, 2.0 * precisions * dprec + d * dlog_det

    return coef, d * raw, backward


_COMPONENTS = {"full": _full, "tied": _tied, "diag": _diag, "spherical": _spherical}


# Rows per chunk: the per-point temporaries are (chunk, n_components) arrays, so
# memory stays bounded by the chunk, not by the grid, while chunks stay large
# enough for numpy's per-call overhead not to matter.
CHUNK_ELEMENTS = 2**20


def _chunk_terms(features, target, q, coef, offset, log_scale, data):
    """Loss and gradient pieces of one chunk of grid points."""
    log_joint = features @ (-0.5 * coef.T)
    log_joint += offset
    log_mixture = _logsumexp(log_joint, axis=1)
    log_model = log_scale + log_mixture
    model = np.exp(log_model)
    if data.loss == "l2":
        residual = target - model
        value = np.dot(q * residual, residual)
        g = (-2.0 / data.normaliser) * q * residual * model
    else:
        value = np.dot(q, model - target * log_model)
        g = (q / data.normaliser) * (model - target)
    weighted_resp = np.exp(log_joint - log_mixture[:, None]) * g[:, None]
    return value, g.sum(), weighted_resp.sum(axis=0), weighted_resp.T @ features


def value_and_gradient(theta, data):
    """The value of :func:`~skdensityfit._mixture_math.objective` and its gradient."""
    layout = data.layout
    log_scale, logits, means, raw = layout.split(theta)
    if log_scale is None:
        log_scale = data.fixed_log_scale
    all_logits = np.append(logits, 0.0)
    log_weights = all_logits - _logsumexp(all_logits)
    coef, log_det, backward = _COMPONENTS[layout.covariance_type](means, raw)
    offset = log_det + log_weights - 0.5 * layout.n_features * LOG_2PI

    n_points = len(data.target)
    chunk = max(1, CHUNK_ELEMENTS // layout.n_components)
    value, dlog_scale, dlog_joint, dcoef = 0.0, 0.0, 0.0, 0.0
    for start in range(0, n_points, chunk):
        rows = slice(start, start + chunk)
        terms = _chunk_terms(
            data.features[rows],
            data.target[rows],
            data.weights[rows],
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
    weights = np.exp(log_weights)
    dlogits = dlog_joint[:-1] - weights[:-1] * dlog_joint.sum()
    head = [np.atleast_1d(dlog_scale)] if layout.fit_scale else []
    gradient = np.concatenate([*head, dlogits, dmeans.ravel(), np.ravel(draw)])
    return float(value), gradient
