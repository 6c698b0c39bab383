"""The flat parameter vector of a fit and the change of coordinates around it.

A fit works in *standardised* coordinates: the grid centred and divided by
its spread per feature, the density divided by its largest absolute value.
:class:`ParameterLayout` says where each block sits in the flat
unconstrained vector ``theta``; :func:`pack` and :func:`unpack` convert
between ``theta`` and named standardised parameters; :class:`Standardisation`
maps named parameters between grid units and fit coordinates, both ways.

The vector holds, in order: the log of the total scale (when fitted); the
``K - 1`` free logits of a softmax whose last logit is pinned to 0 (for
``K = 2`` the logit trick); the means; the precision Cholesky factors as
packed upper triangles (``np.triu_indices`` order) with the logarithm of
the diagonal (for 'diag' and 'spherical', the logarithms of the factors).
"""

from dataclasses import dataclass
from functools import cached_property

import autograd.numpy as anp
import numpy as np

from .covariance import (
    COVARIANCE_TYPES,
    MATRIX_TYPES,
    as_reported,
    cholesky_from_raw,
    cholesky_parameter_map,
    n_cholesky_values,
    own_covariances,
    precisions_and_covariances,
    raw_from_cholesky,
    rescale_cholesky,
)

__all__ = [
    "COVARIANCE_TYPES",
    "ParameterLayout",
    "Standardisation",
    "pack",
    "unpack",
]


@dataclass(frozen=True)
class ParameterLayout:
    """Where each parameter block sits in the flat unconstrained vector."""

    n_components: int
    n_features: int
    covariance_type: str
    fit_scale: bool = True

    @property
    def n_cholesky(self):
        return n_cholesky_values(self.covariance_type, self.n_components, self.n_features)

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

    def with_components(self, n_components):
        return ParameterLayout(n_components, self.n_features, self.covariance_type, self.fit_scale)


def pack(layout, weights, means, precisions_cholesky, log_scale=None):
    """Flat unconstrained vector from standardised mixture parameters."""
    weights = np.asarray(weights, dtype=float)
    log_w = np.log(weights)
    logits = log_w[:-1] - log_w[-1]
    raw = raw_from_cholesky(precisions_cholesky, layout.covariance_type)
    head = [np.atleast_1d(float(log_scale))] if layout.fit_scale else []
    return np.concatenate([*head, logits, np.ravel(means), raw])


def unpack(theta, layout, fixed_log_scale=0.0):
    """``(log_scale, weights, means, precisions_cholesky)`` from the vector.

    *autograd-safe*: the delta method differentiates through it.
    """
    log_scale, logits, means, raw = layout.split(theta)
    if log_scale is None:
        log_scale = fixed_log_scale
    all_logits = anp.concatenate([logits, anp.zeros(1)])
    weights = anp.exp(all_logits - anp.max(all_logits))
    return (
        log_scale,
        weights / anp.sum(weights),
        means,
        cholesky_from_raw(raw, layout.covariance_type, layout.n_components, layout.n_features),
    )


# A baseline's coefficients are given about 0 when the grid is this close to it (in its sds).
ORIGIN_REACH = 10.0


def origin_of(center, spread):
    """0 along each axis where the grid's middle ``center`` is within ``ORIGIN_REACH``
    standard deviations ``spread`` of it, else that middle: powers or exponentials of
    coordinates far from 0 lose every digit, or overflow."""
    return np.where(np.abs(center) <= ORIGIN_REACH * spread, 0.0, center)


def grid_standardisation(X, covariance_type):
    """Centre and per-feature scale that map the grid to order-one values.

    'spherical' needs the same scale on every feature to stay spherical.
    """
    center = 0.5 * (X.min(axis=0) + X.max(axis=0))
    # in the unit of the largest offset: grids of 1e-200 or 1e200 neither under- nor overflow
    reach = np.max(np.abs(X - center), axis=0)
    reach = np.where(reach > 0, reach, 1.0)
    spread = ((X - center) / reach).std(axis=0) * reach
    if X.shape[1] == 1 and spread[0] == 0:
        raise ValueError(
            f"The grid's points all lie at one value ({center[0]:.17g}): a density needs at "
            "least two distinct points. If the grid was offset by a large value, float64 has "
            "lost the differences between its points: build it about an origin (e.g. "
            "x - 1e6 before it is rounded to float64)."
        )
    if X.shape[1] > 1 and np.any(spread == 0):
        raise ValueError(
            f"Grid feature(s) {np.flatnonzero(spread == 0).tolist()} are constant, so "
            "the mixture's extent along them cannot be fitted. Drop those columns."
        )
    spread = np.where(spread > 0, spread, 1.0)
    if X.shape[1] > 1:
        correlation = np.corrcoef((X - center) / spread, rowvar=False)
        if np.linalg.eigvalsh(correlation)[0] < 1e-10:
            raise ValueError(
                "The grid points lie in a lower-dimensional subspace (e.g. all on one "
                "line), so a full-dimensional mixture cannot be fitted. Project the grid "
                "onto that subspace (e.g. with sklearn.decomposition.PCA) and fit there."
            )
    if covariance_type == "spherical":
        spread = np.full_like(spread, np.exp(np.mean(np.log(spread))))
    return center, spread


@dataclass(frozen=True)
class Standardisation:
    """The map between grid units and a fit's standardised coordinates.

    ``x_fit = (x - center) / spread`` per feature and ``y_fit = y /
    density_unit``; a mixture's total scale changes by ``exp(log_unit)`` with
    ``log_unit = log(density_unit) + sum(log(spread))``.
    """

    center: np.ndarray
    spread: np.ndarray
    density_unit: float
    covariance_type: str

    @classmethod
    def from_data(cls, X, y, covariance_type):
        """The standardisation of a grid (:func:`grid_standardisation`) and its density."""
        center, spread = grid_standardisation(X, covariance_type)
        return cls(center, spread, float(np.max(np.abs(y))), covariance_type)

    @property
    def log_unit(self):
        return np.log(self.density_unit) + np.sum(np.log(self.spread))

    @property
    def background_origin(self):
        """The point a baseline's coefficients are given about (``background_origin_``):
        :func:`origin_of` the grid's centre and spread."""
        return origin_of(self.center, self.spread)

    def grid(self, X):
        """Grid points in fit coordinates."""
        return (X - self.center) / self.spread

    def means_to_fit(self, means):
        return (means - self.center) / self.spread

    def cholesky_to_fit(self, prec_chol):
        return rescale_cholesky(prec_chol, self.covariance_type, self.spread)

    def log_scale_to_fit(self, scale):
        return np.log(scale) - self.log_unit

    def to_fit(self, layout, weights, means, prec_chol, scale):
        """The flat vector in fit coordinates of a mixture given in grid units."""
        log_scale = self.log_scale_to_fit(scale) if layout.fit_scale else None
        return pack(
            layout, weights, self.means_to_fit(means), self.cholesky_to_fit(prec_chol), log_scale
        )

    def to_grid(self, theta, layout, fixed_log_scale=0.0, unpacked=None):
        """Named parameters in grid units, in the order of ``theta`` (*autograd-safe*);
        ``unpacked``: :func:`unpack` of ``theta`` when the caller has it.

        Returns a dict with ``weights``, ``means``, ``covariances``,
        ``precisions``, ``precisions_cholesky`` (shaped as scikit-learn's) and
        ``scale``.
        """
        if unpacked is None:
            unpacked = unpack(theta, layout, fixed_log_scale)
        log_scale, weights, means, prec_chol = unpacked
        prec_chol = rescale_cholesky(prec_chol, self.covariance_type, self.spread, inverse=True)
        precisions, covariances = precisions_and_covariances(prec_chol, self.covariance_type)
        return {
            "weights": weights,
            "means": self.center + self.spread * means,
            "covariances": covariances,
            "precisions": precisions,
            "precisions_cholesky": prec_chol,
            "scale": anp.exp(log_scale + self.log_unit),
        }


# --------------------------------------------------------------------------
# many parameter vectors at once (rows), in fit coordinates
# --------------------------------------------------------------------------
def rows_split(thetas, layout, fixed_log_scale=0.0):
    """``(log_scale (R,), log_weights (R, K), means (R, K, d), raw (R, n_chol))`` of
    the rows of ``thetas`` (the mixture's part; a background's parameters follow)."""
    offsets = layout.offsets
    k, d = layout.n_components, layout.n_features
    if layout.fit_scale:
        log_scale = thetas[:, 0]
    else:
        log_scale = np.broadcast_to(np.asarray(fixed_log_scale, dtype=float), len(thetas))
    logits = _rows_logits(thetas, layout)
    peak = logits.max(axis=1, keepdims=True)
    log_weights = logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
    means = thetas[:, offsets[2] : offsets[3]].reshape(-1, k, d)
    return log_scale, log_weights, means, thetas[:, offsets[3] : offsets[4]]


def _rows_logits(thetas, layout):
    """The softmax's ``K`` logits of each row of ``thetas`` (the last pinned to 0)."""
    offsets = layout.offsets
    return np.concatenate([thetas[:, offsets[1] : offsets[2]], np.zeros((len(thetas), 1))], 1)


def rows_weights(thetas, layout):
    """The weights ``(R, K)`` of the rows of ``thetas``, by the softmax as :func:`unpack`
    computes it for one vector: a row's weights are the single fit's bits."""
    logits = _rows_logits(thetas, layout)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / np.sum(weights, axis=1, keepdims=True)


def rows_pack(layout, log_scale, log_weights, means, raw):
    """The rows of parameter vectors of the mixture's parts (inverse of :func:`rows_split`)."""
    head = [np.asarray(log_scale, dtype=float)[:, None]] if layout.fit_scale else []
    logits = log_weights[:, :-1] - log_weights[:, -1:]
    return np.concatenate([*head, logits, means.reshape(len(means), -1), raw], axis=1)


def raw_of_widths(layout, widths):
    """The Cholesky parameters of components with isotropic ``widths`` ``(R, K)`` (standard
    deviations in fit coordinates; 'tied' takes their geometric mean)."""
    index, _ = cholesky_parameter_map(
        layout.covariance_type, layout.n_components, layout.n_features
    )
    raw = np.zeros((len(widths), layout.n_cholesky))
    counts = np.zeros(layout.n_cholesky)
    for k in range(layout.n_components):  # set-up of a few columns
        for i in range(layout.n_features):
            raw[:, index[k, i, i]] -= np.log(widths[:, k])
            counts[index[k, i, i]] += 1
    return raw / np.maximum(counts, 1)


def rows_without(layout, thetas, index, fixed_log_scale=0.0):
    """Each row with its component ``index[r]`` removed (the others keep their masses):
    ``(R, p)`` parameters of ``layout.with_components(K - 1)`` (a background's
    parameters follow unchanged)."""
    log_scale, log_weights, means, raw = rows_split(thetas, layout, fixed_log_scale)
    k = layout.n_components
    rows = np.arange(len(thetas))
    keep = np.ones((len(thetas), k), dtype=bool)
    keep[rows, index] = False
    smaller = layout.with_components(k - 1)
    kept_log_weights = log_weights[keep].reshape(len(thetas), k - 1)
    total = np.log(np.exp(kept_log_weights).sum(axis=1))
    chol_index, _ = cholesky_parameter_map(layout.covariance_type, k, layout.n_features)
    if not own_covariances(layout.covariance_type):  # the one shared factor stays
        kept_raw = raw
    else:
        owner = np.full(layout.n_cholesky, -1)
        for component in range(k):  # set-up: which component owns each raw value
            owner[chol_index[component][chol_index[component] >= 0]] = component
        kept_raw = raw[owner[None, :] != index[:, None]].reshape(len(thetas), -1)
    packed = rows_pack(
        smaller,
        log_scale + total,
        kept_log_weights - total[:, None],
        means[keep].reshape(len(thetas), k - 1, -1),
        kept_raw,
    )
    return np.hstack([packed, thetas[:, layout.n_parameters :]])


def rows_upper(layout, raw):
    """The precision Cholesky factors ``(R, K, d, d)`` (upper triangular, every type as
    full matrices) of the Cholesky parameters ``raw`` ``(R, n_chol)``."""
    k, d = layout.n_components, layout.n_features
    index, log = cholesky_parameter_map(layout.covariance_type, k, d)
    entries = np.where(index >= 0)
    values = raw[:, index[entries]]
    upper = np.zeros((len(raw), k, d, d))
    upper[(slice(None), *entries)] = np.where(log[entries], np.exp(values), values)
    return upper


def rows_raw(layout, upper):
    """The Cholesky parameters of the factors ``upper`` ``(R, K, d, d)`` (inverse of
    :func:`rows_upper`; a tied factor is read from the first component)."""
    k, d = layout.n_components, layout.n_features
    index, log = cholesky_parameter_map(layout.covariance_type, k, d)
    raw = np.zeros((len(upper), layout.n_cholesky))
    entries = np.where(index >= 0)
    values = upper[(slice(None), *entries)]
    with np.errstate(divide="ignore"):
        values = np.where(log[entries], np.log(np.maximum(values, 1e-300)), values)
    # later writes of a shared parameter (tied) come from later components: write backwards
    raw[:, index[entries][::-1]] = values[:, ::-1]
    return raw


def canonical_order(weights, means):
    """The index ``(rows, order)`` that puts each row's components in the canonical order:
    by the first coordinate of the mean, then by decreasing weight (``weights``
    ``(R, K)``, ``means`` ``(R, K, d)``, in any coordinates that keep the order)."""
    n_rows, k = weights.shape
    rows = np.repeat(np.arange(n_rows), k)
    order = np.lexsort((-weights.ravel(), means[:, :, 0].ravel(), rows)).reshape(-1, k) % k
    return np.arange(n_rows)[:, None], order


def rows_to_grid(thetas, layout, standardisation, log_units, fixed_log_scale=0.0):
    """Weights, means, covariances, precision Cholesky factors (scikit-learn's shapes,
    a leading axis of rows) and scales of the rows in grid units, each row's components
    in the canonical order (by the first coordinate of the mean, then by decreasing
    weight); ``log_units`` ``(R,)`` the rows' log density units."""
    cov = layout.covariance_type
    log_scale, _, means, raw = rows_split(thetas, layout, fixed_log_scale)
    weights = rows_weights(thetas, layout)
    means = standardisation.center + standardisation.spread * means
    upper = rows_upper(layout, raw) / standardisation.spread[:, None]  # scales with the unit
    inverse = np.linalg.inv(upper)
    covariances = np.swapaxes(inverse, -1, -2) @ inverse
    take = canonical_order(weights, means)
    weights, means, upper, covariances = weights[take], means[take], upper[take], covariances[take]
    upper, covariances = as_reported(upper, cov), as_reported(covariances, cov)
    if cov not in MATRIX_TYPES:  # as precisions_and_covariances for one fit: its bits
        covariances = 1.0 / upper**2
    scale = np.exp(np.asarray(log_scale) + log_units)
    return weights, means, covariances, upper, scale
