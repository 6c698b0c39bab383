"""Choosing the number of components by cross-validation over grid points."""

import time
import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, check_cv
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted

from ._estimator import DensityGMM, score_prediction
from ._initialization import grown_start
from ._validation import (
    check_density_values,
    check_grid_density,
    check_sample_weight,
    quadrature_weights,
)

CV_TOL = 1e-5
CV_MAX_ITER = 200
# Differences of mean R^2 / D^2 below this are rounding, not evidence.
SCORE_RESOLUTION = 1e-8

_PASSED_ON = (
    "covariance_type",
    "loss",
    "tol",
    "reg_covar",
    "max_iter",
    "n_init",
    "init_params",
    "scale",
)


class DensityGMMCV(RegressorMixin, BaseEstimator):
    """:class:`DensityGMM` with the number of components chosen by cross-validation.

    The grid points are split into shuffled folds; for each fold a mixture
    with each candidate number of components is fitted to the training points
    and scored on the held-out points (R^2 for ``loss='l2'``, D^2 for
    ``loss='poisson'``). Along the path ``K = 1, 2, ...`` each fit also starts
    from the previous fit plus a component placed at the largest residual,
    and keeps whichever start ends lower. The smallest ``K`` whose mean score
    is within one standard error of the best is chosen (``selection``), and a
    :class:`DensityGMM` with it is refitted on all points.

    Folds must be shuffled: contiguous folds of a grid hold out whole regions
    of it, where no fit can predict a component it never saw.

    Parameters
    ----------
    n_components : int or array-like of int, default=None
        The candidate numbers of components: an int ``m`` means ``1..m``,
        None means ``1..8``.

    cv : int, cross-validation generator or iterable, default=None
        None is 5 shuffled folds; an int is that many shuffled folds (unlike
        scikit-learn's default, see above); splitters and iterables of
        ``(train, test)`` indices are used as given.

    selection : {'one_standard_error', 'best'}, default='one_standard_error'
        'one_standard_error' picks the smallest candidate whose mean score is
        at least the best mean minus its standard error across folds; 'best'
        picks the best mean score.

    early_stopping : bool, default=True
        Stop growing ``K`` once two candidates beyond the current choice have
        not changed it; the candidates not evaluated get a NaN score in
        ``cv_results_`` (as GridSearchCV reports failed fits) and rank last.

    n_jobs : int, default=None
        Folds run in parallel with joblib (``-1``: all cores).

    random_state : int, RandomState instance or None, default=None
        Seeds the fold shuffling and the fits.

    verbose : int, default=0
        Print progress when positive.

    covariance_type, loss, tol, reg_covar, max_iter, n_init, init_params, scale
        Passed on to :class:`DensityGMM`.

    Attributes
    ----------
    n_components_ : int
        The chosen number of components.

    best_estimator_ : DensityGMM
        The mixture with ``n_components_`` components refitted on all points.

    best_score_ : float
        Mean cross-validated score of the chosen number of components.

    best_index_ : int
        Index of the chosen candidate in ``cv_results_``.

    cv_results_ : dict of ndarrays
        In :class:`~sklearn.model_selection.GridSearchCV`'s shape:
        ``param_n_components``, ``params``, ``split{i}_test_score``,
        ``mean_test_score``, ``std_test_score``, ``rank_test_score`` (rank by
        mean score; the selection rule may choose another), ``mean_fit_time``
        and ``std_fit_time``.

    n_iter_ : int
        Optimiser iterations of the refitted best model.

    n_features_in_ : int
        Number of grid dimensions seen during fit.

    See Also
    --------
    DensityGMM : The mixture fitted for a given number of components.

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
        "selection": [StrOptions({"one_standard_error", "best"})],
        "early_stopping": ["boolean"],
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
        selection="one_standard_error",
        early_stopping=True,
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
    ):
        self.n_components = n_components
        self.cv = cv
        self.selection = selection
        self.early_stopping = early_stopping
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags

    def _candidates(self):
        if self.n_components is None:
            return np.arange(1, 9)
        if isinstance(self.n_components, Integral):
            return np.arange(1, self.n_components + 1)
        candidates = np.unique(np.asarray(self.n_components))
        if candidates.ndim != 1 or candidates.size == 0 or candidates.min() < 1:
            raise ValueError(
                "n_components should be a positive int or a list of positive ints, "
                f"got {self.n_components!r}."
            )
        return candidates.astype(int)

    @_fit_context(prefer_skip_nested_validation=True)
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
        folds = self._folds(rng)
        splits = list(folds.split(X, y))
        base = DensityGMM(
            random_state=rng.randint(np.iinfo(np.int32).max),
            **{name: getattr(self, name) for name in _PASSED_ON},
        )
        scores = np.full((len(splits), len(candidates)), np.nan)
        fit_times = np.full_like(scores, np.nan)
        n_unconverged = 0
        previous = [None] * len(splits)
        parallel = Parallel(n_jobs=self.n_jobs)
        for index, n_components in enumerate(candidates):
            results = parallel(
                delayed(_fit_and_score_fold)(base, n_components, prior, X, y, weights, *split)
                for prior, split in zip(previous, splits, strict=True)
            )
            scores[:, index] = [r[0] for r in results]
            fit_times[:, index] = [r[1] for r in results]
            n_unconverged += sum(not r[2].converged_ for r in results if r[2] is not None)
            previous = [r[2] for r in results]
            if self.verbose:
                print(
                    f"DensityGMMCV: n_components={n_components}, mean score "
                    f"{np.mean(scores[:, index]):.6g}"
                )
            if self.early_stopping and _path_has_peaked(
                candidates[: index + 1], scores[:, : index + 1], self.selection
            ):
                break
        if n_unconverged:
            warnings.warn(
                f"{n_unconverged} cross-validation fits did not converge; their scores "
                "still count. Increase max_iter or n_init.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cv_results_ = _cv_results(candidates, scores, fit_times)
        self.best_index_ = _select(
            self.cv_results_["mean_test_score"], _standard_error(scores), self.selection
        )
        self.n_components_ = int(candidates[self.best_index_])
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        self.best_estimator_ = clone(base).set_params(n_components=self.n_components_)
        self.best_estimator_.fit(X, y, sample_weight=sample_weight)
        self.n_iter_ = self.best_estimator_.n_iter_
        return self

    def _folds(self, rng):
        if self.cv is None or isinstance(self.cv, Integral):
            n_splits = 5 if self.cv is None else self.cv
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


def _fit_and_score_fold(base, n_components, previous, X, y, weights, train, test):
    """Fit ``n_components`` on the training points and score the held-out ones.

    Two starts: the data-driven one and, when the fold's fit with one
    component fewer is given, that fit plus a component at the largest
    residual. The lower training loss wins. Returns ``(score, seconds, fit)``.
    """
    start = time.perf_counter()
    X_train, y_train, w_train = X[train], y[train], weights[train]
    if not np.any(weights[test] > 0) or not np.any(w_train > 0):
        raise ValueError(
            "A cross-validation fold has zero total sample_weight, so it cannot be "
            "scored. Use fewer folds, or give weight to more points."
        )
    if n_components > len(train):
        return -np.inf, 0.0, None
    if not np.any(y_train > 0):
        # no mixture fits a density without positive values; the best non-negative
        # model under either loss is zero everywhere, so that is what gets scored
        zero = np.zeros(len(test))
        return score_prediction(base.loss, y[test], zero, weights[test]), 0.0, None
    with warnings.catch_warnings():
        # per-fold warnings would repeat for every fold; the refit on all points warns once
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        single = clone(base).set_params(
            n_components=n_components,
            n_init=1,
            tol=max(base.tol, CV_TOL),
            max_iter=min(base.max_iter, CV_MAX_ITER),
        )
        grown = (
            grown_start(previous, X_train, y_train, w_train)
            if previous is not None and previous.n_components == n_components - 1
            else None
        )
        fits = [single.fit(X_train, y_train, w_train)]
        if grown is not None:
            fits.append(clone(single).set_params(**grown).fit(X_train, y_train, w_train))
    best = min(fits, key=lambda fit: fit.loss_)
    score = best.score(X[test], y[test], sample_weight=weights[test])
    return score, time.perf_counter() - start, best


def _path_has_peaked(candidates, scores, selection):
    """True once two candidates beyond the current choice have not changed it."""
    mean = scores.mean(axis=0)
    if not np.all(np.isfinite(mean)):
        return False
    chosen = _select(mean, _standard_error(scores), selection)
    return len(candidates) - 1 - chosen >= 2


def _standard_error(scores):
    """Standard error of the mean score over folds (sample standard deviation)."""
    n_splits = len(scores)
    if n_splits < 2:
        return np.zeros(scores.shape[1])
    return scores.std(axis=0, ddof=1) / np.sqrt(n_splits)


def _cv_results(candidates, scores, fit_times):
    mean = scores.mean(axis=0)
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


def _select(mean, standard_error, selection):
    finite = np.isfinite(mean)  # NaN: not evaluated (early stopping); -inf: not fittable
    if not finite.any():
        raise ValueError(
            "No candidate number of components could be scored on every fold. "
            "Use fewer components or fewer folds."
        )
    best = int(np.argmax(np.where(finite, mean, -np.inf)))
    if selection == "best":
        return best
    error = standard_error[best] if np.isfinite(standard_error[best]) else 0.0
    threshold = mean[best] - max(error, SCORE_RESOLUTION)
    return int(np.flatnonzero(finite & (mean >= threshold))[0])
