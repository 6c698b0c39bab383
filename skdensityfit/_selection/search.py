"""The paths of fits along ``K = 1, 2, ...`` and the choice of K by an information criterion.

:class:`Paths` fits densities with 1, 2, ... components on all their points,
each fit grown from the last (plus starts from the data), every density's step
a row of the compiled kernel. :func:`criterion_steps` walks one density's path
and scores every fit by BIC (or AIC) under the density's noise model
(:mod:`.noise`): ``-2 log L + penalty * n_parameters``, the penalty ``log n``
for BIC (``n`` the points, or the samples of a histogram). The noise model is
estimated from the density before any fit, and refined from the residual of
the best fit so far (white noise found correlated or heteroscedastic); the path
stops once the best is ``patience`` candidates behind, or at an exact fit.
:func:`run_searches` runs the searches of many densities together: one density
(:class:`~.cv.DensityGMMCV`) or a chunk of ``fit_many``, the same code.
"""

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from .._data.noise import (
    HIGH_LEVEL,
    initial_noise,
    noise_variance,
    refined_noises,
    variance_profile,
)
from .._data.rowwise import row_products
from .._engine.fitting import (
    MIN_MOVE_GAIN,
    FitSettings,
    _inputs_with_components,
    at_width_floor,
    best_scales,
    data_driven_start,
    grown_rows,
    moved_rows,
    peak_starts,
    place_parked,
    row_problem,
    split_rows,
    weakest_rows,
)
from .._engine.problem import problem_of
from .._engine.rows import (
    RowResults,
    background_fits,
    leverages_of,
    minimize_rows,
    models_of,
)
from .._engine.starts import LazyRandomState
from .._model.covariance import as_matrices, constrained
from .._model.parameters import rows_pack, rows_raw, rows_without
from .._reports.reports import surplus_components
from .rules import (
    CV_FTOL,
    CV_MAX_ITER,
    CV_TOL,
    EXACT_CV_LOSS,
    EXACT_TRIAL_NOISE_LOSS,
    UNDERFIT,
    largest_bump,
    least_components,
    leaves_noise,
    residual_is_noise_level,
)

TINY = np.finfo(float).tiny
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
# The noise model is re-estimated from the best fit's residual while the best moves, at
# most MAX_NOISE_ROUNDS times: the first best, under white noise, over-fits correlated
# or heteroscedastic noise, and its residual understates the noise.
MAX_NOISE_ROUNDS = 5
BUMP_WIDTHS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)


def moment_starts(problem, inputs, reg_covar):
    """One component with each density's own mean and covariance (of its positive part,
    under the quadrature weights) and its mass: ``(D, p)`` parameters of ``problem``
    (one component)."""
    layout = problem.layout
    X = inputs.X
    mass = inputs.Q * np.maximum(inputs.Y, 0.0)
    share = mass / np.maximum(mass.sum(axis=1), TINY)[:, None]
    mean = row_products(share, X)
    centred = X[None] - mean[:, None]
    d = layout.n_features
    covariance = np.empty((len(mean), d, d))
    for i, j in zip(*np.triu_indices(d), strict=True):  # sums along rows: see _data.rowwise
        covariance[:, i, j] = covariance[:, j, i] = np.sum(
            share * centred[..., i] * centred[..., j], axis=1
        )
    covariance += reg_covar * np.eye(layout.n_features)
    covariance = constrained(covariance, layout.covariance_type)
    upper = np.swapaxes(np.linalg.inv(np.linalg.cholesky(covariance)), -1, -2)
    thetas = rows_pack(
        layout,
        np.zeros(len(mean)),
        np.zeros((len(mean), 1)),
        mean[:, None],
        rows_raw(layout, upper[:, None]),
    )
    if thetas.shape[1] < problem.bounds.shape[0]:  # a background: none at the start
        thetas = np.hstack(
            [thetas, np.zeros((len(thetas), problem.bounds.shape[0] - thetas.shape[1]))]
        )
    return best_scales(problem, inputs, thetas, np.arange(len(thetas)))


class Paths:
    """Fits on all points along ``K = 1, 2, ...`` of many densities on one grid, in
    standardised coordinates, every step of every density a row of the kernel.

    Each density's fit with ``K`` components has ``n_init`` starts at least: the fit
    with ``K - 1`` plus a component where its residual asks for one, (``split``) that
    fit with its worst-fitted component split, and one from the data (its greedy
    peaks; with one component, also its moments); the lowest is kept, and components
    it left parked are placed again (:func:`~.fitting.moved_rows`). With
    ``grown_gain`` the grown start's fit must be that much lower than the others'
    (held-out scores, see ``PATH_GROWN_GAIN``). With a background, each step fits the
    mixture under the previous step's background (the first: a polynomial through the
    grid's rim), then both jointly.

    ``Y`` ``(D, n)`` the densities, ``weights`` their quadrature weights ``(n,)`` or
    ``(D, n)``, ``random_state`` one or a list of one per density (for starts that
    draw: ``init_params`` other than 'peaks'; a seed in the list becomes its
    ``RandomState`` when first drawn from, which costs as much as a fit's Python);
    ``loss`` in place of ``base``'s; ``tol`` the projected gradient the fits stop at
    (or ``base``'s, if larger).
    """

    def __init__(
        self,
        base,
        X,
        Y,
        weights,
        random_state,
        *,
        noise_tests=True,
        grown_gain=None,
        ftol=CV_FTOL,
        max_iter=CV_MAX_ITER,
        split=False,
        loss=None,
        tol=CV_TOL,
    ):
        loss = base.loss if loss is None else loss
        Y = np.atleast_2d(np.asarray(Y, dtype=float))
        weights = np.asarray(weights, dtype=float)
        # tol: one for all densities, or one each (the settings' the largest, each
        # density's gradient test that times its inputs' tolerance factor)
        tols = np.maximum(base.tol, np.broadcast_to(tol, (len(Y),)))
        self.tolerance = tols / np.max(tols)
        self.settings = FitSettings(
            tol=float(np.max(tols)),
            max_iter=min(base.max_iter, max_iter),
            n_init=base.n_init,
            init_params=base.init_params,
            reg_covar=base.reg_covar,
        )
        self.grown_gain = grown_gain
        self.ftol = ftol
        self.split = split
        if isinstance(random_state, list):
            self.random_state = [LazyRandomState(seed) for seed in random_state]
        else:
            self.random_state = LazyRandomState(random_state)
        first_weights = weights if weights.ndim == 1 else weights[0]
        self.problem = problem_of(base, X, Y[0], first_weights, n_components=1, loss=loss)
        self.n_densities = len(Y)
        units = np.max(np.abs(Y), axis=1)
        # in each density's unit (densities of 1e-300 or 1e300 neither under- nor overflow)
        self.units = np.where(units > 0, units, 1.0)
        log_units = np.log(self.units) + np.sum(np.log(self.problem.standardisation.spread))
        self.fixed = None if base.scale is None else np.log(base.scale) - log_units
        self.Q = None
        if weights.ndim == 2:
            self.Q = weights / weights.sum(axis=1, keepdims=True)
        self.targets = Y / self.units[:, None]
        self.X, self.weights, self.noise_tests = X, weights, noise_tests
        self._problems, self._inputs = {}, {}
        self.fits = {}  # K -> (D, p) parameter vectors (NaN: not fitted or no finite fit)
        self.losses = {}  # K -> (D,) losses on all points (inf: no finite fit)
        self.fitted = np.zeros(self.n_densities, dtype=int)  # the largest K fitted
        self._models = {}  # K -> ((D, n) models in fit units, (D,) which are current)
        self.bumps = {}  # (row, K) -> the largest residual bump (held-out noise tests)
        normaliser = self.inputs(1).normaliser
        # for leaves_noise: the white noise variance in the targets' unit, and the
        # relative loss it alone would leave
        self.noise = noise_variance(X, self.targets) if loss == "l2" else None
        self.noise_loss = None if self.noise is None else self.noise / normaliser
        # the densities' clear peaks: fewer components cannot fit them exactly
        background = self.problem.data.background
        self.first = np.ones(self.n_densities, dtype=int)
        if background is None:
            self.first = least_components(X, self.targets, self.noise, weights).astype(int)
        # the background's parameters of each density's last fit
        self.background = None
        if background is not None:
            self.background = background.fitted_to(self.targets, self.problem.grid)
            self.rim_background = self.background.copy()

    # -- problems and inputs of the densities with K components ------------------
    def problem_of(self, n_components):
        if n_components not in self._problems:
            self._problems[n_components] = self.problem.with_components(n_components)
        return self._problems[n_components]

    def inputs(self, n_components, rows=None):
        """The kernel's inputs with ``n_components`` of every density (or of ``rows``)."""
        if n_components not in self._inputs:
            self._inputs[n_components] = self.problem_of(n_components).kernel.with_densities(
                self.targets, self.Q, self.fixed, self.tolerance
            )
        inputs = self._inputs[n_components]
        if rows is None:
            return inputs
        return self._sub_inputs(inputs, rows)

    def _sub_inputs(self, inputs, rows, targets=None):
        return inputs.with_densities(
            self.targets[rows] if targets is None else targets,
            None if self.Q is None else self.Q[rows],
            None if self.fixed is None else self.fixed[rows],
            self.tolerance[rows],
        )

    def n_parameters(self, n_components):
        """Free parameters of a fit: mixture, scale and background."""
        return int(self.problem_of(n_components).bounds.shape[0])

    def models(self, rows, n_components):
        """The path's fitted models of the densities ``rows`` with ``n_components``, in
        their own units ``(R, n)``; those not yet evaluated since their last fit are
        evaluated together."""
        rows = np.atleast_1d(rows)
        if n_components not in self._models:
            shape = (self.n_densities, self.targets.shape[1])
            self._models[n_components] = (np.empty(shape), np.zeros(self.n_densities, bool))
        fitted, current = self._models[n_components]
        missing = np.unique(rows[~current[rows]])
        if missing.size:
            theta = self.fits[n_components][missing]
            fitted[missing] = models_of(self.inputs(n_components), theta, density=missing)
            current[missing] = True
        return fitted[rows] * self.units[rows, None]

    def surplus(self, row, n_components):
        """Whether density ``row``'s fit with ``n_components`` has a component too many by
        the redundancy warning's tests: two components that nearly coincide, or one of
        negligible weight."""
        problem = self.problem_of(n_components)
        layout = problem.layout
        named = problem.to_grid(self.fits[n_components][row])
        matrices = as_matrices(
            named["covariances"], layout.covariance_type, layout.n_components, layout.n_features
        )
        pairs, light = surplus_components(named["weights"], named["means"], matrices)
        return bool(len(pairs) or len(light))

    def resolved(self, row, n_components, grid):
        """Whether every component of density ``row``'s fit with ``n_components`` is at
        least one grid step wide along each axis of ``grid`` (scattered points: always):
        a narrower one fits a few points' noise."""
        if grid.axes is None:
            return True
        problem = self.problem_of(n_components)
        layout = problem.layout
        covariances = problem.to_grid(self.fits[n_components][row])["covariances"]
        matrices = as_matrices(
            covariances, layout.covariance_type, layout.n_components, layout.n_features
        )
        sds = np.sqrt(np.diagonal(matrices, axis1=-2, axis2=-1))
        steps = np.array([np.median(np.diff(axis)) for axis in grid.axes])
        return bool(np.all(sds >= steps))

    def at_width_floor(self, row, n_components):
        """The means (grid units) of the components of density ``row``'s fit with
        ``n_components`` pressed against the width floor (:func:`~.fitting.at_width_floor`),
        ``(m, d)``."""
        problem = self.problem_of(n_components)
        theta = self.fits[n_components][row]
        _, _, means, factors = problem.unpack(theta)
        floor = at_width_floor(problem.layout, factors, problem.width_floors(means))
        return problem.to_grid(theta)["means"][floor]

    def leverages(self, rows, n_components):
        """The leverage of every point in the fits of densities ``rows`` with
        ``n_components`` (:func:`~.rows.leverages_of`), ``(R, n)``."""
        rows = np.atleast_1d(rows)
        return leverages_of(self.inputs(n_components), self.fits[n_components][rows], rows)

    # -- the path ---------------------------------------------------------------
    def fit(self, rows, n_components):
        """Grow the paths of ``rows`` (each from its last fit) to ``n_components``
        (a number, or one per row); every density at the same step is fitted at once."""
        rows = np.atleast_1d(np.asarray(rows, dtype=int))
        targets = np.broadcast_to(n_components, rows.shape)
        while True:
            behind = self.fitted[rows] < targets
            if not behind.any():
                return
            steps = self.fitted[rows[behind]] + 1
            for k in np.unique(steps):
                self._step(rows[behind][steps == k], int(k))

    def _store(self, rows, n_components, theta, loss):
        if n_components not in self.fits:
            self.fits[n_components] = np.full(
                (self.n_densities, self.n_parameters(n_components)), np.nan
            )
            self.losses[n_components] = np.full(self.n_densities, np.inf)
        finite = np.isfinite(loss)
        self.fits[n_components][rows] = np.where(finite[:, None], theta, np.nan)
        self.losses[n_components][rows] = np.where(finite, loss, np.inf)
        self.fitted[rows] = np.maximum(self.fitted[rows], n_components)
        if n_components in self._models:
            self._models[n_components][1][rows] = False

    def _previous(self, rows, n_components):
        """The fits of ``rows`` with ``n_components - 1`` (None for the first step)."""
        if n_components == 1 or n_components - 1 not in self.fits:
            return None
        return self.fits[n_components - 1][rows]

    def _step(self, rows, n_components):
        """The fits of the densities ``rows`` with ``n_components``, grown from their last."""
        problem = self.problem_of(n_components)
        inputs = self.inputs(n_components, rows)
        previous = self._previous(rows, n_components)
        background = problem.data.background
        if background is None:
            result = self._path_fit(problem, inputs, previous)
            self._store(rows, n_components, result.theta, result.loss)
            return
        n_mixture = problem.n_mixture_parameters
        mixture = problem.mixture_only()
        best_theta, loss = None, None
        # the mixture under the last step's background, under the rim's and under none (as
        # DensityGMM.fit starts): a background that took a line at one K leaves no room for
        # it at the next
        current = self.background[rows]
        for under in (current, self.rim_background[rows], np.zeros_like(current)):
            targets = self.targets[rows] - background.values_rows(under)
            if problem.data.loss == "poisson":
                targets = np.maximum(targets, 0.0)
            empty = ~np.any(targets > 0, axis=1)
            targets[empty] = self.targets[rows][empty]
            mixture_inputs = self._sub_inputs(mixture.kernel, rows, targets)
            smaller = (
                None if previous is None else previous[:, : previous.shape[1] - under.shape[1]]
            )
            alone = self._path_fit(mixture, mixture_inputs, smaller)
            start = np.hstack([np.nan_to_num(alone.theta[:, :n_mixture]), under])
            start = np.clip(start, problem.bounds[:, 0], problem.bounds[:, 1])
            result = minimize_rows(
                inputs, start, tol=self.settings.tol, max_iter=self.settings.max_iter,
                ftol=self.ftol,
            )  # fmt: skip
            trial = np.where(np.isfinite(alone.loss), result.loss, np.inf)
            if best_theta is None:
                best_theta, loss = result.theta, trial
            else:
                lower = trial < loss
                best_theta[lower], loss[lower] = result.theta[lower], trial[lower]
        if previous is not None:  # the last joint fit grown by a component, as without one
            joint = self._path_fit(problem, inputs, previous)
            lower = joint.loss < loss
            best_theta[lower], loss[lower] = joint.theta[lower], joint.loss[lower]
        finite = np.isfinite(loss)
        self.background[rows[finite]] = best_theta[finite, n_mixture:]
        self._store(rows, n_components, best_theta, loss)

    def _path_fit(self, problem, inputs, previous):
        """The path's fits of the densities of ``inputs`` with ``problem``'s components,
        from ``previous`` (their fits with one fewer, or None): a :class:`RowResults`."""
        settings = self.settings
        n_rows = len(inputs.Y)
        everyone = np.arange(n_rows)
        k = problem.layout.n_components
        starts, grown = [], None
        if previous is not None:
            known = np.all(np.isfinite(previous), axis=1)
            smaller, small_inputs = _inputs_with_components(problem, inputs, k - 1)
            filled = np.where(known[:, None], previous, peak_starts(smaller, small_inputs))
            grown = grown_rows(smaller, small_inputs, filled, everyone)
            starts.append(grown)
            if self.split:
                starts.append(split_rows(smaller, small_inputs, filled, everyone))
        reg_covar = max(settings.reg_covar, problem.width_limits[0] ** 2)
        if k == 1:
            starts.append(moment_starts(problem, inputs, reg_covar))
            starts.append(peak_starts(problem, inputs))
        else:
            n_data = max(1, settings.n_init - len(starts))
            if settings.init_params == "peaks":
                starts.append(peak_starts(problem, inputs))
                n_data -= 1
            for _ in range(n_data):
                starts.append(self._drawn_starts(problem, inputs))
        n_starts = len(starts)
        trials = minimize_rows(
            inputs,
            np.vstack(starts),
            tol=settings.tol,
            max_iter=settings.max_iter,
            ftol=self.ftol,
            density=np.tile(everyone, n_starts),
        )
        losses = trials.loss.reshape(n_starts, n_rows)
        if grown is not None and self.grown_gain is not None and n_starts > 1:
            # the grown start's fit must beat the data-driven ones clearly (see DensityGMMCV)
            others = np.min(losses[1:], axis=0)
            beaten = np.isfinite(others) & ~(losses[0] < self.grown_gain * others)
            losses[0, beaten] = np.inf
        best = np.argmin(np.where(np.isfinite(losses), losses, np.inf), axis=0)
        pick = best * n_rows + everyone
        result = RowResults(
            trials.theta[pick], losses[best, everyone], trials.n_iter[pick], trials.status[pick]
        )
        if k > 1:
            # Components at the width floor are left alone here: past the true K,
            # spikes on noise are what the criterion (or the held-out points) should judge.
            place_parked(
                problem, inputs, result, settings, width_floor=False, exact_too=True,
                ftol=self.ftol,
            )  # fmt: skip
        return result

    def _drawn_starts(self, problem, inputs):
        how = replace(self.settings, init_params="kmeans")
        if self.settings.init_params != "peaks":
            how = self.settings
        starts = []
        for i in range(len(inputs.Y)):
            state = self.random_state
            if isinstance(state, list):
                state = state[i]
            starts.append(data_driven_start(row_problem(problem, inputs, i), how, state))
        return best_scales(problem, inputs, np.vstack(starts), np.arange(len(inputs.Y)))

    def exact_start(self, rows, largest):
        """The smallest K the search must score for each of ``rows``: the count of the
        density's clear peaks (at most ``largest``) when a fit from the data alone with
        that many components is exact (then no smaller K fits exactly, and only an
        exact fit would win), else 1. Tried only when the noise estimate allows an
        exact fit (``EXACT_TRIAL_NOISE_LOSS``)."""
        rows = np.atleast_1d(np.asarray(rows, dtype=int))
        first = np.minimum(self.first[rows], largest)
        result = np.ones(len(rows), dtype=int)
        if self.noise_loss is None:
            return result
        may = (
            (self.fitted[rows] == 0)
            & (first >= 2)
            & (self.noise_loss[rows] <= EXACT_TRIAL_NOISE_LOSS)
        )
        for k in np.unique(first[may]):
            k = int(k)
            chosen = rows[may & (first == k)]
            problem = self.problem_of(k)
            fitted = self._path_fit(problem, self.inputs(k, chosen), None)
            exact = np.isfinite(fitted.loss) & (fitted.loss <= EXACT_CV_LOSS)
            if exact.any():
                self._store(chosen[exact], k, fitted.theta[exact], fitted.loss[exact])
                result[np.isin(rows, chosen[exact])] = k
        return result

    def improve(self, rows, n_components):
        """Re-place the weakest component of the fits of ``rows`` with ``n_components``
        where that lowers their loss (a poor local optimum: two components on one peak
        while another covers two), and start again from the fit with one more component
        less its weakest one; True for each row that improved. Not with a background."""
        rows = np.atleast_1d(np.asarray(rows, dtype=int))
        improved = np.zeros(len(rows), dtype=bool)
        if n_components < 2 or self.problem.data.background is not None:
            return improved
        losses = self.losses[n_components][rows]
        eligible = np.isfinite(losses) & (losses > EXACT_CV_LOSS)
        if not eligible.any():
            return improved
        chosen = rows[eligible]
        problem = self.problem_of(n_components)
        inputs = self.inputs(n_components, chosen)
        everyone = np.arange(len(chosen))
        theta = self.fits[n_components][chosen]
        current = RowResults(
            theta.copy(),
            losses[eligible].copy(),
            np.zeros(len(chosen), dtype=int),
            np.zeros(len(chosen), dtype=int),
        )
        index = weakest_rows(problem, inputs, theta, everyone)
        moved = moved_rows(problem, inputs, current, everyone, index, self.settings, ftol=self.ftol)
        better = np.zeros(len(chosen), dtype=bool)
        better[moved] = True
        bigger = n_components + 1
        if bigger in self.fits:
            # the fit with one more component, its weakest removed: the path grew past
            # the optimum that this start comes down to
            above = np.flatnonzero(np.isfinite(self.losses[bigger][chosen]))
            if above.size:
                big_problem, big_inputs = self.problem_of(bigger), self.inputs(bigger, chosen)
                big_theta = self.fits[bigger][chosen[above]]
                drop = weakest_rows(big_problem, big_inputs, big_theta, above)
                pruned = minimize_rows(
                    inputs,
                    rows_without(
                        big_problem.layout, big_theta, drop, inputs.fixed_log_scale[above]
                    ),
                    tol=self.settings.tol,
                    max_iter=self.settings.max_iter,
                    ftol=self.ftol,
                    density=above,
                )
                lower = pruned.loss < (1 - MIN_MOVE_GAIN) * current.loss[above]
                take = above[lower]
                current.theta[take] = pruned.theta[lower]
                current.loss[take] = pruned.loss[lower]
                better[take] = True
        if better.any():
            done = np.flatnonzero(better)
            self._store(chosen[done], n_components, current.theta[done], current.loss[done])
            improved[np.flatnonzero(eligible)[done]] = True
        return improved

    # -- the held-out search's tests --------------------------------------------
    def leaves_noise(self, row, n_components):
        """Whether the path's fit of density ``row`` with ``n_components`` (if any)
        leaves only white noise (:func:`~.rules.leaves_noise`). Never with sample
        weights or bins (the noise estimate weighs every point alike)."""
        if self.noise_loss is None or not self.noise_tests:
            return False
        loss = self.losses.get(n_components, np.full(self.n_densities, np.inf))[row]
        if not np.isfinite(loss):
            return False
        n_points = self.problem.n_points
        if not residual_is_noise_level(loss, self.noise_loss[row], n_points):
            return False  # the mean square already speaks
        if (row, n_components) not in self.bumps:
            residual = self.targets[row] - self.models(row, n_components)[0] / self.units[row]
            self.bumps[row, n_components] = largest_bump(self.X, residual, self.noise[row])
        bump = self.bumps[row, n_components]
        return bool(leaves_noise(loss, self.noise_loss[row], bump, n_points))

    def underfits(self, row, n_components):
        """Whether the fit of density ``row`` with ``n_components`` leaves far more than
        the noise unexplained: its residual many times the variance of white noise
        estimated from the density's second differences (a noise-free comb of many
        peaks is not done however flat the held-out scores were over the first few
        candidates)."""
        if self.noise_loss is None:
            return False
        loss = self.losses[n_components][row]
        return bool(loss > UNDERFIT * max(self.noise_loss[row], 1e-300))


class Path:
    """:class:`Paths` of one density, for :class:`~.cv.DensityGMMCV`'s held-out search:
    ``fit(K)`` gives ``(theta, problem)`` of the fit with ``K`` components (None when
    no start had a finite loss)."""

    def __init__(self, base, X, y, weights, random_state, **options):
        self.paths = Paths(base, X, np.asarray(y)[None], weights, random_state, **options)
        self.problem = self.paths.problem

    @property
    def losses(self):
        return {k: float(v[0]) for k, v in self.paths.losses.items()}

    @property
    def fits(self):
        return {k: (None if np.isnan(v[0]).any() else v[0]) for k, v in self.paths.fits.items()}

    def exact_start(self, largest):
        return int(self.paths.exact_start([0], largest)[0])

    def fit(self, n_components):
        self.paths.fit([0], n_components)
        theta = self.paths.fits[n_components][0]
        if np.isnan(theta).any():
            return None
        return theta, self.paths.problem_of(n_components)

    def leaves_noise(self, n_components):
        return self.paths.leaves_noise(0, n_components)

    def underfits(self, n_components):
        return self.paths.underfits(0, n_components)


@dataclass
class CriterionChoice:
    """The outcome of :func:`criterion_steps`."""

    index: int  # the chosen candidate's index
    values: np.ndarray  # the criterion of each candidate (NaN: not evaluated, inf: no fit)
    noise: object  # the NoiseModel the values were computed under
    grid: object  # its Grid
    exact: bool = False  # the choice fits the density exactly
    models: dict = field(default_factory=dict)  # K -> the path's model of y
    nothing: float = np.inf  # the criterion of no component (the background alone, or 0)


def paths_for_criterion(base, X, Y, weights, random_state, loss, counts=None):
    """The :class:`Paths` a criterion walks: fits to a fraction ``CRITERION_FTOL / n``
    of their loss, with the loss the noise model's likelihood calls for (``base``'s
    other settings). ``counts``: each density's total counts under Poisson noise, whose
    loss at the noise level, ``n / (2 counts)`` (half the deviance over the mass), the
    fits' gradient test is scaled to where it is small (a high continuum)."""
    n_points = np.shape(Y)[-1]
    tol = CV_TOL
    if counts is not None:  # each density's own (another's counts do not move its fits)
        counts = np.asarray(counts, dtype=float)
        with np.errstate(divide="ignore"):
            noise_level = CRITERION_FTOL * n_points / (2.0 * counts)
        tol = np.where(counts > 0, np.minimum(CV_TOL, noise_level), CV_TOL)
    return Paths(
        base,
        X,
        Y,
        weights,
        random_state,
        noise_tests=False,
        ftol=min(CV_FTOL, CRITERION_FTOL / n_points),
        max_iter=CRITERION_MAX_ITER,
        split=PATH_SPLIT,
        loss=loss,
        tol=tol,
    )


def criterion_steps(
    paths, row, candidates, y, noise_model, grid, *, criterion, patience, requested, observed
):
    """Score the path of density ``row`` at ``candidates`` by ``criterion`` ('bic' or
    'aic'): a generator that asks :func:`run_searches` for the path's fits
    (``('fit', K)``, ``('exact', largest)``, ``('improve', K)``, ``('noise', (row, K,
    observed points, refined_noise's arguments but the leverages))``: many densities' at
    once)
    and returns a :class:`CriterionChoice`.

    The path is walked upwards until the lowest criterion is ``patience``
    candidates behind (``patience`` 0: every candidate), or a fit is exact
    (then a smaller candidate wins only with a lower criterion still: a fit
    exact within the noise; and an exact fit with a component too many has the
    candidate before it improved from it, the walk ending there if that becomes
    exact). Otherwise the noise model is refined from the
    residual of the best fit (:func:`~.noise.refined_noise`, ``requested``
    the user's ``noise``); heteroscedastic and white noise are checked against
    each other on the fits beside the best (a missed shoulder read as variance
    growing with the signal; a spike at the width floor on a narrow line's
    loud points read as a component), and the fit at the candidate after the best is
    improved by moves (:meth:`Paths.improve`: a poor local optimum there would
    decide the choice), the criterion recomputed and the walk continued
    while the best moves.
    """
    values = np.full(len(candidates), np.nan)
    models = {}
    penalty = 0.0
    scored = {}  # the models' -2 log L under ``scored_under``, by K
    scored_under = noise_model

    def score():
        nonlocal scored_under
        if scored_under is not noise_model:
            scored.clear()
            scored_under = noise_model
        known = [i for i in range(len(candidates)) if int(candidates[i]) in models]
        new = [i for i in known if int(candidates[i]) not in scored]
        if new:
            stacked = np.vstack([models[int(candidates[i])] for i in new])
            minus_two = noise_model.minus_two_log_likelihood(grid, y, stacked)
            for i, value in zip(new, minus_two, strict=True):
                scored[int(candidates[i])] = value
        for i in known:
            k = int(candidates[i])
            values[i] = scored[k] + penalty * paths.n_parameters(k)

    def set_model(k):
        models[k] = paths.models(row, k)[0][observed]
        scored.pop(k, None)

    def best_index():
        evaluated = np.where(np.isnan(values), np.inf, values)
        return int(np.argmin(evaluated)) if np.isfinite(evaluated).any() else None

    def best_under(model):
        """The fitted candidate K with the lowest criterion under the noise ``model``."""
        known = [int(k) for k in candidates if int(k) in models]
        known = [k for k in known if np.isfinite(paths.losses[k][row])]
        chi2 = model.minus_two_log_likelihood(grid, y, np.vstack([models[k] for k in known]))
        criterion = chi2 + penalty * np.array([paths.n_parameters(k) for k in known])
        return known[int(np.argmin(criterion))]

    def white_is_likelier(white, heteroscedastic):
        """Whether white noise at its best K has a lower BIC than heteroscedastic noise at
        its best K, each with its variance estimated from that fit's residual by maximum
        likelihood (:func:`~.noise.variance_profile`; the noise's parameters penalised too)."""
        n = len(y)
        k = best_under(white)
        variance = max(float(np.mean((y - models[k]) ** 2)), TINY)
        white_bic = n * np.log(variance) + n + penalty * (paths.n_parameters(k) + 1)
        k = best_under(heteroscedastic)
        residual = y - models[k]
        profile, n_noise = variance_profile(residual, models[k])
        bic = np.sum(residual**2 / profile + np.log(profile))
        return white_bic < bic + penalty * (paths.n_parameters(k) + n_noise)

    def walk(start):
        """Evaluate candidates from ``start`` until settled; ``(next index, exact index)``."""
        index = start
        while index < len(candidates):
            k = int(candidates[index])
            loss = np.inf
            if k <= len(y):
                yield ("fit", k)
                loss = paths.losses[k][row]
            if not np.isfinite(loss):
                values[index] = np.inf
            else:
                set_model(k)
                score()
                if loss <= EXACT_CV_LOSS:
                    return index + 1, index  # no larger K can fit better
            index += 1
            best = best_index()
            if patience and best is not None and index - 1 - best >= patience:
                break
        return index, None

    penalty = np.log(max(noise_model.n_observations, 2.0)) if criterion == "bic" else 2.0
    first = 1
    if noise_model.kind != "poisson":
        first = yield ("exact", int(candidates[-1]))
    start = int(np.searchsorted(candidates, first))
    next_index, exact = yield from walk(start)
    # an exact fit with a component too many (a faint line's fit above a poor optimum of
    # the path's) makes the candidate before it exact too: improve that one from it
    # (Paths.improve's pruned start), and so on down while each becomes exact; the walk
    # would have stopped there, so the candidates above are not evaluated
    while exact is not None and exact > start:
        k = int(candidates[exact - 1])
        if not paths.surplus(row, int(candidates[exact])):
            break
        if k not in models or not (yield ("improve", k)):
            break
        set_model(k)
        score()
        if not paths.losses[k][row] <= EXACT_CV_LOSS:
            break
        exact -= 1
        values[exact + 1 :] = np.nan
    if exact is None and best_index() is not None:
        # the noise model from the best fit's residual, until the best stays put (a
        # correlated noise read as white over-fits, and the over-fit's residual
        # understates the correlation)
        initial = noise_model
        for _ in range(MAX_NOISE_ROUNDS):
            best = best_index()
            fitted = models[int(candidates[best])]
            k = int(candidates[best])
            arguments = (initial, grid, y, y - fitted, requested, paths.n_parameters(k), fitted)
            noise_model = yield ("noise", (row, k, observed, arguments))
            score()
            if best_index() == best:
                break
        if noise_model.kind == "heteroscedastic":  # found only under noise='auto'
            # a component the best fit misses (a shoulder on a narrow line) leaves a residual
            # where the signal is, read as variance growing with it: white noise instead when
            # the fit with one component more leaves none, neither it nor white noise's best
            # has a component narrower than a grid step, and white noise is likelier
            i = best_index() + 1
            k = int(candidates[i]) if i < len(candidates) else None
            if k is not None and k in models and np.isfinite(values[i]):
                fitted = models[k]
                arguments = (initial, grid, y, y - fitted, requested, paths.n_parameters(k), fitted)
                larger = yield ("noise", (row, k, observed, arguments))
                if (
                    larger.kind == "white"
                    and paths.resolved(row, k, grid)
                    and paths.resolved(row, best_under(larger), grid)
                    and white_is_likelier(larger, noise_model)
                ):
                    noise_model = larger
                    score()
        elif noise_model.kind == "white" and initial.kind == "heteroscedastic":
            # the mirror case: the data's differences said the noise grows with the signal, the
            # refinement said white, and the best fit has a component at the width floor that
            # the fit with one fewer has not, where that fit is loud (above HIGH_LEVEL of its
            # peak: a spike on a line's loud points; a spike beside a line is a line)
            i = best_index() - 1
            k = int(candidates[i]) if i >= 0 else None
            if k is not None and k in models and np.isfinite(values[i]):
                spikes = paths.at_width_floor(row, int(candidates[i + 1]))
                if len(spikes) and not len(paths.at_width_floor(row, k)):
                    points = paths.X[observed]
                    nearest = np.argmin(
                        np.sum((points[None] - spikes[:, None]) ** 2, axis=-1), axis=1
                    )
                    if np.all(models[k][nearest] >= HIGH_LEVEL * np.max(models[k])):
                        noise_model = initial
                        score()
        tried = set()
        for _ in range(len(candidates)):
            best = best_index()
            changed = False
            i = best + 1  # improving the best itself cannot move the choice
            k = int(candidates[i]) if i < len(candidates) else None
            if k is not None and k not in tried and k in models:
                tried.add(k)
                # a move gains less than one component's penalty (on the benchmarks'
                # 913 cases and the real spectra): a larger lead is not worth the work
                per_component = paths.n_parameters(k) - paths.n_parameters(int(candidates[best]))
                if values[i] - values[best] < penalty * per_component:
                    if (yield ("improve", k)):
                        set_model(k)
                        changed = True
            # the candidate before the best, once: a fit the path's growth left in a poor
            # optimum there makes the best one component too many
            i = best - 1
            k = int(candidates[i]) if i >= 0 else None
            if k is not None and k not in tried and k in models and np.isfinite(values[i]):
                tried.add(k)
                if (yield ("improve", k)):
                    set_model(k)
                    changed = True
            if changed:
                score()
            best = best_index()
            if patience and next_index < len(candidates) and next_index - 1 - best < patience:
                next_index, exact = yield from walk(next_index)
                changed = True
            if exact is not None or not changed:
                break
    best = best_index()
    if best is None:
        raise ValueError(
            "No candidate number of components could be fitted. Use fewer components, or "
            "check the density."
        )
    nothing = np.inf
    if best != exact:
        alone = background_alone(paths.problem.data.background, y, observed)
        n_background = paths.n_parameters(1) - paths.problem_of(1).layout.n_parameters
        nothing = noise_model.minus_two_log_likelihood(grid, y, alone[None])[0]
        nothing += penalty * n_background
    return CriterionChoice(best, values, noise_model, grid, best == exact, models, nothing)


def background_alone(background, y, observed):
    """The model of ``y`` (the values at the points ``observed``) with no component: the
    least-squares fit of the ``background`` (:func:`~.rows.background_fits`), or 0."""
    if background is None:
        return np.zeros_like(y)
    basis = background.basis[observed]
    return background_fits(y[None], np.ones((1, len(y))), basis, background.exponential)[0]


def run_searches(paths, searches):
    """Run the generators ``searches`` (one per density of ``paths``, or None for a
    density not searched; see :func:`criterion_steps`) together: every round, the
    fits they ask for are made for all of them at once. Returns their results, or the
    exception a search raised, in order."""
    results = [None] * len(searches)
    requests = {}

    def advance(i, answer):
        try:
            requests[i] = searches[i].send(answer)
        except StopIteration as stop:
            results[i] = stop.value
            requests.pop(i, None)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as error:
            results[i] = error
            requests.pop(i, None)

    for i, search in enumerate(searches):
        if search is not None:
            advance(i, None)
    while requests:
        fits = {i: k for i, (kind, k) in requests.items() if kind == "fit"}
        if fits:
            rows = np.fromiter(fits, dtype=int)
            ks = np.fromiter(fits.values(), dtype=int)
            paths.fit(rows, ks)
            _prefetch_models(paths, rows, ks)
            for i in rows:
                advance(int(i), None)
            continue
        noise = {i: request for i, (kind, request) in requests.items() if kind == "noise"}
        if noise:
            # the leverages of the fits the noise is refined from, a K's rows together
            arguments = {}
            for k in {request[1] for request in noise.values()}:
                asking = [i for i, request in noise.items() if request[1] == k]
                rows = [noise[i][0] for i in asking]
                for i, leverage in zip(asking, paths.leverages(rows, k), strict=True):
                    _, _, observed, known = noise[i]
                    arguments[i] = (*known, leverage[observed])
            order = list(noise)
            models = refined_noises([arguments[i] for i in order])
            for i, model in zip(order, models, strict=True):
                advance(i, model)
            continue
        kind, k = next(iter(requests.values()))
        rows = np.array([i for i, request in requests.items() if request == (kind, k)])
        answers = paths.exact_start(rows, k) if kind == "exact" else paths.improve(rows, k)
        if kind == "improve":
            _prefetch_models(paths, rows[answers], np.full(int(answers.sum()), k))
        for i, answer in zip(rows, answers, strict=True):
            advance(int(i), answer.item())
    return results


def _prefetch_models(paths, rows, ks):
    """The models of the finite fits of densities ``rows`` with ``ks`` components (one
    per row), evaluated a K at a time for the searches to read."""
    for k in np.unique(ks):
        at = rows[ks == k]
        if k in paths.losses:
            at = at[np.isfinite(paths.losses[k][at])]
            if at.size:
                paths.models(at, int(k))


def largest_residual_bumps(choices, Y, models):
    """The largest Gaussian bump (an excess, not a dip) of each residual ``Y[r] -
    models[r]`` under the choice ``choices[r]``'s noise model: ``(score, coordinates,
    width)``, the score its matched filter's squared signal-to-noise (whitened
    residual), the width in grid steps; None on scattered points or under Poisson
    noise. Rows on the same grid are filtered together, a width at a time."""
    bumps = [None] * len(choices)
    groups = {}
    for r, choice in enumerate(choices):  # each row's whitened residual (no filtering)
        noise, grid = choice.noise, choice.grid
        if noise.kind == "poisson" or grid.axes is None:
            continue
        residual = (np.asarray(Y[r]) - np.asarray(models[r])) / noise.sd
        if noise.kind == "correlated":
            residual = noise.whiten(grid, residual)[0]
        key = (grid.shape, grid.order.tobytes(), *(np.asarray(x).tobytes() for x in grid.axes))
        groups.setdefault(key, (grid, [], []))
        groups[key][1].append(r)
        groups[key][2].append(residual)
    for grid, rows, residuals in groups.values():
        values = grid.as_array(np.array(residuals))  # (B, *shape)
        shape = values.shape[1:]
        best = np.zeros(len(rows))
        best_at = np.full(len(rows), -1)
        best_width = np.zeros(len(rows))
        for width in BUMP_WIDTHS:
            if width > max(1.0, max(shape) / 4.0):
                break
            smoothed = gaussian_filter(values, (0,) + (width,) * len(shape), mode="constant")
            impulse = np.zeros(2 * int(4.0 * width + 0.5) + 1)
            impulse[len(impulse) // 2] = 1.0
            kernel_norm = np.sum(gaussian_filter1d(impulse, width, mode="constant") ** 2)
            # a line left out is an excess: a dip is no component a larger K could add
            scores = np.maximum(smoothed, 0.0).reshape(len(rows), -1) ** 2
            scores = scores / kernel_norm ** len(shape)
            at = np.argmax(scores, axis=1)
            score = scores[np.arange(len(rows)), at]
            better = score > best
            best[better], best_at[better], best_width[better] = score[better], at[better], width
        for j, r in enumerate(rows):
            if best_at[j] >= 0:
                index = np.unravel_index(int(best_at[j]), shape)
                coordinates = tuple(
                    float(axis[i]) for axis, i in zip(grid.axes, index, strict=True)
                )
                bumps[r] = (float(best[j]), coordinates, float(best_width[j]))
    return bumps


__all__ = [
    "CriterionChoice",
    "Path",
    "Paths",
    "criterion_steps",
    "initial_noise",
    "largest_residual_bumps",
    "paths_for_criterion",
    "run_searches",
]
