"""Choosing the number of components by cross-validation over grid points."""

import time
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, check_cv
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .._compat import Interval, StrOptions, fit_context, warn_at_caller
from .._data.noise import (
    NOISE_KINDS,
    Grid,
    check_noise,
    histogram_rows,
    initial_noises,
    white_noise_sd,
)
from .._data.validation import (
    check_density_values,
    check_grid_density,
    check_sample_weight,
    quadrature_weights,
)
from .._engine.problem import cells_of
from .._estimator import DensityGMM
from .._model.covariance import as_matrices
from .._reports.reports import NO_LIKELIHOOD, concentric_messages
from .rules import (
    EXACT_CV_LOSS,
    PATH_GROWN_GAIN,
    PATIENCE,
    SMALL_GRID,
    CountFolds,
    PointFolds,
    are_counts,
    candidates_of,
    contiguous_folds,
    cv_results,
    has_peaked,
    n_point_folds,
    select,
)
from .search import (
    LINE_LEFT,
    Path,
    criterion_steps,
    initial_noise,
    largest_residual_bumps,
    paths_for_criterion,
    run_searches,
)

# A best held-out score below this explains little of the density: warned of.
LOW_SCORE = 0.5
# Seeds drawn for a search's estimator and path: below int32's largest.
SEED_BOUND = np.iinfo(np.int32).max

_PASSED_ON = (
    "covariance_type",
    "loss",
    "tol",
    "reg_covar",
    "max_iter",
    "n_init",
    "init_params",
    "scale",
    "bins",
    "background",
)


class DensityGMMCV(RegressorMixin, BaseEstimator):
    """:class:`DensityGMM` with the number of components chosen from the data.

    The candidates are fitted to all points along the path ``K = 1, 2, ...``
    (through every ``K`` up to the largest candidate), each from ``n_init``
    starts: the previous fit plus a component placed at the largest residual,
    and data-driven ones (at least one), keeping whichever ends lowest. By
    default (``selection='auto'``, i.e. ``'bic'``) each fit is scored by the
    Bayesian information criterion ``-2 log L + p log n`` under a model of the
    density's noise (``noise``), ``p`` the fit's free parameters:

    - white Gaussian noise, its standard deviation estimated from second
      differences of neighbouring values (robustly: a few sharp peaks do not
      move it); ``n`` the number of points;
    - correlated Gaussian noise, when the residual of the best fit is
      correlated between neighbouring points (real spectra: channels share
      noise): the residual is whitened along each grid axis by the banded
      Cholesky factor of its first lags' autocorrelations, or, when those with
      zero beyond are no process's (noise smoothed over several points), by the
      autoregression that has them; one model an axis when the axes' differ;
    - heteroscedastic Gaussian noise, its variance growing with the density
      (``a + b * level``), when the data's second differences or the best
      fit's residual scatter more where the density is higher; tested before
      correlated noise, whose test then reads the residual over these
      standard deviations. White noise replaces it when the fit with one
      component more than the best leaves a residual that reads as white, its
      components and those of white noise's best fit are at least a grid step
      wide, and white noise at its best ``K`` has the higher likelihood (each
      noise's variance estimated from its best fit's residual by maximum
      likelihood; a quadratic variance profile
      for heteroscedastic noise): a faint shoulder on a narrow line otherwise
      reads as noise growing with the signal. Conversely the heteroscedastic
      model found before any fit stands when the refinement finds white noise
      but the best fit has a component at the width floor that the fit with
      one component fewer has not, where that fit is above a quarter of its
      peak (a spike on a narrow line's loud points);
    - Poisson counts, for a histogram of counts (``loss='poisson'`` with
      ``y``, or ``y * sample_weight``, integer) or values that are counts
      times one quantum (``np.histogram(..., density=True)``): the binned
      Poisson likelihood, ``n`` the number of samples; the path is then
      fitted with the Poisson loss, the maximum-likelihood fits for counts;
    - standard deviations you know (``noise`` a float or an array).

    The lowest criterion wins. The fits next to the best are improved once by
    moving their weakest component, and the one before it is also started from
    the best fit less its weakest component (the path can leave a fit in a poor
    optimum that makes the best one component too many). The path stops once
    the best is ``early_stopping`` candidates behind, or at a fit that is exact
    (relative loss at most 1e-10, which ends the search and wins). A 1-D
    density with ``loss='l2'`` whose noise allows an exact fit is first
    fitted, from the data alone, with as many components as it has clear
    peaks (prominence of at least 20 noise standard deviations; a mixture of
    K Gaussians on a line has at most K modes); when that fit is exact the
    search ends there.

    Held-out data instead (``selection='standard_error'`` or ``'best'``):
    each candidate is scored on held-out data (``held_out``): histograms of
    counts (``loss='poisson'``) split every bin's count at random between the
    folds (multinomial thinning; K-fold cross-validation of the samples);
    other densities hold out shuffled folds of grid points, whose fits
    (refits from the fit on all points) predict the held-out values. The
    held-out errors are pooled over the folds (the mean score is the pooled
    R^2 or D^2), and the smallest ``K`` within ``n_standard_errors`` paired
    standard errors of the best is chosen. Folds of grid points must be
    shuffled: contiguous folds hold out whole regions of the grid, where no
    fit can predict a component it never saw (a warning says so).

    The chosen fit on all points is polished to ``tol`` as
    ``best_estimator_``. Warnings flag a choice at the largest candidate, a
    residual of the chosen fit that still holds a Gaussian bump white noise
    would not make (the search's larger fits did not find it: look at it),
    components of the chosen fit centred outside the grid or broader than a
    quarter of it (a baseline: pass ``background``), a residual read as smooth
    noise that holds most of the density (lines beyond the candidates) and, for
    held-out points, a best score below 0.5.

    Parameters
    ----------
    n_components : int or array-like of int, default=None
        The candidate numbers of components: an int ``m`` means ``1..m``,
        None means ``1..8``.

    cv : int, cross-validation generator or iterable, default=None
        The folds of held-out selection (``selection='standard_error'`` or
        ``'best'``; the information criteria use none, and warn when ``cv`` is
        given). None is 10 shuffled folds on grids of at most 1,000 points and 5 on
        larger ones, never more folds than points (count splitting: 5 folds);
        an int is that many shuffled folds (unlike scikit-learn's default, see
        above; more than the grid's points is an error); splitters and
        iterables of ``(train, test)`` indices are used as given.

    selection : {'auto', 'bic', 'aic', 'standard_error', 'best'}, default='auto'
        How the candidates are compared. 'bic' and 'aic' pick the lowest
        information criterion of the fits on all points under the noise model
        (``noise``; no folds). 'standard_error' picks the smallest candidate
        whose mean held-out score is within ``n_standard_errors`` standard
        errors of the best mean, the error being that of the *paired* per-fold
        differences between the two candidates (the folds are shared); 'best'
        picks the best mean held-out score. 'auto' is 'bic'.

    noise : {'auto', 'white', 'correlated', 'poisson'}, float or array-like \
            of shape (n_points,), default='auto'
        The noise of the density, for 'bic' and 'aic' (see above). 'auto'
        takes counts (and values that are counts times one quantum) as
        Poisson, and other densities as white noise, heteroscedastic noise
        when the noise grows with the density (in the data's differences or
        the best fit's residual), or correlated noise when the best fit's
        residual (over those standard deviations) is correlated between
        neighbouring points (lag-1 autocorrelation above 3 / sqrt(number of
        neighbouring pairs)).
        'white', 'correlated' and 'poisson' force that kind ('poisson' on
        values that are not counts estimates their unit from differences of
        their square roots). A float or an array gives the standard deviation
        of independent Gaussian noise (one for all points, or one per point),
        in the units of ``y``. The model used is ``noise_``.

    n_standard_errors : float, default=2.0
        The margin of the 'standard_error' rule, in paired standard errors.

    early_stopping : bool or int, default=True
        Stop growing ``K`` once the choice is this many candidates behind
        (True is 2; False evaluates every candidate). With held-out scores the
        path also stops once the best mean score is that far behind, and by
        default one candidate suffices when the choice's fit on all points
        leaves a residual that looks like white noise (l2 loss on a
        rectilinear grid without sample weights or bins only). An exact fit
        (relative loss at most 1e-10) always ends the search. The
        candidates not evaluated get a NaN score in ``cv_results_`` (as
        GridSearchCV reports failed fits) and rank last.

    held_out : {'auto', 'counts', 'points'}, default='auto'
        What is held out. 'counts' splits every bin's count between the
        folds (for histograms of counts with ``loss='poisson'``: the
        cross-validation of the samples behind the histogram); 'points'
        holds out grid points (``cv``'s folds). 'auto' is 'counts' when
        ``loss='poisson'``, ``y`` holds non-negative integers, there is no
        ``sample_weight`` and ``scale`` is None, and 'points' otherwise.

    n_jobs : int, default=None
        The starts of each fit on the path run in parallel with joblib
        (``-1``: all cores); worth it on large grids only.

    random_state : int, RandomState instance or None, default=None
        Seeds the fold shuffling and the fits.

    verbose : int, default=0
        Print progress when positive.

    covariance_type, loss, tol, reg_covar, max_iter, n_init, init_params, scale, bins, \
            background
        Passed on to :class:`DensityGMM` (``bins``: histograms fitted with
        their bins integrated; every fit on the path is then integrated,
        which costs more; ``background``: a baseline under the mixture of
        every candidate, whose parameters count in the criterion). ``n_init``
        is the number of starts of each fit on the path.

    Attributes
    ----------
    n_components_ : int
        The chosen number of components.

    best_estimator_ : DensityGMM
        The path's fit with ``n_components_`` components, polished to ``tol``
        on all points; its ``random_state`` is the search's.

    best_score_ : float
        With 'bic' or 'aic', minus half the chosen candidate's criterion (its
        log-likelihood less the penalty; higher is better); otherwise its mean
        held-out score (pooled R^2 or D^2).

    best_params_ : dict
        ``{"n_components": n_components_}``, as in GridSearchCV.

    held_out_ : {'counts', 'points', 'none'}
        What was held out ('none' for 'bic' and 'aic').

    noise_ : dict or None
        With 'bic' or 'aic', the noise model the criterion used: its ``kind``
        ('white', 'correlated', 'heteroscedastic', 'varying': a standard
        deviation log-linear along a 1-D grid, 'poisson' or 'given'), and
        ``sd`` (the marginal standard deviation, in the units of ``y``),
        ``correlation`` (autocorrelations at lags 1, 2, ...) with
        ``autoregressive`` (True: continued beyond those lags as the
        autoregression that has them; False: zero beyond), on images whose
        axes differ ``correlation_per_axis`` and ``autoregressive_per_axis``
        (the models whitening each axis), ``sd_range`` or
        ``n_counts`` with ``dispersion`` (the counts' variance over their mean,
        1 unless, with ``noise='auto'``, the best fit's Pearson residuals
        scatter with a variance above 2: counts times a detector's gain, whose
        deviance is then divided by it) as it applies. None with held-out
        scores.

    best_index_ : int
        Index of the chosen candidate in ``cv_results_``.

    cv_results_ : dict of ndarrays
        In :class:`~sklearn.model_selection.GridSearchCV`'s shape:
        ``param_n_components``, ``params``, ``split{i}_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score`` (rank by
        mean score; the selection rule may choose another), ``mean_fit_time``
        and ``std_fit_time`` (of the fold refits: the shared one-step work
        split evenly over the folds, plus each fold's own refit where one was
        made; the path's fits on all points are not included). With 'bic' or
        'aic' there is one split whose score is minus half the criterion, and
        the fit times are zero.

    n_iter_ : int
        Optimiser iterations of the refitted best model.

    n_features_in_ : int
        Number of grid dimensions seen during fit.

    See Also
    --------
    DensityGMM : The mixture fitted for a given number of components.

    Notes
    -----
    With an information criterion, one density's search and the searches of a
    chunk of :func:`fit_many` are the same code (``_search.run_searches``):
    every step of every path is a row of the compiled kernel, so a density
    gets the same K alone and in a batch. Held-out selections fit the path the
    same way and refit the folds on the path of single fits.
    ``docs/choosing_k.md`` gives the measured accuracy of each selection.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.stats import norm
    >>> from skdensityfit import DensityGMMCV
    >>> grid = np.linspace(-6, 10, 300)
    >>> density = 0.5 * norm.pdf(grid, -2, 1) + 0.3 * norm.pdf(grid, 3, 0.8)
    >>> density += 0.2 * norm.pdf(grid, 6.5, 1)
    >>> noisy = density + np.random.default_rng(0).normal(0, 0.005, grid.shape)
    >>> search = DensityGMMCV(n_components=5, random_state=0).fit(grid, noisy)
    >>> search.n_components_
    3
    >>> search.best_estimator_.means_.ravel().round(1)
    array([-2. ,  3. ,  6.5])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), "array-like", None],
        "cv": ["cv_object"],
        "selection": [StrOptions({"auto", "standard_error", "best", "bic", "aic"})],
        "noise": [
            StrOptions(set(NOISE_KINDS)),
            Interval(Real, 0, None, closed="neither"),
            "array-like",
        ],
        "n_standard_errors": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean", Interval(Integral, 1, None, closed="left")],
        "held_out": [StrOptions({"auto", "counts", "points"})],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        **{name: DensityGMM._parameter_constraints[name] for name in _PASSED_ON},
    }

    def __init__(
        self,
        n_components=None,
        *,
        cv=None,
        selection="auto",
        noise="auto",
        n_standard_errors=2.0,
        early_stopping=True,
        held_out="auto",
        n_jobs=None,
        random_state=None,
        verbose=0,
        covariance_type="full",
        loss="l2",
        tol=1e-8,
        reg_covar=1e-6,
        max_iter=500,
        n_init=2,
        init_params="peaks",
        scale=None,
        bins=None,
        background=None,
    ):
        self.n_components = n_components
        self.cv = cv
        self.selection = selection
        self.noise = noise
        self.n_standard_errors = n_standard_errors
        self.early_stopping = early_stopping
        self.held_out = held_out
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.covariance_type = covariance_type
        self.loss = loss
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.scale = scale
        self.bins = bins
        self.background = background

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    def _candidates(self):
        return candidates_of(self.n_components)

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Choose the number of components and fit the mixture on all points.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            The grid.

        y : array-like of shape (n_points,)
            The density on it.

        sample_weight : array-like of shape (n_points,), default=None
            Quadrature weights; None uses the cell sizes of the whole grid
            (also for the folds, whose points are scattered).

        Returns
        -------
        self : DensityGMMCV
            The fitted search.
        """
        X, y = check_grid_density(self, X, y)
        check_density_values(y, self.loss)
        weights = (
            quadrature_weights(X)
            if sample_weight is None
            else check_sample_weight(sample_weight, len(y))
        )
        candidates = self._candidates()
        rng = check_random_state(self.random_state)
        selection = "bic" if self.selection == "auto" else self.selection
        self.noise_ = None
        if selection in ("bic", "aic"):
            warn_if_cv_unused(self)
            self._fit_criterion(X, y, sample_weight, weights, candidates, rng, selection)
            return self
        folds = self._held_out_folds(X, y, weights, rng)
        base = self._base(rng.randint(SEED_BOUND))
        path = Path(
            base,
            X,
            y,
            weights,
            rng.randint(SEED_BOUND),
            # the noise tests compare with white noise on the points as given
            noise_tests=sample_weight is None and self.bins is None,
            grown_gain=PATH_GROWN_GAIN,
        )
        scores, fit_times, exact = self._scan(candidates, path, folds, selection)
        self.cv_results_ = cv_results(candidates, scores, fit_times)
        # an exact fit ends the search and wins, unless a smaller candidate scores as well
        # (a constant density, which every candidate scores 0 on)
        if exact is not None:
            means = scores.mean(axis=0)
            as_good = np.flatnonzero(np.isfinite(means) & (means >= means[exact]))
            self.best_index_ = int(as_good[0]) if as_good.size else exact
        else:
            self.best_index_ = select(scores, selection, self.n_standard_errors)
        self._set_choice(candidates, folds.kind)
        self._polish(base, X, y, sample_weight, path.fits[self.n_components_])
        for message in choice_warnings(
            candidates, self.n_components_, _best_mean(scores), folds.kind
        ):
            warn_at_caller(message)
        return self

    def _base(self, seed):
        """The DensityGMM every fit of the search is made with (its own ``seed``)."""
        return DensityGMM(random_state=seed, **{name: getattr(self, name) for name in _PASSED_ON})

    def _set_choice(self, candidates, held_out):
        self.n_components_ = int(candidates[self.best_index_])
        self.best_params_ = {"n_components": self.n_components_}
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        self.held_out_ = held_out

    def _polish(self, base, X, y, sample_weight, start):
        """``best_estimator_``: the path's fit on all points (which already had
        ``n_init`` starts) polished to ``tol`` (the chosen K always has one: a K
        without a finite fit is never chosen)."""
        estimator = clone(base).set_params(
            n_components=self.n_components_, random_state=self.random_state
        )
        scores = self.cv_results_["mean_test_score"]
        kept = kept_over_one_fewer(self._candidates(), self.best_index_, -scores)
        self.best_estimator_ = _polished(
            estimator, X, y, sample_weight, start, base.random_state, kept
        )
        self.n_iter_ = self.best_estimator_.n_iter_

    def _fit_criterion(self, X, y, sample_weight, weights, candidates, rng, criterion):
        """The choice by BIC or AIC along the path of fits on all points (:mod:`.search`):
        :func:`criterion_choices` of this one density."""
        ((choice, paths, row, base),) = criterion_choices(
            self, X, y[None], sample_weight, weights, [seed_draws(rng)], criterion
        )
        if isinstance(choice, Exception):
            raise choice
        with np.errstate(invalid="ignore"):
            scores = -0.5 * choice.values[None, :]
        self.cv_results_ = cv_results(candidates, scores, np.zeros_like(scores))
        self.best_index_ = choice.index
        self._set_choice(candidates, "none")
        self.noise_ = choice.noise.describe()
        if self.verbose:
            for k, value in zip(candidates, choice.values, strict=True):
                if not np.isnan(value):
                    print(f"DensityGMMCV: n_components={k}, {criterion} {value:.6g}")
            print(f"DensityGMMCV: noise {self.noise_}")
        self._polish(base, X, y, sample_weight, paths.fits[self.n_components_][row])
        observed = weights > 0
        best = self.best_estimator_
        model = best.predict_density(X[observed])
        shape = (
            best.means_,
            as_matrices(best.covariances_, best.covariance_type, best.n_components, X.shape[1]),
        )
        messages = criterion_messages(
            candidates, [choice], [y[observed]], [model], [shape], self.background
        )
        for message in messages[0]:
            warn_at_caller(message)

    def _scan(self, candidates, path, folds, selection):
        """Per-fold scores and fit times of the candidates along the path, and an exact fit's index.

        The path stops once the candidate ``selection`` would choose from the
        scores so far is ``early_stopping`` candidates behind (or at an exact
        fit); the candidates not evaluated score NaN.
        """
        scores = np.full((folds.n_splits, len(candidates)), np.nan)
        fit_times = np.full_like(scores, np.nan)
        patience = PATIENCE if self.early_stopping is True else int(self.early_stopping)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            # more components than a fold has training points cannot be fitted
            # (DensityGMM refuses them): such a candidate scores -inf, and the
            # path is not grown to it
            smallest_training_set = folds.smallest_training_set()
            first = path.exact_start(int(candidates[-1]))
            for index, n_components in enumerate(candidates):
                if n_components < first:
                    continue  # below an exact fit at the count of clear peaks: NaN
                path_fit = None if n_components > smallest_training_set else path.fit(n_components)
                if path_fit is None:
                    scores[:, index] = -np.inf
                    continue
                theta, problem = path_fit
                start = time.perf_counter()
                fits = folds.fit(theta, problem)
                scores[:, index] = folds.scores(fits, problem)
                fit_times[:, index] = (time.perf_counter() - start) / folds.n_splits
                evaluated = scores[:, :index].mean(axis=0)
                evaluated = evaluated[np.isfinite(evaluated)]
                leads = evaluated.size and scores[:, index].mean() > evaluated.max()
                if folds.kind == "points" and (leads or problem.n_points <= SMALL_GRID):
                    # a candidate that would lead is checked by real refits (one
                    # step is optimistic for surplus components); on small grids,
                    # where one step is least accurate and refits cheap, every one
                    fits = folds.refit(fits, problem, fit_times[:, index])
                    scores[:, index] = folds.scores(fits, problem)
                if self.verbose:
                    print(
                        f"DensityGMMCV: n_components={n_components}, mean score "
                        f"{np.mean(scores[:, index]):.6g}"
                    )
                if path.losses[n_components] <= EXACT_CV_LOSS:
                    return scores, fit_times, index
                # the default stops a choice that leaves only noise one candidate later
                quiet = None
                if self.early_stopping is True:
                    quiet = [path.leaves_noise(k) for k in candidates[: index + 1]]
                if (
                    self.early_stopping
                    and has_peaked(
                        scores[:, : index + 1], patience, selection, self.n_standard_errors, quiet
                    )
                    and not path.underfits(n_components)
                ):
                    break
        return scores, fit_times, None

    def _held_out_folds(self, X, y, weights, rng):
        """The held-out scheme: count splitting for histogram counts, grid points otherwise."""
        scheme = self.held_out
        if scheme == "auto":
            counts = self.loss == "poisson" and self.scale is None and are_counts(y)
            scheme = "counts" if counts and np.allclose(weights, weights[0]) else "points"
        if scheme == "counts":
            if not are_counts(y) or self.loss != "poisson" or self.scale is not None:
                raise ValueError(
                    "held_out='counts' splits the counts of a histogram: it needs "
                    "loss='poisson', y of non-negative integer counts and scale=None. "
                    "Use held_out='points' for other densities."
                )
            n_splits = 5 if self.cv is None else self.cv
            if not isinstance(n_splits, Integral):
                raise ValueError(
                    "held_out='counts' makes its own folds: pass cv as a number of folds."
                )
            return CountFolds(y, n_splits, rng)
        splits = list(self._folds(rng, len(y)).split(X, y))
        if contiguous_folds(splits):
            warn_at_caller(
                "Every cross-validation fold holds out one contiguous block of grid points "
                "(e.g. KFold without shuffle): whole regions of the grid, where no fit can "
                "predict a component it never saw. Pass cv=KFold(5, shuffle=True) or an int."
            )
        return PointFolds(splits, y, weights, self.loss)

    def _folds(self, rng, n_points):
        if self.cv is None or isinstance(self.cv, Integral):
            n_splits = n_point_folds(self.cv, n_points)
            return KFold(n_splits, shuffle=True, random_state=rng.randint(SEED_BOUND))
        return check_cv(self.cv)

    # delegation to the refitted best model --------------------------------
    def predict_density(self, X):
        """The fitted density of the chosen model; see :meth:`DensityGMM.predict_density`.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate.

        Returns
        -------
        density : ndarray of shape (n_points,)
        """
        check_is_fitted(self)
        return self.best_estimator_.predict_density(X)

    def predict(self, X):
        """Alias of :meth:`predict_density`.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate.

        Returns
        -------
        density : ndarray of shape (n_points,)
        """
        return self.predict_density(X)

    def score(self, X, y, sample_weight=None):
        """R^2 or D^2 of the chosen model; see :meth:`DensityGMM.score`.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            The grid.
        y : array-like of shape (n_points,)
            The density on it.
        sample_weight : array-like of shape (n_points,), default=None
            Quadrature weights.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        return self.best_estimator_.score(X, y, sample_weight=sample_weight)

    def score_samples(self, X):
        """Log pdf of the chosen mixture; see :meth:`DensityGMM.score_samples`.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Points to evaluate.

        Returns
        -------
        log_pdf : ndarray of shape (n_points,)
        """
        check_is_fitted(self)
        return self.best_estimator_.score_samples(X)

    # the chosen fit's reports, as GridSearchCV delegates to best_estimator_ -----
    def summary(self):
        """:meth:`DensityGMM.summary` of the chosen fit, with ``n_components_`` chosen.

        Returns
        -------
        summary : dict
        """
        check_is_fitted(self)
        return self.best_estimator_.summary()

    def fit_report(self, X=None, y=None, sample_weight=None):
        """:meth:`DensityGMM.fit_report` of the chosen fit.

        Parameters
        ----------
        X, y, sample_weight : array-like, default=None
            The data of the fit, for standard errors.

        Returns
        -------
        report : str
        """
        check_is_fitted(self)
        return self.best_estimator_.fit_report(X, y, sample_weight)

    def standard_errors(self, X, y, sample_weight=None):
        """:meth:`DensityGMM.standard_errors` of the chosen fit (for the chosen K).

        Parameters
        ----------
        X, y, sample_weight : array-like
            The data of the fit.

        Returns
        -------
        errors : dict
        """
        check_is_fitted(self)
        return self.best_estimator_.standard_errors(X, y, sample_weight)

    def aic(self, X, y, sample_weight=None):
        """:meth:`DensityGMM.aic` of the chosen fit.

        Parameters
        ----------
        X, y, sample_weight : array-like
            Bin centres, counts (or a density with the bin sizes).

        Returns
        -------
        aic : float
        """
        check_is_fitted(self)
        _refuse_criteria_without_likelihood(self)
        return self.best_estimator_.aic(X, y, sample_weight)

    def bic(self, X, y, sample_weight=None):
        """:meth:`DensityGMM.bic` of the chosen fit.

        Parameters
        ----------
        X, y, sample_weight : array-like
            Bin centres, counts (or a density with the bin sizes).

        Returns
        -------
        bic : float
        """
        check_is_fitted(self)
        _refuse_criteria_without_likelihood(self)
        return self.best_estimator_.bic(X, y, sample_weight)


def _refuse_criteria_without_likelihood(search):
    """aic and bic of new data need a likelihood: under the 'l2' loss, say what the search
    chose by instead."""
    if search.loss == "poisson":
        return
    criterion = {"auto": "bic", "bic": "bic", "aic": "aic"}.get(search.selection)
    chosen = (
        f"by the {criterion.upper()} under the noise model it measured (noise_); "
        "cv_results_['mean_test_score'] holds minus half of it for each candidate"
        if criterion
        else "by held-out scores (cv_results_)"
    )
    raise ValueError(f"{NO_LIKELIHOOD} This search chose n_components {chosen}.")


def seed_draws(rng):
    """The seeds a density's search draws from ``rng``: its estimator's, then its path's."""
    return rng.randint(SEED_BOUND), rng.randint(SEED_BOUND)


def criterion_choices(search, X, Y, sample_weight, weights, draws, criterion):
    """:class:`DensityGMMCV`'s choice by ``criterion`` for every row of ``Y`` ``(D, n)``
    on the grid ``X`` (validated), all searched together (:func:`~.search.run_searches`).

    ``sample_weight`` the user's (None, ``(n,)`` or ``(D, n)``), ``weights`` the
    quadrature weights the fits use (``(n,)`` or ``(D, n)``), ``draws`` a row's
    :func:`seed_draws`. Returns
    ``(choice, paths, row, base)`` a density: ``choice`` a
    :class:`~.search.CriterionChoice` or the exception its search raised, ``paths`` the
    :class:`~.search.Paths` holding the density as its row ``row``, ``base`` the
    density's estimator.
    """
    n_rows, n_points = Y.shape
    requested = check_noise(search.noise, n_points)
    weights = np.asarray(weights, dtype=float)
    patience = 0
    if search.early_stopping:
        patience = PATIENCE if search.early_stopping is True else int(search.early_stopping)
    candidates = search._candidates()
    rows_weights = np.broadcast_to(weights, Y.shape)
    bases = [search._base(seed) for seed, _ in draws]
    seeds = [seed for _, seed in draws]
    observed = list(rows_weights > 0)
    # a histogram on unequal bins passed without its widths as sample_weight: the rows
    # whose values times the widths are counts, or sum to one (density=True), read them
    histogram, widths = np.zeros(n_rows, dtype=bool), None
    if sample_weight is None and search.bins is not None:
        widths = cells_of(X, search.bins).volume
        histogram = histogram_rows(Y, widths)
    alike = sample_weight is None and not histogram.any() and rows_weights.all()
    if alike and np.ndim(requested) == 0:
        grid = Grid.of(X)
        grids = [grid] * n_rows
        models = initial_noises(X, Y, grid, loss=search.loss, noise=requested)
    else:
        models, grids = [], []
        for i in range(n_rows):  # each density's noise model (no fit)
            seen = observed[i]
            noise_weights = None if sample_weight is None else rows_weights[i, seen]
            if histogram[i]:
                noise_weights = widths[seen]
            try:
                noise_model, grid = initial_noise(
                    X[seen],
                    Y[i, seen],
                    loss=search.loss,
                    noise=requested if np.ndim(requested) == 0 else requested[seen],
                    sample_weight=noise_weights,
                )
            except ValueError as error:  # that density's alone (its single fit raises it)
                noise_model, grid = error, None
            models.append(noise_model)
            grids.append(grid)
    results = [None] * n_rows
    for i, model in enumerate(models):
        if isinstance(model, Exception):
            results[i] = (model, None, None, bases[i])
    losses = np.array([None if results[i] else model.loss for i, model in enumerate(models)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        for loss in sorted({loss for loss in losses if loss is not None}):
            rows = np.flatnonzero(losses == loss)
            counts = None
            if loss == "poisson":
                counts = [
                    models[i].n_observations if models[i].kind == "poisson" else 0.0 for i in rows
                ]
            paths = paths_for_criterion(
                bases[rows[0]],
                X,
                Y[rows],
                weights if weights.ndim == 1 else weights[rows],
                [seeds[i] for i in rows],
                loss,
                counts,
            )
            searches = [
                criterion_steps(
                    paths,
                    r,
                    candidates,
                    Y[i, observed[i]],
                    models[i],
                    grids[i],
                    criterion=criterion,
                    patience=patience,
                    requested=requested,
                    observed=observed[i],
                )
                for r, i in enumerate(rows)
            ]
            for r, choice in enumerate(run_searches(paths, searches)):
                results[rows[r]] = (choice, paths, r, bases[rows[r]])
    return results


def criterion_messages(candidates, choices, Y, models, shapes, background=None):
    """The warnings of choices by a criterion (the largest candidate chosen, a line left
    in the residual of the polished ``models[r]`` of ``Y[r]``, no component significant,
    components sharing a centre: ``shapes[r]`` the polished fit's ``(means (K, d),
    covariances (K, d, d))``; structure read as smooth noise; with no ``background``, a
    pedestal under the mixture), as a list of texts a choice."""
    inexact = [r for r, choice in enumerate(choices) if not choice.exact]
    bumps = [None] * len(choices)
    found = largest_residual_bumps(
        [choices[r] for r in inexact], [Y[r] for r in inexact], [models[r] for r in inexact]
    )
    for r, bump in zip(inexact, found, strict=True):
        bumps[r] = bump
    messages = []
    for choice, y, model, bump, shape in zip(choices, Y, models, bumps, shapes, strict=True):
        n_components = int(candidates[choice.index])
        texts = choice_warnings(candidates, n_components, None, "none")
        texts += concentric_messages(*shape)
        nothing = choice.nothing <= choice.values[choice.index]
        if nothing:
            texts.append(nothing_message(n_components, choice.noise.kind))
        if bump is not None and bump[0] > 2.0 * np.log(len(y)) + LINE_LEFT:
            largest = n_components == np.max(candidates)
            texts.append(line_left_message(bump, n_components, largest))
        if not nothing:  # with no component significant, noise alone may be all there is
            texts += structure_as_noise_messages(choice, y, model, candidates)
        if background is None:
            texts += pedestal_messages(model, n_components, choice.noise.kind)
        messages.append(texts)
    return messages


# A mixture of two components or more that stays above this part of its peak over the whole
# grid stands on a pedestal: a baseline tiled by components (a dome of several, each narrower
# than the broad-component warning's quarter of the grid), or tails the grid cuts.
PEDESTAL = 0.03


def pedestal_messages(model, n_components, noise_kind):
    """The warning of a chosen mixture ``model`` (no background) whose least value on the
    grid is ``PEDESTAL`` of its peak or more; not for counts (a histogram's range often cuts
    its tails, and says nothing of a baseline)."""
    if n_components < 2 or noise_kind == "poisson" or not np.max(model) > 0:
        return []
    floor = float(np.min(model) / np.max(model))
    if floor < PEDESTAL:
        return []
    return [
        f"The chosen mixture (n_components={n_components}) stays above {floor:.0%} of its "
        "peak everywhere on the grid: the grid cuts its tails (scale_ and the outer "
        "components are then poorly determined: extend the grid if you can), or the "
        "density stands on a pedestal, a baseline that some of the components are taking "
        "(n_components then counts them: pass background= 'constant', 'linear', "
        "'quadratic', ... so that the candidates carry it)."
    ]


# A correlated noise model this many times the noise of the density's point-to-point
# differences, beside a chosen fit that explains less than SMOOTH_NOISE_EXPLAINED of the
# density's variance, is structure read as smooth noise (lines beyond the largest
# candidate, say). Weak lines under strongly smoothed noise have the ratio too, but their
# fits explain more. When the candidates stop at most one above the choice, less than
# SMOOTH_NOISE_EXPLAINED_AT_TOP will do: lines beyond them are then the likelier reading.
SMOOTH_NOISE_RATIO = 10.0
SMOOTH_NOISE_EXPLAINED = 0.1
SMOOTH_NOISE_EXPLAINED_AT_TOP = 0.5


def structure_as_noise_messages(choice, y, model, candidates):
    """The warning of a choice under a correlated noise model that holds the density's
    structure (see ``SMOOTH_NOISE_RATIO``), as a list of texts."""
    if choice.noise.kind != "correlated":
        return []
    sd = float(np.median(choice.noise.sd))
    difference_sd = float(white_noise_sd(choice.grid, y))
    spread = float(np.sum((y - np.mean(y)) ** 2))
    if not (difference_sd > 0 and spread > 0) or sd <= SMOOTH_NOISE_RATIO * difference_sd:
        return []
    explained = 1.0 - float(np.sum((y - model) ** 2)) / spread
    at_top = candidates[choice.index] + 1 >= np.max(candidates)
    limit = SMOOTH_NOISE_EXPLAINED_AT_TOP if at_top else SMOOTH_NOISE_EXPLAINED
    if not 0.0 <= explained < limit:  # below 0: a background explains more
        return []
    return [
        f"The noise model read from the residual (correlated, sd {sd:.3g}) is "
        f"{sd / difference_sd:.0f} times the noise of the density's point-to-point "
        f"differences ({difference_sd:.3g}), and the chosen fit explains {explained:.0%} of "
        "the density's variance: the residual is probably structure read as smooth noise, "
        f"such as lines beyond the largest candidate ({int(np.max(candidates))}). Pass larger "
        "n_components, or noise='white' if the noise is not smoothed over many points."
    ]


def choice_warnings(candidates, n_components, best_score, held_out):
    """The warnings a choice of ``n_components`` among ``candidates`` deserves, as text.

    The largest candidate (the density may hold more), and, with held-out
    grid points (``held_out="points"``), a best mean score ``best_score``
    below ``LOW_SCORE``.
    """
    messages = []
    if len(candidates) > 1 and n_components == np.max(candidates):
        messages.append(
            f"DensityGMMCV chose n_components={n_components}, the largest "
            "candidate: the density may hold more components. Pass larger candidates "
            "(n_components=...)."
        )
    if held_out == "points" and best_score < LOW_SCORE:
        messages.append(
            f"The best held-out score is {best_score:.3g}: no candidate explains "
            "the density well (noise dominates, a background, or bins too coarse?). "
            "Check the data before trusting n_components_."
        )
    return messages


def nothing_message(n_components, noise_kind):
    """The warning of a choice that no component at all explains as well."""
    return (
        f"No component is significant: the model without any (the background alone, or "
        f"zero) has a criterion as low as the chosen fit's (n_components={n_components}) "
        f"under the noise model ({noise_kind}). The density may hold nothing but noise "
        "(DensityGMMCV has no candidate with no component, so n_components_ is at least 1), "
        "or its features may be dips below a baseline (absorption lines), which a mixture "
        "of positive weights cannot fit: fit the baseline minus the density instead."
    )


def warn_if_cv_unused(search):
    """Warn that ``cv`` (given) has no part in a choice by an information criterion."""
    if search.cv is not None:
        warn_at_caller(
            f"cv={search.cv!r} is not used: selection={search.selection!r} chooses by "
            "an information criterion of the fits on all points, with no folds. Pass "
            "selection='standard_error' (or 'best') to choose by held-out scores."
        )


def _best_mean(scores):
    """The best mean score over the folds ``(n_splits, n_candidates)`` of the candidates
    evaluated (-inf where none was)."""
    means = scores.mean(axis=0)
    finite = np.isfinite(means)
    return float(means[finite].max()) if finite.any() else -np.inf


def line_left_message(bump, n_components, largest):
    """The warning of a chosen fit whose residual still holds a bump (``(score,
    coordinates, width)`` of :func:`~.search.largest_residual_bumps`); ``largest``:
    whether ``n_components`` is the largest candidate."""
    score, coordinates, width = bump
    where = ", ".join(f"{c:.6g}" for c in coordinates)
    why = (
        "no larger candidate was tried: pass larger n_components"
        if largest
        else "yet the fits with more components did not take it: pass n_init=4 or more, or "
        "check the noise model (noise_)"
    )
    return (
        f"The residual of the chosen fit (n_components={n_components}) still holds a "
        f"Gaussian bump near x = ({where}), about {width:g} grid steps wide, that a matched "
        f"filter scores at {np.sqrt(score):.1f} noise standard deviations, more than the "
        f"noise model makes; {why}. Look at the residual (plot_fit)."
    )


def _polished(estimator, X, y, sample_weight, start, seed, kept=False):
    """``estimator`` fitted by one run from ``start`` (a path's parameter vector, the
    background's parameters last), with the random state ``seed`` for that run; ``X`` and
    ``y`` validated already (by the search's fit); ``kept``: see
    :func:`kept_over_one_fewer`."""
    estimator.n_features_in_ = X.shape[1]
    return estimator._fit_checked(X, y, sample_weight, start=start, seed=seed, kept=kept)


def kept_over_one_fewer(candidates, index, values):
    """Whether the candidate at ``index`` was chosen over one with a component fewer,
    scored and worse (``values``: lower is better; NaN: not scored): then a light
    component of its fit is one the choice kept, not a component too many."""
    if index < 1 or candidates[index - 1] != candidates[index] - 1:
        return False
    return bool(np.isfinite(values[index - 1]) and values[index - 1] > values[index])
