"""Starting points computed from the density itself.

The grid points weighted by the density's mass per cell are a weighted sample
of the distribution, so the classic mixture initialisations apply to them:
density-weighted k-means (or k-means++ seeding) gives responsibilities, a few
density-weighted EM steps on the grid refine them, and a non-negative least
squares solve gives the amplitudes (for the L2 loss). All of it is numpy.
(The default start, the density's greedy peaks, is compiled: :mod:`.kernel`.)
"""

import numpy as np
from scipy.optimize import nnls
from scipy.special import logsumexp
from sklearn.utils import check_random_state

from .._model.covariance import MATRIX_TYPES, cholesky_from_covariances, log_gaussian_density
from .._model.parameters import pack
from .problem import random_subset

INIT_METHODS = ("peaks", "kmeans", "k-means++", "random_from_data", "random")
N_EM_STEPS = 25
# A start needs the shape of the density, not digits: EM stops once its objective settles.
EM_TOL = 1e-4
N_LLOYD_STEPS = 20
MAX_INIT_POINTS = 20_000
MIN_WEIGHT = 1e-4
TINY = np.finfo(float).tiny


class LazyRandomState:
    """``check_random_state(seed)``, made when first drawn from: a seeded ``RandomState``
    costs about 0.1 ms to make, as much as the rest of a small fit's kernel work, and most
    fits (greedy peaks, one start) draw nothing."""

    __slots__ = ("_seed", "_state")

    def __init__(self, seed):
        self._seed, self._state = seed, None

    def __getattr__(self, name):
        if self._state is None:
            self._state = check_random_state(self._seed)
        return getattr(self._state, name)


def _nearest_center_responsibilities(X, centers):
    distances = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    resp = np.zeros((X.shape[0], centers.shape[0]))
    resp[np.arange(X.shape[0]), distances.argmin(axis=1)] = 1.0
    return resp


def _weighted_kmeans_plusplus(X, mass, n_centers, random_state):
    """Greedy k-means++ seeding of mass-weighted points (Arthur & Vassilvitskii, 2007).

    Each new centre is the best of ``2 + log(K)`` candidates drawn with
    probability proportional to mass times squared distance to the nearest
    centre. Written here rather than calling
    ``sklearn.cluster.kmeans_plusplus``: its input checks cost about 0.5 ms a
    call, a tenth of a small fit's time.
    """
    n_trials = 2 + int(np.log(n_centers))
    first = random_state.choice(len(X), p=mass / mass.sum())
    centers = [X[first]]
    closest = ((X - X[first]) ** 2).sum(axis=1)
    for _ in range(1, n_centers):
        weights = mass * closest
        total = weights.sum()
        if total <= 0:  # every massive point is a centre already: any point will do
            candidates = random_state.choice(len(X), n_trials)
        else:
            candidates = np.searchsorted(
                np.cumsum(weights), random_state.uniform(size=n_trials) * total
            )
            candidates = np.minimum(candidates, len(X) - 1)
        distances = ((X[None, :, :] - X[candidates][:, None, :]) ** 2).sum(axis=2)
        options = np.minimum(closest[None, :], distances)
        best = int(np.argmin(options @ mass))
        centers.append(X[candidates[best]])
        closest = options[best]
    return np.array(centers)


def _weighted_lloyd(X, mass, centers, n_steps=N_LLOYD_STEPS):
    """Weighted k-means (Lloyd) iterations from given centres.

    Written here rather than calling ``sklearn.cluster.KMeans``: its per-call
    overhead (about 2 ms on a 75-point grid) was most of a small fit's start.
    """
    labels = None
    for _ in range(n_steps):
        new_labels = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        mass_per_cluster = np.bincount(labels, weights=mass, minlength=len(centers))
        sums = np.stack(
            [np.bincount(labels, weights=mass * x, minlength=len(centers)) for x in X.T], axis=1
        )
        occupied = mass_per_cluster > 0
        centers = centers.copy()
        centers[occupied] = sums[occupied] / mass_per_cluster[occupied, None]
    return centers


def initial_responsibilities(X, mass, n_components, method, random_state):
    """Hard or soft assignment of grid points to components."""
    n_points = X.shape[0]
    if method == "kmeans":
        centers = _weighted_kmeans_plusplus(X, mass, n_components, random_state)
        return _nearest_center_responsibilities(X, _weighted_lloyd(X, mass, centers))
    if method == "k-means++":
        centers = _weighted_kmeans_plusplus(X, mass, n_components, random_state)
        return _nearest_center_responsibilities(X, centers)
    if method == "random_from_data":
        n_massive = np.count_nonzero(mass)
        index = random_state.choice(
            n_points, n_components, replace=n_massive < n_components, p=mass
        )
        return _nearest_center_responsibilities(X, X[index])
    resp = random_state.uniform(size=(n_points, n_components))
    return resp / resp.sum(axis=1, keepdims=True)


def _weighted_moments(X, mass, resp, covariance_type, reg_covar):
    """Density-weighted M-step: weights, means and precision Cholesky factors."""
    weighted_resp = resp * mass[:, None]
    nk = weighted_resp.sum(axis=0) + 10 * np.finfo(float).eps
    means = weighted_resp.T @ X / nk[:, None]
    n_features = X.shape[1]
    eye = np.eye(n_features)
    if covariance_type in MATRIX_TYPES:
        diff = X[None, :, :] - means[:, None, :]  # (K, n, d)
        scatter = np.swapaxes(diff * weighted_resp.T[:, :, None], 1, 2) @ diff
        covariances = scatter / nk[:, None, None]
        if covariance_type == "tied":
            covariances = np.einsum("k,kij->ij", nk, covariances) / nk.sum()
        covariances = covariances + reg_covar * eye
        try:
            prec_chol = cholesky_from_covariances(covariances, covariance_type)
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                "A starting covariance is singular (a component holds too few grid "
                "points). Increase reg_covar, decrease n_components, or use a finer grid."
            ) from exc
    else:
        variances = (weighted_resp.T @ X**2) / nk[:, None] - means**2 + reg_covar
        variances = np.maximum(variances, reg_covar)
        if covariance_type == "spherical":
            variances = variances.mean(axis=1)
        prec_chol = 1.0 / np.sqrt(variances)
    weights = nk / nk.sum()
    return weights, means, prec_chol


def _em_refine(X, mass, resp, covariance_type, reg_covar, n_steps):
    """A few density-weighted EM steps on the grid points."""
    params = _weighted_moments(X, mass, resp, covariance_type, reg_covar)
    previous = -np.inf
    for _ in range(n_steps):
        log_prob = log_gaussian_density(X, *params[1:], covariance_type) + np.log(params[0])
        log_norm = logsumexp(log_prob, axis=1)
        objective = mass @ log_norm
        resp = np.exp(log_prob - log_norm[:, None])
        params = _weighted_moments(X, mass, resp, covariance_type, reg_covar)
        if abs(objective - previous) <= EM_TOL * (abs(objective) + 1e-12):
            break
        previous = objective
    return params


def _amplitudes(X, quadrature, target, covariance_type, params, loss, refit_weights=True):
    """Best non-negative amplitude of each component (l2) or of the total.

    Returns ``(log_scale, weights)``; the weights change only for the l2
    loss with ``refit_weights``.
    """
    weights, means, prec_chol = params
    densities = np.exp(log_gaussian_density(X, means, prec_chol, covariance_type))
    if loss == "l2" and refit_weights:
        root_q = np.sqrt(quadrature)
        amplitudes, _ = nnls(densities * root_q[:, None], target * root_q)
        if amplitudes.sum() > 0:
            weights = np.maximum(amplitudes / amplitudes.sum(), MIN_WEIGHT)
            weights = weights / weights.sum()
    return _best_log_scale(densities @ weights, target, quadrature, loss), weights


def _best_log_scale(shape, target, quadrature, loss):
    """Log of the factor that fits ``shape`` best to ``target`` under ``loss``."""
    if loss == "l2":
        scale = (quadrature * target) @ shape / max((quadrature * shape) @ shape, TINY)
    else:
        scale = (quadrature @ np.maximum(target, 0)) / max(quadrature @ shape, TINY)
    return np.log(max(scale, TINY))


@np.errstate(under="ignore")
def initial_parameters(X, target, quadrature, layout, *, method, loss, reg_covar, random_state):
    """A flat parameter vector to start the optimiser from.

    On grids larger than ``MAX_INIT_POINTS`` the start is computed on a random
    subset of that many points: a start needs the shape of the density, not
    every point of it (the optimiser then uses every point).
    """
    if len(target) > MAX_INIT_POINTS:
        subset = random_subset(len(target), MAX_INIT_POINTS, target, random_state)
        X, target = X[subset], target[subset]
        quadrature = quadrature[subset] / quadrature[subset].sum()
    mass = quadrature * np.maximum(target, 0.0)
    mass = mass / mass.sum()
    resp = initial_responsibilities(X, mass, layout.n_components, method, random_state)
    cov = layout.covariance_type
    params = _em_refine(X, mass, resp, cov, reg_covar, N_EM_STEPS)
    log_scale, weights = _amplitudes(X, quadrature, target, cov, params, loss)
    return pack(layout, weights, params[1], params[2], log_scale=log_scale)


@np.errstate(under="ignore")
def user_parameters(X, target, quadrature, layout, params, *, loss):
    """The flat vector of user-given (standardised) parameters, with the best scale."""
    log_scale, weights = _amplitudes(
        X, quadrature, target, layout.covariance_type, params, loss, refit_weights=False
    )
    return pack(layout, weights, params[1], params[2], log_scale=log_scale)
