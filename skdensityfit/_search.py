"""The path of fits along ``K = 1, 2, ...`` and the choice of K by an information criterion.

:class:`Path` fits a density with 1, 2, ... components on all its points,
each fit grown from the last (plus starts from the data). :func:`criterion_search`
walks it and scores every fit by BIC (or AIC) under the density's noise
model (:mod:`._noise`): ``-2 log L + penalty * n_parameters``, the penalty
``log n`` for BIC (``n`` the points, or the samples of a histogram). The
noise model is estimated from the density before any fit, and refined from
the residual of the best fit so far (white noise found correlated); the
path stops once the best is ``patience`` candidates behind, or at an exact
fit. :class:`~._cv.DensityGMMCV` runs it, and ``fit_many`` through it.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._engine import FitSettings, minimize, moved_weakest, path_fit
from ._noise import initial_noise, refined_noise, whiten
from ._objective import model_density
from ._problem import problem_of
from ._selection import (
    CV_FTOL,
    CV_MAX_ITER,
    CV_TOL,
    EXACT_CV_LOSS,
    EXACT_TRIAL_NOISE_LOSS,
    UNDERFIT,
    largest_bump,
    least_components,
    leaves_noise,
    noise_variance,
    residual_is_noise_level,
)

# Fits on the path whose losses are compared by a criterion stop once a step
# gains less than this many noise variances of chi^2 (a fraction
# CRITERION_FTOL / n of a loss at the noise level), so that the criterion's
# differences carry no optimiser error larger than that.
CRITERION_FTOL = 0.2
CRITERION_MAX_ITER = 100
# The chosen fit's residual "holds a line" when the matched filter scores a
# Gaussian bump of it above 2 ln(n) + LINE_LEFT squared noise standard
# deviations (white noise reaches 2 ln(n) + 5.3 to 9.8 in 99% of draws,
# benchmarks/results/noise_tests.txt): warned of, never a rule.
LINE_LEFT = 10.0
PATH_SPLIT = True
# The noise model is re-estimated from the best fit's residual once, from the best fit
# under white noise, and for heteroscedastic noise again while the best moves, at most
# MAX_NOISE_ROUNDS times. (Again for correlated noise, the correlation of real spectra
# comes out higher and the choice lower: on the GRS spectra, fewer components than GaussPy+
# with a worse white-noise BIC in 5 of 99, against 2.)
MAX_NOISE_ROUNDS = 5
BUMP_WIDTHS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


class Path:
    """Fits on all points along ``K = 1, 2, ...``, in standardised coordinates.

    Each ``K`` has ``n_init`` starts (at least one from the data, and the fit
    with ``K - 1`` components plus a component at the largest residual) and
    keeps the one that ends lowest (:func:`~._engine.path_fit`); with
    ``grown_gain`` the grown start's fit must be that much lower than the
    data-driven ones' (held-out scores, see ``PATH_GROWN_GAIN``). With a
    background, each step fits the mixture under the previous step's
    background (the first: a polynomial through the grid's rim), then both
    jointly. The problem is set up once, so fits skip the estimator's per-call
    validation.
    """

    def __init__(
        self,
        base,
        X,
        y,
        weights,
        random_state,
        n_jobs,
        *,
        noise_tests=True,
        grown_gain=None,
        ftol=CV_FTOL,
        max_iter=CV_MAX_ITER,
        split=False,
    ):
        self.settings = FitSettings(
            tol=max(base.tol, CV_TOL),
            max_iter=min(base.max_iter, max_iter),
            n_init=base.n_init,
            init_params=base.init_params,
            reg_covar=base.reg_covar,
        )
        self.n_jobs = n_jobs
        self.grown_gain = grown_gain
        self.ftol = ftol
        self.split = split
        self.random_state = check_random_state(random_state)
        self.problem = problem_of(base.set_params(n_components=1), X, y, weights)
        self.fits = {}  # n_components -> parameter vector (None: no finite fit)
        self.losses = {}  # n_components -> its loss on all points
        self.problems = {}  # n_components -> problem
        # in the density's unit (densities of 1e-300 or 1e300 neither under- nor overflow)
        unit = self.problem.standardisation.density_unit
        noise = noise_variance(X, y / unit) if base.loss == "l2" else None
        # the relative loss that white noise alone would leave
        self.noise_loss = None if noise is None else noise / self.problem.data.normaliser
        # for leaves_noise: the grid, the noise variance in the targets' unit, the
        # fits' largest residual bumps (none without sample weights' or bins' tests)
        self.X, self.noise, self.noise_tests = X, noise, noise_tests
        self.bumps = {}
        # the density's clear peaks: fewer components cannot fit it exactly
        self.first = 1
        if self.problem.data.background is None:
            self.first = int(least_components(X, y / unit, noise, weights)[0])
        self.background = None  # the background's parameters of the last fit
        if self.problem.data.background is not None:
            background = self.problem.data.background
            self.background = background.fitted_to(self.problem.data.target, self.problem.grid)

    def exact_start(self, largest):
        """The smallest K the search must score: the count of the density's clear
        peaks (at most ``largest``) when a fit from the data alone with that many
        components is exact (then no smaller K fits exactly, and only an exact
        fit would win), else 1. Tried only when the noise estimate allows an
        exact fit (``EXACT_TRIAL_NOISE_LOSS``)."""
        first = min(self.first, largest)
        if self.fits or first < 2 or not self._may_be_exact():
            return 1
        problem = self.problem.with_components(first)
        result = path_fit(problem, None, self.settings, self.random_state, ftol=self.ftol)
        if result is None or result.loss > EXACT_CV_LOSS:
            return 1
        self.problems[first] = problem
        self.fits[first], self.losses[first] = result.theta, result.loss
        return first

    def _may_be_exact(self):
        return self.noise_loss is not None and self.noise_loss <= EXACT_TRIAL_NOISE_LOSS

    def fit(self, n_components):
        """``(theta, problem)`` of the fit on all points, or None if none is finite.

        The path passes through every ``K`` below ``n_components`` (from an
        exact :meth:`exact_start` on): each grows from the last.
        """
        for k in range(max(self.fits, default=0) + 1, n_components + 1):
            self.problems[k] = self.problem.with_components(k)
            result = self._step(self.problems[k], self.fits.get(k - 1))
            self.fits[k] = None if result is None else result.theta
            self.losses[k] = np.inf if result is None else result.loss
        theta = self.fits[n_components]
        return None if theta is None else (theta, self.problems[n_components])

    def _step(self, problem, previous):
        """The path's fit of ``problem`` grown from ``previous`` (the fit with one
        component fewer, background included), or None."""
        background = problem.data.background
        if background is None:
            return path_fit(
                problem,
                previous,
                self.settings,
                self.random_state,
                ftol=self.ftol,
                n_jobs=self.n_jobs,
                grown_gain=self.grown_gain,
                split=self.split,
            )
        n_mixture = problem.n_mixture_parameters
        data = problem.data
        under = background.values(self.background)
        target = data.target - under
        if data.loss == "poisson":
            target = np.maximum(target, 0.0)
        if not np.any(target > 0):
            target = data.target
        mixture = problem.mixture_only(target)
        smaller = None if previous is None else previous[: len(previous) - background.n_parameters]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            alone = path_fit(
                mixture,
                smaller,
                self.settings,
                self.random_state,
                ftol=self.ftol,
                n_jobs=self.n_jobs,
                grown_gain=self.grown_gain,
                split=self.split,
            )
        if alone is None:
            return None
        start = np.concatenate([alone.theta[:n_mixture], self.background])
        start = np.clip(start, problem.bounds[:, 0], problem.bounds[:, 1])
        result = minimize(
            problem, start, tol=self.settings.tol, max_iter=self.settings.max_iter, ftol=self.ftol
        )
        if not np.isfinite(result.loss):
            return None
        self.background = result.theta[n_mixture:]
        return result

    def improve(self, n_components):
        """Re-place the weakest component of the fit with ``n_components`` where that
        lowers its loss (a poor local optimum: two components on one peak while
        another covers two); True if it did. Not with a background."""
        theta = self.fits.get(n_components)
        if theta is None or n_components < 2 or self.problem.data.background is not None:
            return False
        if self.losses[n_components] <= EXACT_CV_LOSS:
            return False
        moved = moved_weakest(self.problems[n_components], theta, self.settings, ftol=self.ftol)
        if moved is None or not moved.loss < self.losses[n_components]:
            return False
        self.fits[n_components], self.losses[n_components] = moved.theta, moved.loss
        return True

    def model(self, n_components):
        """The path's fitted model of ``y`` with ``n_components``, in the units of ``y``."""
        problem = self.problems[n_components]
        unit = problem.standardisation.density_unit
        return unit * model_density(self.fits[n_components], problem.data)

    def n_parameters(self, n_components):
        """Free parameters of the path's fit: mixture, scale and background."""
        return len(self.fits[n_components])

    def leaves_noise(self, n_components):
        """Whether the path's fit with ``n_components`` (if any) leaves only
        white noise (:func:`~._selection.leaves_noise`). Never with sample
        weights or bins (the noise estimate weighs every point alike)."""
        theta = self.fits.get(n_components)
        if self.noise_loss is None or theta is None or not self.noise_tests:
            return False
        loss, n_points = self.losses[n_components], self.problem.n_points
        if not residual_is_noise_level(loss, self.noise_loss, n_points):
            return False  # the mean square already speaks
        if n_components not in self.bumps:
            data = self.problems[n_components].data
            residual = data.target - model_density(theta, data)
            self.bumps[n_components] = largest_bump(self.X, residual, self.noise)
        return bool(leaves_noise(loss, self.noise_loss, self.bumps[n_components], n_points))

    def underfits(self, n_components):
        """Whether the fit with ``n_components`` leaves far more than the noise unexplained.

        The residual of the fit on all points is compared with the variance of
        white noise estimated from the density's second differences: a
        noise-free density (a comb of many peaks, say) is not done while its
        residual is many times that, however flat the held-out scores were
        over the first few candidates.
        """
        if self.noise_loss is None:
            return False
        return self.losses[n_components] > UNDERFIT * max(self.noise_loss, 1e-300)


@dataclass
class CriterionChoice:
    """The outcome of :func:`criterion_search`."""

    index: int  # the chosen candidate's index
    values: np.ndarray  # the criterion of each candidate (NaN: not evaluated, inf: no fit)
    noise: object  # the NoiseModel the values were computed under
    grid: object  # its Grid
    exact: bool = False  # the choice fits the density exactly
    models: dict = field(default_factory=dict)  # K -> the path's model of y


def path_for_criterion(base, X, y, weights, random_state, n_jobs, noise_model):
    """The :class:`Path` a criterion walks: fits to a fraction ``CRITERION_FTOL / n``
    of their loss, with the loss the noise model's likelihood calls for."""
    base = clone(base).set_params(loss=noise_model.loss)
    return Path(
        base,
        X,
        y,
        weights,
        random_state,
        n_jobs,
        noise_tests=False,
        ftol=min(CV_FTOL, CRITERION_FTOL / len(y)),
        max_iter=CRITERION_MAX_ITER,
        split=PATH_SPLIT,
    )


def criterion_search(
    path, candidates, y, noise_model, grid, *, criterion, patience, requested, observed=None
):
    """Score the path's fits at ``candidates`` by ``criterion`` ('bic' or 'aic').

    The path is walked upwards until the lowest criterion is ``patience``
    candidates behind (``patience`` 0: every candidate), or a fit is exact
    (then a smaller candidate wins only with a lower criterion still: a fit
    exact within the noise). Then the noise model is refined from the
    residual of the best fit (:func:`~._noise.refined_noise`, ``requested``
    the user's ``noise``), and the fit at the candidate after the best is
    improved by moves (:meth:`Path.improve`: a poor local optimum there would
    decide the choice), the criterion recomputed and the walk continued
    while the best moves. Returns a :class:`CriterionChoice`.
    """
    values = np.full(len(candidates), np.nan)
    models = {}
    penalty = 0.0

    def score():
        known = [i for i in range(len(candidates)) if int(candidates[i]) in models]
        if known:
            stacked = np.vstack([models[int(candidates[i])] for i in known])
            minus_two = noise_model.minus_two_log_likelihood(grid, y, stacked)
            for i, value in zip(known, minus_two, strict=True):
                values[i] = value + penalty * path.n_parameters(int(candidates[i]))

    def best_index():
        evaluated = np.where(np.isnan(values), np.inf, values)
        return int(np.argmin(evaluated)) if np.isfinite(evaluated).any() else None

    def walk(start):
        """Evaluate candidates from ``start`` until settled; ``(next index, exact index)``."""
        index = start
        while index < len(candidates):
            k = int(candidates[index])
            fitted = None if k > len(y) else path.fit(k)
            if fitted is None:
                values[index] = np.inf
            else:
                models[k] = path.model(k)[observed]
                score()
                if path.losses[k] <= EXACT_CV_LOSS:
                    return index + 1, index  # no larger K can fit better
            index += 1
            best = best_index()
            if patience and best is not None and index - 1 - best >= patience:
                break
        return index, None

    penalty = np.log(max(noise_model.n_observations, 2.0)) if criterion == "bic" else 2.0
    first = path.exact_start(int(candidates[-1])) if noise_model.kind != "poisson" else 1
    start = int(np.searchsorted(candidates, first))
    next_index, exact = walk(start)
    if exact is None and best_index() is not None:
        # the noise model from the best fit's residual, until the best stays put (a
        # correlated noise read as white over-fits, and the over-fit's residual
        # understates the correlation)
        initial = noise_model
        for _ in range(MAX_NOISE_ROUNDS):
            best = best_index()
            fitted = models[int(candidates[best])]
            noise_model = refined_noise(
                initial,
                grid,
                y,
                y - fitted,
                requested,
                path.n_parameters(int(candidates[best])),
                fitted,
            )
            score()
            # once only, but for a variance that follows the model: the over-fit under
            # white noise took part of the peaks' noise, so the next best tells it better
            if best_index() == best or noise_model.kind != "heteroscedastic":
                break
        tried = set()
        for _ in range(len(candidates)):
            best = best_index()
            changed = False
            for i in (best + 1,):  # improving the best itself cannot move the choice
                k = int(candidates[i]) if i < len(candidates) else None
                if k is None or k in tried or k not in models:
                    continue
                tried.add(k)
                # a move gains less than one component's penalty (on the benchmarks'
                # 913 cases and the real spectra): a larger lead is not worth the work
                per_component = path.n_parameters(k) - path.n_parameters(int(candidates[best]))
                if not values[i] - values[best] < penalty * per_component:
                    continue
                if path.improve(k):
                    models[k] = path.model(k)[observed]
                    changed = True
            if changed:
                score()
            best = best_index()
            if patience and next_index < len(candidates) and next_index - 1 - best < patience:
                next_index, exact = walk(next_index)
                changed = True
            if exact is not None or not changed:
                break
    best = best_index()
    if best is None:
        raise ValueError(
            "No candidate number of components could be fitted. Use fewer components, or "
            "check the density."
        )
    return CriterionChoice(best, values, noise_model, grid, best == exact, models)


def largest_residual_bump(choice, y, model):
    """The largest Gaussian bump (an excess, not a dip) of the residual ``y - model``
    under the choice's noise model: ``(score, coordinates, width)``, the score its
    matched filter's squared signal-to-noise (whitened residual), the width in grid
    steps; None on scattered points or under Poisson noise."""
    noise, grid = choice.noise, choice.grid
    if noise.kind == "poisson" or grid.axes is None:
        return None
    residual = (y - model) / noise.sd
    if noise.kind == "correlated":
        residual = whiten(grid, residual, np.asarray(noise.correlation))[0]
    values = grid.as_array(residual)
    best = (0.0, None, None)
    for width in BUMP_WIDTHS:
        if width > max(1.0, max(values.shape) / 4.0):
            break
        smoothed = gaussian_filter(values, width, mode="constant")
        impulse = np.zeros(2 * int(4.0 * width + 0.5) + 1)
        impulse[len(impulse) // 2] = 1.0
        kernel_norm = np.sum(gaussian_filter1d(impulse, width, mode="constant") ** 2)
        # a line left out is an excess: a dip is no component a larger K could add
        scores = np.maximum(smoothed, 0.0) ** 2 / kernel_norm**values.ndim
        at = np.unravel_index(int(np.argmax(scores)), values.shape)
        if scores[at] > best[0]:
            coordinates = tuple(float(axis[i]) for axis, i in zip(grid.axes, at, strict=True))
            best = (float(scores[at]), coordinates, width)
    return None if best[1] is None else best


__all__ = [
    "CriterionChoice",
    "Path",
    "criterion_search",
    "initial_noise",
    "largest_residual_bump",
    "path_for_criterion",
]
