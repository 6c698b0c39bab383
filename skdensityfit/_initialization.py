"""Starting points computed from the density itself.

The grid points weighted by the density's mass per cell are a weighted sample
of the distribution, so the classic mixture initialisations apply to them:
density-weighted k-means (or k-means++ seeding) gives responsibilities, a few
density-weighted EM steps on the grid refine them, and a non-negative least
squares solve gives the amplitudes (for the L2 loss). All of it is numpy.

The greedy start grows the mixture one component at a time, each new one
where the residual of the previous fit is largest.
"""

from dataclasses import replace

import numpy as np
from scipy.optimize import nnls

from ._analytic_gradient import (
    CHUNK_ELEMENTS,
    _logsumexp,
    component_mass_shares,
    model_density,
    value_and_gradient,
)
from ._mixture_math import LOG_2PI, ParameterLayout, log_component_densities, pack, unpack

INIT_METHODS = ("kmeans", "k-means++", "random_from_data", "random")
N_EM_STEPS = 25
# A start needs the shape of the density, not digits: EM stops once its objective settles.
EM_TOL = 1e-4
N_LLOYD_STEPS = 20
MAX_INIT_POINTS = 20_000
MIN_WEIGHT = 1e-4
TINY = np.finfo(float).tiny
# Candidate centres of a new component (a quarter at the points of largest
# residual, the rest spread over the grid): as many as keep the matched
# filter near FILTER_WORK shape values, within these limits.
FILTER_WORK = 2**20
MIN_FILTER_CENTRES = 8
MAX_FILTER_CENTRES = 64
# A component moved by replace_components must lower the loss by this fraction.
MIN_MOVE_GAIN = 1e-6


def random_subset(n_points, size, target, random_state):
    """Sorted indices of ``size`` random points, always with the largest value."""
    # numpy's Generator draws without replacement in O(size); RandomState permutes all points
    generator = np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    subset = generator.choice(n_points, size, replace=False)
    return np.unique(np.append(subset, np.argmax(target)))


def subset_data(data, subset):
    """The fit data of some grid points, their quadrature weights renormalised."""
    weights = data.weights[subset]
    return replace(
        data,
        features=data.features[subset],
        target=data.target[subset],
        weights=weights / weights.sum(),
    )


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
    if covariance_type in ("full", "tied"):
        diff = X[None, :, :] - means[:, None, :]  # (K, n, d)
        scatter = np.swapaxes(diff * weighted_resp.T[:, :, None], 1, 2) @ diff
        covariances = scatter / nk[:, None, None]
        if covariance_type == "tied":
            covariances = np.einsum("k,kij->ij", nk, covariances) / nk.sum()
        covariances = covariances + reg_covar * eye
        try:
            prec_chol = np.swapaxes(np.linalg.inv(np.linalg.cholesky(covariances)), -1, -2)
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


def _log_densities(X, layout, weights, means, prec_chol):
    """``log N(x_i; mu_k, Sigma_k)`` from precision Cholesky factors, shape ``(n, K)``."""
    cov = layout.covariance_type
    n_points, n_features = X.shape
    if cov in ("full", "tied"):
        factors = np.broadcast_to(prec_chol, (len(means), n_features, n_features))
        # (x - mu) @ U for every component in one product: x @ [U_1 ... U_K] - mu_k @ U_k
        whitened = X @ np.swapaxes(factors, 0, 1).reshape(n_features, -1)
        whitened = whitened.reshape(n_points, len(means), n_features)
        whitened -= np.einsum("kd,kde->ke", means, factors)
    else:
        scale = prec_chol if cov == "diag" else prec_chol[:, None]
        whitened = (X[:, None, :] - means) * scale
    log_peak = _log_peak_density(layout, prec_chol)
    return log_peak - 0.5 * np.einsum("nkd,nkd->nk", whitened, whitened)


def _em_refine(X, mass, resp, layout, reg_covar, n_steps):
    """A few density-weighted EM steps on the grid points."""
    params = _weighted_moments(X, mass, resp, layout.covariance_type, reg_covar)
    previous = -np.inf
    for _ in range(n_steps):
        log_prob = _log_densities(X, layout, *params) + np.log(params[0])
        log_norm = _logsumexp(log_prob, axis=1)
        objective = mass @ log_norm
        resp = np.exp(log_prob - log_norm[:, None])
        params = _weighted_moments(X, mass, resp, layout.covariance_type, reg_covar)
        if abs(objective - previous) <= EM_TOL * (abs(objective) + 1e-12):
            break
        previous = objective
    return params


def _amplitudes(X, data_weights, target, layout, params, loss, refit_weights=True):
    """Best non-negative amplitude of each component (l2) or of the total.

    Returns ``(log_scale, weights)``; the weights change only for the l2
    loss with ``refit_weights``.
    """
    weights, means, prec_chol = params
    densities = np.exp(_log_densities(X, layout, weights, means, prec_chol))
    if loss == "l2" and refit_weights:
        root_q = np.sqrt(data_weights)
        amplitudes, _ = nnls(densities * root_q[:, None], target * root_q)
        if amplitudes.sum() > 0:
            weights = np.maximum(amplitudes / amplitudes.sum(), MIN_WEIGHT)
            weights = weights / weights.sum()
    return _best_log_scale(densities @ weights, target, data_weights, loss), weights


def _best_log_scale(shape, target, data_weights, loss):
    """Log of the factor that fits ``shape`` best to ``target`` under ``loss``."""
    if loss == "l2":
        scale = (data_weights * target) @ shape / max((data_weights * shape) @ shape, TINY)
    else:
        scale = (data_weights @ np.maximum(target, 0)) / max(data_weights @ shape, TINY)
    return np.log(max(scale, TINY))


@np.errstate(under="ignore")
def initial_parameters(X, target, data_weights, layout, *, method, loss, reg_covar, random_state):
    """A flat parameter vector to start the optimiser from.

    On grids larger than ``MAX_INIT_POINTS`` the start is computed on a random
    subset of that many points: a start needs the shape of the density, not
    every point of it (the optimiser then uses every point).
    """
    if len(target) > MAX_INIT_POINTS:
        subset = random_subset(len(target), MAX_INIT_POINTS, target, random_state)
        X, target = X[subset], target[subset]
        data_weights = data_weights[subset] / data_weights[subset].sum()
    mass = data_weights * np.maximum(target, 0.0)
    mass = mass / mass.sum()
    resp = initial_responsibilities(X, mass, layout.n_components, method, random_state)
    em_layout = ParameterLayout(layout.n_components, layout.n_features, layout.covariance_type)
    params = _em_refine(X, mass, resp, em_layout, reg_covar, N_EM_STEPS)
    log_scale, weights = _amplitudes(X, data_weights, target, em_layout, params, loss)
    return pack(layout, weights, params[1], params[2], log_scale=log_scale)


@np.errstate(under="ignore")
def best_scale_within_bounds(theta, data, bounds):
    """Clip a start to the bounds, then give it the best total scale for its shape.

    Clipping (e.g. widths up to the floor) changes the model's height, so the
    scale computed before it can be off by orders of magnitude; a model far
    too small has a tiny gradient and would look converged.
    """
    theta = np.clip(theta, bounds[:, 0], bounds[:, 1])
    if not data.layout.fit_scale:
        return theta
    shape = model_density(np.concatenate([[0.0], theta[1:]]), data)
    log_scale = np.clip(
        _best_log_scale(shape, data.target, data.weights, data.loss), bounds[0, 0], bounds[0, 1]
    )
    return np.concatenate([[log_scale], theta[1:]])


@np.errstate(under="ignore")
def user_parameters(X, target, data_weights, layout, params, *, loss):
    """The flat vector of user-given (standardised) parameters, with the best scale."""
    em_layout = ParameterLayout(layout.n_components, layout.n_features, layout.covariance_type)
    log_scale, weights = _amplitudes(
        X, data_weights, target, em_layout, params, loss, refit_weights=False
    )
    return pack(layout, weights, params[1], params[2], log_scale=log_scale)


def _log_peak_density(layout, prec_chol):
    """Log of each component's pdf at its mean, from precision Cholesky factors."""
    cov, d, k = layout.covariance_type, layout.n_features, layout.n_components
    if cov == "full":
        log_det = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    elif cov == "tied":
        log_det = np.full(k, np.log(np.diag(prec_chol)).sum())
    elif cov == "diag":
        log_det = np.log(prec_chol).sum(axis=1)
    else:
        log_det = d * np.log(prec_chol)
    return log_det - 0.5 * d * LOG_2PI


@np.errstate(under="ignore")  # shapes far from their centre underflow to 0 by design
def _matched_filter_peak(residual, grid, data_weights, layout, prec_chol):
    """The centre and height of the component shape that best fits the residual.

    The shape has the precision Cholesky factor ``prec_chol`` and peak 1;
    candidate centres are the points of largest residual and a fixed random
    spread of points over the grid. The winner removes the most squared
    residual when scaled by its least-squares height: on a noisy density
    this finds a broad low peak that no single point's residual stands out
    for. Returns ``(index of the centre, height)``, or None if no centre
    gives a positive height.
    """
    n_points = len(residual)
    # every point counts (a sample of them could miss a narrow shape's support);
    # the number of centres keeps the work near FILTER_WORK shape values
    n_centres = int(np.clip(FILTER_WORK // n_points, MIN_FILTER_CENTRES, MAX_FILTER_CENTRES))
    n_largest = min(n_points, max(1, n_centres // 4))
    generator = np.random.default_rng(0)  # a fixed spread: grow_by_one stays deterministic
    spread = generator.choice(n_points, min(n_points, n_centres - n_largest), replace=False)
    largest = np.argpartition(-residual, n_largest - 1)[:n_largest]
    centres = np.unique(np.concatenate([largest, spread]))
    shape_layout = ParameterLayout(len(centres), layout.n_features, layout.covariance_type)
    if layout.covariance_type != "tied":
        prec_chol = np.broadcast_to(prec_chol, (len(centres), *prec_chol.shape))
    log_peak = _log_peak_density(shape_layout, prec_chol)
    overlap, norm = np.zeros(len(centres)), np.zeros(len(centres))
    chunk = max(1, CHUNK_ELEMENTS // len(centres))  # bounded memory on any grid
    for start in range(0, n_points, chunk):
        rows = slice(start, start + chunk)
        log_shapes = _log_densities(grid[rows], shape_layout, None, grid[centres], prec_chol)
        shapes = np.exp(log_shapes - log_peak)  # 1 at each centre
        overlap += (data_weights[rows] * residual[rows]) @ shapes
        norm += data_weights[rows] @ shapes**2
    norm = np.maximum(norm, TINY)
    gain = np.where(overlap > 0, overlap**2 / norm, 0.0)
    best = int(np.argmax(gain))
    if gain[best] <= 0:
        return None
    return int(centres[best]), overlap[best] / norm[best]


def grow_by_one(theta, data, grid, placement="peak"):
    """Parameters for ``K + 1`` components from a fit with ``K`` (standardised).

    The new component takes the covariance of the narrowest existing one and
    goes to the point of largest residual ``target - f`` with its height
    (``placement='peak'``), or where that shape fits the residual best, with
    the height that fits it (``placement='filter'``, a matched filter: see
    :func:`_matched_filter_peak`); the old components keep their parameters
    and amplitudes. Returns ``(theta, data)`` for ``K + 1`` components, or
    None when the residual has no positive peak.
    """
    layout = data.layout
    residual = np.where(data.weights > 0, data.target - model_density(theta, data), 0.0)
    if residual.max() <= 0:
        return None
    log_scale, weights, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
    log_peaks = _log_peak_density(layout, prec_chol)
    narrowest = int(np.argmax(log_peaks))
    tied = layout.covariance_type == "tied"
    shape = prec_chol if tied else prec_chol[narrowest]
    if placement == "filter":
        found = _matched_filter_peak(residual, grid, data.weights, layout, shape)
        if found is None:
            return None
        peak, height = found
    else:
        peak = int(np.argmax(residual))
        height = residual[peak]
    if not tied:
        prec_chol = np.concatenate([prec_chol, shape[None]])
    amplitudes = np.append(np.exp(log_scale) * weights, height / np.exp(log_peaks.max()))
    grown = replace(data, layout=replace(layout, n_components=layout.n_components + 1))
    total = amplitudes.sum()
    theta = pack(
        grown.layout,
        np.maximum(amplitudes / total, MIN_WEIGHT),
        np.vstack([means, grid[peak]]),
        prec_chol,
        log_scale=np.log(total),
    )
    return theta, grown


def without_component(theta, data, index):
    """Parameters and data for the mixture with component ``index`` removed (standardised)."""
    layout = data.layout
    log_scale, weights, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
    keep = np.arange(layout.n_components) != index
    if layout.covariance_type != "tied":
        prec_chol = prec_chol[keep]
    smaller = replace(data, layout=replace(layout, n_components=layout.n_components - 1))
    kept = weights[keep]
    theta = pack(
        smaller.layout, kept / kept.sum(), means[keep], prec_chol, log_scale + np.log(kept.sum())
    )
    return theta, smaller


def split_component(theta, data, index):
    """Parameters for ``K + 1`` components: component ``index`` split in two (standardised).

    The halves sit half a standard deviation either side of the old mean along
    its widest axis, each with half its weight; a full covariance is narrowed
    along that axis so that the pair keeps about the old spread.
    """
    layout = data.layout
    d, cov = layout.n_features, layout.covariance_type
    log_scale, weights, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
    if cov == "full":
        factor = prec_chol[index]
    elif cov == "tied":
        factor = prec_chol
    else:
        factor = np.diag(np.broadcast_to(prec_chol[index], (d,)))
    covariance = np.linalg.inv(factor @ factor.T)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    step = 0.5 * np.sqrt(eigenvalues[-1]) * eigenvectors[:, -1]
    means = np.vstack([means, means[index] + step])
    means[index] = means[index] - step
    weights = np.append(weights, 0.5 * weights[index])
    weights[index] *= 0.5
    if cov == "full":
        narrowed = covariance - 0.25 * eigenvalues[-1] * np.outer(step, step) / step.dot(step)
        new_factor = np.linalg.inv(np.linalg.cholesky(narrowed)).T
        prec_chol = np.concatenate([prec_chol, new_factor[None]])
        prec_chol[index] = new_factor
    elif cov != "tied":
        prec_chol = np.concatenate([prec_chol, prec_chol[index : index + 1]])
    bigger = replace(data, layout=replace(layout, n_components=layout.n_components + 1))
    return pack(bigger.layout, weights, means, prec_chol, log_scale), bigger


def _worst_fitted_component(theta, data):
    """The component with the largest responsibility-weighted squared residual."""
    layout = data.layout
    _, weights, _, _ = unpack(theta, layout, data.fixed_log_scale)
    joint = np.exp(log_component_densities(theta, data.features, layout)) * weights
    total = joint.sum(axis=1)
    resp = joint / np.maximum(total, TINY)[:, None]
    scale = np.exp(theta[0]) if layout.fit_scale else np.exp(data.fixed_log_scale)
    residual = data.target - scale * total
    return int(np.argmax((data.weights * residual**2) @ resp))


@np.errstate(under="ignore")
def parked_components(theta, data, grid, min_share, min_width):
    """Components that fit nothing of their own on the grid.

    Those holding less than ``min_share`` of the fitted mass on the grid,
    those whose mean lies outside the grid's bounding box (a component parked
    off the grid, whose tail stands in for a slope or for noise), and those
    pressed against the smallest width ``min_width`` (a spike on a point or
    two, often a fit of noise; 0 leaves them alone).
    """
    layout = data.layout
    shares = component_mass_shares(theta, data)
    _, _, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
    outside = np.any((means < grid.min(axis=0)) | (means > grid.max(axis=0)), axis=1)
    return np.flatnonzero(
        (shares < min_share) | outside | _at_width_floor(layout, prec_chol, min_width)
    )


def _at_width_floor(layout, prec_chol, min_width):
    """Components with a precision Cholesky diagonal at ``1 / min_width`` (within 1%)."""
    cov, k, d = layout.covariance_type, layout.n_components, layout.n_features
    if cov == "full":
        diagonal = np.diagonal(prec_chol, axis1=1, axis2=2)
    elif cov == "tied":
        diagonal = np.broadcast_to(np.diag(prec_chol), (k, d))
    elif cov == "diag":
        diagonal = prec_chol
    else:
        diagonal = prec_chol[:, None]
    return np.any(diagonal * min_width >= 0.99, axis=1)


def weakest_component(theta, data, grid):
    """The component whose removal raises the loss least, as a one-element array.

    In a poor local optimum two components often share one peak while
    another covers two: the weakest one is then better placed elsewhere.
    """
    losses = [
        value_and_gradient(*without_component(theta, data, k))[0]
        for k in range(data.layout.n_components)
    ]
    return np.array([int(np.argmin(losses))])


def replace_components(result, grid, data, solve, choose):
    """Re-place components chosen by ``choose``, as long as that lowers the loss.

    ``choose(theta, data, grid)`` names the components worth moving: parked
    ones (a component parked outside the grid, or holding no mass on it, is a
    sign of a poor local optimum, where the other components share more
    structure than they should; see :func:`parked_components`) or the
    weakest one (:func:`weakest_component`). Each in turn is removed and
    placed again two ways, where the residual is best fitted by a component
    shape (:func:`grow_by_one` with a matched filter) and by splitting the
    component that fits worst; ``solve(theta)`` re-minimises each, and the
    best is kept if it lowers the loss by more than ``MIN_MOVE_GAIN`` of it.
    It stops once no chosen component's re-placing does (an exact fit that
    carries an invisible component, for one, or a peak cut off by the grid's
    edge); a component whose re-placing failed (recognised by its mean and
    precision factor) is not tried again.
    """
    failed = []  # components whose re-placing did not pay (see _component_vectors)
    for _ in range(data.layout.n_components):
        if data.layout.n_components < 2 or not np.isfinite(result.loss):
            return result
        improved = None
        components = _component_vectors(result.theta, data.layout, data.fixed_log_scale)
        for component in choose(result.theta, data, grid):
            if any(np.allclose(components[component], other) for other in failed):
                continue
            theta, smaller = without_component(result.theta, data, component)
            starts = [split_component(theta, smaller, _worst_fitted_component(theta, smaller))[0]]
            # a matched filter: the replacement may be a broad low peak under noise
            grown = grow_by_one(theta, smaller, grid, placement="filter")
            if grown is not None:
                starts.append(grown[0])
            candidate = min((solve(start) for start in starts), key=lambda r: r.loss)
            if candidate.loss < (1 - MIN_MOVE_GAIN) * result.loss:
                improved = candidate
                break
            failed.append(components[component])
        if improved is None:
            return result
        improved.n_iter += result.n_iter
        result = improved
    return result


def _component_vectors(theta, layout, fixed_log_scale):
    """Each component's mean and precision factor as one row, to recognise it.

    (Not its weight: the weights of all components change when one moves.)
    """
    _, _, means, prec_chol = unpack(theta, layout, fixed_log_scale)
    k = layout.n_components
    if layout.covariance_type == "tied":
        prec_chol = np.broadcast_to(prec_chol, (k, *prec_chol.shape))
    return np.column_stack([means, np.reshape(prec_chol, (k, -1))])


def one_component_start(grid, data, reg_covar):
    """Parameters of one component with the density's own mean and covariance."""
    layout = replace(data.layout, n_components=1)
    mass = data.weights * np.maximum(data.target, 0.0)
    mass = mass / mass.sum()
    em_layout = ParameterLayout(1, layout.n_features, layout.covariance_type)
    params = _weighted_moments(
        grid, mass, np.ones((len(mass), 1)), layout.covariance_type, reg_covar
    )
    log_scale, weights = _amplitudes(grid, data.weights, data.target, em_layout, params, data.loss)
    return pack(layout, weights, params[1], params[2], log_scale=log_scale), replace(
        data, layout=layout
    )


def greedy_path(grid, data, solve, reg_covar, n_components):
    """Fits with 1, 2, ..., ``n_components - 1`` components, each grown from the last.

    ``solve(theta, data)`` minimises the objective from ``theta`` and returns
    the optimum. Yields ``(theta, data)`` for 1, 2, ... components (each
    solved) and finally the unsolved grown start for ``n_components``; stops
    early when the residual has no positive peak left.
    """
    theta, current = one_component_start(grid, data, reg_covar)
    for k in range(1, n_components + 1):
        if k > 1:
            grown = grow_by_one(theta, current, grid)
            if grown is None:
                return
            theta, current = grown
        if k == n_components:
            yield theta, current
            return
        theta = solve(theta, current)
        yield theta, current
