"""Choosing the number of components by cross-validation over grid points."""

import time
import warnings
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, check_cv
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._compat import Interval, StrOptions, fit_context
from ._engine import FitSettings, MixtureFit, fit_problem, minimize, path_fit
from ._estimator import DensityGMM
from ._objective import gauss_newton_by_group, model_density, point_losses
from ._optimization import lowering_step
from ._problem import problem_of
from ._reports import (
    score_prediction,
    warn_if_components_are_redundant,
    warn_if_density_is_cut_at_the_edge,
    warn_if_underdetermined,
)
from ._validation import (
    check_density_values,
    check_grid_density,
    check_sample_weight,
    quadrature_weights,
)

CV_TOL = 1e-5
# Fits on the path stop once a step gains less than this fraction of the
# loss: the held-out scores do not need more digits.
CV_FTOL = 1e-4
CV_MAX_ITER = 50
# Fold refits start one step from the fit on all points and stop with the
# path's CV_FTOL (in practice within 1 to 9 iterations); this caps the rest.
FOLD_MAX_ITER = 30
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

    The candidates are fitted to all points along the path ``K = 1, 2, ...``
    (through every ``K`` up to the largest candidate), each from ``n_init``
    starts: the previous fit plus a component placed at the largest residual,
    and data-driven ones (at least one), keeping whichever ends lowest.
    The grid points are split into shuffled folds; for each fold and
    candidate, the fit on all points is refitted to the fold's training
    points by one Levenberg-Marquardt step (the one-step approximation of
    cross-validation) and scored on its held-out points (R^2 for
    ``loss='l2'``, D^2 for ``loss='poisson'``). One step is accurate where
    the fit is well determined and optimistic for surplus components, along
    which the loss is flat: a candidate whose one-step mean score would lead
    is scored again after real refits of its folds (at most 30 iterations
    from the step). This makes the whole selection cost a few single fits.
    The fold fits still start from the fit that has seen their held-out
    points, a mild optimism that favours more components, which the
    one-standard-error rule offsets (the selection tests measure the
    outcome). The smallest ``K``
    whose mean score is within one standard error of the best is chosen
    (``selection``), and its fit on all points is polished to ``tol`` as
    ``best_estimator_``.

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

    early_stopping : bool or int, default=True
        Stop growing ``K`` once this many candidates beyond the current choice
        have not changed it (True is 1; False evaluates every candidate); the
        candidates not evaluated get a NaN score in ``cv_results_`` (as
        GridSearchCV reports failed fits) and rank last.

    n_jobs : int, default=None
        The starts of each fit on the path run in parallel with joblib
        (``-1``: all cores); worth it on large grids only.

    random_state : int, RandomState instance or None, default=None
        Seeds the fold shuffling and the fits.

    verbose : int, default=0
        Print progress when positive.

    covariance_type, loss, tol, reg_covar, max_iter, n_init, init_params, scale
        Passed on to :class:`DensityGMM`. ``n_init`` is the number of starts
        of each fit on the path.

    Attributes
    ----------
    n_components_ : int
        The chosen number of components.

    best_estimator_ : DensityGMM
        The path's fit with ``n_components_`` components, polished to ``tol``
        on all points.

    best_score_ : float
        Mean cross-validated score of the chosen number of components.

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
        "early_stopping": ["boolean", Interval(Integral, 1, None, closed="left")],
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
        candidates = np.asarray(self.n_components)
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
                f"got {self.n_components!r}."
            )
        return np.unique(candidates).astype(int)

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
        folds = self._folds(rng)
        splits = list(folds.split(X, y))
        base = DensityGMM(
            random_state=rng.randint(np.iinfo(np.int32).max),
            **{name: getattr(self, name) for name in _PASSED_ON},
        )
        _check_folds_have_weight(splits, weights)
        scores = np.full((len(splits), len(candidates)), np.nan)
        fit_times = np.full_like(scores, np.nan)
        path = _Path(base, X, y, weights, rng.randint(np.iinfo(np.int32).max), self.n_jobs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            # more components than a fold has training points cannot be fitted
            # (DensityGMM refuses them): such a candidate scores -inf, and the
            # path is not grown to it
            smallest_training_fold = min(len(np.unique(train)) for train, _ in splits)
            for index, n_components in enumerate(candidates):
                if n_components > smallest_training_fold:
                    scores[:, index] = -np.inf
                    continue
                path_fit = path.fit(n_components)
                if path_fit is None:
                    scores[:, index] = -np.inf
                    continue
                start = time.perf_counter()
                fits = _one_step_fold_fits(path_fit, y, splits)
                scores[:, index] = _score_folds(path_fit, fits, self.loss, y, weights, splits)
                # the shared one-step work, split evenly over the folds
                fit_times[:, index] = (time.perf_counter() - start) / len(splits)
                evaluated = scores[:, :index].mean(axis=0)
                evaluated = evaluated[np.isfinite(evaluated)]
                if evaluated.size and scores[:, index].mean() > evaluated.max():
                    # One step is accurate where the fit is well determined, and
                    # optimistic for surplus components (the loss is flat along
                    # them): a candidate that would lead is checked by real refits.
                    fits = _refit_folds(
                        path_fit,
                        fits,
                        weights,
                        splits,
                        self.tol,
                        self.max_iter,
                        fit_times[:, index],
                    )
                    scores[:, index] = _score_folds(path_fit, fits, self.loss, y, weights, splits)
                if self.verbose:
                    print(
                        f"DensityGMMCV: n_components={n_components}, mean score "
                        f"{np.mean(scores[:, index]):.6g}"
                    )
                if self.early_stopping and _path_has_peaked(
                    candidates[: index + 1],
                    scores[:, : index + 1],
                    self.selection,
                    int(self.early_stopping),
                ):
                    break
        self.cv_results_ = _cv_results(candidates, scores, fit_times)
        self.best_index_ = _select(
            self.cv_results_["mean_test_score"], _standard_error(scores), self.selection
        )
        self.n_components_ = int(candidates[self.best_index_])
        self.best_score_ = float(self.cv_results_["mean_test_score"][self.best_index_])
        # the path's fit on all points already had n_init starts: polish it to tol
        # (the chosen K always has one: a K without a finite fit scores -inf)
        self.best_estimator_ = _polished(
            clone(base).set_params(n_components=self.n_components_),
            X,
            y,
            sample_weight,
            path.fits[self.n_components_],
        )
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


def _polished(estimator, X, y, sample_weight, start):
    """``estimator`` fitted by one run from ``start`` (a path's parameter vector)."""
    X, y = check_grid_density(estimator, X, y)
    warn_if_density_is_cut_at_the_edge(X, y)
    problem = problem_of(estimator, X, y, sample_weight)
    warn_if_underdetermined(problem)
    settings = FitSettings.of(estimator)
    result = fit_problem(problem, settings, check_random_state(estimator.random_state), start=start)
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

    def __init__(self, base, X, y, weights, random_state, n_jobs):
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
        self.problems = {}  # n_components -> problem

    def fit(self, n_components):
        """``(theta, problem)`` of the fit on all points, or None if none is finite.

        The path passes through every ``K`` below ``n_components``: each grows
        from the last.
        """
        for k in range(len(self.fits) + 1, n_components + 1):
            self.problems[k] = self.problem.with_components(k)
            self.fits[k] = path_fit(
                self.problems[k],
                self.fits.get(k - 1),
                self.settings,
                self.random_state,
                ftol=CV_FTOL,
                n_jobs=self.n_jobs,
            )
        theta = self.fits[n_components]
        return None if theta is None else (theta, self.problems[n_components])


def _check_folds_have_weight(splits, weights):
    for train, test in splits:
        if not np.any(weights[test] > 0) or not np.any(weights[train] > 0):
            raise ValueError(
                "A cross-validation fold has zero total sample_weight, so it cannot be "
                "scored. Use fewer folds, or give weight to more points."
            )


def _one_step_fold_fits(path_fit, y, splits):
    """Each fold's refit of the all-points fit by one Levenberg-Marquardt step.

    The step lowers the loss of the fold's training points (the one-step
    approximation of cross-validation: where the all-points fit is well
    determined it is near every fold's optimum, and the step lands close to
    it). The Jacobian is computed once for all folds. Folds that cannot be
    fitted (see :func:`_scorable`) get None.
    """
    theta, problem = path_fit
    data, bounds = problem.data, problem.bounds
    counts = np.zeros((len(splits), len(y)))  # repeated training indices count repeatedly
    for row, (train, _) in zip(counts, splits, strict=True):
        np.add.at(row, train, 1.0)
    values, gradients, matrices = gauss_newton_by_group(theta, data, counts)
    fits = []
    for fold, (train, _) in enumerate(splits):
        if not _scorable(data, y, train):
            fits.append(None)
            continue
        terms = (values[fold], gradients[fold], matrices[fold])
        if not all(np.all(np.isfinite(term)) for term in terms):
            fits.append(theta)
            continue
        fits.append(
            lowering_step(
                theta,
                *terms,
                bounds,
                lambda candidate, row=counts[fold]: row @ point_losses(candidate, data),
            )
        )
    return fits


def _refit_folds(path_fit, fits, weights, splits, tol, max_iter, seconds):
    """Each fold's fit minimised on its training points, from ``fits``.

    Each fold's time is added to ``seconds``.
    """
    _, problem = path_fit
    refits = []
    for fold, (fit, (train, _)) in enumerate(zip(fits, splits, strict=True)):
        if fit is None:
            refits.append(None)
            continue
        start = time.perf_counter()
        result = minimize(
            problem.subset(train),
            fit,
            tol=max(tol, CV_TOL),
            max_iter=min(max_iter, FOLD_MAX_ITER),
            ftol=CV_FTOL,
        )
        refits.append(result.theta if np.isfinite(result.loss) else fit)
        seconds[fold] += time.perf_counter() - start
    return refits


def _scorable(data, y, train):
    """Whether a fold's training points can be fitted (enough of them, some positive)."""
    return len(train) >= data.layout.n_components and np.any(y[train] > 0)


def _score_folds(path_fit, fits, loss, y, weights, splits):
    """Held-out score (R^2 or D^2) of each fold's fit."""
    data = path_fit[1].data
    scores = np.empty(len(splits))
    for fold, (fit, (train, test)) in enumerate(zip(fits, splits, strict=True)):
        if len(train) < data.layout.n_components:
            scores[fold] = -np.inf
        elif fit is None:
            # no mixture fits a density without positive values; the best
            # non-negative model under either loss is zero everywhere
            scores[fold] = score_prediction(loss, y[test], np.zeros(len(test)), weights[test])
        else:
            held_out = data.subset(test)
            # R^2 and D^2 do not change when density and model share a unit, so
            # the standardised ones are scored directly
            predicted = model_density(fit, held_out)
            scores[fold] = score_prediction(loss, held_out.target, predicted, weights[test])
    return scores


def _path_has_peaked(candidates, scores, selection, patience):
    """True once ``patience`` candidates beyond the current choice have not changed it."""
    mean = scores.mean(axis=0)
    if not np.all(np.isfinite(mean)):
        return False
    chosen = _select(mean, _standard_error(scores), selection)
    return len(candidates) - 1 - chosen >= patience


def _standard_error(scores):
    """Standard error of the mean score over folds (sample standard deviation)."""
    n_splits = len(scores)
    if n_splits < 2:
        return np.zeros(scores.shape[1])
    with np.errstate(invalid="ignore"):  # -inf scores: NaN, which _select treats as 0
        return scores.std(axis=0, ddof=1) / np.sqrt(n_splits)


def _cv_results(candidates, scores, fit_times):
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
