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

from . import _batch_cv
from ._compat import Interval, StrOptions, fit_context, warn_at_caller
from ._engine import FitSettings, MixtureFit, fit_problem, path_fit
from ._estimator import DensityGMM
from ._objective import model_density
from ._problem import problem_of
from ._reports import (
    warn_if_components_are_redundant,
    warn_if_density_is_cut_at_the_edge,
    warn_if_underdetermined,
)
from ._selection import (
    CV_FTOL,
    CV_MAX_ITER,
    CV_TOL,
    EXACT_CV_LOSS,
    EXACT_TRIAL_NOISE_LOSS,
    PATH_GROWN_GAIN,
    PATIENCE,
    SMALL_GRID,
    UNDERFIT,
    CountFolds,
    PointFolds,
    are_counts,
    candidates_of,
    contiguous_folds,
    cv_results,
    has_peaked,
    information_criterion,
    largest_bump,
    least_components,
    leaves_noise,
    n_point_folds,
    noise_variance,
    residual_is_noise_level,
    select,
)
from ._validation import (
    check_density_values,
    check_grid_density,
    check_sample_weight,
    quadrature_weights,
)

# A best held-out score below this explains little of the density: warned of.
LOW_SCORE = 0.5

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
)


class DensityGMMCV(RegressorMixin, BaseEstimator):
    """:class:`DensityGMM` with the number of components chosen by cross-validation.

    The candidates are fitted to all points along the path ``K = 1, 2, ...``
    (through every ``K`` up to the largest candidate), each from ``n_init``
    starts: the previous fit plus a component placed at the largest residual,
    and data-driven ones (at least one), keeping whichever ends lowest. Each
    candidate is then scored on held-out data (``held_out``):

    - histograms of counts (``loss='poisson'``): every bin's count is split
      at random between the folds (multinomial thinning), so each fold keeps
      every bin; a fold's fit of its training counts (a short refit from the
      fit on all counts) predicts its held-out counts, scored by their
      Poisson deviance. This is K-fold cross-validation of the samples.
    - other densities: shuffled folds of grid points; a fold's fit of its
      training points (one Levenberg-Marquardt step from the fit on all
      points; real refits for a candidate whose one-step score would lead,
      since one step is optimistic for surplus components) predicts its
      held-out values, scored by the squared error (``'l2'``) or the
      Poisson deviance.

    The held-out errors are pooled over the folds: a fold's score is
    ``1 - n_folds * error / total``, with ``total`` the constant model's
    error summed over all folds, so the mean score is the pooled R^2 or D^2.
    The smallest ``K`` whose mean score is within ``n_standard_errors``
    standard errors of the best is chosen (``selection``), the error being
    that of the paired per-fold differences. A candidate whose fit on all points is exact ends
    the search and is chosen (a smaller candidate that does not fit never
    wins); otherwise the path stops once the candidate the rule would choose
    from the scores so far is ``early_stopping`` candidates behind and no later
    one scores more than 0.001 above it, or once the best score is that far
    behind. By default (``early_stopping=True``, ``loss='l2'``, a rectilinear
    grid, no ``sample_weight`` or ``bins``) one candidate suffices when the
    choice's fit on all points leaves a residual that looks like white noise:
    its mean square within two standard deviations of the noise variance
    estimated from differences of neighbouring values, and no Gaussian bump in
    it that a matched filter scores above what white noise reaches in about
    99% of draws (a larger K would find nothing there that the next candidate
    does not show). The chosen fit on all points is polished to ``tol`` as
    ``best_estimator_``.

    A 1-D density with ``loss='l2'`` that ``K`` components fit exactly has at
    most ``K`` peaks (a mixture of K Gaussians on a line has at most K modes).
    The search first fits, from the data alone, as many components as the
    density has clear peaks (prominence of at least 20 standard deviations of
    the white noise estimated from differences of neighbouring values); when
    that fit is exact the search ends there, the smaller candidates NaN in
    ``cv_results_``. Otherwise every candidate is scored (noise that is not
    white can fake clear peaks).

    Folds of grid points must be shuffled: contiguous folds of a grid hold
    out whole regions of it, where no fit can predict a component it never
    saw (a warning says so). Warnings also flag a choice at the largest
    candidate and, for held-out points, a best score below 0.5 (held-out
    counts of a small histogram score low whatever the model: Poisson noise).

    Parameters
    ----------
    n_components : int or array-like of int, default=None
        The candidate numbers of components: an int ``m`` means ``1..m``,
        None means ``1..8``.

    cv : int, cross-validation generator or iterable, default=None
        None is 10 shuffled folds on grids of at most 1,000 points and 5 on
        larger ones, never more folds than points (count splitting: 5 folds);
        an int is that many shuffled folds (unlike scikit-learn's default, see
        above; more than the grid's points is an error); splitters and
        iterables of ``(train, test)`` indices are used as given.

    selection : {'auto', 'standard_error', 'best', 'bic', 'aic'}, default='auto'
        How the candidates are compared. 'standard_error' picks the smallest
        candidate whose mean held-out score is within ``n_standard_errors``
        standard errors of the best mean, the error being that of the
        *paired* per-fold differences between the two candidates (the folds
        are shared); 'best' picks the best mean score; 'bic' and 'aic' pick
        the lowest information criterion of the binned Poisson likelihood of
        the fits on all points (histograms of counts only; no folds). 'auto'
        is 'bic' for histograms of counts (``loss='poisson'``, ``y`` of
        non-negative integers, no ``sample_weight``, ``scale=None``) and
        'standard_error' otherwise.

    n_standard_errors : float, default=2.0
        The margin of the 'standard_error' rule, in paired standard errors.

    early_stopping : bool or int, default=True
        Stop growing ``K`` once the choice (or the best mean score) is this
        many candidates behind, see above (True is 2, or 1 once the choice's
        fit on all points leaves only white noise, see above: l2 loss on a
        rectilinear grid without sample weights or bins only, never with
        'bic' or 'aic'; False evaluates every candidate). An exact fit
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

    covariance_type, loss, tol, reg_covar, max_iter, n_init, init_params, scale, bins
        Passed on to :class:`DensityGMM` (``bins``: histograms fitted with
        their bins integrated; every fit on the path is then integrated,
        which costs more). ``n_init`` is the number of starts
        of each fit on the path.

    Attributes
    ----------
    n_components_ : int
        The chosen number of components.

    best_estimator_ : DensityGMM
        The path's fit with ``n_components_`` components, polished to ``tol``
        on all points; its ``random_state`` is the search's.

    best_score_ : float
        Mean cross-validated score (pooled R^2 or D^2) of the chosen number
        of components.

    best_params_ : dict
        ``{"n_components": n_components_}``, as in GridSearchCV.

    held_out_ : {'counts', 'points'}
        What was held out.

    best_index_ : int
        Index of the chosen candidate in ``cv_results_``.

    cv_results_ : dict of ndarrays
        In :class:`~sklearn.model_selection.GridSearchCV`'s shape:
        ``param_n_components``, ``params``, ``split{i}_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score`` (rank by
        mean score; the selection rule may choose another), ``mean_fit_time``
        and ``std_fit_time`` (of the fold refits: the shared one-step work
        split evenly over the folds, plus each fold's own refit where one was
        made; the path's fits on all points are not included).

    n_iter_ : int
        Optimiser iterations of the refitted best model.

    n_features_in_ : int
        Number of grid dimensions seen during fit.

    See Also
    --------
    DensityGMM : The mixture fitted for a given number of components.

    Notes
    -----
    Two engines run the search above. On grids of at most 1,000 points with
    ``loss='l2'``, held-out grid points in ``cv`` shuffled folds (None or an
    int), the candidates ``1..m``, no ``scale`` or ``bins`` and the default
    starts (``n_init=2``, ``init_params='kmeans'``), the batched engine of
    :func:`fit_many` runs it on this one density: each step of the path is
    the grown fit and one start from density-weighted EM, every fold is
    refitted for real by Levenberg-Marquardt (all folds in one batched run),
    and the chosen fit is polished by :class:`DensityGMM`'s engine. This is
    the search ``fit_many`` runs for a batch of densities, so a density gets
    the same ``K`` alone and in a batch. A density it cannot score, or whose
    fit at the chosen ``K`` did not converge or has a parked or duplicated
    component, goes to the path of single fits with the same folds. All
    other settings use the path of single fits: ``n_init`` starts per step
    (in parallel with ``n_jobs``), and on grids of over 1,000 points real
    fold refits only for a candidate whose one-step score would lead.
    ``docs/choosing_k.md`` gives the measured accuracy of both.

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
        init_params="kmeans",
        scale=None,
        bins=None,
    ):
        self.n_components = n_components
        self.cv = cv
        self.selection = selection
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
        counts = self.loss == "poisson" and sample_weight is None and self.scale is None
        counts = counts and are_counts(y)
        selection = self.selection
        if selection == "auto":
            selection = "bic" if counts else "standard_error"
        if selection in ("bic", "aic") and not counts:
            raise ValueError(
                f"selection={selection!r} needs the likelihood of a histogram: loss='poisson', "
                "y of non-negative integer counts, no sample_weight and scale=None. Use "
                "selection='standard_error' for other densities."
            )
        if _batch_cv.covers(self, X) and self._fit_batched(X, y, sample_weight, weights, rng):
            return self
        folds = None if selection in ("bic", "aic") else self._held_out_folds(X, y, weights, rng)
        base = DensityGMM(
            random_state=rng.randint(np.iinfo(np.int32).max),
            **{name: getattr(self, name) for name in _PASSED_ON},
        )
        path = _Path(
            base,
            X,
            y,
            weights,
            rng.randint(np.iinfo(np.int32).max),
            self.n_jobs,
            # the noise tests compare with white noise on the points as given
            noise_tests=sample_weight is None and self.bins is None,
        )
        if folds is None:
            scores, fit_times, exact = self._scan_criterion(candidates, path, y, selection)
        else:
            scores, fit_times, exact = self._scan(candidates, path, folds, selection)
        self.cv_results_ = cv_results(candidates, scores, fit_times)
        # an exact fit ends the search and wins: a smaller candidate that does not fit never does
        if exact is not None:
            self.best_index_ = exact
        elif folds is None:
            self.best_index_ = select(scores, "best")
        else:
            self.best_index_ = select(scores, selection, self.n_standard_errors)
        self.n_components_ = int(candidates[self.best_index_])
        self.best_params_ = {"n_components": self.n_components_}
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        self.held_out_ = "none" if folds is None else folds.kind
        # the path's fit on all points already had n_init starts: polish it to tol
        # (the chosen K always has one: a K without a finite fit scores -inf)
        estimator = clone(base).set_params(
            n_components=self.n_components_, random_state=self.random_state
        )
        self.best_estimator_ = _polished(
            estimator, X, y, sample_weight, path.fits[self.n_components_], base.random_state
        )
        self.n_iter_ = self.best_estimator_.n_iter_
        self._warn_about_the_choice(candidates, folds)
        return self

    def _fit_batched(self, X, y, sample_weight, weights, rng):
        """The search of :func:`~._batch_cv.choose_block` on this one density.

        Returns False, with ``rng`` as it was, when that search leaves the
        density to the path (it cannot score it, or the fit at the chosen K
        did not pass the gate).
        """
        state = rng.get_state()
        try:
            choice = _batch_cv.choose_block(
                self, X, y[None], None if sample_weight is None else weights[None], seeds=[rng]
            )
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            choice = None  # a numerical fault of the batched search: fit_many's rule
        if choice is None or choice.n_components[0] == 0:
            rng.set_state(state)
            return False
        candidates, scores = choice.candidates, choice.scores[0]
        fit_times = np.where(np.isnan(scores), np.nan, choice.fit_times)
        self.cv_results_ = cv_results(candidates, scores, fit_times)
        ((_, weights_, means, _, precisions_cholesky, scale, *_),) = choice.groups
        self.n_components_ = int(weights_.shape[1])
        self.best_index_ = int(np.flatnonzero(candidates == self.n_components_)[0])
        self.best_params_ = {"n_components": self.n_components_}
        self.best_score_ = float(choice.best_score[0])
        self.held_out_ = "points"
        if self.verbose:
            for k, mean in zip(candidates, scores.mean(axis=0), strict=True):
                if not np.isnan(mean):
                    print(f"DensityGMMCV: n_components={k}, mean score {mean:.6g}")
        # the search's fit at the chosen K, polished by the single fit's engine
        # (its checks and warnings are DensityGMM's)
        estimator = DensityGMM(
            n_components=self.n_components_,
            random_state=self.random_state,
            **{name: getattr(self, name) for name in _PASSED_ON},
        )
        problem = problem_of(estimator, *check_grid_density(estimator, X, y), sample_weight)
        start = problem.to_fit(weights_[0], means[0], precisions_cholesky[0], scale[0])
        self.best_estimator_ = _polished(
            estimator, X, y, sample_weight, start, rng.randint(np.iinfo(np.int32).max)
        )
        self.n_iter_ = self.best_estimator_.n_iter_
        for message in choice_warnings(candidates, self.n_components_, self.best_score_, "points"):
            warn_at_caller(message)
        return True

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

    def _scan_criterion(self, candidates, path, y, criterion):
        """Minus half the information criterion of each candidate's fit on all points.

        (A "score" of one split, higher is better, in ``cv_results_``'s shape.)
        The path stops once the best is ``early_stopping`` candidates behind.
        """
        scores = np.full((1, len(candidates)), np.nan)
        fit_times = np.zeros_like(scores)
        patience = PATIENCE if self.early_stopping is True else int(self.early_stopping)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            for index, n_components in enumerate(candidates):
                path_fit = None if n_components > len(y) else path.fit(n_components)
                if path_fit is None:
                    scores[:, index] = -np.inf
                    continue
                scores[0, index] = -0.5 * information_criterion(*path_fit, y, criterion)
                if self.early_stopping and has_peaked(scores[:, : index + 1], patience):
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

    def _warn_about_the_choice(self, candidates, folds):
        kind = None if folds is None else folds.kind
        for message in choice_warnings(candidates, self.n_components_, self.best_score_, kind):
            warn_at_caller(message)

    def _folds(self, rng, n_points):
        if self.cv is None or isinstance(self.cv, Integral):
            n_splits = n_point_folds(self.cv, n_points)
            return KFold(n_splits, shuffle=True, random_state=rng.randint(np.iinfo(np.int32).max))
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
        return self.best_estimator_.bic(X, y, sample_weight)


def choice_warnings(candidates, n_components, best_score, held_out):
    """The warnings a choice of ``n_components`` among ``candidates`` deserves, as text.

    The largest candidate (the density may hold more), and, with held-out
    grid points (``held_out="points"``), a best score below ``LOW_SCORE``.
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


def _polished(estimator, X, y, sample_weight, start, seed):
    """``estimator`` fitted by one run from ``start`` (a path's parameter vector)."""
    X, y = check_grid_density(estimator, X, y)
    warn_if_density_is_cut_at_the_edge(X, y)
    problem = problem_of(estimator, X, y, sample_weight)
    warn_if_underdetermined(problem)
    settings = FitSettings.of(estimator)
    result = fit_problem(problem, settings, check_random_state(seed), start=start)
    fit = MixtureFit.from_result(problem, result)
    warn_if_components_are_redundant(fit.set_on(estimator), fit)
    return estimator


class _Path:
    """Fits on all points along ``K = 1, 2, ...``, in standardised coordinates.

    Each ``K`` has ``n_init`` starts (at least one from the data, and the fit
    with ``K - 1`` components plus a component at the largest residual) and
    keeps the one that ends lowest (:func:`~._engine.path_fit`). The problem
    is set up once, so fits skip the estimator's per-call validation.
    """

    def __init__(self, base, X, y, weights, random_state, n_jobs, noise_tests=True):
        self.settings = FitSettings(
            tol=max(base.tol, CV_TOL),
            max_iter=min(base.max_iter, CV_MAX_ITER),
            n_init=base.n_init,
            init_params=base.init_params,
            reg_covar=base.reg_covar,
        )
        self.n_jobs = n_jobs
        self.random_state = check_random_state(random_state)
        self.problem = problem_of(base.set_params(n_components=1), X, y, weights)
        self.fits = {}  # n_components -> parameter vector (None: no finite fit)
        self.losses = {}  # n_components -> its loss on all points
        # in the density's unit (densities of 1e-300 or 1e300 neither under- nor overflow)
        unit = self.problem.standardisation.density_unit
        noise = noise_variance(X, y / unit) if base.loss == "l2" else None
        # the relative loss that white noise alone would leave
        self.noise_loss = None if noise is None else noise / self.problem.data.normaliser
        # for leaves_noise: the grid, the noise variance in the targets' unit, the
        # fits' largest residual bumps (none without sample weights' or bins' tests)
        self.X, self.noise, self.noise_tests = X, noise, noise_tests
        self.bumps = {}
        self.problems = {}  # n_components -> problem
        # the density's clear peaks: fewer components cannot fit it exactly
        self.first = int(least_components(X, y / unit, noise, weights)[0])

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
        result = path_fit(problem, None, self.settings, self.random_state, ftol=CV_FTOL)
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
            result = path_fit(
                self.problems[k],
                self.fits.get(k - 1),
                self.settings,
                self.random_state,
                ftol=CV_FTOL,
                n_jobs=self.n_jobs,
                grown_gain=PATH_GROWN_GAIN,
            )
            self.fits[k] = None if result is None else result.theta
            self.losses[k] = np.inf if result is None else result.loss
        theta = self.fits[n_components]
        return None if theta is None else (theta, self.problems[n_components])

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
