"""Held-out data and the rule that chooses the number of components.

Two ways to hold data out, by what the density is:

- :class:`CountFolds` (histograms of counts, ``loss='poisson'``): every bin's
  count is split at random between the folds (multinomial thinning). Each
  fold keeps every bin, so this is K-fold cross-validation of the *samples*
  behind the histogram, the data a ``GaussianMixture`` user would split; a
  fold's fit of the training counts, scaled to the held-out total, predicts
  the held-out counts, scored by their Poisson deviance.
- :class:`PointFolds` (any density): the grid points are split into folds
  (shuffled); a fold's fit of the training points predicts the held-out
  values, scored by the squared error (``l2``) or the Poisson deviance.

Either way each fold's held-out error is divided by the pooled total of the
constant model's error over all folds, so a fold's score is
``1 - n_folds * error / total`` and the mean over folds is the *pooled*
R^2 or D^2: a fold that happens to hold a peak weighs what its points
weigh, not as much as a whole fold. :func:`select` compares candidates by
the standard error of their *paired* per-fold differences (the folds are
shared), which is far smaller than the spread of the scores themselves.
"""

import time
from dataclasses import replace
from numbers import Integral

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from scipy.signal import find_peaks
from scipy.special import xlogy

from .._data.noise import _on_the_grid
from .._engine.fitting import minimize
from .._engine.rows import minimize_rows, models_of

# DensityGMMCV's path and its stop rules.
CV_TOL = 1e-5
# Fits on the path stop once a step gains less than this fraction of the
# loss: the held-out scores do not need more digits.
CV_FTOL = 1e-4
CV_MAX_ITER = 50
# A path fit whose relative loss is at most this fits the density exactly
# (relative L2 error 1e-5): it ends the search, and wins.
EXACT_CV_LOSS = 1e-10
# With early stopping, the path stops once the best mean score is this many
# candidates behind.
PATIENCE = 2
# Grids of at most this many points refit every fold for real (not only a
# candidate that would lead after one step), in 10 folds rather than 5: five
# folds of a coarse histogram often hold out most of one peak.
SMALL_GRID = 1000
SMALL_GRID_FOLDS = 10
# A path fit whose loss exceeds this many times the loss white noise alone
# would leave (estimated from second differences) is still underfitting: the
# path is not stopped early there.
UNDERFIT = 4.0
# On the path, the fit grown from the previous one (plus a component at the
# largest residual) is kept only when its loss is below this fraction of the
# data-driven starts' best: past the true K it finds the strongest bump of noise,
# whose fold refits leak the held-out points' noise (the scores creep up with K).
# Measurements: benchmarks/results/rule_constants.txt.
PATH_GROWN_GAIN = 0.9
# Fold fits stop once a step gains less than this fraction of the loss.
FOLD_TOL = 1e-5
FOLD_FTOL = 1e-4
# Fold refits start one step from the fit on all points (or from it, for
# count folds); this caps the rest.
FOLD_MAX_ITER = 30
# With early stopping, the path also stops once the candidate the rule would
# choose is that many candidates behind and no later one scores more than this
# above it (a gain in R^2 or D^2 of 0.1%: surplus components fitting noise).
SETTLED_GAIN = 1e-3
# With the default early stopping (True), a choice whose fit on all points
# leaves only white noise (:func:`leaves_noise`) is settled one candidate later
# rather than PATIENCE. White noise: the residual's mean square over the noise
# estimate at most QUIET_Z times QUIET_SPREAD / sqrt(n) above 1, and no Gaussian
# bump of the residual (matched filter, widths QUIET_BUMP_WIDTHS grid steps, up to
# a quarter of the longest axis) above 2 ln(n) + QUIET_BUMP squared noise sds;
# the mean square alone misses a narrow component. Measurements (python
# benchmarks/bench_noise_tests.py): benchmarks/results/rule_constants.txt.
QUIET_Z = 2.0
QUIET_SPREAD = 1.85
QUIET_BUMP = 7.0
QUIET_BUMP_WIDTHS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
# Differences of mean scores below this are rounding, not evidence.
SCORE_RESOLUTION = 1e-8
# DensityGMMCV tries an exact fit at the number of peaks of a 1-D density that
# stand out of its noise (see least_components): a peak counts when its
# prominence is at least this many noise standard deviations, and at least this
# fraction of the density's largest absolute value.
PEAK_PROMINENCE_NOISE = 20.0
PEAK_PROMINENCE_FLOOR = 1e-3
# The path of single fits spends that fit only when white noise would leave at
# most this relative loss (the estimate from differences keeps what is left of a
# smooth density, so it is not zero on noise-free data: 2e-9 for a comb of nine
# peaks on 600 points; 1% noise leaves about 1e-4).
EXACT_TRIAL_NOISE_LOSS = 1e-6
# A density whose held-out error about its average is below this fraction of
# its size (the zero model's error) is constant up to rounding: R^2 and D^2 are
# 0 / 0 there (as score_prediction's threshold).
CONSTANT_DENSITY = 1e-12


def _deviance(target, predicted, weights):
    predicted = np.maximum(predicted, np.finfo(float).tiny)
    return weights @ (xlogy(target, target / predicted) - target + predicted)


class PointFolds:
    """Held-out grid points: ``splits`` of ``(train, test)`` indices.

    Fold fits are one Levenberg-Marquardt step from the fit on all points
    (the one-step approximation of cross-validation), refitted for real
    when a candidate would lead (:meth:`refit`): one step is optimistic for
    surplus components, along which the loss is flat.
    """

    kind = "points"

    def __init__(self, splits, y, weights, loss):
        self.splits = splits
        # errors in the unit of the largest |y| (scores do not change with it;
        # densities of 1e-300 or 1e300 neither under- nor overflow)
        largest = np.max(np.abs(y))
        self.unit = largest if largest > 0 else 1.0
        self.y, self.weights, self.loss = y / self.unit, weights, loss
        check_folds_have_weight(splits, weights)
        average = (weights @ self.y) / weights.sum()
        self.total = sum(self._error(test, np.full(len(test), average)) for _, test in splits)
        zero = np.zeros(len(y))
        self.size = sum(self._error(test, zero[test]) for _, test in splits)

    @property
    def n_splits(self):
        return len(self.splits)

    def smallest_training_set(self):
        return min(len(np.unique(train)) for train, _ in self.splits)

    def _error(self, test, predicted):
        y, weights = self.y[test], self.weights[test]
        if self.loss == "l2":
            return weights @ (y - predicted) ** 2
        return _deviance(y, predicted, weights)

    def fit(self, theta, problem):
        """Each fold's fit: one Levenberg-Marquardt step of the kernel that lowers its
        training loss (a row a fold). Folds that cannot be fitted (fewer points than
        components, no positive value) get None."""
        counts = np.zeros((self.n_splits, len(self.y)))  # repeated indices count repeatedly
        for row, (train, _) in zip(counts, self.splits, strict=True):
            np.add.at(row, train, 1.0)
        inputs = problem.kernel
        folds = inputs.with_densities(np.repeat(inputs.Y, self.n_splits, axis=0), inputs.Q * counts)
        steps = minimize_rows(
            folds,
            np.repeat(np.atleast_2d(theta), self.n_splits, axis=0),
            tol=0.0,
            max_iter=1,
            density=np.arange(self.n_splits),
        )
        return [
            None
            if len(train) < problem.layout.n_components or not np.any(self.y[train] > 0)
            else steps.theta[fold]
            for fold, (train, _) in enumerate(self.splits)
        ]

    def refit(self, fits, problem, seconds):
        """Each fold's fit minimised on its training points from ``fits`` (times: ``seconds``)."""
        refits = []
        for fold, (fit, (train, _)) in enumerate(zip(fits, self.splits, strict=True)):
            if fit is None:
                refits.append(None)
                continue
            start = time.perf_counter()
            result = minimize(
                problem.subset(train), fit, tol=FOLD_TOL, max_iter=FOLD_MAX_ITER, ftol=FOLD_FTOL
            )
            refits.append(result.theta if np.isfinite(result.loss) else fit)
            seconds[fold] += time.perf_counter() - start
        return refits

    def scores(self, fits, problem):
        """Each fold's pooled score ``1 - n_folds * held-out error / total``."""
        data, unit = problem.data, problem.standardisation.density_unit
        errors = np.empty(self.n_splits)
        for fold, (fit, (train, test)) in enumerate(zip(fits, self.splits, strict=True)):
            if len(train) < data.layout.n_components:
                errors[fold] = np.inf
                continue
            # no mixture fits a density without positive values; the best
            # non-negative model under either loss is zero everywhere
            predicted = (
                np.zeros(len(test))
                if fit is None
                else (unit / self.unit) * models_of(problem.subset(test).kernel, fit)[0]
            )
            errors[fold] = self._error(test, predicted)
        return _pooled_scores(errors, self.total, self.size)


class CountFolds:
    """Held-out samples of a histogram: every count split between ``n_splits`` folds.

    ``y`` are counts (non-negative integers). Fold ``f`` holds out
    ``c_f ~ Multinomial(y, 1 / n_splits)`` of each bin and trains on
    ``y - c_f``; its fit (started from the fit on all counts, scaled to the
    training total) predicts ``c_f`` as the fitted training counts times
    ``sum(c_f) / sum(y - c_f)``.
    """

    kind = "counts"

    def __init__(self, y, n_splits, random_state):
        generator = np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
        counts = np.rint(y).astype(np.int64)
        self.held_out = generator.multinomial(counts, np.full(n_splits, 1.0 / n_splits)).T
        self.y = y
        totals = self.held_out.sum(axis=1)
        self.ratio = totals / np.maximum(counts.sum() - totals, 1)
        self.total = sum(
            _deviance(c, np.full(len(c), c.mean()), np.ones(len(c))) for c in self.held_out
        )
        self.size = float(self.held_out.sum())

    @property
    def n_splits(self):
        return len(self.held_out)

    def smallest_training_set(self):
        return len(self.y)

    def _training(self, problem, fold):
        train = (self.y - self.held_out[fold]) / problem.standardisation.density_unit
        return replace(problem, data=replace(problem.data, target=train))

    def fit(self, theta, problem):
        """Each fold's fit of its training counts (a short refit from the scaled fit)."""
        fits = []
        for fold in range(self.n_splits):
            start = np.array(theta, dtype=float)
            if problem.layout.fit_scale:  # the training counts hold 1 / (1 + ratio) of all
                start[0] -= np.log1p(self.ratio[fold])
            result = minimize(
                self._training(problem, fold),
                start,
                tol=FOLD_TOL,
                max_iter=FOLD_MAX_ITER,
                ftol=FOLD_FTOL,
            )
            fits.append(result.theta if np.isfinite(result.loss) else start)
        return fits

    def refit(self, fits, problem, seconds):
        return fits  # the fold fits are real refits already

    def scores(self, fits, problem):
        unit = problem.standardisation.density_unit
        errors = np.empty(self.n_splits)
        for fold, fit in enumerate(fits):
            expected = unit * models_of(problem.kernel, fit)[0] * self.ratio[fold]
            held_out = self.held_out[fold]
            errors[fold] = _deviance(held_out, expected, np.ones(len(held_out)))
        return _pooled_scores(errors, self.total, self.size)


def _pooled_scores(errors, total, size):
    """``1 - n_folds * errors / total``; for a constant density (``total`` at the
    level of rounding against ``size``, the zero model's error), as
    :func:`~.reports.score_prediction`: 1 for no error, else 0."""
    n_splits = len(errors)
    if not total > CONSTANT_DENSITY * size:
        return np.where(errors <= CONSTANT_DENSITY * size, 1.0, 0.0)
    return 1.0 - n_splits * errors / total


def largest_bump(X, residual, noise):
    """The largest squared matched-filter score of a Gaussian bump in ``residual``.

    On the rectilinear grid ``X``, the residual (``(n_points,)`` or ``(B,
    n_points)``) is smoothed by Gaussians of ``QUIET_BUMP_WIDTHS`` grid steps
    (up to a quarter of the longest axis; zero beyond the grid); at every point
    and width the smoothed value squared, divided by its variance under white
    noise of variance ``noise`` (float or ``(B,)``), is the matched filter's
    score of a bump there, in squared noise standard deviations (chi-squared
    with one degree of freedom for white noise). Returns the largest (float
    or ``(B,)``), or None for scattered points.
    """
    residual = np.asarray(residual, dtype=float)
    values = _on_the_grid(X, residual)
    if values is None:
        return None
    batch = residual.ndim - 1
    shape = values.shape[batch:]
    noise = np.reshape(np.maximum(noise, np.finfo(float).tiny), (-1,) * batch)
    best = np.zeros(residual.shape[:-1])
    for width in QUIET_BUMP_WIDTHS:
        if width > max(1.0, max(shape) / 4.0):
            break
        smoothed = gaussian_filter(values, (0,) * batch + (width,) * len(shape), mode="constant")
        impulse = np.zeros(2 * int(4.0 * width + 0.5) + 1)
        impulse[len(impulse) // 2] = 1.0
        kernel = gaussian_filter1d(impulse, width, mode="constant")
        variance = noise * np.sum(kernel**2) ** len(shape)
        with np.errstate(over="ignore"):  # a vanishing noise: an infinite score
            scores = smoothed.reshape(*residual.shape[:-1], -1) ** 2
            best = np.maximum(best, scores.max(axis=-1) / variance)
    return float(best) if batch == 0 else best


def least_components(X, y, noise, weights=None):
    """A lower bound on the number of components of a noise-free 1-D density: its clear peaks.

    A mixture of K Gaussians in one dimension has at most K modes (whatever
    the variances; Carreira-Perpinan & Williams 2003), and two peaks of the
    sampled values separated by a lower value are two modes of the sampled
    function, so a density sampled on a grid that a K-mixture fits exactly
    has at most K peaks. Only peaks whose prominence (scipy's ``find_peaks``)
    is at least ``PEAK_PROMINENCE_NOISE`` standard deviations of the white
    noise (``noise``, the variance of :func:`noise_variance`) and at least
    ``PEAK_PROMINENCE_FLOOR`` of the largest absolute value count, and only
    points of positive ``weights`` (``(n_points,)``, ``(B, n_points)`` or
    None) are looked at. Under noise that is not white (larger at the peaks
    of a histogram, correlated, an outlier) the count can exceed the number of
    components, so DensityGMMCV uses it only to try one exact fit. Returns
    ``(B,)`` counts (at least 1) for ``y`` of shape ``(B, n_points)``; 1 for
    every row when the grid is not 1-D or the noise is unknown (None).
    """
    y = np.atleast_2d(y)
    least = np.ones(len(y), dtype=int)
    if X.shape[1] != 1 or noise is None:
        return least
    order = np.argsort(X[:, 0], kind="stable")
    values = y[:, order]
    kept = np.ones(values.shape, dtype=bool)
    if weights is not None:
        kept = np.broadcast_to(np.atleast_2d(weights)[:, order] > 0, values.shape)
    threshold = np.maximum(
        PEAK_PROMINENCE_NOISE * np.sqrt(np.broadcast_to(noise, least.shape)),
        PEAK_PROMINENCE_FLOOR * np.max(np.abs(values), axis=1),
    )
    for row in range(len(values)):
        # set-up, once a density: find_peaks' prominences are computed in C
        peaks = find_peaks(values[row, kept[row]], prominence=threshold[row])[0]
        least[row] = max(1, len(peaks))
    return least


def n_point_folds(cv, n_points):
    """The number of shuffled folds of grid points for ``cv`` None or an int:
    None is ``SMALL_GRID_FOLDS`` on grids of at most ``SMALL_GRID`` points and 5
    on larger ones, never more than the grid's points."""
    if cv is None:
        return min(SMALL_GRID_FOLDS if n_points <= SMALL_GRID else 5, n_points)
    if cv > n_points:
        raise ValueError(
            f"cv={cv} folds of grid points need at least {cv} points; the grid has "
            f"{n_points}. Pass cv={n_points} or fewer folds, or a finer grid."
        )
    return int(cv)


def are_counts(y):
    """Whether ``y`` holds counts: non-negative integers, not all zero."""
    return bool(np.all(y >= 0) and np.all(y == np.rint(y)) and y.sum() > 0)


def contiguous_folds(splits):
    """Whether every fold holds out one contiguous block of indices."""
    for _, test in splits:
        test = np.unique(test)
        if len(test) < 2 or test[-1] - test[0] != len(test) - 1:
            return False
    return True


def check_folds_have_weight(splits, weights):
    for train, test in splits:
        if not np.any(weights[test] > 0) or not np.any(weights[train] > 0):
            raise ValueError(
                "A cross-validation fold has zero total sample_weight, so it cannot be "
                "scored. Use fewer folds, or give weight to more points."
            )


def paired_standard_errors(scores, reference):
    """Standard errors of the mean paired differences between each candidate and
    the candidate ``reference`` ``(B,)``, for scores ``(B, n_splits, n_candidates)``:
    ``(B, n_candidates)`` (NaN where a score is -inf)."""
    n_splits = scores.shape[1]
    if n_splits < 2:
        return np.zeros((scores.shape[0], scores.shape[2]))
    leader = np.take_along_axis(scores, reference[:, None, None], axis=2)
    with np.errstate(invalid="ignore"):  # -inf scores give NaN
        return (leader - scores).std(axis=1, ddof=1) / np.sqrt(n_splits)


def select(scores, selection, n_standard_errors=1.0):
    """The chosen candidate's index: the best mean, or the smallest within some paired SEs of it.

    ``scores`` is ``(n_splits, n_candidates)``; NaN marks a candidate not
    evaluated, -inf one that cannot be fitted.
    """
    mean = scores.mean(axis=0)
    finite = np.isfinite(mean)
    if not finite.any():
        raise ValueError(
            "No candidate number of components could be scored on every fold. "
            "Use fewer components or fewer folds."
        )
    return int(choices(scores[None], selection, n_standard_errors)[0])


def choices(scores, selection, n_standard_errors=1.0):
    """:func:`select` for many densities at once: ``scores`` ``(B, n_splits,
    n_candidates)``, each row with at least one finite mean; ``(B,)`` indices."""
    mean = scores.mean(axis=1)
    finite = np.isfinite(mean)
    best = np.argmax(np.where(finite, mean, -np.inf), axis=1)
    if selection == "best":
        return best
    # NaN (a -inf score) is taken as 0
    errors = n_standard_errors * np.nan_to_num(paired_standard_errors(scores, best), nan=0.0)
    best_mean = np.take_along_axis(mean, best[:, None], axis=1)
    within = finite & (mean >= best_mean - np.maximum(errors, SCORE_RESOLUTION))
    return np.argmax(within, axis=1)


def residual_is_noise_level(loss, noise_loss, n_points):
    """:func:`leaves_noise`'s first test alone: the relative loss ``loss`` at most
    ``QUIET_Z`` standard deviations of the ratio, ``QUIET_SPREAD / sqrt(n_points)``,
    above ``noise_loss`` (the relative loss of white noise of the variance
    :func:`noise_variance` estimates; broadcast together, NaN gives False)."""
    with np.errstate(invalid="ignore"):
        limit = 1.0 + QUIET_Z * QUIET_SPREAD / np.sqrt(n_points)
        return np.asarray(loss) <= np.asarray(noise_loss) * limit


def leaves_noise(loss, noise_loss, bump, n_points):
    """Whether fits on all points leave only white noise: both
    :func:`residual_is_noise_level` and the largest bump of the fit's residual
    (``bump``, :func:`largest_bump`; NaN gives False) at most
    ``2 ln(n_points) + QUIET_BUMP``."""
    with np.errstate(invalid="ignore"):
        bump_is_noise = np.asarray(bump) <= 2.0 * np.log(n_points) + QUIET_BUMP
    return residual_is_noise_level(loss, noise_loss, n_points) & bump_is_noise


def has_peaked(scores, patience, selection="best", n_standard_errors=1.0, quiet=None):
    """True once the best mean score is ``patience`` or more candidates behind
    the last, or the candidate :func:`select` would choose from the scores so
    far is, and no later candidate's mean score is more than ``SETTLED_GAIN``
    above its own. Scores ``(n_splits, n_candidates)``, or ``(B, n_splits,
    n_candidates)`` for one answer a density. ``quiet`` (bool, ``(n_candidates,)``
    or ``(B, n_candidates)``) marks the candidates whose fit on all points
    leaves only noise (:func:`leaves_noise`): a quiet choice needs to be one
    candidate behind only."""
    many = scores.ndim == 3
    scores = scores if many else scores[None]
    mean = scores.mean(axis=1)
    finite = np.all(np.isfinite(mean), axis=1)
    mean = np.where(finite[:, None], mean, 0.0)
    last = scores.shape[2] - 1
    peaked = last - np.argmax(mean, axis=1) >= patience
    if selection != "best" or quiet is not None:
        chosen = choices(np.where(finite[:, None, None], scores, 0.0), selection, n_standard_errors)
        later = np.arange(scores.shape[2]) > chosen[:, None]
        gain = np.max(np.where(later, mean, -np.inf), axis=1)
        gain -= np.take_along_axis(mean, chosen[:, None], axis=1)[:, 0]
        needed = np.full(len(chosen), patience)
        if quiet is not None:
            quiet = np.broadcast_to(quiet, mean.shape)
            needed[np.take_along_axis(quiet, chosen[:, None], axis=1)[:, 0]] = min(patience, 1)
        peaked |= (last - chosen >= needed) & (gain <= SETTLED_GAIN)
    peaked &= finite
    return peaked if many else bool(peaked[0])


def cv_results(candidates, scores, fit_times):
    """``cv_results_`` in GridSearchCV's shape."""
    mean = scores.mean(axis=0)
    with np.errstate(invalid="ignore"):  # a candidate that could not be fitted scores -inf
        std = scores.std(axis=0)
    finite_mean = np.where(np.isfinite(mean), mean, -np.inf)  # NaN: not evaluated
    order = np.argsort(-finite_mean, kind="stable")
    rank = np.empty(len(candidates), dtype=np.int32)
    rank[order] = np.arange(1, len(candidates) + 1)
    results = {
        "param_n_components": np.ma.MaskedArray(candidates, mask=False),
        "params": [{"n_components": int(k)} for k in candidates],
    }
    for i, split_scores in enumerate(scores):
        results[f"split{i}_test_score"] = split_scores
    results.update(
        mean_test_score=mean,
        std_test_score=std,
        rank_test_score=rank,
        mean_fit_time=fit_times.mean(axis=0),
        std_fit_time=fit_times.std(axis=0),
    )
    return results


def candidates_of(n_components):
    """The candidate numbers of components of DensityGMMCV's ``n_components``, sorted."""
    if n_components is None:
        return np.arange(1, 9)
    if isinstance(n_components, Integral):
        return np.arange(1, n_components + 1)
    candidates = np.asarray(n_components)
    if (
        candidates.ndim != 1
        or candidates.size == 0
        or not np.issubdtype(candidates.dtype, np.number)
        or not np.all(np.isfinite(candidates))
        or np.any(candidates != np.round(candidates))
        or candidates.max() > np.iinfo(np.int32).max
        or candidates.min() < 1
    ):
        raise ValueError(
            "n_components should be a positive int or a list of positive ints, "
            f"got {n_components!r}."
        )
    return np.unique(candidates).astype(int)
