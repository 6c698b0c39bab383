"""The :class:`DensityGMM` estimator: the scikit-learn front end of the fitting engine."""

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.mixture import GaussianMixture
from sklearn.utils import gen_batches
from sklearn.utils.validation import check_is_fitted

from ._compat import Interval, StrOptions, fit_context, warn_at_caller
from ._data.validation import (
    check_density_values,
    check_grid,
    check_grid_density,
    check_sample_weight,
    quadrature_weights,
    unique_values,
)
from ._engine.fitting import (
    NEGLIGIBLE_WEIGHT,
    DensityFits,
    FitSettings,
    MixtureFit,
    fit_measurement,
    fit_mixture_rows,
    fit_problem,
    not_converged_message,
    place_parked_rows,
)
from ._engine.prediction import (
    PREDICT_BATCH_SIZE,
    background_at,
    background_values,
    fitted_cells,
    log_joint_of,
    log_mixture_pdf,
    model_of_y,
)
from ._engine.problem import cells_of, digits_lost_message, problem_of, warn_if_digits_lost
from ._engine.rows import component_shares_of, minimize_rows, models_of
from ._engine.starts import INIT_METHODS, LazyRandomState
from ._engine.uncertainty import (
    cells_differ_message,
    rows_standard_errors,
    warn_if_cells_differ,
)
from ._model.covariance import (
    COVARIANCE_TYPES,
    as_matrices_rows,
    cholesky_parameter_map,
    holds_type,
)
from ._model.parameters import canonical_order, rows_pack, rows_raw, rows_split, rows_to_grid
from ._model.reference import LOSSES
from ._reports.reports import (
    EDGE_WARNING_FRACTION,
    NOT_COUNTS,
    REDUNDANT_DISTANCE,
    FitReportsMixin,
    baseline_offsets,
    bhattacharyya,
    edge_fractions,
    edge_message,
    empty_bins_message,
    grid_box,
    holds_no_line,
    no_line_messages,
    offset_message,
    redundancy_messages,
    score_prediction,
    underdetermined_message,
    warn_if_components_are_redundant,
    warn_if_components_hold_no_line,
    warn_if_density_is_cut_at_the_edge,
    warn_if_not_counts,
    warn_if_on_a_baseline,
    warn_if_scoring_outside_the_fit,
    warn_if_underdetermined,
    zeros_left_out,
)


class DensityGMM(FitReportsMixin, RegressorMixin, BaseEstimator):
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
        least the square of the width floor (half the typical grid spacing, the
        finest on a log-spaced or refined grid).

    max_iter : int, default=500
        Maximum number of optimiser iterations of each run, its polishes
        included (see ``n_iter_``).

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

    init_params : {'peaks', 'kmeans', 'k-means++', 'random_from_data', 'random'}, \
            default='peaks'
        The data-driven start. 'peaks': greedy peaks of the density, each the
        highest point of what is left with the isotropic Gaussian bump there
        that explains most of it (compiled, a few microseconds on small
        grids). The others assign grid points to components, weighting each
        point by its mass (density times cell size): density-weighted k-means,
        k-means++ seeding, centres drawn in proportion to the mass, or random
        responsibilities; a few density-weighted EM steps follow.

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

    bins : None, 'infer' or list of array-like, default=None
        What each value of ``y`` is (see Notes):

        - None: the density at the point ``X[i]``;
        - 'infer': the content of a histogram bin centred at ``X[i]`` (the
          average of the density over the bin, or its count with
          ``loss='poisson'``); ``X`` must be the full rectilinear grid of bin
          centres, and the bins' edges lie halfway between neighbouring
          centres (the outer ones mirrored);
        - ``[edges_0, ..., edges_{d-1}]``: the content of the bin of these
          edges (as ``np.histogramdd`` returns them; one array in 1-D) that
          contains ``X[i]``; bins may be non-uniform and some may be left
          out (not measured: a histogram's empty bins are data, pass them
          with 0), but each holds at most one point.

        :func:`histogram_to_grid` turns the output of ``np.histogram`` or
        ``np.histogramdd`` into ``(X, y)``. Use explicit edges in
        cross-validation: the training points of a fold are no full grid.

    background : {None, 'constant', 'linear', 'quadratic', 'cubic', 'exponential'}, \
            int or callable, default=None
        A baseline under the mixture (a continuum, a sky), fitted jointly
        with it: ``f(x) = mixture(x) + b(x)``. A name or an int is a
        polynomial of that total degree in the grid coordinates ('constant'
        0, 'linear' 1, 'quadratic' 2, 'cubic' 3); 'exponential' is ``b(x) =
        A exp(rate x)`` in one dimension (a free rate); a callable ``f(X)``
        returning columns ``(n_points, n_terms)`` is a user's basis, ``b(x) =
        sum_j c_j f(x)_j``. Its coefficients are ``background_``. With
        ``loss='poisson'`` the model must stay positive at every point (see
        Notes). With ``bins``, polynomials only (averaged over each bin).

    random_state : int, RandomState instance or None, default=None
        Controls the initialisations. Pass an int for reproducible fits.

    warm_start : bool, default=False
        If True and already fitted, start from the previous solution (and
        make one run, ignoring ``n_init``).

    verbose : int, default=0
        When positive, print the problem's size, then one line a stage of the
        fit (the first start, each further start, components placed again or
        moved, the polish: rows run, iterations, best loss, time so far) and
        the result. A stage runs in compiled code and prints when it ends.

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
        Optimiser iterations of the best run: its minimisation, the polish
        after moves that re-placed components (parked ones, or the weakest
        one) and its final polish, which share that run's ``max_iter``
        iterations, so ``n_iter_ <= max_iter``. The short trial runs of moves
        are not counted. At least 1. With ``bins`` or ``background``, the
        iterations of the final joint run (the fit it starts from is not
        counted).

    grid_axes_ : tuple of ndarray
        The distinct coordinates of the fitted grid along each feature:
        :meth:`score` warns when asked to score points far from all of them.

    converged_ : bool
        Whether the best run, polished, met ``tol`` (or stopped gaining any
        digit of the loss) within ``max_iter``.

    background_ : ndarray of shape (n_terms,), or None
        With ``background``, its coefficients in grid units and the units of
        ``y``: a polynomial's monomial coefficients, the constant first, then
        by degree, and within a degree the first axis's highest power first
        (``[c_0, c_1, ..., c_d]`` of ``c_0 + sum_j c_j x_j`` for 'linear';
        ``[c_0, c_x, c_xx]`` of ``c_0 + c_x x + c_xx x^2`` for 'quadratic' in
        1-D); ``[A, rate]`` of an exponential ``A exp(rate x)``; a user's basis's
        ``c_j``. Polynomials and exponentials take ``x`` from
        ``background_origin_``.

    background_origin_ : ndarray of shape (n_features,), or None
        With ``background``, the point the coordinates ``x`` of ``background_`` are
        measured from: 0 along each axis where the grid's middle lies within 10 of
        its standard deviations of 0 (e.g. ``1..250``), else that middle (a grid at
        ``1e6 .. 1e6 + 100``: powers or exponentials of ``x`` itself would lose
        every digit or overflow).

    bin_edges_ : list of ndarray or None
        With ``bins``, the edges of the bins of each dimension (given or
        inferred); ``predict`` and ``score`` average the model over them.

    n_features_in_ : int
        Number of grid dimensions seen during fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the grid columns, when ``X`` has string column names.

    Notes
    -----
    With ``bins=None`` the model of ``y_i`` is the scaled mixture density at
    the point, ``f(x_i) = scale_ * sum_k weights_[k] N(x_i; means_[k],
    covariances_[k])``. A histogram's value is the integral of the density
    over its bin, not its value at the centre: for components one or two bins
    wide the centre model inflates the fitted variances by about ``h^2 / 12``
    (Sheppard's correction, ``h`` the bin width). With ``bins`` the model of
    ``y_i`` is the mixture's average over the bin ``B_i`` of volume ``|B_i|``::

        f_i = scale_ * sum_k weights_[k] * P_k(B_i) / |B_i|,

    ``P_k(B_i)`` the probability of component ``k`` in the bin: exact in 1-D
    and for 'diag' and 'spherical' components (products of normal cdf
    differences, computed stably in the tails), a Gauss-Legendre cubature
    exact in the last dimension for 'full' and 'tied' ones in N-D (relative
    error below 1e-7 on bins up to one standard deviation wide that hold at
    least 1e-3 of the largest bin's mass). For counts
    on equal bins ``f_i`` is the expected count (``scale_`` is then the
    number of counts times the bin volume) and ``loss='poisson'`` is the
    binned maximum likelihood; on unequal bins pass ``y = counts / volume``.
    The quadrature weights default to the bin volumes. The fit first fits the
    centre model, then polishes the result by one run on the integrated one.
    ``score_samples`` stays the log pdf at points; ``predict`` and
    ``predict_density`` return the model of ``y`` (bin averages) for the bins
    of ``bin_edges_`` that contain the points of ``X``, and ``score`` compares
    them with ``y``.

    With ``background`` the model is ``f + b``. A polynomial is fitted in
    the Legendre basis of the grid's box (orthogonal there, well conditioned
    at any degree) and reported as monomials; with bins it is averaged over
    each bin exactly. The mixture is fitted twice, to ``y`` minus the
    baseline through the values on the grid's rim (its outer 5% along each
    dimension; an exponential through their logarithms) and to ``y`` with no
    baseline, and each fit with that baseline is the start of a joint fit of
    mixture and baseline; the lower wins, so adding a baseline never makes
    the fit worse than none. For ``loss='poisson'`` the model must be
    positive at every point (the loss is infinite elsewhere, so the fit never
    goes there), and a polynomial's constant term and an exponential's
    amplitude are non-negative. ``predict_density`` includes the background and
    ``predict_background`` gives it alone, so the mixture alone is their
    difference (or ``scale_ * exp(score_samples(X))`` at points).

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
        "bins": [None, StrOptions({"infer"}), "array-like"],
        "background": [
            None,
            StrOptions({"constant", "linear", "quadratic", "cubic", "exponential"}),
            Interval(Integral, 0, None, closed="left"),
            callable,
        ],
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
        init_params="peaks",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        scale=None,
        bins=None,
        background=None,
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
        self.bins = bins
        self.background = background
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
    @fit_context(prefer_skip_nested_validation=True)
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
            not bias the fit; equal weights for scattered N-D points), or
            with ``bins`` the bin volumes.

        Returns
        -------
        self : DensityGMM
            The fitted estimator.
        """
        warm = self.warm_start and self._fitted_like_current_settings()
        X, y = check_grid_density(self, X, y, reset=not warm)
        return self._fit_checked(X, y, sample_weight, warm=warm)

    def _fit_checked(self, X, y, sample_weight, *, warm=False, start=None, seed=None, kept=False):
        """:meth:`fit` on a validated grid and density: from the previous fit
        (``warm``), from ``start`` (a parameter vector in fit coordinates, the
        background's parameters last: one run from it, as DensityGMMCV polishes
        its choice), or from the engine's own starts; ``seed`` in place of
        ``random_state`` (DensityGMMCV's path's seed)."""
        check_density_values(y, self.loss)
        if len(y) < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components but got "
                f"n_components = {self.n_components}, n_samples = {len(y)}. "
                "Use fewer components or a finer grid."
            )
        problem = problem_of(self, X, y, sample_weight)
        warn_if_digits_lost(X)
        warn_if_underdetermined(problem)
        if problem.binned and self.loss == "poisson" and sample_weight is None:
            warn_if_not_counts(y)
        if sample_weight is None and np.all(y == np.round(y)):  # counts per point, any loss
            warn_if_cells_differ(X, problem.data.quadrature)  # the bins' volumes with bins
        settings = FitSettings.of(self)
        random_state = LazyRandomState(self.random_state if seed is None else seed)
        if start is not None:
            result = fit_problem(problem, settings, random_state, start=start)
        else:
            previous = None
            if warm:
                previous = problem.to_fit(
                    self.weights_, self.means_, self.precisions_cholesky_, self.scale_
                )
            result = fit_measurement(
                problem,
                settings,
                random_state,
                warm=previous,
                warm_background=getattr(self, "background_", None) if warm else None,
            )
        fit = MixtureFit.from_result(problem, result)
        fit.set_on(self)
        self.bin_edges_ = None if self.bins is None else cells_of(X, self.bins).edges
        self.background_ = self.background_origin_ = None
        if problem.data.background is not None:
            self.background_origin_ = problem.standardisation.background_origin.copy()
            self.background_ = np.asarray(problem.background_to_grid(result.theta), dtype=float)
        model = models_of(problem.kernel, result.theta[None])[0]  # in the fit's unit
        mixture = model
        if problem.data.background is not None:
            n_mixture = problem.layout.n_parameters
            mixture = model - problem.data.background.values(result.theta[n_mixture:])
        warn_if_density_is_cut_at_the_edge(X, mixture)
        data = problem.data
        warn_if_on_a_baseline(X, data.target, model, mixture, data.quadrature, self.background)
        message = empty_bins_message(X, self.bins)
        if message is not None and (
            isinstance(self.bins, str) or zeros_left_out(X, y, self.bins)[0]
        ):
            warn_at_caller(message)
        warn_if_components_are_redundant(self, fit, chosen=kept)
        warn_if_components_hold_no_line(self)
        return self

    def _fitted_like_current_settings(self):
        """Whether the fitted parameters have the shapes the current settings need.

        A tied factor has zeros below its diagonal where a diagonal one of the
        same shape has none; a spherical one is the only 1-D factor.
        """
        if not hasattr(self, "converged_"):
            return False
        k, d = self.n_components, self.n_features_in_
        return self.means_.shape == (k, d) and holds_type(
            self.precisions_cholesky_, self.covariance_type, k, d
        )

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
        X = check_grid(self, X, reset=False)
        return np.concatenate(
            [log_mixture_pdf(self, X[batch]) for batch in gen_batches(len(X), PREDICT_BATCH_SIZE)]
        )

    def predict_density(self, X):
        """The model of ``y`` at ``X``, in the units of ``y``.

        With ``bins=None`` the fitted density ``scale_ * pdf(X)``; with
        ``bins``, the average of the fitted density over the bin of
        ``bin_edges_`` that contains each point (what ``y`` holds); both plus
        the fitted background, if any (:meth:`predict_background`). The
        mixture's pdf at points is always ``scale_ * exp(score_samples(X))``.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate (with ``bins``, inside the fitted bins).

        Returns
        -------
        density : ndarray of shape (n_points,)
        """
        check_is_fitted(self)
        X = check_grid(self, X, reset=False)
        return model_of_y(self, X)[0]

    def predict_background(self, X):
        """The fitted background at ``X`` (with bins, its average over each point's bin).

        Zero without ``background``. ``predict_density(X) - predict_background(X)``
        is the mixture's part of the model.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate.

        Returns
        -------
        background : ndarray of shape (n_points,)
        """
        check_is_fitted(self)
        X = check_grid(self, X, reset=False)
        if getattr(self, "background_", None) is None:
            return np.zeros(len(X))
        if getattr(self, "bin_edges_", None) is not None:
            cells = fitted_cells(self, X)
            X = 0.5 * (cells.lo + cells.hi)  # a linear function's average over a box
        return background_at(self, X)

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
        X = check_grid(self, X, reset=False)
        log_joint = log_joint_of(self, X)
        # normalised by the sum, not by a log-sum that rounds away log K far from the grid
        resp = np.exp(log_joint - log_joint.max(axis=1, keepdims=True))
        return resp / resp.sum(axis=1, keepdims=True)

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
            Quadrature weights; None uses the cell sizes of ``X`` (with
            ``bins``, the volumes of the fitted bins of the points).

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X, y = check_grid_density(self, X, y, reset=False)
        predicted, volumes = model_of_y(self, X)
        if sample_weight is not None:
            weights = check_sample_weight(sample_weight, len(y))
        else:
            weights = quadrature_weights(X) if volumes is None else volumes
        warn_if_scoring_outside_the_fit(self, X)
        return score_prediction(self.loss, y, predicted, weights)


@dataclass
class RowFits:
    """The fits of many densities by :func:`fit_rows_of`, in grid units."""

    parameters: tuple  # (weights, means, covariances, precisions_cholesky, scale), rows first
    loss: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    background: np.ndarray | None  # (R, J) coefficients, or None
    background_origin: np.ndarray | None  # (d,) the point their coordinates are from
    messages: list  # the warnings DensityGMM.fit would give each row, as text
    models: np.ndarray  # (R, n) the fitted models on the grid, in the densities' units


def fit_rows_of(estimator, X, Y, sample_weight=None, seeds=None, starts=None, kept=False):
    """What ``clone(estimator).fit(X, Y[i], sample_weight[i])`` gives for every row ``i``,
    all rows searched together by the engine (:func:`~.fitting.fit_mixture_rows`).

    ``X`` the validated shared grid, ``Y`` ``(R, n)`` densities the single fit accepts,
    ``sample_weight`` None, ``(n,)`` or ``(R, n)``, ``seeds`` None or one per row
    (for starts that draw). With a background the mixture is fitted under each row's
    rim polynomial and without a background, then jointly from both (the lower kept).
    ``starts`` ``(R, p)`` (fit coordinates, a background's parameters last): one run
    from each instead of the search, as ``DensityGMM.fit`` polishes
    :class:`~.cv.DensityGMMCV`'s choice; ``kept`` (one a row, or one for all): the choice
    was made over a scored candidate with a component fewer (:func:`~.cv.kept_over_one_fewer`).
    """
    problem, units, log_units, fixed, Q = _rows_problem(estimator, X, Y, sample_weight)
    standardisation = problem.standardisation
    targets = Y / units[:, None]
    settings = FitSettings.of(estimator)
    if seeds is None and isinstance(estimator.random_state, Integral):
        # each row its own state, as each single fit makes one: a row's starts do not
        # depend on the rows drawn before it
        random_state = [LazyRandomState(estimator.random_state) for _ in range(len(Y))]
    elif seeds is None:
        random_state = LazyRandomState(estimator.random_state)
    else:
        random_state = [LazyRandomState(int(seed)) for seed in seeds]
    background = problem.data.background
    if starts is not None:
        inputs = problem.kernel.with_densities(targets, Q, fixed)
        starts = np.clip(starts, problem.bounds[:, 0], problem.bounds[:, 1])
        rows = minimize_rows(inputs, starts, tol=settings.tol, max_iter=settings.max_iter)
        fits = DensityFits(
            rows.theta,
            rows.loss,
            rows.n_iter,
            rows.converged,
            rows.status,
        )
    elif background is None:
        inputs = problem.kernel.with_densities(targets, Q, fixed)
        fits = fit_mixture_rows(problem, inputs, settings, random_state)
    else:
        inputs, fits = _fit_rows_with_background(problem, targets, Q, fixed, settings, random_state)
    layout = problem.layout
    parameters = rows_to_grid(
        fits.theta, layout, standardisation, log_units, 0.0 if fixed is None else fixed
    )
    coefficients = None
    if background is not None:
        coefficients = background.to_grid(
            fits.theta[:, layout.n_parameters :],
            standardisation.center - standardisation.background_origin,
            standardisation.spread,
            units[:, None],
        )
    models = models_of(inputs, fits.theta)
    models *= units[:, None]
    weights = problem.data.quadrature if Q is None else Q
    messages = _row_messages(
        estimator,
        problem,
        inputs,
        (X, Y, weights, sample_weight is not None),
        np.broadcast_to(kept, len(Y)),
        models,
        fits,
        parameters,
        coefficients,
    )
    loss = np.where(np.isfinite(fits.loss), np.maximum(fits.loss, 0.0), np.nan)
    loss *= inputs.loss_units()
    origin = None if background is None else standardisation.background_origin
    return RowFits(
        parameters, loss, fits.n_iter, fits.converged, coefficients, origin, messages, models
    )


def _rows_problem(estimator, X, Y, sample_weight):
    """``(problem, units, log_units, fixed, Q)`` of the densities ``Y`` on the shared
    grid: the problem of the first, each row's unit (its largest magnitude) and log scale
    unit, its fixed log scale (or None) and the normalised quadrature weights (or None)."""
    first_weight = None if sample_weight is None else np.atleast_2d(sample_weight)[0]
    problem = problem_of(estimator, X, Y[0], first_weight)
    units = np.maximum(np.max(Y, axis=1), -np.min(Y, axis=1))  # the largest |y|, no temporary
    units = np.where(units > 0, units, 1.0)
    log_units = np.log(units) + np.sum(np.log(problem.standardisation.spread))
    fixed = None if estimator.scale is None else np.log(estimator.scale) - log_units
    Q = None
    if sample_weight is not None:
        Q = np.atleast_2d(np.asarray(sample_weight, dtype=float))
        Q = Q / Q.sum(axis=1, keepdims=True)
    return problem, units, log_units, fixed, Q


def rows_standard_errors_of(estimator, X, Y, sample_weight, parameters, background):
    """The standard errors of fits of the densities ``Y`` (grid units, as
    :meth:`DensityGMM.standard_errors` names them, a leading axis of rows) by ``estimator``'s
    settings, from their ``parameters`` ``(weights, means, covariances,
    precisions_cholesky, scale)`` and background coefficients; all rows at once
    (:func:`~.uncertainty.rows_standard_errors`)."""
    problem, units, log_units, fixed, Q = _rows_problem(estimator, X, Y, sample_weight)
    st, layout = problem.standardisation, problem.layout
    weights, means, _, precisions_cholesky, scale = parameters
    n_rows, k, d = len(Y), layout.n_components, layout.n_features
    upper = as_matrices_rows(precisions_cholesky, layout.covariance_type, k, d)
    thetas = rows_pack(
        layout,
        np.log(scale) - log_units,
        np.log(weights),
        (means - st.center) / st.spread,
        rows_raw(layout, upper * st.spread[:, None]),
    )
    if background is not None:
        terms = problem.data.background.to_fit(
            background, st.center - st.background_origin, st.spread, units[:, None]
        )
        thetas = np.hstack([thetas, terms])
    fixed = np.zeros(n_rows) if fixed is None else fixed
    inputs = problem.kernel.with_densities(Y / units[:, None], Q, fixed)
    cells = np.ones_like(Y) if sample_weight is None else np.broadcast_to(sample_weight, Y.shape)
    if problem.data.loss == "poisson" and sample_weight is None:
        warn_if_cells_differ(X)
    errors = rows_standard_errors(problem, inputs, thetas, log_units, cells)
    sizes = [k, k * d, int(np.prod(parameters[2].shape[1:])), 1]
    named = np.split(errors, np.cumsum(sizes), axis=1)
    out = {
        "weights": named[0],
        "means": named[1].reshape(n_rows, k, d),
        "covariances": named[2].reshape(parameters[2].shape),
        "scale": named[3][:, 0],
    }
    if background is not None:
        out["background"] = named[4]
    return out


def _fit_rows_with_background(problem, targets, Q, fixed, settings, random_state):
    """``(inputs, fits)`` of the densities with the problem's background: the mixture
    under each row's rim polynomial and without any, then both jointly (DensityGMM.fit's
    way, every row at once)."""
    background = problem.data.background
    mixture = problem.mixture_only()
    under = background.fitted_to(targets, problem.grid)
    residual = targets - background.values_rows(under)
    if problem.data.loss == "poisson":
        residual = np.maximum(residual, 0.0)
    empty = ~np.any(residual > 0, axis=1)
    residual[empty], under[empty] = targets[empty], 0.0
    starts = []
    for target, below in ((residual, under), (targets, np.zeros_like(under))):
        inputs = mixture.kernel.with_densities(target, Q, fixed)
        fits = fit_mixture_rows(mixture, inputs, settings, random_state)
        starts.append(np.hstack([fits.theta, below]))
    joint = problem.kernel.with_densities(targets, Q, fixed)
    results = [
        minimize_rows(joint, start, tol=settings.tol, max_iter=settings.max_iter)
        for start in starts
    ]
    best = results[0]
    lower = results[1].loss < best.loss
    for name in ("theta", "loss", "n_iter", "status"):
        getattr(best, name)[lower] = getattr(results[1], name)[lower]
    place_parked_rows(problem, joint, best, settings)
    fits = DensityFits(
        best.theta,
        best.loss,
        best.n_iter,
        best.converged,
        best.status,
    )
    return joint, fits


def _row_messages(estimator, problem, inputs, data, kept, models, fits, parameters, background):
    """The warnings ``DensityGMM.fit`` gives each row, in its order, as ``'Category:
    text'`` lines (``data``: the grid, the densities, their quadrature weights and whether
    the user weighted them; ``kept`` ``(R,)``: each fit was chosen over one with a
    component fewer (see :func:`~.reports.redundancy_messages`); ``models``: the fitted
    models on the grid, a background included)."""
    X, Y, quadrature, weighted = data
    weights, means, covariances, _, _ = parameters
    k, d = estimator.n_components, X.shape[1]
    matrices = as_matrices_rows(covariances, estimator.covariance_type, k, d)
    layout = problem.layout
    _, log_weights, fit_means, raw = rows_split(fits.theta, layout, inputs.fixed_log_scale)
    take = canonical_order(np.exp(log_weights), fit_means)  # as the parameters are ordered
    shares = component_shares_of(inputs, fits.theta)[take]
    floors = problem.width_floors(fit_means)  # (R, K, 1)
    index, _ = cholesky_parameter_map(layout.covariance_type, k, d)
    diagonal = raw[:, index[:, np.arange(d), np.arange(d)]]  # (R, K, d): log U_ii
    at_floor = np.any(diagonal >= np.log(0.99 / floors), axis=2)[take]
    axes = tuple(unique_values(column) for column in X.T)
    bin_edges = None if estimator.bins is None else cells_of(X, estimator.bins).edges
    low, high = grid_box(axes, bin_edges)
    outside, broad = holds_no_line(means, matrices, low, high)
    flagged = at_floor.any(axis=1) | outside.any(axis=1) | broad.any(axis=1)
    if k > 1:
        near = bhattacharyya(means, matrices) < REDUNDANT_DISTANCE
        near &= ~np.eye(k, dtype=bool)
        flagged |= near.any(axis=(1, 2))
        flagged |= (weights < NEGLIGIBLE_WEIGHT).any(axis=1) | (shares < NEGLIGIBLE_WEIGHT).any(
            axis=1
        )
    n_parameters = problem.bounds.shape[0]  # a background's too
    values = models
    if background is not None:
        values = models - background_values(
            X, estimator.background, background, problem.standardisation.background_origin
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        fractions = edge_fractions(X, values)
    at_edge = fractions >= EDGE_WARNING_FRACTION
    least, most, offset_shares = baseline_offsets(X, Y, models, values, quadrature)
    on_baseline = np.isfinite(offset_shares)
    digits = digits_lost_message(X)  # the grid's: every row's
    empty_bins = empty_bins_message(X, estimator.bins)
    left_out = np.zeros(len(Y), dtype=bool)
    if empty_bins is not None:
        left_out[:] = (
            True if isinstance(estimator.bins, str) else zeros_left_out(X, Y, estimator.bins)
        )
    integers = np.all(Y == np.round(Y), axis=1)
    not_counts = np.zeros(len(Y), dtype=bool)
    if problem.binned and estimator.loss == "poisson" and not weighted:
        not_counts = ~integers
    cells_differ = None if weighted else cells_differ_message(X, problem.data.quadrature)
    counts_on_cells = integers & (cells_differ is not None)
    speaking = at_edge | on_baseline | flagged | ~fits.converged | (X.shape[0] < n_parameters)
    speaking |= left_out | (digits is not None) | not_counts | counts_on_cells
    messages = [""] * len(models)
    for row in np.flatnonzero(speaking):  # text for the rows that have something to say
        texts = [] if digits is None else [f"UserWarning: {digits}"]
        if X.shape[0] < n_parameters:
            texts.append(f"UserWarning: {underdetermined_message(X.shape[0], n_parameters)}")
        if not_counts[row]:
            texts.append(f"UserWarning: {NOT_COUNTS}")
        if counts_on_cells[row]:
            texts.append(f"UserWarning: {cells_differ}")
        if not fits.converged[row]:
            texts.append(
                "ConvergenceWarning: " + not_converged_message(fits.loss[row], fits.n_iter[row])
            )
        if at_edge[row]:
            texts.append(f"UserWarning: {edge_message(fractions[row])}")
        if on_baseline[row]:
            message = offset_message(
                least[row], most[row], offset_shares[row], estimator.background
            )
            texts.append(f"UserWarning: {message}")
        if left_out[row]:
            texts.append(f"UserWarning: {empty_bins}")
        if flagged[row]:
            texts += [
                f"UserWarning: {m}"
                for m in redundancy_messages(
                    weights[row], means[row], matrices[row], shares[row], at_floor[row], kept[row]
                )
                + no_line_messages(means[row], matrices[row], low, high, estimator.background)
            ]
        messages[row] = "\n".join(texts)
    return messages
