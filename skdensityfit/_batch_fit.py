"""Starts, quality gate and the fit of one block for the batched path.

:mod:`skdensityfit._batch_lm` advances every density of a block together;
here are the starts computed for the whole block at once (greedy peaks or
mass quantiles, then EM weighted by the density), the starts from the
neighbouring row's fit, and the gate's measures (parked and coincident
components, losses far above the block's), combined in :func:`fit_block`.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np

from ._batch_lm import (
    _log_joint,
    _model,
    _quadratic_part,
    batch_data,
    grid_unit_parameters,
    levenberg_marquardt,
    mixture_terms,
    precision_terms,
    split,
)
from ._covariance import LOG_2PI, upper_cholesky

# Density-weighted EM steps of the batched start.
EM_STEPS = 5
# Gate: a component with less than this share of the fitted mass holds nothing;
# two components closer than this Bhattacharyya distance describe one feature
# (the single fit's thresholds).
NEGLIGIBLE_SHARE = 1e-4
REDUNDANT_DISTANCE = 0.02
# Gate: a loss above LOSS_RATIO times the block's median plus LOSS_FLOOR (a
# relative L2 error of 1e-5) is a likely local optimum, unless two starts agree
# on it to RUNS_AGREE (relative).
LOSS_RATIO = 3.0
LOSS_FLOOR = 1e-10
RUNS_AGREE = 1e-5
# A loss below this is an exact fit (a relative L2 error of 1e-6): no more
# starts. The starts of rows not fitted exactly (the move and the greedy path)
# get MOVE_MAX_ITER iterations (enough to show a better optimum; one that does
# not converge in them is dropped). On the noisy series of bench_batch (400
# rows each, against single fits): moving the weakest component to the point
# of largest residual left 3 of 400 rows (K = 2 and K = 3) in a worse optimum;
# to the best matched-filter bump, 2 and 3; adding the greedy path, 0 and 0
# (and 0 and 0 with bench_batch --seed-offset 7; the greedy path alone left 1).
EXACT_FIT_LOSS = 1e-12
MOVE_MAX_ITER = 40
# Each extra start is first fitted coarsely (at most COARSE_MAX_ITER
# iterations, stopping once a step gains less than COARSE_FTOL of the loss);
# only rows whose coarse loss is within PROMISING (relative) of their current
# loss are then fitted to the tolerance. The greedy path's intermediate fits
# (1 .. K - 1 components) are starts only: GREEDY_MAX_ITER iterations,
# GREEDY_FTOL. On the four noisy series above these cut the time of the
# extra starts about threefold and left the same 0 rows worse; with
# --seed-offset 11 and 13, 2 of 1,600 rows stayed worse with these settings and
# with full fits alike.
COARSE_MAX_ITER = 15
COARSE_FTOL = 1e-3
PROMISING = 1e-3
GREEDY_MAX_ITER = 10
GREEDY_FTOL = 1e-3
# A row whose loss is above this many times its neighbour's starts from the
# neighbour's fit, up to NEIGHBOUR_PASSES times (on noisy K = 3 series, a ratio
# of 1.3 left 1 row in 250 in a worse optimum than the single fit, 1.05 none).
NEIGHBOUR_RATIO = 1.05
NEIGHBOUR_PASSES = 4


# ----------------------------------------------------------------------
# batched starts: greedy peaks, then density-weighted EM
# ----------------------------------------------------------------------
def _raw_from_covariances(problem, covariances, mass):
    """Raw Cholesky values ``(B, n_raw per type)`` of covariances ``(B, K, d, d)``."""
    cov, d = problem.covariance_type, problem.n_features
    B = covariances.shape[0]
    if cov == "tied":
        share = mass / np.maximum(mass.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        covariances = np.einsum("bk,bkij->bij", share, covariances)[:, None]
    # a degenerate start (non-finite, or not positive definite) becomes a unit covariance
    finite = np.all(np.isfinite(covariances), axis=(-2, -1))
    safe = np.where(finite[..., None, None], covariances, np.eye(d))
    positive = np.linalg.eigvalsh(safe)[..., 0] > 0
    covariances = np.where((finite & positive)[..., None, None], safe, np.eye(d))
    if cov in ("full", "tied"):
        upper = upper_cholesky(np.linalg.inv(covariances))
        raw = upper[..., problem.rows, problem.cols]
        diagonal = problem.rows == problem.cols
        raw[..., diagonal] = np.log(raw[..., diagonal])
        return raw.reshape(B, -1)
    variances = np.diagonal(covariances, axis1=-2, axis2=-1)
    if cov == "diag":
        return (-0.5 * np.log(variances)).reshape(B, -1)
    return -0.5 * np.log(np.mean(variances, axis=-1))


def _pack(problem, log_weights, means, covariances, mass):
    B = log_weights.shape[0]
    logits = log_weights[:, :-1] - log_weights[:, -1:]
    raw = _raw_from_covariances(problem, covariances, mass)
    theta = np.concatenate([np.zeros((B, 1)), logits, means.reshape(B, -1), raw], axis=1)
    return np.clip(theta, problem.lower, problem.upper)


def best_log_scale(problem, theta, data):
    """Give each row the best total scale for its shape (within the bounds)."""
    shape_theta = theta.copy()
    shape_theta[:, 0] = 0.0
    with np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore"):
        _, shape, _ = _model(problem, mixture_terms(problem, shape_theta, derivatives=False))
        q = data.weights
        shape_mass = np.sum(q * shape, axis=1)
        target_mass = np.sum(q * np.maximum(data.target, 0.0), axis=1)
        if problem.loss == "l2":
            scale = np.sum(q * data.target * shape, axis=1) / np.sum(q * shape**2, axis=1)
        else:
            scale = np.sum(q * data.target, axis=1) / shape_mass
        fallback = target_mass / shape_mass
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, fallback)
        log_scale = np.log(scale)
    log_scale = np.where(np.isfinite(log_scale), log_scale, 0.0)
    theta = theta.copy()
    theta[:, 0] = np.clip(log_scale, problem.lower[0], problem.upper[0])
    return theta


def _quantile_means(grid, mass, mean_all, k):
    """Points at the ``(j + 1/2) / K`` quantiles of each row's mass along its principal axis."""
    centred = grid[None] - mean_all[:, None]  # (B, n, d)
    scatter = np.einsum("bn,bni,bnj->bij", mass, centred, centred)
    axis = np.linalg.eigh(scatter)[1][..., -1]  # (B, d)
    projection = np.einsum("bnd,bd->bn", centred, axis)
    order = np.argsort(projection, axis=1)
    cumulative = np.cumsum(np.take_along_axis(mass, order, axis=1), axis=1)
    levels = (np.arange(k) + 0.5) / k
    position = np.sum(cumulative[:, :, None] < levels, axis=1)  # (B, K)
    position = np.minimum(position, grid.shape[0] - 1)
    return grid[np.take_along_axis(order, position, axis=1)]


def _constrained(problem, covariances, shares):
    """Covariances ``(B, K, d, d)`` of the covariance type's form."""
    cov, d = problem.covariance_type, problem.n_features
    if cov == "full":
        return covariances
    if cov == "tied":
        total = np.maximum(shares.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        pooled = np.einsum("bk,bkij->bij", shares / total, covariances)
        return np.broadcast_to(pooled[:, None], covariances.shape)
    variances = np.diagonal(covariances, axis1=-2, axis2=-1)
    if cov == "spherical":
        variances = np.broadcast_to(variances.mean(axis=-1, keepdims=True), variances.shape)
    return variances[..., None] * np.eye(d)


@np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore")
def em_start(problem, data, n_steps=EM_STEPS, seeding="peaks"):
    """Starts for every row: seeded means, then EM weighted by the density.

    ``seeding="peaks"``: the first mean sits at each row's highest point, each
    further one at the highest point of the density damped near the means
    already placed (by a Gaussian of the row's spread over K).
    ``seeding="quantiles"``: the means sit at the ``(j + 1/2) / K`` quantiles of
    the density's mass along its principal axis (for peaks too close for the
    first rule to tell apart). EM then moves weights, means and
    covariances as on a sample whose point weights are the density (times
    the quadrature weights), with the covariances floored at the grid's
    smallest width.
    """
    grid, k, d = problem.grid, problem.n_components, problem.n_features
    mass = np.maximum(data.target, 0.0) * data.weights
    mass = mass / np.maximum(mass.sum(axis=1, keepdims=True), np.finfo(float).tiny)
    B = len(mass)
    mean_all = mass @ grid  # (B, d)
    second_all = mass @ grid**2
    spread_all = np.sqrt(np.maximum(second_all - mean_all**2, 0.0))
    radius = np.maximum(spread_all.mean(axis=1) / k, problem.limits[0])  # (B,)
    if seeding == "peaks":
        damped = data.target.copy()
        means = np.empty((B, k, d))
        for j in range(k):
            at = np.argmax(damped, axis=1)
            means[:, j] = grid[at]
            distance = np.sum((grid[None] - means[:, j][:, None]) ** 2, axis=2)
            damped *= 1.0 - np.exp(-0.5 * distance / radius[:, None] ** 2)
    else:
        means = _quantile_means(grid, mass, mean_all, k)
    eye = np.eye(d)
    floor = problem.limits[0] ** 2 * eye
    broad = (radius**2)[:, None, None, None] * eye
    covariances = np.broadcast_to(broad, (B, k, d, d)) + floor
    log_weights = np.full((B, k), -np.log(k))
    shares = np.full((B, k), 1.0 / k)
    moment_features = np.hstack(
        [grid, (grid[:, :, None] * grid[:, None, :]).reshape(len(grid), -1)]
    )
    for _ in range(n_steps):
        precision = np.linalg.inv(covariances)
        prec_means = np.einsum("bkij,bkj->bki", precision, means)
        const = np.einsum("bki,bki->bk", means, prec_means)
        A = -0.5 * np.concatenate(
            [_quadratic_part(problem, precision), -2.0 * prec_means, const[..., None]], axis=-1
        )
        offset = 0.5 * np.linalg.slogdet(precision)[1] + log_weights - 0.5 * d * LOG_2PI
        log_joint = _log_joint(problem, {"A": A, "offset": offset})
        log_joint -= log_joint.max(axis=1, keepdims=True)
        resp = np.exp(log_joint, out=log_joint)
        resp *= mass[:, None, :] / resp.sum(axis=1)[:, None, :]  # responsibilities x mass
        shares = resp.sum(axis=2)
        safe = np.maximum(shares, 1e-300)
        moments = (resp.reshape(B * k, -1) @ moment_features).reshape(B, k, -1)
        moments /= safe[..., None]
        means = moments[..., :d]
        second = moments[..., d:].reshape(B, k, d, d)
        covariances = second - means[..., :, None] * means[..., None, :]
        covariances = _constrained(problem, covariances, shares) + floor
        # a component that lost every point keeps a broad shape
        covariances = np.where((shares < 1e-8)[..., None, None], broad + floor, covariances)
        log_weights = np.log(np.maximum(shares, 1e-12))
        log_weights -= np.log(np.sum(np.exp(log_weights), axis=1, keepdims=True))
    theta = _pack(problem, log_weights, means, covariances, shares)
    return best_log_scale(problem, theta, data)


# ----------------------------------------------------------------------
# the quality gate's measures, and conversion to grid units
# ----------------------------------------------------------------------
@np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore")
def residual_peak(problem, residual, data):
    """The Gaussian bump that explains most of each row's residual ``(B, n)``.

    A matched filter: for every bump of :attr:`~._batch_lm.BatchProblem.peak_kernels`
    (height one, centred on a grid point), the least-squares height
    ``a = <r, g>_q / <g, g>_q`` and the loss it removes, ``<r, g>_q^2 / <g, g>_q``
    (``<u, v>_q = sum q u v``, ``q`` the quadrature weights); only bumps of
    positive height count, and a noise spike explains little of any bump.
    Returns ``(centre index (B,), width (B,), height (B,))`` of the best.
    """
    centres, widths, flat, squares = problem.peak_kernels
    q = data.weights
    projection = ((q * residual).astype(np.float32) @ flat.T).astype(float)  # (B, w x c)
    if q.ndim == 1:
        norm = (squares @ q.astype(np.float32)).astype(float)[None]
    else:
        norm = (q.astype(np.float32) @ squares.T).astype(float)
    # a bump with no weight on the grid (inside a gap of zero weights) explains nothing
    gain = np.where((projection > 0) & (norm > 0), projection**2 / norm, 0.0)
    best = np.argmax(gain, axis=1)
    rows = np.arange(len(residual))
    height = projection[rows, best] / norm[0 if q.ndim == 1 else rows, best]
    return centres[best % len(centres)], widths[best // len(centres)], height


@np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore")
def moved_weakest(problem, theta, data):
    """Starts for each row with its weakest component taken away and placed again.

    The weakest component is the one whose removal raises the loss least (in
    a poor local optimum two components often share a peak while a small one
    is left out); it is placed again with the centre, width and height of
    the Gaussian bump that best explains the residual of the whole fit
    (:func:`residual_peak`; for 'tied' it keeps the shared shape), the
    batched counterpart of the single fit's moves
    (:func:`~._moves.replace_components`).
    """
    k, d = problem.n_components, problem.n_features
    B = len(theta)
    terms = mixture_terms(problem, theta, derivatives=False)
    _, model, resp = _model(problem, terms)
    without = model[:, None, :] * (1.0 - resp)  # (B, K, n): the model without each one
    q = data.weights[..., None, :]
    if problem.loss == "l2":
        losses = np.sum(q * (data.target[:, None, :] - without) ** 2, axis=2)
    else:
        safe = np.log(np.maximum(without, np.finfo(float).tiny))
        losses = np.sum(q * (without - data.target[:, None, :] * safe), axis=2)
    weakest = np.argmin(losses, axis=1)
    rows = np.arange(B)
    # a peak left out shows in the residual of the whole fit (in that of the
    # others, the weakest component's own peak would mostly come back)
    at, width, height = residual_peak(problem, data.target - model, data)
    raw_new, log_new = _bump_component(problem, problem, theta, width, height, terms)
    bump = theta.copy()
    means = bump[:, k : k + k * d].reshape(B, k, d)
    means[rows, weakest] = problem.grid[at]
    if raw_new is not None:
        raw = bump[:, k + k * d :].reshape(B, k, problem.n_raw)
        raw[rows, weakest] = raw_new
    log_weights = terms["log_weights"].copy()
    log_weights[rows, weakest] = np.minimum(log_new, 0.0)
    bump[:, 1:k] = log_weights[:, :-1] - log_weights[:, -1:]
    return best_log_scale(problem, np.clip(bump, problem.lower, problem.upper), data)


@np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore")
def grown_by_one(problem, smaller, theta, data):
    """Starts for ``problem`` (K components) from fits ``theta`` of ``smaller`` (K - 1):
    the new component is the Gaussian bump that best explains the residual
    (:func:`residual_peak`; for 'tied' it takes the shared shape), the others
    keep their shapes and share the rest of the weight."""
    k, d = problem.n_components, problem.n_features
    km, B = k - 1, len(theta)
    terms = mixture_terms(smaller, theta, derivatives=False)
    _, model, _ = _model(smaller, terms)
    at, width, height = residual_peak(problem, data.target - model, data)
    raw_new, log_new = _bump_component(problem, smaller, theta, width, height, terms)
    raw = theta[:, km + km * d :]
    if raw_new is not None:
        raw = np.concatenate([raw.reshape(B, km, -1), raw_new[:, None]], axis=1).reshape(B, -1)
    log_new = np.minimum(log_new, -1e-3)
    log_weights = np.concatenate(
        [terms["log_weights"] + np.log1p(-np.exp(log_new))[:, None], log_new[:, None]], axis=1
    )
    means = np.concatenate(
        [theta[:, km : km + km * d].reshape(B, km, d), problem.grid[at][:, None]], axis=1
    )
    grown = np.concatenate(
        [theta[:, :1], log_weights[:, :-1] - log_weights[:, -1:], means.reshape(B, -1), raw],
        axis=1,
    )
    return best_log_scale(problem, np.clip(grown, problem.lower, problem.upper), data)


def greedy_start(problem, data, *, tol, max_iter):
    """Starts for every row grown one component at a time (the single fit's
    greedy path): one component from :func:`em_start`, then each next one
    where the residual of the previous fit asks for it (:func:`grown_by_one`),
    refitted at every size."""
    smaller = problem.with_components(1)
    theta = levenberg_marquardt(
        smaller,
        em_start(smaller, data),
        data,
        tol=tol,
        max_iter=min(max_iter, GREEDY_MAX_ITER),
        ftol=GREEDY_FTOL,
    ).theta
    for j in range(2, problem.n_components + 1):
        larger = problem.with_components(j)
        start = grown_by_one(larger, smaller, theta, data)
        if j == problem.n_components:
            return start
        theta = levenberg_marquardt(
            larger, start, data, tol=tol, max_iter=min(max_iter, GREEDY_MAX_ITER), ftol=GREEDY_FTOL
        ).theta
        smaller = larger
    return em_start(problem, data)


def _bump_component(problem, fitted, theta, width, height, terms):
    """A component shaped like a residual bump of ``width`` and ``height`` ``(B,)``:
    its raw Cholesky values ``(B, n_raw)`` (None for 'tied', which keeps the
    shared shape of the fit ``theta`` of ``fitted``) and its log weight ``(B,)``
    under the fit's scale (``terms``: :func:`~._batch_lm.mixture_terms` of it)."""
    d = problem.n_features
    if problem.covariance_type == "tied":
        raw, log_det = None, _log_peak_terms(fitted, theta)[1][:, 0]
    else:
        if problem.covariance_type == "full":
            raw = np.where(problem.rows == problem.cols, -np.log(width)[:, None], 0.0)
        else:
            raw = np.broadcast_to(-np.log(width)[:, None], (len(width), problem.n_raw))
        log_det = -d * np.log(width)
    log_peak = log_det - 0.5 * d * LOG_2PI
    height = np.maximum(height, np.finfo(float).tiny)
    return raw, np.log(height) - terms["log_scale"] - log_peak


def _log_peak_terms(problem, theta):
    """``(raw, log-determinants (B, K))`` of the rows' precision Cholesky factors."""
    _, _, _, raw = split(problem, theta)
    _, log_det, _, _ = precision_terms(problem, raw, derivatives=False)
    return raw, np.broadcast_to(log_det, (len(theta), problem.n_components))


@np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore")
def component_shares(problem, theta, data):
    """Each component's share of the fitted mass on the grid, ``(B, K)``."""
    terms = mixture_terms(problem, theta, derivatives=False)
    joint = np.exp(_log_joint(problem, terms))
    q = data.weights
    masses = joint @ q if q.ndim == 1 else np.einsum("bkn,bn->bk", joint, q)
    return masses / np.maximum(masses.sum(axis=1, keepdims=True), np.finfo(float).tiny)


def parked(problem, theta, data):
    """Rows with a component that fits nothing of its own (the single fit's rule):
    mass share below 1e-4, mean outside the grid's box, or width at the floor."""
    shares = component_shares(problem, theta, data)
    _, _, means, raw = split(problem, theta)
    low, high = problem.grid.min(axis=0), problem.grid.max(axis=0)
    outside = np.any((means < low) | (means > high), axis=(1, 2))
    cov = problem.covariance_type
    if cov in ("full", "tied"):
        diagonal = np.exp(raw[..., problem.rows == problem.cols])
    else:
        diagonal = np.exp(raw)
    at_floor = np.any(diagonal * problem.limits[0] >= 0.99, axis=(1, 2))
    return np.any(shares < NEGLIGIBLE_SHARE, axis=1) | outside | at_floor


def coincident_pairs(weights, means, covariances, covariance_type, threshold):
    """Rows with two components closer than ``threshold`` (Bhattacharyya distance)."""
    B, k, d = means.shape
    if k < 2:
        return np.zeros(B, dtype=bool)
    if covariance_type == "full":
        full = covariances
    elif covariance_type == "tied":
        full = np.broadcast_to(covariances[:, None], (B, k, d, d))
    elif covariance_type == "diag":
        full = covariances[..., None] * np.eye(d)
    else:
        full = covariances[..., None, None] * np.eye(d)
    log_dets = np.linalg.slogdet(full)[1]
    found = np.zeros(B, dtype=bool)
    for i in range(k):
        for j in range(i + 1, k):
            diff = means[:, i] - means[:, j]
            average = 0.5 * (full[:, i] + full[:, j])
            maha = np.einsum("bi,bi->b", diff, np.linalg.solve(average, diff[..., None])[..., 0])
            distance = 0.125 * maha + 0.5 * (
                np.linalg.slogdet(average)[1] - 0.5 * (log_dets[:, i] + log_dets[:, j])
            )
            found |= distance < threshold
    return found


def hopeless(problem, theta, data):
    """Rows whose fit the gate would reject however long it ran on: a parked
    component (:func:`parked`) or two coincident ones (:func:`coincident_pairs`);
    levenberg_marquardt's ``give_up`` hook, so that they stop early and take
    the other starts (a component creeping off the grid, or two sharing one
    peak, gains a little at every one of hundreds of iterations)."""
    weights, means, covariances, _, _ = grid_unit_parameters(problem, theta, np.zeros(len(theta)))
    coincident = coincident_pairs(
        weights, means, covariances, problem.covariance_type, REDUNDANT_DISTANCE
    )
    return parked(problem, theta, data) | coincident


# ----------------------------------------------------------------------
# one block, end to end
# ----------------------------------------------------------------------
@dataclass
class BlockFit:
    """The batched fit of a block of rows, in grid units, and what the gate saw."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    scale: np.ndarray
    loss: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    suspect: np.ndarray  # (B,) bool: the gate sends these rows to a single fit
    theta: np.ndarray  # (B, p) in the problem's standardised coordinates


def _run(problem, data, seeding, *, tol, max_iter):
    theta0 = em_start(problem, data, seeding=seeding)
    result = levenberg_marquardt(
        problem, theta0, data, tol=tol, max_iter=max_iter, give_up=partial(hopeless, problem)
    )
    result.loss = np.maximum(result.loss, 0.0)
    result.flagged = ~result.converged | ~np.isfinite(result.loss)
    result.flagged |= parked(problem, result.theta, data)
    return result


def _keep_lower(result, other, rows):
    """Take ``other``'s fit (of the rows ``rows``) where it is lower and unflagged."""
    mine = np.where(result.flagged[rows], np.inf, result.loss[rows])
    theirs = np.where(other.flagged, np.inf, other.loss)
    better = theirs < mine
    take = rows[better]
    result.theta[take] = other.theta[better]
    result.loss[take] = other.loss[better]
    result.converged[take] = other.converged[better]
    result.flagged[take] = other.flagged[better]
    result.n_iter[rows] += other.n_iter
    return mine, theirs, take


def fit_block(
    problem,
    Y,
    sample_weight=None,
    *,
    tol,
    max_iter,
    loss_ratio=LOSS_RATIO,
    loss_floor=LOSS_FLOOR,
    agree=RUNS_AGREE,
):
    """Fit every row of ``Y`` ``(B, n)`` on the problem's grid, and gate the results.

    1. Every row starts from greedy peaks (:func:`em_start`); rows whose loss
       is above ``loss_ratio`` times the block's median plus ``loss_floor``, or
       whose fit did not converge or has a parked component (:func:`parked`),
       also from mass quantiles, and the lower loss is kept.
    2. Neighbours: a row whose loss is above ``NEIGHBOUR_RATIO`` times its
       neighbour's (the previous or next row: neighbouring pixels and time
       steps look alike) plus ``loss_floor`` starts again from that neighbour's
       fit; repeated while that lowers some loss, at most ``NEIGHBOUR_PASSES``
       times, so a good fit spreads along a run of rows stuck in one local
       optimum.
    3. Rows not fitted exactly (loss above ``EXACT_FIT_LOSS``), from two more
       starts: the weakest component moved to the residual's best Gaussian
       bump (:func:`moved_weakest`) and the greedy path's start
       (:func:`greedy_start`); the lowest loss is kept.
    4. A row is left *suspect*, for the caller to fit singly, when its kept fit
       did not converge or has a parked component or two coincident ones, or
       when its loss is above ``loss_ratio`` times the block's median plus
       ``loss_floor`` and its two starts disagree (by more than ``agree``) or
       the move of step 3 found a clearly lower optimum.
    """
    data, log_unit = batch_data(problem, Y, sample_weight)
    result = _run(problem, data, "peaks", tol=tol, max_iter=max_iter)
    B = len(Y)
    agreeing = np.zeros(B, dtype=bool)
    good = ~result.flagged
    median = np.median(result.loss[good]) if np.any(good) else 0.0
    retry = np.flatnonzero(result.flagged | (result.loss > loss_ratio * median + loss_floor))
    if retry.size:
        second = _run(problem, data.take(retry), "quantiles", tol=tol, max_iter=max_iter)
        mine, theirs, _ = _keep_lower(result, second, retry)
        both = np.minimum(mine, theirs)
        with np.errstate(invalid="ignore"):
            agreeing[retry] = np.abs(mine - theirs) <= agree * both + loss_floor
    tried_from = np.full(B, -2)  # the neighbour each row last started from
    for _ in range(NEIGHBOUR_PASSES if B > 1 else 0):
        loss = np.where(result.flagged, np.inf, result.loss)
        previous = np.concatenate([[np.inf], loss[:-1]])
        following = np.concatenate([loss[1:], [np.inf]])
        source = np.where(previous <= following, np.arange(B) - 1, np.arange(B) + 1)
        neighbour = np.minimum(previous, following)
        rows = np.flatnonzero(
            (loss > NEIGHBOUR_RATIO * neighbour + loss_floor) & (source != tried_from)
        )
        if rows.size == 0:
            break
        tried_from[rows] = source[rows]
        start = best_log_scale(problem, result.theta[source[rows]], data.take(rows))
        other = levenberg_marquardt(
            problem,
            start,
            data.take(rows),
            tol=tol,
            max_iter=max_iter,
            give_up=partial(hopeless, problem),
        )
        other.loss = np.maximum(other.loss, 0.0)
        other.flagged = ~other.converged | ~np.isfinite(other.loss)
        other.flagged |= parked(problem, other.theta, data.take(rows))
        # only a clear gain counts (rounding-level ones would repeat the pass)
        gain = result.loss[rows] - other.loss
        other.flagged |= gain <= agree * result.loss[rows] + loss_floor
        _, _, taken = _keep_lower(result, other, rows)
        agreeing[taken] = True  # a neighbour's optimum: no longer an outlier of its own
        if taken.size == 0:
            break
    # rows not fitted exactly: two starts can agree on one poor optimum, and a
    # whole run of neighbours, most of a block, can share it
    moved = np.flatnonzero(result.flagged | (result.loss > EXACT_FIT_LOSS))
    starts = []
    if moved.size and problem.n_components > 1:
        starts.append(moved_weakest(problem, result.theta[moved], data.take(moved)))
        starts.append(greedy_start(problem, data.take(moved), tol=tol, max_iter=max_iter))
    for start in starts:
        # a coarse fit from the start shows whether it leads anywhere better;
        # only the promising rows are fitted to the tolerance
        coarse = levenberg_marquardt(
            problem,
            start,
            data.take(moved),
            tol=tol,
            max_iter=min(max_iter, COARSE_MAX_ITER),
            ftol=COARSE_FTOL,
        )
        result.n_iter[moved] += coarse.n_iter
        promising = coarse.loss < (1.0 + PROMISING) * result.loss[moved]
        rows = moved[promising]
        if not rows.size:
            continue
        other = levenberg_marquardt(
            problem,
            coarse.theta[promising],
            data.take(rows),
            tol=tol,
            max_iter=min(max_iter, MOVE_MAX_ITER),
        )
        other.loss = np.maximum(other.loss, 0.0)
        other.flagged = ~other.converged | ~np.isfinite(other.loss)
        other.flagged |= parked(problem, other.theta, data.take(rows))
        mine, _, _ = _keep_lower(result, other, rows)
        # a move that found a clearly lower optimum: the starts' agreement meant nothing
        gained = result.loss[rows] < mine - (agree * result.loss[rows] + loss_floor)
        agreeing[rows[gained]] = False
    weights, means, covariances, prec_chol, scale = grid_unit_parameters(
        problem, result.theta, log_unit
    )
    high = result.loss > loss_ratio * median + loss_floor
    suspect = result.flagged | (high & ~agreeing)
    suspect |= coincident_pairs(
        weights, means, covariances, problem.covariance_type, REDUNDANT_DISTANCE
    )
    return BlockFit(
        weights,
        means,
        covariances,
        prec_chol,
        scale,
        result.loss,
        np.maximum(result.n_iter, 1),
        result.converged,
        suspect,
        result.theta,
    )
