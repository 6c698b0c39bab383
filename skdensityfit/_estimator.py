"""The :class:`DensityGMM` estimator."""

import time
import warnings
from dataclasses import replace
from functools import partial
from numbers import Integral, Real

import numpy as np
from scipy.special import gammaln, xlogy
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._analytic_gradient import component_mass_shares, value_and_gradient
from ._initialization import (
    INIT_METHODS,
    MAX_INIT_POINTS,
    best_scale_within_bounds,
    greedy_path,
    initial_parameters,
    parked_components,
    random_subset,
    replace_components,
    subset_data,
    user_parameters,
    weakest_component,
)
from ._mixture_math import (
    COVARIANCE_TYPES,
    LOSSES,
    FitData,
    ParameterLayout,
    pack,
    quadratic_features,
    unpack,
)
from ._optimization import FTOL_MESSAGE, NO_GAIN, hessian_by_differences, minimize_objective
from ._validation import (
    check_density_values,
    check_grid,
    check_grid_density,
    check_sample_weight,
    quadrature_weights,
    standardisation,
)

_PREDICT_BATCH_SIZE = 65536
# Grids larger than this are first fitted on a random subset of this many
# points (or of a quarter of the grid, if fewer).
_MAX_PREFIT_POINTS = 50_000
# Fits that only need to be close (the greedy start's steps, moves of components): the
# final fit polishes.
_GREEDY_TOL = 1e-5
_GREEDY_MAX_ITER = 30
_GREEDY_FTOL = 1e-4
# A relative L2 error of 1e-6: no other start could change the fitted density by more.
_EXACT_FIT_LOSS = 1e-12
# Runs from several starts stop once a step lowers the loss by less than this
# fraction, enough to rank them; the best is then polished to tol. (A fit of
# noise converges linearly, so its last digits take many iterations.)
_RUN_FTOL = 1e-6
# Runs whose losses differ by less than this fraction ended in the same optimum.
_RUNS_AGREE = 1e-5


class DensityGMM(RegressorMixin, BaseEstimator):
    """Gaussian mixture fitted to a density known on a grid.

    Given the values ``y`` of a density (a tabulated pdf, a histogram, a
    spectrum, an image, in any units) at grid points ``X``, find the weights,
    means and covariances of the Gaussian mixture whose scaled density
    ``scale_ * sum_k weights_[k] * N(x; means_[k], covariances_[k])`` is
    closest to it. Unlike :class:`sklearn.mixture.GaussianMixture`, which
    needs samples, this fits the curve itself.

    The fit minimises a loss over the grid by Levenberg-Marquardt steps on
    the exact Gauss-Newton matrix of the loss (L-BFGS-B takes over in the
    rare case it stalls), from starts computed from the density
    (density-weighted k-means and EM on the grid, and a greedy start grown
    one component at a time), keeping the best of ``n_init`` restarts; an
    exact fit (relative loss at most 1e-12; for 'l2', a relative L2 error of
    1e-6) ends the restarts early.
    Weights are a softmax of free logits, covariances use a log-Cholesky
    factor of the precision, and the total mass ``scale_`` is fitted
    through its logarithm. The grid is
    standardised internally, so its units and offset do not matter.

    Methods take ``(X, y)`` as scikit-learn requires: ``X`` is the grid and
    ``y`` the density on it.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components. :class:`DensityGMMCV` chooses it by
        cross-validation.

    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        The covariance structure, as in
        :class:`sklearn.mixture.GaussianMixture`.

    loss : {'l2', 'poisson'}, default='l2'
        The discrepancy minimised between the density ``y`` and the model
        ``f``, weighted by the quadrature weights ``q`` of the grid:

        - 'l2': ``sum q (y - f)^2``, the squared L2 distance between the
          curves. Accepts negative values (noise, subtracted background).
        - 'poisson': ``sum q (y log(y / f) - y + f)``, the generalised
          Kullback-Leibler divergence (half the Poisson deviance). It is what
          density-weighted EM maximises, and the maximum-likelihood loss for a
          histogram of counts. Needs ``y >= 0``.

    tol : float, default=1e-8
        Convergence threshold on the largest projected gradient component of
        the loss, which is normalised to be of order one (see ``loss_``).

    reg_covar : float, default=1e-6
        Added to the diagonal of the covariances of the initial EM steps, in
        units of the standardised grid (grid standard deviation = 1); at
        least the square of the width floor (half the typical grid spacing).

    max_iter : int, default=500
        Maximum number of optimiser iterations of each run.

    n_init : int, default=2
        Number of starts; the fit with the lowest loss is kept. Runs stop
        early once one reaches a relative loss of 1e-12 (for 'l2', a
        relative L2 error of 1e-6: no other start could change it by more),
        and with one component or all ``*_init`` given a single run is made
        (every start would be the same). The second start (for
        ``n_components > 1`` without user-given initial values)
        is greedy: it fits 1, 2, ... components, each from the previous fit
        plus a component at the largest residual, which finds overlapping
        components that clustering the grid points merges. The others use
        ``init_params``.

    init_params : {'kmeans', 'k-means++', 'random_from_data', 'random'}, \
            default='kmeans'
        How grid points are assigned to components at the start, weighting
        each point by its mass (density times cell size): density-weighted
        k-means, k-means++ seeding, centres drawn in proportion to the mass,
        or random responsibilities. A few density-weighted EM steps follow.

    weights_init : array-like of shape (n_components,), default=None
        User-provided initial weights. Overrides ``init_params``.

    means_init : array-like of shape (n_components, n_features), default=None
        User-provided initial means, in grid units.

    precisions_init : array-like, default=None
        User-provided initial precisions (inverse covariances), shaped as
        ``precisions_`` for the ``covariance_type``.

    scale : float, default=None
        The total mass of the density (its integral over the whole space).
        None fits it; a number fixes it, e.g. ``scale=1`` for a normalised pdf.

    random_state : int, RandomState instance or None, default=None
        Controls the initialisations. Pass an int for reproducible fits.

    warm_start : bool, default=False
        If True and already fitted, start from the previous solution (and
        make one run, ignoring ``n_init``).

    verbose : int, default=0
        Print one line per run when positive.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixture weights, on the simplex.

    means_ : ndarray of shape (n_components, n_features)
        Component means in grid units.

    covariances_ : ndarray
        Component covariances, shaped as in
        :class:`~sklearn.mixture.GaussianMixture`: (n_components, n_features,
        n_features) for 'full', (n_features, n_features) for 'tied',
        (n_components, n_features) for 'diag', (n_components,) for 'spherical'.

    precisions_ : ndarray
        Inverses of the covariances, same shape.

    precisions_cholesky_ : ndarray
        Upper-triangular Cholesky factors of the precisions
        (``precisions_ = U @ U.T``), same shape.

    scale_ : float
        Total mass: the fitted density is ``scale_`` times the mixture pdf.

    loss_ : float
        The final loss, normalised to be scale-free: for 'l2' the relative
        squared error ``sum q (y - f)^2 / sum q y^2``; for 'poisson' the
        divergence divided by the mass ``sum q y``. 0 is a perfect fit.

    n_iter_ : int
        Optimiser iterations of the best run, with those of its final polish
        and of the moves that re-placed components (parked ones, or the
        weakest one), if they happened.

    converged_ : bool
        Whether the best run, polished, met ``tol`` (or stopped gaining any
        digit of the loss) within ``max_iter``.

    n_features_in_ : int
        Number of grid dimensions seen during fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the grid columns, when ``X`` has string column names.

    See Also
    --------
    DensityGMMCV : Chooses ``n_components`` by cross-validation.
    sklearn.mixture.GaussianMixture : Fits a mixture to samples.

    Examples
    --------
    The write-up's problem: two Gaussians at 15 and 20 (sd 1, weights 0.8 and
    0.2) tabulated at 75 points.

    >>> import numpy as np
    >>> from scipy.stats import norm
    >>> from skdensityfit import DensityGMM
    >>> grid = np.arange(0, 25, 25 / 75)
    >>> density = 0.8 * norm.pdf(grid, 15, 1) + 0.2 * norm.pdf(grid, 20, 1)
    >>> gmm = DensityGMM(n_components=2, random_state=0).fit(grid, density)
    >>> gmm.means_.ravel().round(6)
    array([15., 20.])
    >>> np.sqrt(gmm.covariances_.ravel()).round(6)
    array([1., 1.])
    >>> gmm.weights_.round(6)
    array([0.8, 0.2])
    >>> round(gmm.score(grid, density), 6)
    1.0
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(COVARIANCE_TYPES))],
        "loss": [StrOptions(set(LOSSES))],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions(set(INIT_METHODS))],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "scale": [Interval(Real, 0.0, None, closed="neither"), None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        loss="l2",
        tol=1e-8,
        reg_covar=1e-6,
        max_iter=500,
        n_init=2,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        scale=None,
        random_state=None,
        warm_start=False,
        verbose=0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.loss = loss
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.scale = scale
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A density model is no general-purpose regressor: the common checks'
        # regression data sets are not densities, so their score is poor.
        tags.regressor_tags.poor_score = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    # ------------------------------------------------------------------
    # fitting
    # ------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the mixture to the density ``y`` on the grid ``X``.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            The grid: any order, any spacing, regular or scattered.

        y : array-like of shape (n_points,)
            The density at the grid points, in any units.

        sample_weight : array-like of shape (n_points,), default=None
            Quadrature weights of the points. None uses the cell sizes of the
            grid (equal weights on a uniform grid, so a non-uniform grid does
            not bias the fit; equal weights for scattered N-D points).

        Returns
        -------
        self : DensityGMM
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight)

    def _fit(self, X, y, sample_weight, start=None):
        """:meth:`fit`, or with ``start`` (a parameter vector in the fit's
        coordinates, e.g. from :class:`DensityGMMCV`'s path) one run from it."""
        warm = self.warm_start and self._fitted_like_current_settings()
        X, y = check_grid_density(self, X, y, reset=not warm)
        check_density_values(y, self.loss)
        n_points = len(y)
        if n_points < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {n_points}. "
                "Use fewer components or a finer grid."
            )
        _warn_if_density_is_cut_at_the_edge(X, y)
        grid, data, center, spread, log_unit = self._problem(X, y, sample_weight)
        layout = data.layout
        n_parameters = layout.n_parameters
        if n_points < n_parameters:
            warnings.warn(
                f"The grid has {n_points} points for {n_parameters} free parameters, so "
                "the fit is not determined by the data. Use fewer components, a simpler "
                "covariance_type, or a finer grid.",
                UserWarning,
                stacklevel=4,
            )
        width_limits = _width_limits(grid)
        bounds = _parameter_bounds(grid, layout, width_limits)
        random_state = check_random_state(self.random_state)

        best = None
        run_losses = []
        given = warm or start is not None
        n_runs = 1 if given or self._starts_are_all_alike() else self.n_init
        parked = partial(parked_components, min_share=NEGLIGIBLE_WEIGHT, min_width=width_limits[0])
        # several runs are compared once a step gains little; only the best is polished
        run_ftol = _RUN_FTOL if n_runs > 1 else NO_GAIN
        for run in range(n_runs):
            start_time = time.perf_counter()
            if start is not None:
                theta0 = np.clip(start, bounds[:, 0], bounds[:, 1])
            elif warm:
                theta0 = self._standardised_parameters(layout, center, spread, log_unit)
            else:
                starts = dict(
                    weights_init=self.weights_init,
                    means_init=self.means_init,
                    precisions_init=self.precisions_init,
                )
                theta0 = None
                if run == 1 and self._uses_data_driven_starts():
                    theta0 = self._greedy_start(grid, data, random_state, width_limits)
                if theta0 is None:
                    theta0 = self._initial_parameters(
                        grid, data, center, spread, random_state, width_limits[0], **starts
                    )
            if len(y) > _MAX_PREFIT_POINTS and start is None:
                theta0 = self._prefit_on_subset(theta0, data, bounds, random_state, scale=not warm)
            elif not given:
                theta0 = best_scale_within_bounds(theta0, data, bounds)
            result = minimize_objective(
                theta0, data, bounds, tol=self.tol, max_iter=self.max_iter, ftol=run_ftol
            )
            if not given:
                result = self._revive(result, grid, data, bounds, random_state, parked)
            if self.verbose:
                print(
                    f"DensityGMM run {run + 1}/{n_runs}: loss {result.loss:.6g}, "
                    f"{result.n_iter} iterations, converged={result.converged} "
                    f"({result.message}), "
                    f"{time.perf_counter() - start_time:.3f} s"
                )
            run_losses.append(result.loss)
            if np.isfinite(result.loss) and (best is None or result.loss < best.loss):
                best = result
            if best is not None and best.converged and best.loss <= _EXACT_FIT_LOSS:
                break  # no start can do better than an exact fit
        if best is None:
            raise ValueError(
                "The loss was not finite at any start, so no mixture could be fitted. "
                "Check the density for extreme values, or pass means_init."
            )
        disagree = len(run_losses) > 1 and max(run_losses) > (1 + _RUNS_AGREE) * best.loss
        if disagree and best.loss > _EXACT_FIT_LOSS:
            # Starts that end in different optima: the best may still be one where
            # two components share a peak and one covers two.
            best = self._revive(best, grid, data, bounds, random_state, weakest_component)
        if best.message == FTOL_MESSAGE and run_ftol > NO_GAIN:
            polished = minimize_objective(
                best.theta, data, bounds, tol=self.tol, max_iter=self.max_iter
            )
            if polished.loss <= best.loss:
                polished.n_iter += best.n_iter
                best = polished
        if not best.converged:
            warnings.warn(
                f"DensityGMM did not converge in {n_runs} run(s) (best loss "
                f"{best.loss:.3g} after {best.n_iter} iterations). Increase max_iter, "
                "n_init or tol, or check the number of components.",
                ConvergenceWarning,
                stacklevel=4,
            )
        self._set_fitted_parameters(best, data, center, spread, log_unit)
        share = component_mass_shares(best.theta, data)[self._component_order]
        _warn_if_components_are_redundant(self, share)
        return self

    def _problem(self, X, y, sample_weight):
        """The fit in standardised coordinates: ``(grid, data, center, spread, log_unit)``."""
        if sample_weight is None:
            quad = quadrature_weights(X)
        else:
            quad = check_sample_weight(sample_weight, len(y))
            quad = quad / quad.sum()
        center, spread = standardisation(X, self.covariance_type)
        grid = (X - center) / spread
        density_unit = np.max(np.abs(y))
        log_unit = np.log(density_unit) + np.sum(np.log(spread))
        layout = ParameterLayout(
            self.n_components, X.shape[1], self.covariance_type, self.scale is None
        )
        fixed_log_scale = 0.0 if self.scale is None else np.log(self.scale) - log_unit
        data = FitData(
            features=quadratic_features(grid, self.covariance_type),
            target=y / density_unit,
            weights=quad,
            layout=layout,
            loss=self.loss,
            fixed_log_scale=fixed_log_scale,
        )
        return grid, data, center, spread, log_unit

    def _short_fit(self, theta0, data, bounds):
        """A fit that only needs to be close (moves and the greedy start's steps).

        It starts from ``theta0`` with its best scale; the final fit polishes.
        """
        theta0 = best_scale_within_bounds(theta0, data, bounds)
        return minimize_objective(
            theta0,
            data,
            bounds,
            tol=max(self.tol, _GREEDY_TOL),
            max_iter=min(self.max_iter, _GREEDY_MAX_ITER),
            ftol=_GREEDY_FTOL,
        )

    def _revive(self, result, grid, data, bounds, random_state, choose):
        """Re-place the components ``choose`` names (see ``replace_components``).

        The re-placed starts are compared after a short run (on a subset of a
        large grid); a winner is then polished on every point and kept if its
        loss is lower.
        """
        if not np.isfinite(result.loss) or self.n_components < 2:
            return result
        if len(choose(result.theta, data, grid)) == 0:
            return result
        search, search_grid = data, grid
        if len(data.target) > _MAX_PREFIT_POINTS:
            subset = random_subset(
                len(data.target), _prefit_size(len(data.target)), data.target, random_state
            )
            search = subset_data(data, subset)
            search_grid = grid[subset]

        def solve(theta0):
            return self._short_fit(theta0, search, bounds)

        current = replace(result, loss=value_and_gradient(result.theta, search)[0], n_iter=0)
        revived = replace_components(current, search_grid, search, solve, choose)
        if revived is current:
            return result
        polished = minimize_objective(
            revived.theta, data, bounds, tol=self.tol, max_iter=self.max_iter
        )
        if not polished.loss < result.loss:
            return result
        polished.n_iter += result.n_iter + revived.n_iter
        return polished

    def _prefit_on_subset(self, theta0, data, bounds, random_state, scale):
        """Converge on a random subset first, so the full grid needs few iterations.

        With ``scale``, the start first gets the best total scale for its shape
        (on the subset: the scale needs no more points than the fit).
        """
        size = _prefit_size(len(data.target))
        subset = random_subset(len(data.target), size, data.target, random_state)
        sub = subset_data(data, subset)
        if scale:
            theta0 = best_scale_within_bounds(theta0, sub, bounds)
        result = minimize_objective(theta0, sub, bounds, tol=self.tol, max_iter=self.max_iter)
        return result.theta if np.isfinite(result.loss) else theta0

    def _fitted_like_current_settings(self):
        """Whether the fitted parameters have the shapes the current settings need."""
        if not hasattr(self, "converged_") or self._fitted_covariance_type != self.covariance_type:
            return False
        k, d = self.n_components, self.n_features_in_
        expected = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
        prec_chol = self.precisions_cholesky_
        if self.means_.shape != (k, d) or prec_chol.shape != expected[self.covariance_type]:
            return False
        # a tied factor has zeros below its diagonal; diag and spherical factors do not
        return self.covariance_type in ("full", "tied") or bool(np.all(prec_chol > 0))

    def _starts_are_all_alike(self):
        """One component, or every parameter given: each run would repeat the first."""
        return self.n_components == 1 or all(
            v is not None for v in (self.weights_init, self.means_init, self.precisions_init)
        )

    def _uses_data_driven_starts(self):
        return self.n_components > 1 and all(
            v is None for v in (self.weights_init, self.means_init, self.precisions_init)
        )

    def _greedy_start(self, grid, data, random_state, width_limits):
        """Starting parameters for K components grown one at a time from one.

        Fits 1, 2, ..., K - 1 components (on a subset of a large grid), each
        started from the previous fit plus a component at the largest
        residual. This start finds overlapping components that clustering
        the grid points merges. Returns a flat vector, or None.
        """
        if len(data.target) > MAX_INIT_POINTS:  # a start needs the density's shape only
            subset = random_subset(len(data.target), MAX_INIT_POINTS, data.target, random_state)
            grid = grid[subset]
            data = subset_data(data, subset)

        def solve(theta, current):
            result = self._short_fit(
                theta, current, _parameter_bounds(grid, current.layout, width_limits)
            )
            return result.theta if np.isfinite(result.loss) else theta

        reg_covar = max(self.reg_covar, width_limits[0] ** 2)
        for theta, current in greedy_path(grid, data, solve, reg_covar, self.n_components):
            if current.layout.n_components == self.n_components:
                return theta
        return None

    def _initial_parameters(
        self,
        grid,
        data,
        center,
        spread,
        random_state,
        min_width,
        *,
        weights_init,
        means_init,
        precisions_init,
    ):
        layout = data.layout
        user_given = [v is not None for v in (weights_init, means_init, precisions_init)]
        if not all(user_given):
            theta = initial_parameters(
                grid,
                data.target,
                data.weights,
                layout,
                method=self.init_params,
                loss=self.loss,
                reg_covar=max(self.reg_covar, min_width**2),
                random_state=random_state,
            )
            if not any(user_given):
                return theta
            _, weights, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
        if weights_init is not None:
            weights = _check_user_weights(weights_init, self.n_components)
        if means_init is not None:
            means = _check_user_array(
                means_init, (self.n_components, layout.n_features), "means_init"
            )
            means = (means - center) / spread
        if precisions_init is not None:
            prec_chol = _standardised_precision_cholesky(
                _user_precision_cholesky(
                    precisions_init,
                    self.covariance_type,
                    self.n_components,
                    layout.n_features,
                ),
                self.covariance_type,
                spread,
            )
        return user_parameters(
            grid,
            data.target,
            data.weights,
            layout,
            (weights, means, prec_chol),
            loss=self.loss,
        )

    def _standardised_parameters(self, layout, center, spread, log_unit):
        """The current fitted parameters as a flat vector in fit coordinates."""
        prec_chol = _standardised_precision_cholesky(
            self.precisions_cholesky_, self.covariance_type, spread
        )
        return pack(
            layout,
            self.weights_,
            (self.means_ - center) / spread,
            prec_chol,
            np.log(self.scale_) - log_unit,
        )

    def _set_fitted_parameters(self, result, data, center, spread, log_unit):
        weights, means, covariances, precisions, prec_chol, scale = _grid_unit_parameters(
            result.theta, data, center, spread, log_unit
        )
        cov = self.covariance_type
        order = np.lexsort((-weights, means[:, 0]))
        self._component_order = order
        self.weights_ = weights[order]
        self.means_ = means[order]
        per_component = cov != "tied"
        self.covariances_ = covariances[order] if per_component else covariances
        self.precisions_ = precisions[order] if per_component else precisions
        self.precisions_cholesky_ = prec_chol[order] if per_component else prec_chol
        self.scale_ = scale
        self._fitted_covariance_type = cov
        self.loss_ = max(float(result.loss), 0.0)  # rounding can take a perfect fit below 0
        self.n_iter_ = int(max(result.n_iter, 1))
        self.converged_ = bool(result.converged)

    # ------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------
    def to_gaussian_mixture(self):
        """A fitted :class:`sklearn.mixture.GaussianMixture` with the same mixture.

        Returns
        -------
        gmm : sklearn.mixture.GaussianMixture
            Same ``weights_``, ``means_``, ``covariances_``, precisions and
            ``n_features_in_`` (the scale is dropped: it is a normalised pdf).
        """
        check_is_fitted(self)
        gmm = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            random_state=self.random_state,
        )
        gmm.weights_ = self.weights_.copy()
        gmm.means_ = self.means_.copy()
        gmm.covariances_ = self.covariances_.copy()
        gmm.precisions_ = self.precisions_.copy()
        gmm.precisions_cholesky_ = self.precisions_cholesky_.copy()
        gmm.converged_ = self.converged_
        gmm.n_iter_ = self.n_iter_
        gmm.lower_bound_ = -np.inf
        gmm.n_features_in_ = self.n_features_in_
        return gmm

    def _centred_mixture(self, X):
        """The mixture and the points, both shifted to the mixture's mean.

        scikit-learn's 'diag' and 'spherical' log-densities expand
        ``(x - mu)^2`` into ``x^2 - 2 x mu + mu^2``, which cancels
        catastrophically on grids far from the origin; the shift does not
        change the pdf.
        """
        gmm = self.to_gaussian_mixture()
        shift = self.weights_ @ self.means_
        gmm.means_ = gmm.means_ - shift
        return gmm, X - shift

    def score_samples(self, X):
        """Log of the normalised mixture pdf at each grid point.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate.

        Returns
        -------
        log_pdf : ndarray of shape (n_points,)
        """
        check_is_fitted(self)
        gmm, X = self._centred_mixture(check_grid(self, X, reset=False))
        # Far from every component the pdf underflows to 0 by design.
        with np.errstate(under="ignore"):
            return np.concatenate(
                [gmm.score_samples(X[batch]) for batch in gen_batches(len(X), _PREDICT_BATCH_SIZE)]
            )

    def predict_density(self, X):
        """The fitted density ``scale_ * pdf(X)`` in the units of ``y``.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate.

        Returns
        -------
        density : ndarray of shape (n_points,)
        """
        check_is_fitted(self)
        with np.errstate(under="ignore"):
            return self.scale_ * np.exp(self.score_samples(X))

    def predict(self, X):
        """Alias of :meth:`predict_density` (the regressor interface).

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate.

        Returns
        -------
        density : ndarray of shape (n_points,)
        """
        return self.predict_density(X)

    def predict_proba(self, X):
        """Responsibility of each component for each point.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate.

        Returns
        -------
        resp : ndarray of shape (n_points, n_components)
        """
        check_is_fitted(self)
        gmm, X = self._centred_mixture(check_grid(self, X, reset=False))
        with np.errstate(under="ignore"):
            return gmm.predict_proba(X)

    def sample(self, n_samples=1):
        """Draw samples from the fitted (normalised) mixture.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
            The component of each sample.
        """
        return self.to_gaussian_mixture().sample(n_samples)

    def score(self, X, y, sample_weight=None):
        """Fraction of the loss explained: 1 for a perfect fit, higher is better.

        For ``loss='l2'`` this is the coefficient of determination R^2 of the
        density, for ``loss='poisson'`` the fraction of Poisson deviance
        explained D^2 (as :meth:`sklearn.linear_model.PoissonRegressor.score`),
        both weighted by the quadrature weights. It can be negative.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            The grid.

        y : array-like of shape (n_points,)
            The density on it.

        sample_weight : array-like of shape (n_points,), default=None
            Quadrature weights; None uses the cell sizes of ``X``.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X, y = check_grid_density(self, X, y, reset=False)
        weights = (
            quadrature_weights(X)
            if sample_weight is None
            else check_sample_weight(sample_weight, len(y))
        )
        return score_prediction(self.loss, y, self.predict_density(X), weights)

    # ------------------------------------------------------------------
    # uncertainties
    # ------------------------------------------------------------------
    def standard_errors(self, X, y, sample_weight=None):
        """Standard errors of the fitted parameters from the curvature of the loss.

        For ``loss='l2'`` the inverse Hessian of the loss is scaled by the
        residual variance, as :func:`scipy.optimize.curve_fit` scales its
        ``pcov``: the noise is taken as independent, with a variance
        proportional to ``1 / quadrature weight`` (equal on a uniform grid).
        For ``loss='poisson'`` it is the inverse Fisher information of
        Poisson counts ``y`` per point (pass the bin sizes as
        ``sample_weight`` when ``y`` is a density, as for :meth:`aic`). The
        errors of weights, means, covariances and scale follow by the delta
        method. They describe noise in ``y``, not a wrong number of
        components, and are only meaningful when the fit converged.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            The grid the model was fitted on.
        y : array-like of shape (n_points,)
            The density it was fitted to.
        sample_weight : array-like of shape (n_points,), default=None
            As passed to :meth:`fit`.

        Returns
        -------
        errors : dict
            ``weights``, ``means``, ``covariances`` (shaped like the fitted
            attributes) and ``scale``. All NaN, with a warning, when the
            curvature does not determine them (e.g. redundant components, or
            no more points than parameters).
        """
        check_is_fitted(self)
        X, y = check_grid_density(self, X, y, reset=False)
        _, data, center, spread, log_unit = self._problem(X, y, sample_weight)
        theta = self._standardised_parameters(data.layout, center, spread, log_unit)
        hessian = hessian_by_differences(theta, data)
        n_points, n_parameters = np.count_nonzero(data.weights), theta.size
        eigenvalues = np.linalg.eigvalsh(hessian)
        if n_points <= n_parameters or eigenvalues[0] <= 1e-12 * eigenvalues[-1]:
            warnings.warn(
                "The standard errors cannot be estimated: the loss is flat in some "
                "direction (redundant components, or no more points than parameters).",
                UserWarning,
                stacklevel=2,
            )
            return _map_parameter_vector(self, np.full(self._n_user_parameters(), np.nan))
        if self.loss == "l2":
            loss_value, _ = value_and_gradient(theta, data)
            covariance = 2.0 * loss_value / (n_points - n_parameters) * np.linalg.inv(hessian)
        else:
            if sample_weight is None:
                _warn_if_cells_differ(X)
            cells = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
            fisher = np.max(np.abs(y)) * cells.sum() * data.normaliser * hessian
            covariance = np.linalg.inv(fisher)

        def user_vector(t):
            weights, means, covariances, _, _, scale = _grid_unit_parameters(
                t, data, center, spread, log_unit
            )
            return np.concatenate([weights, means.ravel(), covariances.ravel(), [scale]])

        steps = 1e-6 * np.maximum(1.0, np.abs(theta))
        jacobian = np.column_stack(
            [
                (user_vector(theta + step * e) - user_vector(theta - step * e)) / (2 * step)
                for step, e in zip(steps, np.eye(theta.size), strict=True)
            ]
        )
        variances = np.einsum("ij,jk,ik->i", jacobian, covariance, jacobian)
        return _map_parameter_vector(self, np.sqrt(np.maximum(variances, 0.0)))

    def _n_user_parameters(self):
        return self.weights_.size + self.means_.size + self.covariances_.size + 1

    # ------------------------------------------------------------------
    # reports
    # ------------------------------------------------------------------
    def summary(self):
        """The fitted mixture as a plain, JSON-serialisable dict.

        Returns
        -------
        summary : dict
            ``n_components``, ``covariance_type``, ``loss``, ``loss_value``,
            ``converged``, ``n_iter``, ``scale`` and ``components``: one dict
            per component with ``weight``, ``mean`` and ``covariance`` (as
            nested lists, full matrices for every covariance type).
        """
        check_is_fitted(self)
        covariances = _full_covariances(self)
        return {
            "n_components": int(self.n_components),
            "n_features": int(self.n_features_in_),
            "covariance_type": self.covariance_type,
            "loss": self.loss,
            "loss_value": float(self.loss_),
            "converged": bool(self.converged_),
            "n_iter": int(self.n_iter_),
            "scale": float(self.scale_),
            "components": [
                {
                    "weight": float(self.weights_[k]),
                    "mean": self.means_[k].tolist(),
                    "covariance": covariances[k].tolist(),
                }
                for k in range(self.n_components)
            ],
        }

    def fit_report(self, X=None, y=None, sample_weight=None):
        """A readable text report of the fit, in the spirit of lmfit's.

        Parameters
        ----------
        X, y, sample_weight : array-like, default=None
            The data of the fit. When given, each value is followed by its
            standard error (see :meth:`standard_errors`).

        Returns
        -------
        report : str
        """
        info = self.summary()
        errors = None if X is None else self.standard_errors(X, y, sample_weight)

        def value(number, error=None):
            return f"{number:.8g}" if error is None else f"{number:.8g} +/- {error:.2g}"

        lines = [
            "[[Fit Statistics]]",
            f"    loss               = {info['loss']}",
            f"    final loss         = {info['loss_value']:.6g}",
            f"    converged          = {info['converged']}",
            f"    iterations         = {info['n_iter']}",
            "    scale (total mass) = "
            + value(info["scale"], None if errors is None else errors["scale"]),
            f"[[Components]] ({info['n_components']}, covariance_type="
            f"'{info['covariance_type']}', ordered by the first coordinate of the mean)",
        ]
        covariance_errors = (
            None if errors is None else _full_covariances(self, errors["covariances"])
        )
        for k, component in enumerate(info["components"]):
            covariance = np.asarray(component["covariance"])
            stds = np.sqrt(np.diag(covariance))
            # the standard deviation's error from the variance's: d sqrt(v) = dv / (2 sqrt(v))
            std_errors = (
                [None] * len(stds) if errors is None else np.diag(covariance_errors[k]) / (2 * stds)
            )
            mean_errors = [None] * len(stds) if errors is None else errors["means"][k]
            weight_error = None if errors is None else errors["weights"][k]
            lines.append(f"    component {k}:")
            lines.append(f"        weight = {value(component['weight'], weight_error)}")
            lines.append(
                "        mean   = "
                + ", ".join(
                    value(v, e) for v, e in zip(component["mean"], mean_errors, strict=True)
                )
            )
            lines.append(
                "        std    = "
                + ", ".join(value(v, e) for v, e in zip(stds, std_errors, strict=True))
            )
            if len(stds) > 1:
                correlation = covariance / np.outer(stds, stds)
                rows, cols = np.triu_indices(len(stds), 1)
                lines.append(
                    "        corr   = "
                    + ", ".join(
                        f"({i},{j}) {correlation[i, j]:.4f}"
                        for i, j in zip(rows, cols, strict=True)
                    )
                )
        return "\n".join(lines)

    # ------------------------------------------------------------------
    # information criteria (histograms of counts, Poisson loss)
    # ------------------------------------------------------------------
    def _n_parameters(self):
        """Number of free parameters: weights, means, covariances, scale."""
        return ParameterLayout(
            self.n_components, self.n_features_in_, self.covariance_type, self.scale is None
        ).n_parameters

    def _poisson_log_likelihood(self, X, y, sample_weight):
        if self.loss != "poisson":
            raise ValueError(
                "aic and bic need a likelihood, which only loss='poisson' fitted to "
                "histogram counts has; the 'l2' loss has none. Use DensityGMMCV to "
                "choose n_components for other densities."
            )
        check_is_fitted(self)
        X, y = check_grid_density(self, X, y, reset=False)
        check_density_values(y, "poisson")
        if sample_weight is None:
            _warn_if_cells_differ(X)
        cells = (
            np.ones(len(y)) if sample_weight is None else check_sample_weight(sample_weight, len(y))
        )
        counts = cells * y
        expected = np.maximum(cells * self.predict_density(X), np.finfo(float).tiny)
        log_likelihood = np.sum(xlogy(counts, expected) - expected - gammaln(counts + 1))
        return log_likelihood, counts.sum()

    def aic(self, X, y, sample_weight=None):
        """Akaike information criterion of a histogram fit; lower is better.

        Meaningful only for ``loss='poisson'`` fitted to a histogram: ``y``
        the counts per bin (or a density with ``sample_weight`` the bin
        sizes, so that ``y * sample_weight`` are the counts). The counts are
        taken as independent Poisson variables with mean the fitted curve.
        For densities in other units, and for the 'l2' loss, there is no
        likelihood: use :class:`DensityGMMCV`.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Bin centres.
        y : array-like of shape (n_points,)
            Counts per bin, or the density with ``sample_weight``.
        sample_weight : array-like of shape (n_points,), default=None
            Bin sizes when ``y`` is a density; None when ``y`` holds counts.

        Returns
        -------
        aic : float
        """
        log_likelihood, _ = self._poisson_log_likelihood(X, y, sample_weight)
        return float(2 * self._n_parameters() - 2 * log_likelihood)

    def bic(self, X, y, sample_weight=None):
        """Bayesian information criterion of a histogram fit; lower is better.

        As :meth:`aic`, with ``log(number of counts)`` per parameter: the
        number of observations of a histogram is the number of samples in it.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Bin centres.
        y : array-like of shape (n_points,)
            Counts per bin, or the density with ``sample_weight``.
        sample_weight : array-like of shape (n_points,), default=None
            Bin sizes when ``y`` is a density; None when ``y`` holds counts.

        Returns
        -------
        bic : float
        """
        log_likelihood, n_counts = self._poisson_log_likelihood(X, y, sample_weight)
        return float(self._n_parameters() * np.log(n_counts) - 2 * log_likelihood)


# ----------------------------------------------------------------------
# helpers: bounds, user initial values, coordinate changes
# ----------------------------------------------------------------------
def _grid_unit_parameters(theta, data, center, spread, log_unit):
    """Weights, means, covariances, precisions, their Cholesky factors and scale in grid units.

    Components come in the order of ``theta`` (not yet the canonical order).
    """
    log_scale, weights, means, prec_chol = unpack(theta, data.layout, data.fixed_log_scale)
    means = center + spread * means
    cov = data.layout.covariance_type
    if cov in ("full", "tied"):
        prec_chol = prec_chol / (spread[:, None] if cov == "tied" else spread[None, :, None])
        precisions = prec_chol @ np.swapaxes(prec_chol, -1, -2)
        inverse = np.linalg.inv(prec_chol)
        covariances = np.swapaxes(inverse, -1, -2) @ inverse
    else:
        prec_chol = prec_chol / (spread[0] if cov == "spherical" else spread)
        precisions = prec_chol**2
        covariances = 1.0 / precisions
    scale = float(np.exp(log_scale + log_unit))
    return weights, means, covariances, precisions, prec_chol, scale


def _warn_if_cells_differ(X):
    weights = quadrature_weights(X)
    if weights.max() > weights.min() * (1 + 1e-6):
        warnings.warn(
            "The grid's cells differ in size, but y is read as Poisson counts per point "
            "while the fit weighted points by cell size. Pass y as a density (counts / "
            "cell size) with the cell sizes as sample_weight, to fit and here alike.",
            UserWarning,
            stacklevel=3,
        )


def _map_parameter_vector(model, vector):
    """Split ``[weights, means, covariances, scale]`` into arrays shaped like the fit."""
    sizes = np.cumsum([model.weights_.size, model.means_.size, model.covariances_.size])
    return {
        "weights": vector[: sizes[0]],
        "means": vector[sizes[0] : sizes[1]].reshape(model.means_.shape),
        "covariances": vector[sizes[1] : sizes[2]].reshape(model.covariances_.shape),
        "scale": float(vector[-1]),
    }


def score_prediction(loss, y, predicted, weights):
    """R^2 (``loss='l2'``) or D^2 (``loss='poisson'``) of a predicted density.

    The same values as :func:`sklearn.metrics.r2_score` and
    :func:`sklearn.metrics.d2_tweedie_score` with ``power=1`` (the tests
    compare them), computed directly: cross-validation scores many folds,
    and those functions' input checks cost more than the arithmetic.
    """
    if len(y) < 2:  # as scikit-learn: a score of one point is not defined
        return float("nan")
    weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    average = (weights @ y) / weights.sum()
    if loss == "l2":
        residual = weights @ (y - predicted) ** 2
        total = weights @ (y - average) ** 2
    else:
        predicted = np.maximum(predicted, np.finfo(float).tiny)
        if not np.any(y > 0):
            # D^2 is 0/0 on a density that is zero everywhere; like r2_score's
            # force_finite, a perfect prediction scores 1 and any other 0.
            return 1.0 if np.allclose(predicted, 0.0) else 0.0
        residual = weights @ (xlogy(y, y / predicted) - y + predicted)
        total = weights @ (xlogy(y, y / average) - y + average)
    size = weights @ (y**2 if loss == "l2" else np.abs(y))
    if total <= 1e-12 * size:
        # a constant density, up to rounding in its average: as r2_score's
        # force_finite, a perfect prediction scores 1 and any other 0
        return 1.0 if np.allclose(predicted, y, rtol=1e-9, atol=0.0) else 0.0
    return float(1.0 - residual / total)


EDGE_WARNING_FRACTION = 0.25
# Two components closer than this Bhattacharyya distance describe one feature.
REDUNDANT_DISTANCE = 0.02
NEGLIGIBLE_WEIGHT = 1e-4


def _full_covariances(model, covariances=None):
    """``covariances`` (default: the fitted ones) as ``(n_components, d, d)`` matrices."""
    cov = model.covariances_ if covariances is None else covariances
    k, d = model.n_components, model.n_features_in_
    if model.covariance_type == "full":
        return cov
    if model.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if model.covariance_type == "diag":
        return cov[:, :, None] * np.eye(d)
    return cov[:, None, None] * np.eye(d)


def _warn_if_components_are_redundant(model, share):
    """Warn when the data does not support all components.

    Signs: two components nearly coincide, a weight is negligible, or a
    component holds a negligible share of the fitted mass on the grid (parked
    outside it, or narrower than the grid spacing between points).
    """
    if model.n_components < 2:
        return
    covariances = _full_covariances(model)
    diff = model.means_[:, None, :] - model.means_[None, :, :]
    average = 0.5 * (covariances[:, None] + covariances[None, :])
    maha = np.einsum("ijk,ijk->ij", diff, np.linalg.solve(average, diff[..., None])[..., 0])
    log_dets = np.linalg.slogdet(covariances)[1]
    distance = 0.125 * maha + 0.5 * (
        np.linalg.slogdet(average)[1] - 0.5 * (log_dets[:, None] + log_dets[None, :])
    )
    pairs = np.argwhere(np.triu(distance < REDUNDANT_DISTANCE, k=1))
    light = np.flatnonzero(model.weights_ < NEGLIGIBLE_WEIGHT)
    absent = np.setdiff1d(np.flatnonzero(share < NEGLIGIBLE_WEIGHT), light)
    if len(pairs) or len(light) or len(absent):
        described = [f"components {i} and {j} nearly coincide" for i, j in pairs]
        described += [f"component {i} has weight {model.weights_[i]:.1e}" for i in light]
        described += [
            f"component {i} holds {share[i]:.1e} of the fitted mass on the grid" for i in absent
        ]
        warnings.warn(
            f"The data does not support {model.n_components} components ("
            + "; ".join(described)
            + "). Use fewer components; DensityGMMCV chooses their number.",
            UserWarning,
            stacklevel=5,
        )


def _warn_if_density_is_cut_at_the_edge(X, y):
    on_edge = np.any((X == X.min(axis=0)) | (X == X.max(axis=0)), axis=1)
    fraction = np.max(y[on_edge]) / np.max(y)
    if fraction >= EDGE_WARNING_FRACTION:
        warnings.warn(
            f"The density at the edge of the grid reaches {fraction:.0%} of its peak: the "
            "mixture is extrapolated beyond the grid, so scale_ and the outer components "
            "are poorly determined. Extend the grid if you can.",
            UserWarning,
            stacklevel=5,
        )


def _prefit_size(n_points):
    """Points of the subset a large grid is first fitted on.

    A quarter of the grid at most: a prefit on most of it would cost a full fit.
    """
    return min(_MAX_PREFIT_POINTS, n_points // 4)


def _width_limits(grid):
    """Smallest and largest component width allowed on a standardised grid."""
    extent = np.maximum(np.ptp(grid, axis=0), 1e-12)
    # rows in lexicographic order (np.unique along axis 0 sorts them far more slowly)
    rows = grid[np.lexsort(grid.T[::-1])]
    n_distinct = 1 + int(np.count_nonzero(np.any(rows[1:] != rows[:-1], axis=1)))
    # the side of the cube each distinct point has to itself: robust to jitter and scatter
    typical = np.exp(np.mean(np.log(extent)) - np.log(n_distinct) / grid.shape[1])
    return 0.5 * typical, 100.0 * extent.max()


def _parameter_bounds(grid, layout, width_limits):
    """Box bounds that keep every parameter finite and meaningful.

    Widths range from half the typical grid spacing (the side of the cell each
    distinct point has in the grid's bounding box), below which a
    component falls between grid points and is fixed by one or two values
    only (in cross-validation it would hide between training points), to a
    hundred times the grid's extent; means stay within two extents of it.
    """
    low, high = grid.min(axis=0), grid.max(axis=0)
    extent = np.maximum(high - low, 1e-12)
    min_width, max_width = width_limits
    log_u_low, log_u_high = -np.log(max_width), -np.log(min_width)

    d, k = layout.n_features, layout.n_components
    cov = layout.covariance_type
    if cov in ("full", "tied"):
        rows, cols = np.triu_indices(d)
        one = np.where(rows == cols, log_u_low, -1.0 / min_width)
        two = np.where(rows == cols, log_u_high, 1.0 / min_width)
        chol = np.tile(np.column_stack([one, two]), (k if cov == "full" else 1, 1))
    else:
        chol = np.tile([log_u_low, log_u_high], (layout.n_cholesky, 1))
    blocks = []
    if layout.fit_scale:
        blocks.append([[-100.0, 100.0]])
    blocks.append(np.tile([-40.0, 40.0], (k - 1, 1)))
    blocks.append(np.column_stack([np.tile(low - 2 * extent, k), np.tile(high + 2 * extent, k)]))
    blocks.append(chol)
    return np.vstack([np.reshape(b, (-1, 2)) for b in blocks])


def _check_user_array(value, shape, name):
    value = np.asarray(value, dtype=float)
    if value.shape != shape:
        raise ValueError(f"{name} should have the shape {shape}, but got {value.shape}.")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} contains NaN or infinity.")
    return value


def _check_user_weights(weights, n_components):
    weights = _check_user_array(weights, (n_components,), "weights_init")
    if np.any(weights <= 0) or not np.isclose(weights.sum(), 1.0):
        raise ValueError(
            "weights_init should be positive and sum to 1, but got "
            f"{weights} (sum {weights.sum():.6g})."
        )
    return weights


def _user_precision_cholesky(precisions, covariance_type, n_components, n_features):
    shape = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]
    precisions = _check_user_array(precisions, shape, "precisions_init")
    if covariance_type in ("full", "tied"):
        if not np.allclose(precisions, np.swapaxes(precisions, -1, -2)):
            raise ValueError("precisions_init should be symmetric.")
        try:
            return _upper_cholesky(precisions)
        except np.linalg.LinAlgError as exc:
            raise ValueError("precisions_init should be symmetric positive definite.") from exc
    if np.any(precisions <= 0):
        raise ValueError("precisions_init should be positive.")
    return np.sqrt(precisions)


def _upper_cholesky(precisions):
    """Upper-triangular U with ``U @ U.T == precisions`` (batched)."""
    flip = np.arange(precisions.shape[-1])[::-1]
    reversed_lower = np.linalg.cholesky(precisions[..., flip[:, None], flip])
    return reversed_lower[..., flip[:, None], flip]


def _standardised_precision_cholesky(prec_chol, covariance_type, spread):
    if covariance_type == "tied":
        return spread[:, None] * prec_chol
    if covariance_type == "full":
        return spread[None, :, None] * prec_chol
    if covariance_type == "diag":
        return prec_chol * spread
    return prec_chol * spread[0]
