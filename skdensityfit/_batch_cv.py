"""The choice of K by held-out grid points for every density of a block at once.

What :meth:`DensityGMMCV.fit <skdensityfit.DensityGMMCV.fit>` runs, on one
density, and ``fit_many`` on a block of densities, for the settings
:func:`covers` names (the l2 loss, held-out grid points, the default starts,
grids of at most ``SMALL_GRID`` points); other settings, and densities this
search cannot score or whose fit at the chosen K fails the gate, take
DensityGMMCV's path of single fits. The folds are ``KFold`` shuffled with the
seed DensityGMMCV draws first from the density's random state; the scores are
pooled; the path stops at an exact fit (tried first, from the data alone, at the
count of a 1-D density's clear peaks), or at a peaked score unless the fit
still leaves far more than the noise; the choice is
:func:`~._selection.select`'s. What is batched: every density's fit at each
candidate K (the grown fit and a data-driven start), every fold's refit of
every density from that fit (one batched Levenberg-Marquardt run over
densities x folds, each row's quadrature weights zero on its held-out points),
the held-out errors, and the final fit at each density's chosen K. Densities
leave the search as they stop.
"""

import time
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from sklearn.model_selection import KFold
from sklearn.utils import check_random_state

from ._batch_fit import REDUNDANT_DISTANCE, coincident_pairs, em_start, grown_by_one, parked
from ._batch_lm import (
    BatchProblem,
    _model,
    batch_data,
    grid_unit_parameters,
    levenberg_marquardt,
    mixture_terms,
)
from ._selection import (
    CONSTANT_DENSITY,
    CV_FTOL,
    CV_MAX_ITER,
    CV_TOL,
    EXACT_CV_LOSS,
    FOLD_FTOL,
    FOLD_MAX_ITER,
    FOLD_TOL,
    PATH_GROWN_GAIN,
    PATIENCE,
    SMALL_GRID,
    SMALL_GRID_FOLDS,
    UNDERFIT,
    candidates_of,
    has_peaked,
    largest_bump,
    least_components,
    leaves_noise,
    n_point_folds,
    noise_variance,
    residual_is_noise_level,
    select,
)

# DensityGMM's default reg_covar (the floor of the starts' variances)
DEFAULT_REG_COVAR = 1e-6


def covers(cv, grid):
    """Whether the batched search covers ``cv``'s settings on ``grid`` (else each
    density goes through ``DensityGMMCV.fit``): the l2 loss, held-out grid points
    in ``cv`` folds (None or an int), ``selection`` "standard_error" or "best", no fixed
    scale or bins, the default starts (``n_init=2``,
    ``init_params="kmeans"``, ``reg_covar`` at most its default: the path's step
    here is the grown fit and one data-driven start), the candidates ``1..m``
    (the path grows through each), at most ``SMALL_GRID`` points
    (DensityGMMCV refits every fold there; on larger grids it refits only the
    candidates that would lead after one step, which this search does not copy), and
    at least twice as many points as folds and as the largest candidate K."""
    candidates = candidates_of(cv.n_components)
    return (
        cv.loss == "l2"
        and cv.n_init == 2
        and cv.init_params in ("peaks", "kmeans")
        and cv.reg_covar <= DEFAULT_REG_COVAR
        and cv.scale is None
        and cv.bins is None
        and cv.background is None
        and cv.held_out in ("auto", "points")
        and cv.selection in ("standard_error", "best")
        and (cv.cv is None or isinstance(cv.cv, Integral))
        and grid.shape[0] <= SMALL_GRID
        and np.array_equal(candidates, np.arange(1, len(candidates) + 1))
        and grid.shape[0] >= 2 * candidates[-1]
        and grid.shape[0] >= 2 * (SMALL_GRID_FOLDS if cv.cv is None else cv.cv)
    )


def held_out_masks(cv, n_points, seeds, n_rows):
    """``(n_rows or 1, n_folds, n_points)``: each density's held-out points per fold.

    DensityGMMCV draws its ``KFold`` seed first from its random state: the same
    draw is made here from the density's seed (``seeds[i]``, or ``cv.random_state``
    for every density when ``seeds`` is None: one set of folds if that is an int).
    """
    n_splits = n_point_folds(cv.cv, n_points)
    if seeds is not None:
        states = list(seeds)
    elif isinstance(cv.random_state, Integral):
        states = [cv.random_state]  # every density the same folds
    else:
        states = [cv.random_state] * n_rows  # None: numpy's global generator, drawn in turn
    masks = np.zeros((len(states), n_splits, n_points), dtype=bool)
    points = np.zeros((n_points, 1))
    for mask, state in zip(masks, states, strict=True):  # set-up: a seed draw per density
        fold_seed = check_random_state(state).randint(np.iinfo(np.int32).max)
        splits = KFold(n_splits, shuffle=True, random_state=fold_seed).split(points)
        for fold, (_, test) in enumerate(splits):
            mask[fold, test] = True
    return masks


@dataclass
class BlockChoice:
    """The choice of K for a block's densities and their fits at it (grid units)."""

    n_components: np.ndarray  # (B,) chosen K; 0 for rows left to DensityGMMCV.fit
    # per chosen K: (rows, weights, means, covariances, precisions_cholesky, scale,
    # loss, n_iter, converged)
    groups: list
    best_score: np.ndarray  # (B,) pooled held-out score of the chosen K
    scores: np.ndarray  # (B, n_folds, n_candidates): NaN not evaluated, -inf not fitted
    candidates: np.ndarray
    # (n_candidates,) seconds of the fold refits per row and fold (NaN: not evaluated)
    fit_times: np.ndarray


def _in_blocks(problem, theta, data, **settings):
    """Levenberg-Marquardt on many rows, a block of ``problem.block_size`` at a time."""
    size = problem.block_size
    parts = [
        levenberg_marquardt(
            problem,
            theta[i : i + size],
            data.take(np.arange(i, min(i + size, len(theta)))),
            **settings,
        )
        for i in range(0, len(theta), size)
    ]
    result = parts[0]
    for name in ("theta", "loss", "n_iter", "converged"):
        setattr(result, name, np.concatenate([getattr(p, name) for p in parts]))
    return result


def _em_fits(problem, Y, weights, *, tol, max_iter):
    """``(theta (B, p), loss (B,))`` of every row's fit from the batched
    data-driven start (:func:`~._batch_fit.em_start`), to the path's ``CV_FTOL``."""
    data, _ = batch_data(problem, Y, weights)
    fit = _in_blocks(
        problem, em_start(problem, data), data, tol=tol, max_iter=max_iter, ftol=CV_FTOL
    )
    return fit.theta, fit.loss


def _path_fits(problem, smaller, previous, grown, Y, weights, em, *, tol, max_iter):
    """``(theta (B, p), loss (B,))`` of every row's fit with ``problem``'s K
    (``weights`` ``(B, n)``); a loss that is not finite is inf.

    The path's step: the fit from the data-driven start (``em``, the
    ``(theta, loss)`` of :func:`_em_fits`) and, for the rows ``grown`` (a
    boolean ``(B,)``) it does not fit exactly, the fit from the row's fit
    ``previous`` with one component fewer (of ``smaller``) plus a component
    where the residual asks for it (:func:`~._batch_fit.grown_by_one`),
    minimised to the path's ``CV_FTOL``. The grown fit is kept only where it
    lowers the loss by more than the factor ``PATH_GROWN_GAIN``,
    DensityGMMCV's rule (see there). On 768 spectra of bench_batch_cv (seed
    0), before DensityGMMCV had the rule: keeping the lower of the two always
    gave the same K as DensityGMMCV alone in 92.6% of the first 256 and the
    true K in 92.6%; the data-driven start alone, 97.3% and 97.7%; the rule,
    98.4% and 98.8%.
    """
    theta, loss = (values.copy() for values in em)
    if previous is None:
        return theta, _finite_loss(loss)
    rows = np.flatnonzero(grown)
    inexact = loss[rows] > EXACT_CV_LOSS  # an exact fit needs no second start
    rows, previous = rows[inexact], previous[inexact]
    if rows.size:
        data, _ = batch_data(problem, Y[rows], weights[rows])
        start = grown_by_one(problem, smaller, previous, data)
        other = _in_blocks(problem, start, data, tol=tol, max_iter=max_iter, ftol=CV_FTOL)
        take = other.loss < PATH_GROWN_GAIN * loss[rows]
        theta[rows[take]], loss[rows[take]] = other.theta[take], other.loss[take]
    return theta, _finite_loss(loss)


def _finite_loss(loss):
    return np.where(np.isfinite(loss), np.maximum(loss, 0.0), np.inf)


def _held_out_errors(problem, theta, Y, weights, test):
    """Each fold's refit from ``theta`` and its held-out error, ``(B, n_folds)``.

    ``weights`` ``(B, n)`` are the quadrature weights of the rows, ``test``
    ``(B or 1, F, n)`` their held-out points. A refit without a finite loss
    keeps its start (as DensityGMMCV does).
    """
    B, n = Y.shape
    F = test.shape[1]
    test = np.broadcast_to(test, (B, F, n))
    train_weights = (weights[:, None, :] * ~test).reshape(B * F, n)
    data, _ = batch_data(problem, np.repeat(Y, F, axis=0), train_weights)
    start = np.repeat(theta, F, axis=0)
    refit = _in_blocks(
        problem, start, data, tol=FOLD_TOL, max_iter=FOLD_MAX_ITER, ftol=FOLD_FTOL, min_iter=1
    )
    fits = np.where(np.isfinite(refit.loss)[:, None], refit.theta, start)
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        _, model, _ = _model(problem, mixture_terms(problem, fits, derivatives=False))
    residual = (data.target - model).reshape(B, F, n)
    unit = np.max(np.abs(Y), axis=1)
    return np.sum(weights[:, None, :] * test * residual**2, axis=2) * unit[:, None] ** 2


def choose_block(cv, X, Y, weights=None, seeds=None):
    """DensityGMMCV's choice of K for every row of ``Y`` ``(B, n)`` on the grid ``X``.

    ``weights``: the quadrature (sample) weights, ``(n,)``, ``(B, n)`` or None
    (the grid's cells); ``seeds``: one seed per row, or None (``cv.random_state``
    for every row).
    """
    B, n = Y.shape
    candidates = candidates_of(cv.n_components)
    # the scores do not change with a row's unit: the search works on each row
    # divided by its largest |value| (densities of 1e-300 or 1e300 neither under-
    # nor overflow); the chosen fits are polished on the rows as given
    given = Y
    unit = np.max(np.abs(Y), axis=1)
    Y = Y / np.where(unit > 0, unit, 1.0)[:, None]
    problem = BatchProblem(X, 1, cv.covariance_type, "l2")
    q = batch_data(problem, Y, weights)[0].weights
    q = np.broadcast_to(q, (B, n))
    test = held_out_masks(cv, n, seeds, B)
    F = test.shape[1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        mean = np.sum(q * Y, axis=1) / np.sum(q, axis=1)
        total = np.sum(q * (Y - mean[:, None]) ** 2, axis=1)  # the constant model's
        noise = noise_variance(X, Y)
        noise_loss = None if noise is None else noise / np.sum(q * Y**2, axis=1)
    # rows the search cannot score (a fold without held-out or training weight, a
    # constant density) are left to DensityGMMCV.fit, which says why
    held_out = np.einsum("bn,bfn->bf", q, np.broadcast_to(test, (B, F, n)))
    scorable = np.all(held_out > 0, axis=1) & np.all(held_out < np.sum(q, axis=1)[:, None], axis=1)
    scorable &= np.isfinite(total) & (total > CONSTANT_DENSITY * np.sum(q * Y**2, axis=1))
    patience = PATIENCE if cv.early_stopping is True else int(cv.early_stopping)
    selection = cv.selection
    n_se = cv.n_standard_errors
    smallest_training = n - int(np.max(np.sum(test, axis=2)))

    scores = np.full((B, F, len(candidates)), np.nan)
    # which fits on all points leave only white noise (never with sample weights:
    # the noise estimate weighs every point alike)
    noise_tests = cv.early_stopping is True and noise_loss is not None and weights is None
    path_quiet = np.zeros((B, len(candidates)), dtype=bool)
    fit_times = np.full(len(candidates), np.nan)
    settings = dict(tol=max(cv.tol, CV_TOL), max_iter=min(cv.max_iter, CV_MAX_ITER))
    # A 1-D density has at least as many components as clear peaks (least_components):
    # where the data-driven fit at that count is exact, the search ends there (a
    # smaller candidate cannot fit exactly, and only an exact fit would win); the
    # other rows take the whole path, every candidate scored.
    first = np.minimum(least_components(X, Y, noise, q), candidates[-1]) - 1
    path_from = np.zeros(B, dtype=int)
    em_fits = {}  # index -> (rows, theta, loss) of fits from the data-driven start
    for index in np.unique(first[scorable & (first > 0)]):  # a batch per count of peaks
        if candidates[index] > smallest_training:
            continue
        rows = np.flatnonzero(scorable & (first == index))
        larger = problem.with_components(int(candidates[index]))
        em_fits[index] = (rows, *_em_fits(larger, Y[rows], q[rows], **settings))
        path_from[rows[em_fits[index][2] <= EXACT_CV_LOSS]] = index
    thetas = {}
    exact = np.full(B, -1)
    active = scorable.copy()
    for index, k in enumerate(candidates):
        rows = np.flatnonzero(active & (path_from <= index))
        if rows.size == 0:
            if not np.any(active):
                break
            continue
        if k > smallest_training:
            scores[rows, :, index] = -np.inf
            continue
        larger = problem.with_components(int(k))
        w = q[rows]
        em_theta = np.empty((rows.size, larger.layout.n_parameters))
        em_loss = np.empty(rows.size)
        known = np.zeros(rows.size, dtype=bool)
        if index in em_fits:
            em_rows, theta, loss = em_fits.pop(index)
            known = np.isin(rows, em_rows)
            at = np.searchsorted(em_rows, rows[known])
            em_theta[known], em_loss[known] = theta[at], loss[at]
        if not np.all(known):
            em_theta[~known], em_loss[~known] = _em_fits(
                larger, Y[rows[~known]], w[~known], **settings
            )
        grown = np.zeros(rows.size, dtype=bool)
        previous = None
        if index > 0 and index - 1 in thetas and candidates[index - 1] == k - 1:
            path_rows, path_theta = thetas[index - 1]
            grown = np.isin(rows, path_rows)
            previous = path_theta[np.searchsorted(path_rows, rows[grown])]
        theta, loss = _path_fits(
            larger,
            problem.with_components(int(k) - 1) if k > 1 else None,
            previous,
            grown,
            Y[rows],
            w,
            (em_theta, em_loss),
            **settings,
        )
        thetas[index] = (rows, theta)
        done = loss <= EXACT_CV_LOSS
        exact[rows[done]] = index
        started = time.perf_counter()
        errors = _held_out_errors(larger, theta, Y[rows], w, test if len(test) == 1 else test[rows])
        fit_times[index] = (time.perf_counter() - started) / (rows.size * F)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            fold_scores = 1.0 - F * errors / total[rows, None]
        scores[rows, :, index] = np.where(np.isfinite(loss)[:, None], fold_scores, -np.inf)
        if noise_tests:
            # leaves_noise's two tests; the matched filter only where the mean square passes
            level = residual_is_noise_level(loss, noise_loss[rows], n)
            bumps = np.full(rows.size, np.nan)
            if np.any(level):
                with np.errstate(under="ignore", over="ignore", invalid="ignore"):
                    fits = theta[level]
                    _, model, _ = _model(larger, mixture_terms(larger, fits, derivatives=False))
                bumps[level] = largest_bump(X, Y[rows[level]] - model, noise[rows[level]])
            path_quiet[rows, index] = leaves_noise(loss, noise_loss[rows], bumps, n)
        if cv.early_stopping:
            # the default stops a choice that leaves only noise one candidate later
            quiet = path_quiet[rows, : index + 1] if cv.early_stopping is True else None
            peaked = has_peaked(scores[rows, :, : index + 1], patience, selection, n_se, quiet)
            if noise_loss is not None:
                peaked &= ~(loss > UNDERFIT * np.maximum(noise_loss[rows], 1e-300))
            done |= peaked
        active[rows[done]] = False

    chosen = np.empty(B, dtype=int)
    for row in range(B):  # bookkeeping of a few numbers a density
        if not scorable[row]:
            chosen[row] = -1
            continue
        chosen[row] = exact[row] if exact[row] >= 0 else _select(scores[row], selection, cv)
    best_score = np.take_along_axis(scores.mean(axis=1), chosen[:, None], axis=1)[:, 0]
    n_components = np.where(chosen >= 0, candidates[np.maximum(chosen, 0)], 0)

    groups = []
    for index in np.unique(chosen[chosen >= 0]):
        path_rows, theta = thetas[index]
        rows = np.flatnonzero(chosen == index)
        theta = theta[np.searchsorted(path_rows, rows)]
        larger = problem.with_components(int(candidates[index]))
        data, log_unit = batch_data(larger, given[rows], q[rows])
        polished = _in_blocks(larger, theta, data, tol=cv.tol, max_iter=cv.max_iter)
        # the gate of the fixed-K batch: a fit that did not converge, or with a
        # component parked or two coincident, is left to DensityGMMCV.fit
        fitted = grid_unit_parameters(larger, polished.theta, log_unit)
        doubtful = ~polished.converged | ~np.isfinite(polished.loss)
        doubtful |= parked(larger, polished.theta, data)
        doubtful |= coincident_pairs(*fitted[:3], larger.covariance_type, REDUNDANT_DISTANCE)
        n_components[rows[doubtful]] = 0
        keep = ~doubtful
        if np.any(keep):
            groups.append(
                (
                    rows[keep],
                    *(values[keep] for values in fitted),
                    np.maximum(polished.loss[keep], 0.0),
                    np.maximum(polished.n_iter[keep], 1),
                    polished.converged[keep],
                )
            )
    return BlockChoice(n_components, groups, best_score, scores, candidates, fit_times)


def _select(row_scores, selection, cv):
    """The chosen index, or -1 when no candidate could be scored on every fold."""
    if not np.any(np.isfinite(row_scores.mean(axis=0))):
        return -1
    return select(row_scores, selection, cv.n_standard_errors)
