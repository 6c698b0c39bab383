"""Fitting many densities at once: :func:`fit_many` and :class:`BatchFitResult`.

The densities are split into chunks of consecutive rows; each chunk is one
joblib task, so ``n_jobs`` spreads the chunks over local processes and
``joblib.parallel_config(backend="dask")`` over a Dask cluster, unchanged.
By default (``method="vectorized"``) the densities of a chunk on a shared grid
go through the single fit's engine together: every start of every density is a
row of the compiled kernel (:func:`~._estimator.fit_rows_of`), and a
``DensityGMMCV``'s criterion search walks every density's path at once
(:func:`~.cv.criterion_choices`). ``method="loop"`` (and the cases the
vectorised path does not cover: user starts, held-out scores, per-density
grids) fits the densities of a chunk one after the other, which is what lets a
density start from its neighbour's fit (``warm_start=True``).
"""

import math
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from joblib.parallel import get_active_backend
from sklearn import config_context, get_config
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array

from ._data.validation import check_no_gaps, quadrature_weights
from ._engine.prediction import background_values
from ._engine.problem import background_size
from ._engine.processes import available_cores
from ._engine.rows import kernel_threads
from ._estimator import DensityGMM, fit_rows_of, rows_standard_errors_of
from ._model.covariance import as_matrices_rows, own_covariances
from ._selection.cv import (
    _PASSED_ON,
    DensityGMMCV,
    criterion_choices,
    criterion_messages,
    kept_over_one_fewer,
    seed_draws,
    warn_if_cv_unused,
)

# A warm fit is kept when its loss is at most this many times the neighbour's
# loss plus the floor; otherwise the density is also fitted from a fresh start
# and the lower loss wins. Losses are relative (``loss_``): 1e-10 is a relative
# L2 error of 1e-5, far below what matters, so exact fits never fall back.
WARM_LOSS_RATIO = 2.0
WARM_LOSS_FLOOR = 1e-10
# The default chunk size depends on the number of densities only (never on
# n_jobs or the backend), so that warm-started results do not depend on them.
_TARGET_N_CHUNKS = 64
_MIN_CHUNK_SIZE = 16
_MAX_CHUNK_SIZE = 1000
# The vectorised path: chunks of at least _CHUNK_VALUES values (densities times points,
# within [16, 4096] densities). Each stage's Python runs once a chunk, holding the GIL
# while the kernel's threads wait: large chunks for small grids; the chunk's arrays hold
# a few rows of values a density, so that memory stays bounded on large grids.
_CHUNK_VALUES = 2**18
# The choice of K in a batch of at least _CV_PROCESS_MIN_DENSITIES: chunks of
# _CV_CHUNK_VALUES values, on processes with n_jobs > 1 (bench_batch_cv.py --n 10000).
_CV_CHUNK_VALUES = 2**16
_CV_PROCESS_MIN_DENSITIES = 4096
_MIN_VECTORIZED_CHUNK = 16
_MAX_VECTORIZED_CHUNK = 4096
# DensityGMMCV's candidates when n_components is None (its documented default).
_CV_DEFAULT_MAX_COMPONENTS = 8
# Under the Dask backend: a chunk lost with its worker is submitted again, up to
# this many times in all; Dask itself also retries a task this many times.
_MAX_DASK_SUBMISSIONS = 5
_DASK_RETRIES = 2
_COVARIANCE_SHAPES = {
    "full": lambda k, d: (k, d, d),
    "tied": lambda k, d: (d, d),
    "diag": lambda k, d: (k, d),
    "spherical": lambda k, d: (k,),
}


@dataclass(repr=False, eq=False)
class BatchFitResult:
    """Fitted parameters of many densities, one row per density.

    Returned by :func:`fit_many`. Rows that could not be fitted have
    ``failed[i] = True``, NaN parameters and the error in ``messages[i]``.

    Attributes
    ----------
    weights : ndarray of shape (n_densities, n_components)
        Mixture weights, as ``DensityGMM.weights_``.

    means : ndarray of shape (n_densities, n_components, n_features)
        Component means in grid units.

    covariances : ndarray
        ``DensityGMM.covariances_`` of each density, stacked: shape
        (n_densities, n_components, n_features, n_features) for 'full',
        (n_densities, n_features, n_features) for 'tied', (n_densities,
        n_components, n_features) for 'diag', (n_densities, n_components)
        for 'spherical'.

    precisions_cholesky : ndarray
        ``DensityGMM.precisions_cholesky_`` of each density, stacked like
        ``covariances``.

    scale : ndarray of shape (n_densities,)
        Total mass of each fitted density (``scale_``).

    loss : ndarray of shape (n_densities,)
        Final scale-free loss of each fit (``loss_``).

    n_iter : ndarray of shape (n_densities,)
        Optimiser iterations of each fit (0 for failed rows).

    converged : ndarray of bool of shape (n_densities,)
        Whether each fit converged (False for failed rows).

    failed : ndarray of bool of shape (n_densities,)
        True where the density could not be fitted (an error was raised).

    warm_started : ndarray of bool of shape (n_densities,)
        True where the kept fit started from the neighbour's fit, False where
        it started fresh (first row of a chunk, no successful neighbour, or a
        warm fit that fell back to a fresh start, or ``warm_start=False``).

    messages : list of str
        ``''`` for a clean fit; otherwise the text of the error (failed rows)
        or of the warnings raised while fitting that row (e.g. the
        ``ConvergenceWarning`` of a row that did not converge), one per line.

    fallback : ndarray of bool of shape (n_densities,)
        Always False: the vectorised path is the single fit's own engine, with
        no gate that sends rows back to ``DensityGMM.fit``. Kept so that code
        written for earlier versions still runs.

    estimators : list of DensityGMM or None
        The fitted estimators (None for failed rows) when ``fit_many`` was
        called with ``return_estimators=True``; None otherwise.

    n_components : int or ndarray of int of shape (n_densities,)
        Number of components of every fit; with a ``DensityGMMCV`` estimator,
        the number chosen for each density (0 for failed rows), the arrays
        being padded with NaN up to the largest candidate.

    covariance_type : str
        The covariance type of every fit.

    background : ndarray of shape (n_densities, n_terms) or None
        With a background, each density's ``background_`` (its coefficients in grid
        units and the units of ``y``); None without one.

    background_term : None, str, int or callable
        The estimator's ``background`` parameter, which ``background`` holds the
        coefficients of.

    background_origin : ndarray of shape (n_densities, n_features) or None
        With a background, each density's ``background_origin_``: the point its
        coefficients' coordinates are measured from.

    fitted_with : DensityGMM or DensityGMMCV
        The estimator ``fit_many`` was given (its settings; it is not fitted).
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    scale: np.ndarray
    loss: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    failed: np.ndarray
    warm_started: np.ndarray
    fallback: np.ndarray | None = None
    messages: list = field(default_factory=list)
    estimators: list | None = None
    n_components: int = 1
    covariance_type: str = "full"
    background: np.ndarray | None = None
    background_term: object = None
    background_origin: np.ndarray | None = None
    fitted_with: object = None

    def __post_init__(self):
        if self.fallback is None:
            self.fallback = np.zeros(len(self.scale), dtype=bool)

    def __len__(self):
        return len(self.scale)

    def __repr__(self):
        k = self.n_components
        if np.ndim(k) > 0:
            k = f"{int(np.min(k))}..{int(np.max(k))}" if np.size(k) else "0"
        return (
            f"BatchFitResult(n_densities={len(self)}, n_components={k}, "
            f"covariance_type={self.covariance_type!r}, n_failed={int(self.failed.sum())}, "
            f"n_not_converged={int(np.sum(~self.converged & ~self.failed))})"
        )

    def standard_errors(self, X, Y, sample_weight=None):
        """Standard errors of every fit's parameters, all densities at once.

        As :meth:`DensityGMM.standard_errors` (the delta method from the
        curvature of the loss, scaled by the residual variance for ``'l2'``,
        the information of the counts for ``'poisson'``), except that the
        curvature is the Gauss-Newton matrix the fits minimised with (as
        :func:`scipy.optimize.curve_fit` forms ``pcov``), where the single fit
        takes the exact Hessian: the two agree up to terms in the residuals,
        closely for a fit that explains its data. All rows are computed together
        (one compiled pass over the grid a density, one autograd pass a reported
        value), with no estimator built per row.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            The shared grid the densities were fitted on.
        Y : array-like of shape (n_densities, n_points)
            The densities, as passed to :func:`fit_many`.
        sample_weight : array-like of shape (n_points,) or (n_densities, n_points), \
                default=None
            As passed to :func:`fit_many`.

        Returns
        -------
        errors : dict
            ``weights``, ``means``, ``covariances``, ``scale`` (and ``background``
            with one), shaped like the result's arrays. NaN for failed rows and
            where the curvature does not determine the parameters.
        """
        if self.fitted_with is None:
            raise ValueError("This result does not say which estimator fitted it.")
        X, Y, weights, _ = _check_shared_inputs(X, Y, sample_weight)
        if len(Y) != len(self):
            raise ValueError(f"Y has {len(Y)} rows but the result holds {len(self)} fits.")
        weights = weights.values if isinstance(weights, _Shared) else weights
        out = {
            "weights": np.full(self.weights.shape, np.nan),
            "means": np.full(self.means.shape, np.nan),
            "covariances": np.full(self.covariances.shape, np.nan),
            "scale": np.full(self.scale.shape, np.nan),
        }
        if self.background is not None:
            out["background"] = np.full(self.background.shape, np.nan)
        counts = np.broadcast_to(self.n_components, (len(self),))
        settings = {name: getattr(self.fitted_with, name) for name in _PASSED_ON}
        names = ("weights", "means", "covariances", "precisions_cholesky", "scale")
        # arrays with an axis of components (padded to the largest K with DensityGMMCV)
        per_component = {"weights", "means"}
        if own_covariances(self.covariance_type):
            per_component |= {"covariances", "precisions_cholesky"}
        for k in np.unique(counts[~self.failed]):
            rows = np.flatnonzero((counts == k) & ~self.failed)
            parameters = tuple(
                getattr(self, name)[rows, :k]
                if name in per_component
                else getattr(self, name)[rows]
                for name in names
            )
            errors = rows_standard_errors_of(
                DensityGMM(n_components=int(k), **settings),
                X,
                Y[rows],
                _weights_of(weights, rows),
                parameters,
                None if self.background is None else self.background[rows],
            )
            for name, values in errors.items():
                if name in per_component:
                    out[name][rows, :k] = values
                else:
                    out[name][rows] = values
        return out

    def predict_density(self, X):
        """The fitted densities on a grid, one row per density.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            The grid to evaluate every fitted density on.

        Returns
        -------
        densities : ndarray of shape (n_densities, n_points)
            ``scale * sum_k weights[k] * N(X; means[k], covariances[k])`` for
            each row, plus its background if the fits have one; NaN rows for failed
            fits.
        """
        X = np.asarray(X, dtype=float)
        X = X.reshape(-1, 1) if X.ndim == 1 else X
        n_features = self.means.shape[2]
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ValueError(
                f"X should be a grid of shape (n_points, {n_features}), got shape {X.shape}."
            )
        n, k = self.weights.shape
        chol = as_matrices_rows(self.precisions_cholesky, self.covariance_type, k, n_features)
        weights, means = self.weights, self.means
        if np.ndim(self.n_components) > 0:
            # per-density K: components past a row's own K are NaN padding
            present = np.arange(k)[None, :] < np.asarray(self.n_components)[:, None]
            weights = np.where(present, weights, 0.0)
            means = np.where(present[..., None], means, 0.0)
            eye = np.broadcast_to(np.eye(n_features), chol.shape)
            chol = np.where(present[..., None, None], chol, eye)
        log_det = np.sum(np.log(np.abs(np.diagonal(chol, axis1=-2, axis2=-1))), axis=-1)
        out = np.empty((n, X.shape[0]))
        # bound the (rows x components x points x features) temporaries to ~1e7 values
        rows_per_batch = max(1, 10_000_000 // max(1, k * X.shape[0] * n_features))
        for start in range(0, n, rows_per_batch):
            rows = slice(start, start + rows_per_batch)
            # z = (x - mean) @ U for every row, component and point (sklearn's convention)
            z = (
                np.einsum("pd,nkde->nkpe", X, chol[rows])
                - np.einsum("nkd,nkde->nke", means[rows], chol[rows])[:, :, None, :]
            )
            log_pdf = (
                -0.5 * (n_features * np.log(2 * np.pi) + np.sum(z**2, axis=-1))
                + log_det[rows][:, :, None]
            )
            with np.errstate(under="ignore"):
                out[rows] = self.scale[rows, None] * np.einsum(
                    "nk,nkp->np", weights[rows], np.exp(log_pdf)
                )
        if self.background is not None:
            origins = np.nan_to_num(self.background_origin)
            for origin in np.unique(origins, axis=0):  # one for a shared grid
                rows = np.all(origins == origin, axis=1)
                out[rows] += background_values(
                    X, self.background_term, self.background[rows], origin
                )
        return out


def fit_many(
    X,
    Y,
    estimator,
    *,
    sample_weight=None,
    per_density_grids=False,
    n_jobs=None,
    chunk_size=None,
    warm_start=False,
    return_estimators=False,
    progress=False,
    method="vectorized",
):
    """Fit one Gaussian mixture to each of many densities.

    Each density (row of ``Y``) is fitted by a clone of ``estimator``, as
    ``clone(estimator).fit(X, Y[i])`` would. The rows are split into chunks
    of consecutive densities, and the chunks run through joblib: ``n_jobs``
    runs them in local processes, and within
    ``joblib.parallel_config(backend="dask")`` they run on a Dask cluster
    without any other change. A density that cannot be fitted does not stop
    the batch: its row is flagged in ``failed`` with the error in
    ``messages``, and a summary warning is raised at the end.

    Parameters
    ----------
    X : array-like of shape (n_points,) or (n_points, n_features), or list
        The grid shared by all densities. With ``per_density_grids=True``, a
        sequence of ``n_densities`` grids, each of shape ``(n_points_i,)`` or
        ``(n_points_i, n_features)``, with the same ``n_features``.

    Y : array-like of shape (n_densities, n_points), or list
        One density per row, on the grid ``X``. With
        ``per_density_grids=True``, a sequence of ``n_densities`` 1-D arrays,
        ``Y[i]`` of shape ``(n_points_i,)``.

    estimator : DensityGMM or DensityGMMCV
        The settings of every fit (``n_components``, ``covariance_type``,
        ``loss``, ...); it is cloned, never fitted itself. A ``DensityGMMCV``
        chooses K for each density (by its cross-validation, batched across
        the densities with ``method="vectorized"`` where its settings allow,
        else density by density); the arrays are then padded with NaN to the largest
        candidate K and ``result.n_components`` holds each density's K. An int
        ``random_state`` is used for every density, so each row is exactly
        what a single fit with that seed gives; a ``RandomState`` instance
        draws one seed per density in row order, so results do not depend on
        chunking.

    sample_weight : array-like, default=None
        Quadrature weights: None uses the cell sizes of the grid; an array of
        shape ``(n_points,)`` is used for every density, one of shape
        ``(n_densities, n_points)`` row by row. With
        ``per_density_grids=True``, None or a sequence of ``n_densities``
        arrays.

    per_density_grids : bool, default=False
        Whether ``X`` and ``Y`` are sequences of per-density grids and
        densities (the grids may differ in their number of points).

    n_jobs : int, default=None
        The vectorised path: the number of threads the compiled kernel fits
        rows on (``-1``: all cores; None: every core), the chunks run one
        after the other in this process. But a ``DensityGMMCV`` choosing K by
        its criterion for at least 4,096 densities, with ``n_jobs`` other than
        None and 1 and joblib's default backend (loky), runs its chunks on
        joblib's processes instead, a kernel thread each (the search's Python
        would hold the other threads back); warnings raised inside a worker
        reach ``messages`` and the summary, not the caller's filters, and the
        caller's ``numpy.seterr`` does not apply there. The loop: the number
        of chunks fitted at once by joblib's processes (None means 1 unless a
        ``joblib.parallel_config`` context says otherwise). Under the Dask
        backend, both send the chunks to the workers (``-1``: all of them).

    chunk_size : int, default=None
        Densities per joblib task. None uses ``ceil(n_densities / 64)``,
        clipped to ``[16, 1000]`` (for the vectorised path to ``[m, 4096]``,
        ``m`` the number of densities of ``2**18`` values, ``2**16`` for a
        ``DensityGMMCV`` with at least 4,096 densities, within ``[16,
        4096]``): it depends on the data and the estimator's type only, so results do not depend on
        ``n_jobs`` or the backend (they do depend on ``chunk_size`` with
        ``warm_start=True``, since each chunk starts fresh). Use smaller
        chunks to keep more workers busy.

    warm_start : bool, default=False
        Start each density from the fit of the previous density in its chunk
        (the last one that did not fail) instead of from data-driven starts:
        much cheaper when neighbouring densities look alike (pixels of an
        image, steps of a time series). A warm fit that did not converge or
        whose loss is more than ``WARM_LOSS_RATIO`` (2) times the neighbour's
        loss (plus ``WARM_LOSS_FLOOR``, 1e-10) is fitted again from a fresh
        start, and the lower loss is kept.

    return_estimators : bool, default=False
        Also return the fitted estimators (more memory, and more data sent
        back from the workers).

    progress : bool, default=False
        Show a progress bar over densities (needs ``tqdm``:
        ``pip install skdensityfit[progress]``).

    method : {"vectorized", "loop"}, default="vectorized"
        ``"vectorized"``: the densities of each chunk are fitted together by
        the single fit's engine, every start of every density a row of one
        compiled Levenberg-Marquardt (see ``docs/scaling.md``): the same search,
        starts and moves as ``DensityGMM.fit``, and the same warnings in
        ``messages``. A row is the single fit of its density to the last bit,
        whatever the other rows, their order, ``chunk_size`` and ``n_jobs``
        (with an integer or ``RandomState`` ``random_state``; None draws from
        numpy's global state). It needs a shared grid and data-driven
        starts: with per-density grids, ``warm_start=True``,
        ``return_estimators=True`` or an estimator with ``weights_init``,
        ``means_init`` or ``precisions_init``, the loop runs instead.
        With a ``DensityGMMCV`` choosing K by its criterion (the default), the
        search walks every density's path at once, with the rules of
        ``DensityGMMCV.fit``; held-out scores (``selection='standard_error'``
        or ``'best'``) run ``DensityGMMCV.fit`` per density.
        ``"loop"``: each density is fitted by its own ``DensityGMM.fit`` call.

    Returns
    -------
    result : BatchFitResult
        Arrays of fitted parameters with one row per density, and per-row
        ``converged``, ``failed``, ``warm_started`` and ``messages``.

    Warns
    -----
    UserWarning
        Once, when some densities could not be fitted.
    ConvergenceWarning
        Once, when some fits did not converge.

    See Also
    --------
    DensityGMM : The estimator used for each density.

    Examples
    --------
    Three spectra on a shared grid, the peak drifting from 4 to 6:

    >>> import numpy as np
    >>> from scipy.stats import norm
    >>> from skdensityfit import DensityGMM, fit_many
    >>> grid = np.linspace(0, 10, 200)
    >>> Y = np.array([0.7 * norm.pdf(grid, m, 0.5) + 0.3 * norm.pdf(grid, 8, 0.6)
    ...               for m in (4, 5, 6)])
    >>> result = fit_many(grid, Y, DensityGMM(n_components=2, random_state=0))
    >>> result
    BatchFitResult(n_densities=3, n_components=2, covariance_type='full', n_failed=0, \
n_not_converged=0)
    >>> result.means[:, :, 0].round(4)
    array([[4., 8.],
           [5., 8.],
           [6., 8.]])
    >>> result.weights.round(4)
    array([[0.7, 0.3],
           [0.7, 0.3],
           [0.7, 0.3]])

    A row that cannot be fitted is reported, not raised:

    >>> import warnings
    >>> Y[1] = 0.0
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     result = fit_many(grid, Y, DensityGMM(n_components=2, random_state=0))
    >>> result.failed
    array([False,  True, False])
    >>> result.messages[1][:52]
    'ValueError: The density has no positive value: a Gau'
    """
    _check_estimator(estimator)
    n_jobs = _check_n_jobs(n_jobs)
    if method not in ("vectorized", "loop"):
        raise ValueError(f'method should be "vectorized" or "loop", got {method!r}.')
    progress_bar = _progress_bar_factory() if progress else None
    if per_density_grids:
        grids, densities, weights, _ = _check_per_density_inputs(X, Y, sample_weight)
    else:
        grids, densities, weights, _ = _check_shared_inputs(X, Y, sample_weight)
    n_densities = len(densities)
    noise = getattr(estimator, "noise", None)
    if np.ndim(noise) == 1 and len(noise) == n_densities:
        warnings.warn(
            f"The estimator's noise= holds {n_densities} values, as many as there are "
            "densities, but it is read as one standard deviation per grid point, shared by "
            "every density: fit_many takes no noise per density. Pass noise='auto' to "
            "estimate each density's noise, or fit each row with its own estimator.",
            UserWarning,
            stacklevel=2,
        )
    if warm_start and isinstance(estimator, DensityGMMCV):
        raise ValueError(
            "warm_start=True needs a DensityGMM (a fixed number of components); with "
            "DensityGMMCV each density chooses its own K. Pass warm_start=False."
        )
    vectorized = method == "vectorized" and _vectorizable(
        estimator, per_density_grids, warm_start, return_estimators, grids
    )
    n_points = (grids[0] if per_density_grids else grids).shape[0]
    large_choice = isinstance(estimator, DensityGMMCV) and n_densities >= _CV_PROCESS_MIN_DENSITIES
    chunk_values = _CV_CHUNK_VALUES if large_choice else _CHUNK_VALUES
    chunk_size = _check_chunk_size(chunk_size, n_densities, vectorized, n_points, chunk_values)
    seeds = _seeds(estimator.random_state, n_densities)

    first_grid = grids[0] if per_density_grids else grids
    result = _empty_result(estimator, n_densities, first_grid, return_estimators)
    bounds = [
        (start, min(start + chunk_size, n_densities)) for start in range(0, n_densities, chunk_size)
    ]

    # joblib's own Parallel, not sklearn.utils.parallel's: that one wraps each task in
    # warnings.catch_warnings, which is not thread-safe (see _recorded_warnings);
    # the scikit-learn configuration is passed on here instead.
    config = get_config()

    # the choice of K runs much Python a density, which holds the GIL while the kernel's
    # threads wait: in a large batch with several jobs its chunks go to processes, a
    # kernel thread each (starting them costs about as much as 4,000 densities gain)
    n_threads = None if n_jobs is None or not vectorized else effective_n_jobs(n_jobs)
    in_processes = large_choice and n_threads is not None and n_threads > 1 and _on_loky()

    def task(start, stop):
        if vectorized:
            return (
                _fit_chunk_vectorized,
                (
                    config,
                    start,
                    estimator,
                    grids,
                    densities[start:stop],
                    None if weights is None else _rows(weights, start, stop),
                    None if seeds is None else seeds[start:stop],
                ),
                {"n_threads": 1} if in_processes else {},
            )
        return (
            _fit_chunk,
            (
                config,
                start,
                estimator,
                grids if not per_density_grids else grids[start:stop],
                densities[start:stop],
                None if weights is None else _rows(weights, start, stop),
                None if seeds is None else seeds[start:stop],
            ),
            dict(
                shared_grid=not per_density_grids,
                warm_start=warm_start,
                return_estimators=return_estimators,
            ),
        )

    bar = None if progress_bar is None else progress_bar(total=n_densities, unit="density")
    try:
        tasks = [task(a, b) for a, b in bounds]
        run = _run_tasks(
            tasks,
            n_jobs,
            threads=vectorized and not in_processes,
            n_threads=n_threads,
            chunk_threads=not isinstance(estimator, DensityGMMCV),
        )
        for start, chunk in run:
            _store_chunk(result, start, chunk)
            if bar is not None:
                bar.update(len(chunk["scale"]))
    finally:
        if bar is not None:
            bar.close()
    _warn_summary(result)
    return result


# ----------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------
def _check_estimator(estimator):
    if not isinstance(estimator, (DensityGMM, DensityGMMCV)):
        raise TypeError(
            f"estimator should be a DensityGMM or DensityGMMCV instance, got "
            f"{type(estimator).__name__}. Pass e.g. DensityGMM(n_components=2), or "
            "DensityGMMCV() to choose the number of components of each density."
        )
    # bad settings fail once here, not once per density
    estimator._validate_params()
    if isinstance(estimator, DensityGMMCV) and estimator.selection in ("auto", "bic", "aic"):
        warn_if_cv_unused(estimator)


def _max_components(estimator):
    """The largest K a fit of ``estimator`` can have (the arrays' width)."""
    if not isinstance(estimator, DensityGMMCV):
        return int(estimator.n_components)
    candidates = estimator.get_params()["n_components"]
    if candidates is None:
        return _CV_DEFAULT_MAX_COMPONENTS
    return int(np.max(candidates))


def _vectorizable(estimator, per_density_grids, warm_start, return_estimators, grid):
    """Whether the engine fits the chunk's densities together (else the loop runs): a
    shared grid, no warm start (each density from its neighbour's fit is a sequence), no
    estimators returned and no user starts (``weights_init``, ...)."""
    if per_density_grids or warm_start or return_estimators:
        return False
    if isinstance(estimator, DensityGMMCV):
        # the criterion's search is batched; held-out scores run DensityGMMCV.fit a density
        if estimator.selection not in ("auto", "bic", "aic"):
            return False
    elif type(estimator) is not DensityGMM:
        return False
    if any(
        getattr(estimator, name, None) is not None
        for name in ("weights_init", "means_init", "precisions_init")
    ):
        return False
    # too few points for the components: every row raises, as the single fit does
    return grid.shape[0] >= _max_components(estimator) or isinstance(estimator, DensityGMMCV)


def _check_n_jobs(n_jobs):
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, Integral) or n_jobs == 0:
        raise ValueError(
            f"n_jobs should be None, a positive int (number of parallel tasks) or a "
            f"negative int (-1: all cores or Dask workers), got {n_jobs!r}."
        )
    return int(n_jobs)


def _check_chunk_size(
    chunk_size, n_densities, vectorized=False, n_points=1, chunk_values=_CHUNK_VALUES
):
    if chunk_size is None:
        size = math.ceil(n_densities / _TARGET_N_CHUNKS)
        if vectorized:
            least = max(chunk_values // n_points, _MIN_VECTORIZED_CHUNK)
            return int(min(max(size, least), _MAX_VECTORIZED_CHUNK))
        return int(min(max(size, _MIN_CHUNK_SIZE), _MAX_CHUNK_SIZE))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, Integral) or chunk_size < 1:
        raise ValueError(
            f"chunk_size should be a positive int (densities per task) or None, got {chunk_size!r}."
        )
    return int(chunk_size)


def _progress_bar_factory():
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError(
            "progress=True needs tqdm, which is not installed. Install it with "
            "`pip install skdensityfit[progress]` (or `pip install tqdm`), or pass "
            "progress=False."
        ) from exc
    return tqdm


def _as_grid(X, name):
    """A float grid of shape (n_points, n_features); 1-D input is one feature."""
    if sp.issparse(X):
        raise TypeError(f"{name} is a sparse matrix; pass a dense array ({name}.toarray()).")
    X = np.asarray(X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(
            f"{name} should be a grid of shape (n_points,) or (n_points, n_features), "
            f"got an array of shape {X.shape}."
        )
    return X


def _as_float(values, name, what):
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} should hold numbers ({what}): {exc}") from exc


def _check_shared_inputs(X, Y, sample_weight):
    X = check_array(_as_grid(X, "X"), dtype=np.float64, ensure_min_samples=2, input_name="X")
    n_points = X.shape[0]
    if sp.issparse(Y):
        raise TypeError("Y is a sparse matrix; pass a dense array (Y.toarray()).")
    if (np.ma.isMaskedArray(Y) and np.ma.getmaskarray(Y).any()) or np.asarray(Y).dtype == bool:
        check_no_gaps(Y, "Y")  # says what to pass (a NaN row fails alone, in its row)
    Y = _as_float(Y, "Y", "one density per row")
    if Y.ndim != 2:
        raise ValueError(
            f"Y should be 2-D, one density per row on the grid X (shape (n_densities, "
            f"{n_points})), got an array of shape {Y.shape}. For a single density use "
            "Y.reshape(1, -1) or DensityGMM.fit; for per-density grids pass lists and "
            "per_density_grids=True."
        )
    if Y.shape[0] == 0:
        raise ValueError("Y has no rows: there is no density to fit.")
    if Y.shape[1] != n_points:
        hint = (
            " It looks transposed: pass Y.T."
            if Y.shape[0] == n_points
            else " Each row of Y must hold one density on the shared grid X; for "
            "densities on different grids pass lists and per_density_grids=True."
        )
        raise ValueError(f"Y has {Y.shape[1]} columns but the grid X has {n_points} points." + hint)
    weights = None
    if sample_weight is not None:
        weights = _as_float(sample_weight, "sample_weight", "quadrature weights")
        if weights.shape not in ((n_points,), Y.shape):
            raise ValueError(
                f"sample_weight should have shape ({n_points},) (shared by all densities) "
                f"or {Y.shape} (one row per density), got {weights.shape}."
            )
        if weights.ndim == 1:
            weights = _Shared(weights)
    return X, Y, weights, X.shape[1]


def _check_per_density_inputs(X, Y, sample_weight):
    for value, name in ((X, "X"), (Y, "Y")):
        if isinstance(value, np.ndarray) and value.dtype != object and value.ndim < 2:
            raise ValueError(
                f"With per_density_grids=True, {name} should be a sequence with one "
                f"{'grid' if name == 'X' else 'density'} per density, got an array of shape "
                f"{value.shape}."
            )
    try:
        n_grids, n_densities = len(X), len(Y)
    except TypeError as exc:
        raise TypeError(
            "With per_density_grids=True, X and Y should be sequences (e.g. lists) of "
            "arrays: one grid and one density per density."
        ) from exc
    if n_grids != n_densities:
        raise ValueError(
            f"With per_density_grids=True, X and Y should have one entry per density, "
            f"got {n_grids} grids for {n_densities} densities."
        )
    if n_densities == 0:
        raise ValueError("Y has no densities: there is nothing to fit.")
    if sample_weight is not None and len(sample_weight) != n_densities:
        raise ValueError(
            f"With per_density_grids=True, sample_weight should be None or hold one array "
            f"per density, got {len(sample_weight)} for {n_densities} densities."
        )
    grids, densities, weights, n_features = [], [], [], None
    for i in range(n_densities):
        grid = _as_float(_as_grid(X[i], f"X[{i}]"), f"X[{i}]", "a grid")
        density = _as_float(Y[i], f"Y[{i}]", "a density")
        if density.ndim != 1 or density.shape[0] != grid.shape[0]:
            raise ValueError(
                f"Y[{i}] should be 1-D with one value per point of X[{i}] "
                f"({grid.shape[0]} points), got shape {density.shape}."
            )
        if n_features is None:
            n_features = grid.shape[1]
        elif grid.shape[1] != n_features:
            raise ValueError(
                f"Every grid should have the same number of features: X[0] has "
                f"{n_features}, X[{i}] has {grid.shape[1]}."
            )
        if sample_weight is not None:
            weight = _as_float(sample_weight[i], f"sample_weight[{i}]", "quadrature weights")
            if weight.shape != density.shape:
                raise ValueError(
                    f"sample_weight[{i}] should have shape {density.shape}, like Y[{i}], "
                    f"got {weight.shape}."
                )
            weights.append(weight)
        grids.append(grid)
        densities.append(density)
    return grids, densities, (weights if sample_weight is not None else None), n_features


class _Shared:
    """Quadrature weights shared by every density (sliced as themselves)."""

    def __init__(self, values):
        self.values = values

    def __getitem__(self, index):
        return self.values


def _rows(weights, start, stop):
    return weights if isinstance(weights, _Shared) else weights[start:stop]


def _seeds(random_state, n_densities):
    """One seed per density for a RandomState instance; else None (use it as given)."""
    if random_state is None or isinstance(random_state, Integral):
        return None
    rng = check_random_state(random_state)
    return rng.randint(np.iinfo(np.int32).max, size=n_densities)


# ----------------------------------------------------------------------
# running the chunks
# ----------------------------------------------------------------------
def _run_tasks(tasks, n_jobs, threads=False, n_threads=None, chunk_threads=False):
    """Run ``(function, args, kwargs)`` tasks; yields their results as they complete
    (each is ``(start, chunk arrays)``).

    Under joblib's Dask backend the tasks go to the cluster directly, so that a
    task lost with a worker (a worker process that dies mid-batch) is submitted
    again instead of losing the batch. Otherwise, with ``threads`` (the vectorised
    path), in this process, the kernel's rows on ``n_threads`` threads (None: every
    core; no processes to start, no data to copy, no kernel to load in each): with
    ``chunk_threads``, as many chunks at once as there are kernel threads, each on a
    thread of its own, so that one chunk's Python (which holds the GIL) runs while
    the others' kernel rows (which release it) keep the cores busy; the chunks share
    the kernel's pool of threads. Else one after the other. Otherwise through
    joblib's active backend.
    """
    client = _dask_client()
    if client is not None:
        yield from _run_on_dask(client, tasks)
    elif threads:
        n_workers = min(len(tasks), available_cores() if n_threads is None else n_threads)
        if chunk_threads and n_workers > 1:
            pool = ThreadPoolExecutor(n_workers, "skdensityfit-chunk")
            try:
                futures = [
                    pool.submit(_in_kernel_threads, n_threads, function, args, kwargs)
                    for function, args, kwargs in tasks
                ]
                for future in as_completed(futures):
                    yield future.result()
            finally:  # a chunk that raised, or a caller that stopped: no more chunks start
                pool.shutdown(wait=True, cancel_futures=True)
            return
        with kernel_threads(n_threads):
            for function, args, kwargs in tasks:
                yield function(*args, **kwargs)
    else:
        yield from Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(function)(*args, **kwargs) for function, args, kwargs in tasks
        )


def _in_kernel_threads(n_threads, function, args, kwargs):
    """``function(*args, **kwargs)`` with the kernel's rows on ``n_threads`` threads (the
    setting is per thread)."""
    with kernel_threads(n_threads):
        return function(*args, **kwargs)


def _on_loky():
    """Whether joblib's active backend is its default process pool (loky); not inside
    one of its workers, where nested calls get threads."""
    backend, _ = get_active_backend()
    return type(backend).__name__ == "LokyBackend"


def _dask_client():
    """The Dask client of the active joblib backend, or None for any other backend."""
    backend, _ = get_active_backend()
    if type(backend).__name__ != "DaskDistributedBackend":
        return None
    return getattr(backend, "client", None)


def _run_on_dask(client, tasks, max_submissions=_MAX_DASK_SUBMISSIONS):
    """Submit every task to the cluster; a task whose future fails (its worker died,
    it was cancelled or lost) is submitted again, up to ``max_submissions`` times."""
    from distributed import as_completed

    batch = uuid.uuid4().hex

    def submit(index, attempt):
        function, args, kwargs = tasks[index]
        future = client.submit(
            partial(function, **kwargs),
            *args,
            key=f"skdensityfit-fit_many-{batch}-{index}-{attempt}",
            pure=False,
            retries=_DASK_RETRIES,
        )
        owner[future.key] = (index, attempt)
        return future

    owner = {}
    futures = [submit(index, 0) for index in range(len(tasks))]
    pending = as_completed(futures)
    for future in pending:
        index, attempt = owner.pop(future.key)
        if future.status == "finished":
            try:
                yield future.result()
                continue
            except Exception:  # lost between completion and transfer: submit again
                pass
        if attempt + 1 >= max_submissions:
            future.result()  # raises the task's own error
            raise RuntimeError(
                f"fit_many: chunk {index} failed on the Dask cluster {max_submissions} times."
            )
        retry = submit(index, attempt + 1)
        futures.append(retry)  # keep a reference: a released future is forgotten
        pending.add(retry)


# ----------------------------------------------------------------------
# the work of one chunk
# ----------------------------------------------------------------------
def _fit_chunk(config, *args, **kwargs):
    """Fit the densities of one chunk in order (see :func:`_fit_rows`) in a worker.

    ``config`` is the caller's scikit-learn configuration, restored in the
    worker process. Returns ``(start, arrays)``.
    """
    with config_context(**config):
        return _fit_rows(*args, **kwargs)


def _fit_rows(
    start,
    estimator,
    grids,
    densities,
    weights,
    seeds,
    *,
    shared_grid,
    warm_start,
    return_estimators,
    fallback=True,
):
    """Fit the densities of one chunk in order. Returns ``(start, arrays)``.

    ``fallback=False`` keeps every warm fit (for measuring what the fallback
    to a fresh start buys).
    """
    n_rows = len(densities)
    chunk = _empty_arrays(estimator, n_rows, grids if shared_grid else grids[0])
    chunk["estimators"] = [None] * n_rows if return_estimators else None
    previous = None
    for i in range(n_rows):
        X = grids if shared_grid else grids[i]
        y = densities[i]
        w = None if weights is None else weights[i]
        seed = None if seeds is None else int(seeds[i])
        fit, messages, warm_used = None, [], False
        if warm_start and previous is not None:
            warm = _fresh(estimator, seed).set_params(
                n_init=1,
                weights_init=previous.weights_,
                means_init=previous.means_,
                precisions_init=previous.precisions_,
            )
            fit, messages = _attempt(warm, X, y, w)
            warm_used = fit is not None
            if fit is not None and fallback and not _warm_fit_is_good(fit, previous):
                fresh, fresh_messages = _attempt(_fresh(estimator, seed), X, y, w)
                if fresh is not None and fresh.loss_ < fit.loss_:
                    fit, messages, warm_used = fresh, fresh_messages, False
        if fit is None:
            fit, messages = _attempt(_fresh(estimator, seed), X, y, w)
        if fit is None:
            chunk["messages"][i] = messages[0]
            chunk["failed"][i] = True
            continue
        _store_fit(chunk, i, fit)
        chunk["warm_started"][i] = warm_used
        if not _converged(fit) and not any("ConvergenceWarning" in m for m in messages):
            # the warning may have been swallowed (see _recorded_warnings): say it anyway
            messages.append(
                f"ConvergenceWarning: DensityGMM did not converge (loss {_fitted(fit).loss_:.3g} "
                f"after {fit.n_iter_} iterations)."
            )
        chunk["messages"][i] = "\n".join(messages)
        if return_estimators:
            chunk["estimators"][i] = fit
        previous = fit
    return start, chunk


def _fit_chunk_vectorized(config, start, estimator, X, densities, weights, seeds, n_threads=None):
    """Fit the densities of one chunk on the shared grid ``X`` together.

    The rows go through the engine together (:func:`~._estimator.fit_rows_of`, or
    with a ``DensityGMMCV`` :func:`~.cv.criterion_choices`); rows that the single
    fit would refuse (no positive value, NaN, negative values with the Poisson loss,
    bad weights) go through ``DensityGMM.fit``, which says why. Returns
    ``(start, arrays)``. ``n_threads``: the kernel's threads (None: as the caller set
    them).
    """
    threads = nullcontext() if n_threads is None else kernel_threads(n_threads)
    with config_context(**config), threads:
        if isinstance(estimator, DensityGMMCV):
            return start, _choose_rows_vectorized(estimator, X, densities, weights, seeds)
        return start, _fit_rows_vectorized(estimator, X, densities, weights, seeds)


def _rows_the_batch_can_fit(densities, weights, loss):
    """Rows with finite values and weights that the single fit's checks accept
    (``check_density_values`` and the sample weights' rules); the others go to
    ``DensityGMM.fit``, which raises the error the row's message reports."""
    ok = np.all(np.isfinite(densities), axis=1) & np.any(densities > 0, axis=1)
    if loss == "poisson":
        ok &= ~np.any(densities < 0, axis=1)
    if weights is not None:
        w = weights.values if isinstance(weights, _Shared) else weights
        w = np.broadcast_to(w, densities.shape)
        ok &= np.all(np.isfinite(w), axis=1) & np.all(w >= 0, axis=1) & np.any(w > 0, axis=1)
    return ok


def _fit_rows_vectorized(estimator, X, densities, weights, seeds):
    """The chunk's densities fitted together by the engine (:func:`~.fitting.fit_densities`);
    rows the single fit would refuse go through ``DensityGMM.fit``, which says why."""
    n_rows = len(densities)
    chunk = _empty_arrays(estimator, n_rows, X)
    row_weights = None
    if weights is not None:
        row_weights = weights.values if isinstance(weights, _Shared) else weights
    batchable = _rows_the_batch_can_fit(densities, weights, estimator.loss)
    for i in np.flatnonzero(~batchable):
        seed = None if seeds is None else int(seeds[i])
        fit, messages = _attempt(
            _fresh(estimator, seed), X, densities[i], _weights_of(row_weights, i)
        )
        if fit is None:
            _store_failure(chunk, i, messages[0])
        else:
            _store_fit(chunk, i, fit)
            chunk["messages"][i] = "\n".join(messages)
    rows = np.flatnonzero(batchable)
    if rows.size:
        fitted = fit_rows_of(
            estimator,
            X,
            densities if rows.size == n_rows else densities[rows],  # no copy of every row
            _weights_of(row_weights, rows),
            None if seeds is None else seeds[rows],
        )
        _store_rows(
            chunk,
            rows,
            *fitted.parameters,
            fitted.loss,
            np.maximum(fitted.n_iter, 1),
            fitted.converged,
            per_component=own_covariances(estimator.covariance_type),
        )
        if fitted.background is not None:
            chunk["background"][rows] = fitted.background
            chunk["background_origin"][rows] = fitted.background_origin
        for row, message in zip(rows, fitted.messages, strict=True):
            chunk["messages"][row] = message
    return chunk


def _seed_draws(random_state, seeds, rows):
    """Each row's :func:`~.cv.seed_draws` from its seed (``seeds[row]``, or
    ``random_state``), as ``DensityGMMCV.fit`` draws them; a seed's draws made once (a
    ``RandomState`` costs as much to make as a search's Python for a density)."""
    drawn = {}
    draws = []
    for i in rows:
        seed = random_state if seeds is None else int(seeds[i])
        if isinstance(seed, Integral) and seed in drawn:
            draws.append(drawn[seed])
            continue
        draws.append(seed_draws(check_random_state(seed)))
        if isinstance(seed, Integral):
            drawn[seed] = draws[-1]
    return draws


def _choose_rows_vectorized(estimator, X, densities, weights, seeds):
    """Choose K for the densities of one chunk by DensityGMMCV's criterion, all searched
    together (:func:`~.cv.criterion_choices`), and polish each choice as
    ``DensityGMMCV.fit`` does (one run at the chosen K, the rows of a K together); rows
    the single fit would refuse go through ``DensityGMMCV.fit``, which says why."""
    n_rows = len(densities)
    chunk = _empty_arrays(estimator, n_rows, X)
    row_weights = None
    if weights is not None:
        row_weights = weights.values if isinstance(weights, _Shared) else weights
    counts = (
        "poisson" if isinstance(estimator.noise, str) and estimator.noise == "poisson" else None
    )
    batchable = _rows_the_batch_can_fit(densities, weights, counts or estimator.loss)
    for i in np.flatnonzero(~batchable):
        seed = None if seeds is None else int(seeds[i])
        fit, messages = _attempt(
            _fresh(estimator, seed), X, densities[i], _weights_of(row_weights, i)
        )
        if fit is None:
            _store_failure(chunk, i, messages[0])
        else:
            _store_fit(chunk, i, fit)
            chunk["messages"][i] = "\n".join(messages)
    rows = np.flatnonzero(batchable)
    if rows.size == 0:
        return chunk
    sample_weight = _weights_of(row_weights, rows)
    quadrature = quadrature_weights(X) if sample_weight is None else sample_weight
    selection = "bic" if estimator.selection == "auto" else estimator.selection
    choices = criterion_choices(
        estimator, X, densities[rows], sample_weight, quadrature,
        _seed_draws(estimator.random_state, seeds, rows), selection,
    )  # fmt: skip
    candidates = estimator._candidates()
    chosen = np.zeros(len(rows), dtype=int)
    kept = np.zeros(len(rows), dtype=bool)
    for r, (choice, _, _, _) in enumerate(choices):
        if isinstance(choice, Exception):
            _store_failure(chunk, rows[r], f"{type(choice).__name__}: {choice}")
        else:
            chosen[r] = int(candidates[choice.index])
            kept[r] = kept_over_one_fewer(candidates, choice.index, choice.values)
    per_component = own_covariances(estimator.covariance_type)
    for k in np.unique(chosen[chosen > 0]):
        group = np.flatnonzero(chosen == k)
        starts = np.vstack([paths.fits[k][row] for _, paths, row, _ in (choices[g] for g in group)])
        polish = DensityGMM(
            n_components=int(k), **{name: getattr(estimator, name) for name in _PASSED_ON}
        )
        w = None if sample_weight is None else _weights_of(sample_weight, group)
        fitted = fit_rows_of(polish, X, densities[rows[group]], w, starts=starts, kept=kept[group])
        index = rows[group]
        _store_rows(
            chunk,
            index,
            *fitted.parameters,
            fitted.loss,
            np.maximum(fitted.n_iter, 1),
            fitted.converged,
            per_component=per_component,
        )
        if fitted.background is not None:
            chunk["background"][index] = fitted.background
            chunk["background_origin"][index] = fitted.background_origin
        observed = np.broadcast_to(quadrature, (len(rows), densities.shape[1]))[group] > 0
        _, means, covariances, _, _ = fitted.parameters
        matrices = as_matrices_rows(covariances, estimator.covariance_type, int(k), X.shape[1])
        all_remarks = criterion_messages(
            candidates,
            [choices[group[j]][0] for j in range(len(index))],
            [densities[row, observed[j]] for j, row in enumerate(index)],
            [fitted.models[j, observed[j]] for j in range(len(index))],
            list(zip(means, matrices, strict=True)),
            estimator.background,
        )
        for j, (row, remarks) in enumerate(zip(index, all_remarks, strict=True)):
            # in DensityGMMCV.fit's order: the fit's warnings, then the choice's
            chunk["messages"][row] = "\n".join(
                [*filter(None, [fitted.messages[j]]), *(f"UserWarning: {m}" for m in remarks)]
            )
    return chunk


def _weights_of(row_weights, rows):
    """The sample weights of some rows: shared ``(n,)``, per row ``(B, n)``, or None."""
    if row_weights is None or row_weights.ndim == 1:
        return row_weights
    return row_weights[rows]


def _store_failure(chunk, i, message):
    """Row ``i`` of the chunk's arrays for a density that could not be fitted."""
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        chunk[name][i] = np.nan
    chunk["scale"][i] = chunk["loss"][i] = np.nan
    chunk["n_iter"][i], chunk["converged"][i] = 0, False
    chunk["messages"][i] = message
    chunk["failed"][i] = True


def _fresh(estimator, seed):
    """An unfitted copy of the user's estimator, with the density's seed if any."""
    model = clone(estimator)
    return model if seed is None else model.set_params(random_state=seed)


def _fitted(fit):
    """The fitted DensityGMM of a fit (a DensityGMMCV's best estimator)."""
    return fit.best_estimator_ if isinstance(fit, DensityGMMCV) else fit


def _converged(fit):
    return bool(_fitted(fit).converged_)


def _store_fit(chunk, i, fit):
    """Row ``i`` of the chunk's arrays from a fitted estimator (padded with NaN to the
    arrays' number of components, for a DensityGMMCV's chosen K)."""
    model = _fitted(fit)
    _store_rows(
        chunk,
        i,
        model.weights_,
        model.means_,
        model.covariances_,
        model.precisions_cholesky_,
        model.scale_,
        model.loss_,
        model.n_iter_,
        model.converged_,
        per_component=own_covariances(model.covariance_type),
    )
    if chunk.get("background") is not None and getattr(model, "background_", None) is not None:
        chunk["background"][i] = model.background_
        chunk["background_origin"][i] = model.background_origin_


def _store_rows(
    chunk,
    rows,
    weights,
    means,
    covariances,
    prec_chol,
    scale,
    loss,
    n_iter,
    converged,
    *,
    per_component,
):
    """Rows ``rows`` (an index or an array of them) of the chunk's arrays, the
    parameters' components padded with NaN to the arrays' number of components."""
    k = np.shape(weights)[-1]
    chunk["weights"][rows, :k] = weights
    chunk["means"][rows, :k] = means
    if per_component:
        chunk["covariances"][rows, :k] = covariances
        chunk["precisions_cholesky"][rows, :k] = prec_chol
    else:
        chunk["covariances"][rows] = covariances
        chunk["precisions_cholesky"][rows] = prec_chol
    chunk["scale"][rows], chunk["loss"][rows] = scale, loss
    chunk["n_iter"][rows], chunk["converged"][rows] = n_iter, converged
    if chunk.get("n_components") is not None:
        chunk["n_components"][rows] = k


def _warm_fit_is_good(fit, previous):
    return fit.converged_ and fit.loss_ <= WARM_LOSS_RATIO * previous.loss_ + WARM_LOSS_FLOOR


def _attempt(model, X, y, sample_weight):
    """Fit ``model``; returns ``(model, warning texts)`` or ``(None, [error text])``."""
    with _recorded_warnings() as records:
        try:
            model.fit(X, y, sample_weight=sample_weight)
        except Exception as exc:  # a failed row is reported, not raised
            return None, [f"{type(exc).__name__}: {exc}"]
    return model, list(dict.fromkeys(records))


# Python's warning filters and ``warnings.showwarning`` are process-wide, so
# ``warnings.catch_warnings`` in several threads at once (the threading backend,
# Dask workers with several threads) can leave another thread's recorder
# installed after the batch. Instead one hook is installed while any thread
# records; it appends to the recording thread's own list and passes warnings
# of other threads on to the original hook, and the last thread to finish
# restores the original state.
_RECORDING_LOCK = threading.Lock()
_RECORDING = threading.local()
_recording_state = {"depth": 0, "context": None, "showwarning": None}
_ORIGINAL_SHOWWARNING = warnings.showwarning


def _dispatch_warning(message, category, filename, lineno, file=None, line=None):
    records = getattr(_RECORDING, "records", None)
    if records is not None:
        records.append(f"{category.__name__}: {message}")
        return
    show = _recording_state["showwarning"] or _ORIGINAL_SHOWWARNING
    show(message, category, filename, lineno, file, line)


@contextmanager
def _recorded_warnings():
    """Collect the warnings that this thread raises in the block, as text."""
    with _RECORDING_LOCK:
        if _recording_state["depth"] == 0:
            _recording_state["showwarning"] = warnings.showwarning
            context = warnings.catch_warnings()
            context.__enter__()
            warnings.simplefilter("always")
            warnings.showwarning = _dispatch_warning
            _recording_state["context"] = context
        _recording_state["depth"] += 1
    outer = getattr(_RECORDING, "records", None)
    _RECORDING.records = records = []
    try:
        yield records
    finally:
        _RECORDING.records = outer
        with _RECORDING_LOCK:
            _recording_state["depth"] -= 1
            if _recording_state["depth"] == 0:
                _recording_state["context"].__exit__(None, None, None)
                _recording_state["context"] = None
                _recording_state["showwarning"] = None


# ----------------------------------------------------------------------
# assembling the result
# ----------------------------------------------------------------------
def _empty_arrays(estimator, n_rows, grid):
    """The arrays of a chunk (or the result) of ``n_rows`` densities on ``grid`` (one of
    the grids), every value missing."""
    n_features = grid.shape[1]
    k = _max_components(estimator)
    cov_shape = _COVARIANCE_SHAPES[estimator.covariance_type](k, n_features)
    arrays = {
        "weights": np.full((n_rows, k), np.nan),
        "means": np.full((n_rows, k, n_features), np.nan),
        "covariances": np.full((n_rows, *cov_shape), np.nan),
        "precisions_cholesky": np.full((n_rows, *cov_shape), np.nan),
        "scale": np.full(n_rows, np.nan),
        "loss": np.full(n_rows, np.nan),
        "n_iter": np.zeros(n_rows, dtype=int),
        "converged": np.zeros(n_rows, dtype=bool),
        "failed": np.zeros(n_rows, dtype=bool),
        "warm_started": np.zeros(n_rows, dtype=bool),
        "fallback": np.zeros(n_rows, dtype=bool),
        "messages": [""] * n_rows,
    }
    if isinstance(estimator, DensityGMMCV):
        arrays["n_components"] = np.zeros(n_rows, dtype=int)
    if estimator.background is not None:
        terms = background_size(estimator.background, grid)
        arrays["background"] = np.full((n_rows, terms), np.nan)
        arrays["background_origin"] = np.full((n_rows, grid.shape[1]), np.nan)
    return arrays


def _empty_result(estimator, n_densities, grid, return_estimators):
    arrays = _empty_arrays(estimator, n_densities, grid)
    n_components = arrays.pop("n_components", _max_components(estimator))
    return BatchFitResult(
        **arrays,
        estimators=[None] * n_densities if return_estimators else None,
        n_components=n_components,
        covariance_type=estimator.covariance_type,
        background_term=estimator.background,
        fitted_with=clone(estimator),
    )


def _store_chunk(result, start, chunk):
    stop = start + len(chunk["scale"])
    for name, values in chunk.items():
        if name in ("messages", "estimators"):
            if values is not None:
                getattr(result, name)[start:stop] = values
        else:
            getattr(result, name)[start:stop] = values


# The warnings of a fit that flag a probably wrong result, by a phrase of their
# text: fit_many summarises each once (the rows' own texts are in result.messages).
_FLAGGED = {
    "the largest candidate": "K chosen at the largest candidate (pass larger n_components)",
    "still holds a Gaussian bump": "a bump left in the residual of the chosen fit",
    "hold no line of their own": "components off the grid (a baseline: pass background=)",
    "broader than a quarter of the grid": (
        "components broader than a quarter of the grid (a baseline's dome, or cut by the grid)"
    ),
    "pressed against the width floor": "components pressed against the width floor",
    "does not support": "more components than the data supports",
    "No component is significant": "no component significant (the density may be noise alone)",
    "share a centre": "components sharing a centre (a peak that is not Gaussian?)",
    "read as smooth noise": "structure read as smooth noise (pass larger n_components)",
    "stands on a pedestal": "a mixture above 3% of its peak everywhere (tails cut, or a baseline)",
    "edge of the grid reaches": "the fitted mixture high at the grid's edge (extend the grid)",
    "a mixture of Gaussians cannot take": "a baseline under the mixture (pass background=)",
    "bins of bins= hold no grid point": "empty bins left out (pass them with the value 0)",
    "cost the grid its digits": "a grid whose offset cost it its digits (build it about an origin)",
}


def _warn_summary(result):
    n = len(result)
    for phrase, what in _FLAGGED.items():
        rows = [i for i, message in enumerate(result.messages) if phrase in message]
        if rows:
            shown = ", ".join(str(i) for i in rows[:10]) + (", ..." if len(rows) > 10 else "")
            warnings.warn(
                f"fit_many: {what}, in {len(rows)} of {n} densities (rows {shown}; the "
                "warning of each row is in result.messages).",
                UserWarning,
                stacklevel=3,
            )
    n_failed = int(result.failed.sum())
    if n_failed:
        first = int(np.flatnonzero(result.failed)[0])
        warnings.warn(
            f"{n_failed} of {n} densities could not be fitted; their rows are NaN and "
            f"flagged in result.failed, with the error in result.messages (row {first}: "
            f"{result.messages[first]})",
            UserWarning,
            stacklevel=3,
        )
    n_not_converged = int(np.sum(~result.converged & ~result.failed))
    if n_not_converged:
        warnings.warn(
            f"{n_not_converged} of {n} fits did not converge (result.converged is False, "
            "the warning is in result.messages). Increase max_iter or n_init of the "
            "estimator, or check the number of components.",
            ConvergenceWarning,
            stacklevel=3,
        )
