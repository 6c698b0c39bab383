"""Pure functions of the scaled Gaussian mixture model and its losses.

Everything here works in the *standardised* coordinates of the estimator (grid
centred and scaled, density divided by its largest absolute value) and is
written with ``autograd.numpy``: :func:`objective` is the reference definition
that autograd differentiates. The optimiser's inner loop uses the hand-derived
numpy gradient of :mod:`skdensityfit._analytic_gradient`, which the tests
check against autograd's.

The model is ``f(x) = exp(log_scale) * sum_k w_k N(x; mu_k, Sigma_k)``. Each
component is parameterised by the upper-triangular Cholesky factor ``U_k`` of
its precision (``Lambda_k = U_k U_k^T``, scikit-learn's ``precisions_cholesky_``
convention) with the diagonal stored as its logarithm, and the weights by a
softmax of ``K - 1`` free logits (the last logit is pinned to 0: for ``K = 2``
this is exactly the logit trick).

The squared Mahalanobis distance is a quadratic polynomial in ``x``, so it is
evaluated as one matrix product of fixed quadratic features of the grid with a
small coefficient matrix per component: ``maha = Phi(x) @ C.T``. That keeps
the per-iteration work at one ``(n_points, n_coef) @ (n_coef, K)`` product and
no ``(n_points, K, n_features)`` temporaries. The expansion is accurate here
because the grid is standardised (coordinates of order one).
"""

from dataclasses import dataclass
from functools import cached_property, lru_cache

import autograd.numpy as anp
import numpy as np
from autograd.scipy.special import logsumexp
from scipy.special import xlogy

LOG_2PI = np.log(2.0 * np.pi)
COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


# --------------------------------------------------------------------------
# Parameter layout: flat unconstrained vector <-> named blocks
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterLayout:
    """Where each parameter block sits in the flat unconstrained vector."""

    n_components: int
    n_features: int
    covariance_type: str
    fit_scale: bool = True

    @property
    def n_cholesky(self):
        d = self.n_features
        return {
            "full": self.n_components * d * (d + 1) // 2,
            "tied": d * (d + 1) // 2,
            "diag": self.n_components * d,
            "spherical": self.n_components,
        }[self.covariance_type]

    @property
    def sizes(self):
        return (
            int(self.fit_scale),
            self.n_components - 1,
            self.n_components * self.n_features,
            self.n_cholesky,
        )

    @property
    def n_parameters(self):
        return sum(self.sizes)

    @cached_property
    def offsets(self):
        return tuple(int(o) for o in np.cumsum((0, *self.sizes)))

    def split(self, theta):
        """Return ``(log_scale or None, logits, means, cholesky_raw)``."""
        offsets = self.offsets
        blocks = [theta[offsets[i] : offsets[i + 1]] for i in range(4)]
        log_scale = blocks[0][0] if self.fit_scale else None
        means = anp.reshape(blocks[2], (self.n_components, self.n_features))
        return log_scale, blocks[1], means, blocks[3]


@lru_cache(maxsize=32)
def _triu_indices(n_features):
    rows, cols = np.triu_indices(n_features)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def _upper_from_raw(raw, n_features):
    """Upper-triangular matrices from packed rows, exponentiating the diagonal.

    ``raw`` has shape ``(..., d(d+1)/2)`` in ``np.triu_indices`` order.
    """
    rows, cols = _triu_indices(n_features)
    is_diag = (rows == cols).astype(float)
    values = is_diag * anp.exp(raw * is_diag) + (1.0 - is_diag) * raw
    basis = np.zeros((rows.size, n_features, n_features))
    basis[np.arange(rows.size), rows, cols] = 1.0
    return anp.einsum("...m,mij->...ij", values, basis)


def _raw_from_upper(upper):
    """Inverse of :func:`_upper_from_raw` (numpy only)."""
    n_features = upper.shape[-1]
    rows, cols = _triu_indices(n_features)
    raw = upper[..., rows, cols].copy()
    diag = rows == cols
    raw[..., diag] = np.log(raw[..., diag])
    return raw


# --------------------------------------------------------------------------
# Quadratic features and per-component coefficients, one function per type
# --------------------------------------------------------------------------
def quadratic_features(X, covariance_type):
    """Fixed design ``Phi(X)`` such that ``maha = Phi @ C.T`` (numpy)."""
    n_points, n_features = X.shape
    if covariance_type in ("full", "tied"):
        rows, cols = _triu_indices(n_features)
        quad = X[:, rows] * X[:, cols]
    elif covariance_type == "diag":
        quad = X**2
    else:
        quad = np.sum(X**2, axis=1, keepdims=True)
    return np.hstack([quad, X, np.ones((n_points, 1))])


def _coefficients_from_precision(precisions, means):
    rows, cols = _triu_indices(means.shape[1])
    off_diagonal_factor = np.where(rows == cols, 1.0, 2.0)
    quad = precisions[:, rows, cols] * off_diagonal_factor
    prec_means = anp.einsum("kij,kj->ki", precisions, means)
    const = anp.sum(means * prec_means, axis=1, keepdims=True)
    return anp.concatenate([quad, -2.0 * prec_means, const], axis=1)


def _coef_full(means, raw):
    n_components, n_features = means.shape
    upper = _upper_from_raw(anp.reshape(raw, (n_components, -1)), n_features)
    precisions = anp.einsum("kij,klj->kil", upper, upper)
    rows, cols = _triu_indices(n_features)
    log_det = anp.sum(anp.reshape(raw, (n_components, -1))[:, rows == cols], axis=1)
    return _coefficients_from_precision(precisions, means), log_det


def _coef_tied(means, raw):
    n_components, n_features = means.shape
    upper = _upper_from_raw(raw, n_features)
    precision = anp.dot(upper, upper.T)
    precisions = anp.ones((n_components, 1, 1)) * precision
    rows, cols = _triu_indices(n_features)
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


@dataclass(frozen=True)
class FitData:
    """Constant data of one fit, in standardised coordinates."""

    features: np.ndarray  # (n_points, n_coef) quadratic features of the grid
    target: np.ndarray  # (n_points,) density divided by its largest |value|
    weights: np.ndarray  # (n_points,) quadrature weights, summing to one
    layout: ParameterLayout
    loss: str
    fixed_log_scale: float = 0.0

    @cached_property
    def normaliser(self):
        """The loss of the zero model (l2) or the target mass (poisson)."""
        if self.loss == "l2":
            return float(np.sum(self.weights * self.target**2))
        return float(np.sum(self.weights * self.target))

    @cached_property
    def poisson_constant(self):
        return float(np.sum(self.weights * (xlogy(self.target, self.target) - self.target)))


def l2_loss(log_model, data):
    """Relative squared L2 error ``sum q (t - f)^2 / sum q t^2``."""
    residual = data.target - anp.exp(log_model)
    return anp.sum(data.weights * residual**2) / data.normaliser


def poisson_loss(log_model, data):
    """Generalised Kullback-Leibler divergence ``sum q (t log(t/f) - t + f)``.

    Divided by the target mass ``sum q t``; half the Poisson deviance.
    """
    value = anp.sum(data.weights * (anp.exp(log_model) - data.target * log_model))
    return (value + data.poisson_constant) / data.normaliser


LOSSES = {"l2": l2_loss, "poisson": poisson_loss}


def objective(theta, data):
    """The loss minimised by the fit, a pure function of ``(theta, data)``."""
    log_model = log_model_density(theta, data.features, data.layout, data.fixed_log_scale)
    return LOSSES[data.loss](log_model, data)


# --------------------------------------------------------------------------
# Conversions between named parameters and the flat vector (numpy only)
# --------------------------------------------------------------------------
def pack(layout, weights, means, precisions_cholesky, log_scale=None):
    """Flat unconstrained vector from standardised mixture parameters."""
    weights = np.asarray(weights, dtype=float)
    log_w = np.log(weights)
    logits = log_w[:-1] - log_w[-1]
    cov = layout.covariance_type
    if cov in ("full", "tied"):
        raw = _raw_from_upper(np.asarray(precisions_cholesky)).ravel()
    else:
        raw = np.log(np.asarray(precisions_cholesky)).ravel()
    head = [np.atleast_1d(float(log_scale))] if layout.fit_scale else []
    return np.concatenate([*head, logits, np.ravel(means), raw])


def unpack(theta, layout, fixed_log_scale=0.0):
    """``(log_scale, weights, means, precisions_cholesky)`` from the vector."""
    theta = np.asarray(theta, dtype=float)
    log_scale, logits, means, raw = layout.split(theta)
    if log_scale is None:
        log_scale = fixed_log_scale
    all_logits = np.append(logits, 0.0)
    weights = np.exp(all_logits - all_logits.max())
    weights = weights / weights.sum()
    d = layout.n_features
    cov = layout.covariance_type
    if cov == "full":
        prec_chol = _upper_from_raw(raw.reshape(layout.n_components, -1), d)
    elif cov == "tied":
        prec_chol = _upper_from_raw(raw, d)
    elif cov == "diag":
        prec_chol = np.exp(raw).reshape(layout.n_components, d)
    else:
        prec_chol = np.exp(raw)
    return float(log_scale), weights, np.array(means), np.asarray(prec_chol)
