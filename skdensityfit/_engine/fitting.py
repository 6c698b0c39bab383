"""The fitting engine: from a :class:`~.problem.Problem` and settings to fitted mixtures.

:func:`fit_densities` is the one search that :class:`~._estimator.DensityGMM`
(a batch of one, :func:`fit_problem`) and :func:`~._batch.fit_many` (a chunk of
densities) share: every start of every density is a *row* of the compiled
kernel's Levenberg-Marquardt (:mod:`.rows`). The starts are the density's
greedy peaks (or k-means and EM: ``init_params``), the greedy path grown one
component at a time (:func:`greedy_path_rows`) and more drawn ones; components
left parked are placed again and, for a density not fitted exactly,
the weakest one is moved (:func:`moved_rows`); the best is polished.
:class:`~.search.Paths` builds DensityGMMCV's paths from the same row
functions. :class:`MixtureFit` converts a parameter vector back to grid units.
"""

import time
import warnings
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._compat import warn_at_caller
from .._data.noise import noise_variance
from .._data.validation import (
    check_user_means,
    check_user_precision_cholesky,
    check_user_weights,
    unique_values,
)
from .._model.covariance import cholesky_diagonals, own_covariances
from .._model.parameters import (
    raw_of_widths,
    rows_pack,
    rows_raw,
    rows_split,
    rows_upper,
    rows_without,
)
from .kernel import FTOL, NO_GAIN, STATUS_MESSAGES
from .problem import MAX_PREFIT_POINTS, prefit_size
from .rows import (
    RowResults,
    component_shares_of,
    greedy_peaks,
    losses_of,
    matched_filter,
    minimize_rows,
    models_of,
)
from .starts import initial_parameters, user_parameters

# A component moved to another place must lower the loss by this fraction.
MIN_MOVE_GAIN = 1e-6
# A fit whose loss is this many times that of the density's white noise gets another start.
ABOVE_NOISE = 4.0
# Fits that only need to be close (the greedy start's steps, moves of components): the
# final fit polishes.
SHORT_TOL = 1e-5
SHORT_MAX_ITER = 30
SHORT_FTOL = 1e-4
# A relative L2 error of 1e-6: no other start could change the fitted density by more.
EXACT_FIT_LOSS = 1e-12
# Runs from several starts stop once a step lowers the loss by less than this
# fraction, enough to rank them; the best is then polished to tol. (A fit of
# noise converges linearly, so its last digits take many iterations.)
RUN_FTOL = 1e-6
# A component with less than this share of the fitted mass on the grid is parked.
NEGLIGIBLE_WEIGHT = 1e-4
TINY = np.finfo(float).tiny


@dataclass(frozen=True)
class FitSettings:
    """How a fit searches: tolerances, restarts, the kind of start and user starts.

    The user starts are in grid units, as :class:`~._estimator.DensityGMM`
    takes them.
    """

    tol: float = 1e-8
    max_iter: int = 500
    n_init: int = 2
    init_params: str = "peaks"
    reg_covar: float = 1e-6
    verbose: int = 0
    weights_init: object = None
    means_init: object = None
    precisions_init: object = None

    @classmethod
    def of(cls, estimator):
        """The settings of an estimator's parameters of these names (missing ones: defaults)."""
        names = [name for name in cls.__dataclass_fields__ if hasattr(estimator, name)]
        return cls(**{name: getattr(estimator, name) for name in names})

    @property
    def user_given(self):
        return tuple(
            v is not None for v in (self.weights_init, self.means_init, self.precisions_init)
        )

    def starts_are_all_alike(self, n_components):
        """One component, or every parameter given: each run would repeat the first."""
        return n_components == 1 or all(self.user_given)

    def uses_data_driven_starts(self, n_components):
        return n_components > 1 and not any(self.user_given)

    def short(self):
        """The settings of a fit that only needs to be close (see ``SHORT_TOL``)."""
        return replace(
            self, tol=max(self.tol, SHORT_TOL), max_iter=min(self.max_iter, SHORT_MAX_ITER)
        )


@dataclass
class OptimizationResult:
    """One minimisation's outcome (the kernel's status as its message)."""

    theta: np.ndarray
    loss: float
    n_iter: int
    converged: bool
    message: str


def minimize(problem, theta0, *, tol, max_iter, ftol=NO_GAIN):
    """Minimise the problem's loss from ``theta0`` within its bounds (the kernel's
    Levenberg-Marquardt; see :func:`minimize_starts`)."""
    return minimize_starts(problem, np.atleast_2d(theta0), tol=tol, max_iter=max_iter, ftol=ftol)[0]


def minimize_starts(problem, starts, *, tol, max_iter, ftol=NO_GAIN):
    """One :class:`OptimizationResult` per row of ``starts``, each
    minimised by the kernel's Levenberg-Marquardt (all at once)."""
    rows = minimize_rows(problem.kernel, starts, tol=tol, max_iter=max_iter, ftol=ftol)
    return [
        OptimizationResult(
            rows.theta[r],
            float(rows.loss[r]),
            int(rows.n_iter[r]),
            bool(rows.converged[r]),
            rows.message(r),
        )
        for r in range(len(starts))
    ]


def data_driven_start(problem, settings, random_state):
    """A start from the density (``settings.init_params``): its greedy peaks, or
    density-weighted clustering and EM."""
    if settings.init_params == "peaks":
        return peak_starts(problem, problem.kernel)[0]
    return initial_parameters(
        problem.grid,
        problem.data.target,
        problem.data.quadrature,
        problem.layout,
        method=settings.init_params,
        loss=problem.data.loss,
        reg_covar=max(settings.reg_covar, problem.width_limits[0] ** 2),
        random_state=random_state,
    )


# The greedy peaks' widths: this many, geometric from the width floor to half the grid.
N_PEAK_WIDTHS = 12


def peak_widths(problem):
    """The widths (fit coordinates) the greedy peaks choose among."""
    floor = float(problem.width_limits[0])
    extent = float(np.ptp(problem.grid, axis=0).max())
    # a copy: numba types a read-only array apart, and would compile the kernel again
    return _geometric_widths(floor, max(0.5 * extent, 2.0 * floor)).copy()


@lru_cache(maxsize=64)
def _geometric_widths(low, high):
    """``N_PEAK_WIDTHS`` widths from ``low`` to ``high``, geometric (cached: numpy's
    geomspace costs a tenth of a small single fit)."""
    return np.geomspace(low, high, N_PEAK_WIDTHS)


def peak_starts(problem, inputs):
    """A start for each density of ``inputs``: its greedy peaks (:func:`~.rows.greedy_peaks`:
    the highest point of what is left and the isotropic bump there that explains most of
    it, subtracted, ``K`` times), as mixture parameters with their masses. ``(D, p)``."""
    layout = problem.layout
    means, widths, heights = greedy_peaks(inputs, peak_widths(problem), layout.n_components)
    masses = np.maximum(heights, TINY) * (np.sqrt(2.0 * np.pi) * widths) ** layout.n_features
    total = masses.sum(axis=1, keepdims=True)
    thetas = rows_pack(
        layout,
        np.log(total[:, 0]),
        np.log(masses / total),
        means,
        raw_of_widths(layout, widths),
    )
    if thetas.shape[1] < problem.bounds.shape[0]:  # a background: none at the start
        thetas = np.hstack(
            [thetas, np.zeros((len(thetas), problem.bounds.shape[0] - thetas.shape[1]))]
        )
    return np.clip(thetas, problem.bounds[:, 0], problem.bounds[:, 1])


def initial_start(problem, settings, random_state):
    """The data-driven start, with whatever the user gave in place of its values."""
    layout, standardisation = problem.layout, problem.standardisation
    k, d, cov = layout.n_components, layout.n_features, layout.covariance_type
    given = settings.user_given
    if not all(given):
        theta = data_driven_start(problem, settings, random_state)
        if not any(given):
            return theta
        _, weights, means, prec_chol = problem.unpack(theta)
    if settings.weights_init is not None:
        weights = check_user_weights(settings.weights_init, k)
    if settings.means_init is not None:
        means = standardisation.means_to_fit(check_user_means(settings.means_init, k, d))
    if settings.precisions_init is not None:
        user = check_user_precision_cholesky(settings.precisions_init, cov, k, d)
        prec_chol = standardisation.cholesky_to_fit(user)
    data = problem.data
    return user_parameters(
        problem.grid,
        data.target,
        data.quadrature,
        layout,
        (weights, means, prec_chol),
        loss=data.loss,
    )


def fit_problem(problem, settings, random_state, *, start=None, warm=None):
    """The best fit of one density: :func:`fit_densities` on a batch of one.

    ``start`` (a parameter vector in fit coordinates, e.g. from
    :class:`~.cv.DensityGMMCV`'s path) or ``warm`` (the previous fit's, for
    ``warm_start``) makes one run from it, without moves. A large grid is searched
    on a random subset first and polished on every point. The result's ``n_iter``
    never exceeds ``settings.max_iter``. Warns (``ConvergenceWarning``) when the
    fit did not converge; raises ``ValueError`` when no start had a finite loss.
    """
    start_time = time.perf_counter()
    given = start is not None or warm is not None
    search = problem
    if problem.n_points > MAX_PREFIT_POINTS:
        search = problem.random_subset(prefit_size(problem.n_points), random_state)
    if given:
        theta0 = np.clip(
            start if start is not None else warm, problem.bounds[:, 0], problem.bounds[:, 1]
        )
        if start is None and search is not problem:  # warm: converge on the subset first
            theta0 = minimize(search, theta0, tol=settings.tol, max_iter=settings.max_iter).theta
        best = minimize(problem, theta0, tol=settings.tol, max_iter=settings.max_iter)
    else:
        fits = fit_densities(
            search, search.kernel, settings, random_state, data_start=initial_start
        )
        best = OptimizationResult(
            fits.theta[0],
            float(fits.loss[0]),
            int(fits.n_iter[0]),
            bool(fits.converged[0]),
            fits.message(0),
        )
        if search is not problem and np.isfinite(best.loss):
            budget = max(settings.max_iter - best.n_iter, 1)
            polished = minimize(problem, best.theta, tol=settings.tol, max_iter=budget)
            polished.n_iter += best.n_iter
            best = polished
    if settings.verbose:
        print(
            f"DensityGMM: loss {best.loss:.6g}, {best.n_iter} iterations, "
            f"converged={best.converged} ({best.message}), "
            f"{time.perf_counter() - start_time:.3f} s"
        )
    if not np.isfinite(best.loss):
        raise ValueError(
            "The loss was not finite at any start, so no mixture could be fitted. "
            "Check the density for extreme values, or pass means_init."
        )
    if not best.converged:
        warn_at_caller(not_converged_message(best.loss, best.n_iter), ConvergenceWarning)
    return best


def not_converged_message(loss, n_iter):
    """The text of a fit that did not converge (a single fit's, and fit_many's rows')."""
    return (
        f"DensityGMM did not converge (best loss {loss:.3g} after {n_iter} iterations). "
        "Increase max_iter or n_init (not tol: a larger tol stops further from the "
        "optimum), or check the number of components."
    )


# ----------------------------------------------------------------------
# measurements: histograms integrated over their bins, backgrounds
# ----------------------------------------------------------------------
def fit_measurement(problem, settings, random_state, *, warm=None, warm_background=None):
    """:func:`fit_problem` for any problem: binned ones and ones with a background too.

    A binned problem is first fitted under the centre model (its search
    costs a fraction of the integrated one's), then polished by one
    integrated run. With a background the mixture is first fitted under a
    first estimate of it (a least-squares polynomial through the values on
    the grid's rim, the outer 5% of each dimension's range; or the previous
    fit's background, ``warm_background`` in grid units, for a warm start),
    then both jointly. ``warm`` is a previous fit's mixture vector.
    """
    background = problem.data.background
    if background is None:
        return _fit_mixture(problem, settings, random_state, warm)
    data = problem.data
    if warm is not None and warm_background is not None:
        if warm_background.size == background.n_parameters:
            start = np.concatenate([warm, problem.background_to_fit(warm_background)])
            return fit_problem(problem, settings, random_state, start=start)
    under = background.fitted_to(data.target, problem.grid)
    residual = data.target - background.values_rows(under[None])[0]  # as fit_many's rows
    if data.loss == "poisson":
        residual = np.maximum(residual, 0.0)
    if not np.any(residual > 0):
        residual, under = data.target, np.zeros_like(under)
    zero = np.zeros_like(under)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if warm is None:
            warm = _fit_mixture(problem.mixture_only(residual), settings, random_state).theta
        # the fit without the background is a start too: a background never makes it worse
        alone = _fit_mixture(problem.mixture_only(), settings, random_state).theta
    with warnings.catch_warnings():  # only the kept fit's convergence counts
        warnings.simplefilter("ignore", ConvergenceWarning)
        results = [
            fit_problem(problem, settings, random_state, start=np.concatenate([theta, below]))
            for theta, below in ((warm, under), (alone, zero))
        ]
    best = _place_parked_jointly(problem, settings, min(results, key=lambda result: result.loss))
    if not best.converged:
        warn_at_caller(not_converged_message(best.loss, best.n_iter), ConvergenceWarning)
    return best


def _place_parked_jointly(problem, settings, best):
    """``best``, a joint fit of the mixture and its background, after
    :func:`place_parked_rows`."""
    if problem.layout.n_components < 2 or not np.isfinite(best.loss):
        return best
    fits = RowResults(
        best.theta[None].copy(),
        np.array([best.loss]),
        np.array([best.n_iter]),
        np.zeros(1, dtype=np.int64),
    )
    if place_parked_rows(problem, problem.kernel, fits, settings).size == 0:
        return best
    return OptimizationResult(
        fits.theta[0], float(fits.loss[0]), int(fits.n_iter[0]), bool(fits.converged[0]),
        fits.message(0),
    )  # fmt: skip


def place_parked(
    problem, inputs, fits, settings, *, width_floor=True, exact_too=False, ftol=NO_GAIN,
    report=None,
):  # fmt: skip
    """The components of ``fits`` (a :class:`~.rows.RowResults` of the densities of
    ``inputs``, modified) that fit nothing of their own (:func:`parked_rows`) removed and
    placed again by :func:`moved_rows` where that lowers the loss, a component a round and
    at most K rounds (a parked one that will not move is one the density does not hold).
    Exact fits are left alone unless ``exact_too``; ``report(rows)`` after each round."""
    everyone = np.arange(len(fits.loss))
    for _ in range(problem.layout.n_components):
        live = np.isfinite(fits.loss)
        if not exact_too:
            live &= fits.loss > EXACT_FIT_LOSS
        live = everyone[live]
        if live.size == 0:
            break
        parked = parked_rows(problem, inputs, fits.theta[live], live, width_floor=width_floor)
        some = parked.any(axis=1)
        if not some.any():
            break
        rows, index = live[some], np.argmax(parked[some], axis=1)
        moved = moved_rows(problem, inputs, fits, rows, index, settings, ftol=ftol)
        if report is not None:
            report(rows)
        if moved.size == 0:
            break


def place_parked_rows(problem, inputs, fits, settings):
    """Place again the parked components (outside the grid's box, no mass on it) of joint
    fits of a mixture and its background (``fits``, a :class:`~.rows.RowResults` of the
    densities of ``inputs``, modified) by :func:`moved_rows`, where that lowers the loss,
    and polish those rows: beside a baseline a component parked wide and off the grid is
    nearly a baseline itself, and the joint fit crawls along that ridge to ``max_iter``.
    Returns the rows that improved."""
    if problem.layout.n_components < 2:
        return np.zeros(0, dtype=int)
    before, used = fits.loss.copy(), fits.n_iter.copy()
    fits.n_iter[:] = 0  # the moves get a budget of their own
    place_parked(problem, inputs, fits, settings)
    improved = np.flatnonzero(fits.loss < before)
    fits.n_iter[:] = used
    if improved.size:
        polished = minimize_rows(
            inputs, fits.theta[improved], tol=settings.tol, max_iter=settings.max_iter,
            density=improved,
        )  # fmt: skip
        for name in ("theta", "loss", "n_iter", "status"):
            getattr(fits, name)[improved] = getattr(polished, name)
    return improved


def _fit_mixture(problem, settings, random_state, previous=None):
    """:func:`fit_problem`; a binned problem is started from the centre model's fit.

    The centre model's search (starts, restarts, moves) costs a fraction of
    the integrated one's; one run on the integrated model polishes its result.
    """
    if problem.binned and previous is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            centre = fit_problem(problem.without_cells(), settings, random_state)
        return fit_problem(problem, settings, random_state, start=centre.theta)
    return fit_problem(problem, settings, random_state, warm=previous)


def fit_mixture_rows(problem, inputs, settings, random_state):
    """:func:`fit_densities` of the densities of ``inputs``, as :func:`_fit_mixture` fits
    one: a binned problem's rows are started from the centre model's fits."""
    if not problem.binned:
        return fit_densities(problem, inputs, settings, random_state)
    centre = problem.without_cells()
    fits = fit_densities(centre, centre.kernel.with_densities_of(inputs), settings, random_state)
    starts = np.clip(fits.theta, problem.bounds[:, 0], problem.bounds[:, 1])
    rows = minimize_rows(inputs, starts, tol=settings.tol, max_iter=settings.max_iter)
    return DensityFits(rows.theta, rows.loss, rows.n_iter, rows.converged, rows.status)


# ----------------------------------------------------------------------
# the result in grid units
# ----------------------------------------------------------------------
def at_width_floor(layout, prec_chol, min_width):
    """Components with a precision Cholesky diagonal at ``1 / min_width`` (within 1%):
    ``min_width`` a number, or ``(K, 1)``, one a component (``Problem.width_floors``)."""
    diagonal = cholesky_diagonals(
        prec_chol, layout.covariance_type, layout.n_components, layout.n_features
    )
    return np.any(diagonal * min_width >= 0.99, axis=1)


@dataclass(frozen=True)
class MixtureFit:
    """A fitted mixture in grid units, components in canonical order.

    The order sorts by the first coordinate of the mean (then by weight,
    largest first). ``mass_shares`` is each component's share of the fitted
    mass on the grid; ``at_width_floor`` flags components pressed against
    the smallest width the bounds allow; ``grid_axes`` holds the distinct
    coordinates of the fitted grid along each feature, in grid units.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions: np.ndarray
    precisions_cholesky: np.ndarray
    scale: float
    loss: float
    n_iter: int
    converged: bool
    mass_shares: np.ndarray
    at_width_floor: np.ndarray
    grid_axes: tuple

    @classmethod
    def from_result(cls, problem, result):
        unpacked = problem.unpack(result.theta)
        named = problem.to_grid(result.theta, unpacked)
        order = np.lexsort((-named["weights"], named["means"][:, 0]))
        per_component = own_covariances(problem.layout.covariance_type)
        in_order = {
            name: named[name][order]
            if per_component or name in ("weights", "means")
            else named[name]
            for name in ("weights", "means", "covariances", "precisions", "precisions_cholesky")
        }
        return cls(
            **in_order,
            scale=float(named["scale"]),
            # rounding can take a perfect fit below 0
            loss=max(float(result.loss), 0.0) * float(problem.kernel.loss_units()[0]),
            n_iter=int(max(result.n_iter, 1)),
            converged=bool(result.converged),
            mass_shares=component_shares_of(problem.kernel, result.theta)[0][order],
            at_width_floor=at_width_floor(
                problem.layout, unpacked[3], problem.width_floors(unpacked[2])
            )[order],
            grid_axes=tuple(
                unique_values(
                    problem.standardisation.center[j] + problem.standardisation.spread[j] * column
                )
                for j, column in enumerate(problem.grid.T)
            ),
        )

    def set_on(self, estimator):
        """Store the fit as an estimator's fitted attributes (``weights_``, ... ``converged_``)."""
        for name in ("weights", "means", "covariances", "precisions", "precisions_cholesky"):
            setattr(estimator, name + "_", getattr(self, name))
        estimator.scale_ = self.scale
        estimator.loss_ = self.loss
        estimator.n_iter_ = self.n_iter
        estimator.converged_ = self.converged
        estimator.grid_axes_ = self.grid_axes
        return estimator


# ----------------------------------------------------------------------
# many densities on one grid: the same search, every start a row of the kernel
# ----------------------------------------------------------------------
@dataclass
class DensityFits:
    """The fits of many densities (rows of a :class:`~.rows.KernelInputs`)."""

    theta: np.ndarray  # (D, p), fit coordinates
    loss: np.ndarray  # (D,), inf where no start had a finite loss
    n_iter: np.ndarray  # (D,)
    converged: np.ndarray  # (D,)
    status: np.ndarray  # (D,) the kernel's last status of each row

    def message(self, row):
        return STATUS_MESSAGES[int(self.status[row])]


def best_scales(problem, inputs, thetas, density):
    """The rows ``thetas`` clipped into the bounds, each with the total scale that fits
    its mixture's shape best to its density (under the rows' loss). Clipping (widths up to
    the floor) changes a model's height by orders of magnitude, and a model far too small
    has a tiny gradient and would look converged."""
    thetas = np.clip(thetas, problem.bounds[:, 0], problem.bounds[:, 1])
    if not problem.layout.fit_scale:
        return thetas
    unit = thetas.copy()
    unit[:, 0] = 0.0
    shape = models_of(inputs, unit, density)
    if problem.data.background is not None:  # the mixture's part only
        shape -= problem.data.background.values_rows(thetas[:, problem.n_mixture_parameters :])
    q = inputs.Q if len(inputs.Q) == 1 else inputs.Q[density]
    y = inputs.Y[density]
    if problem.data.loss == "l2":
        scale = np.sum(q * y * shape, axis=1) / np.maximum(np.sum(q * shape**2, axis=1), TINY)
    else:
        scale = np.sum(q * np.maximum(y, 0.0), axis=1) / np.maximum(np.sum(q * shape, 1), TINY)
    thetas[:, 0] = np.clip(np.log(np.maximum(scale, TINY)), *problem.bounds[0])
    return thetas


def row_problem(problem, inputs, row):
    """The single-density :class:`~.problem.Problem` of row ``row`` of ``inputs`` (its
    target, quadrature and fixed scale), for the moves that work one density at a time."""
    if inputs is problem.kernel:
        return problem
    data = replace(
        problem.data,
        target=inputs.Y[row],
        quadrature=inputs.Q[0] if len(inputs.Q) == 1 else inputs.Q[row],
        fixed_log_scale=float(inputs.fixed_log_scale[row]),
    )
    return replace(problem, data=data)


# Candidate centres of a component placed by the matched filter (a quarter at the points
# of largest residual, the rest a fixed spread over the grid): as many as keep the
# filter near FILTER_WORK shape values a row, within these limits.
FILTER_WORK = 2**20
MIN_FILTER_CENTRES = 8
MAX_FILTER_CENTRES = 64


def _filter_centres(residuals):
    """``(R, C)`` candidate centres of a new component for each residual row."""
    n_points = residuals.shape[1]
    n_centres = int(np.clip(FILTER_WORK // n_points, MIN_FILTER_CENTRES, MAX_FILTER_CENTRES))
    n_largest = min(n_points, max(1, n_centres // 4))
    generator = np.random.default_rng(0)  # a fixed spread: deterministic moves
    spread = generator.choice(n_points, min(n_points, n_centres - n_largest), replace=False)
    largest = np.argpartition(-residuals, n_largest - 1, axis=1)[:, :n_largest]
    return np.hstack([largest, np.broadcast_to(spread, (len(residuals), len(spread)))])


def grown_rows(problem, inputs, thetas, density, placement="peaks"):
    """Each row of ``thetas`` (``problem``'s K components) with a component added where
    its residual asks for one: ``(R, p)`` parameters of ``problem.with_components(K + 1)``.

    ``placement='peaks'``: the isotropic bump that explains most of the residual at its
    highest point (:func:`~.rows.greedy_peaks`); ``'filter'``: the shape of the
    narrowest component where it removes the most squared residual, among the points of
    largest residual and a fixed spread over the grid (a matched filter: a broad low
    peak under noise, which no single point's residual stands out for). With the
    Poisson loss the filter weighs the residual by the model's inverse (Pearson's
    weights: counts scatter by its square root), so that a small peak left out is not
    outshone by the misfit of a large one.
    """
    layout = problem.layout
    d = layout.n_features
    bigger = problem.with_components(layout.n_components + 1)
    models = models_of(inputs, thetas, density)
    residuals = inputs.Y[density] - models
    q = inputs.Q if len(inputs.Q) == 1 else inputs.Q[density]
    means, widths, heights = greedy_peaks(
        replace(inputs, Q=np.ascontiguousarray(q)), peak_widths(problem), 1, residuals
    )
    log_scale, log_weights, old_means, raw = rows_split(
        thetas, layout, inputs.fixed_log_scale[density]
    )
    upper = rows_upper(layout, raw)
    rows = np.arange(len(thetas))
    new_upper = np.zeros((len(thetas), d, d))
    new_upper[:, np.arange(d), np.arange(d)] = 1.0 / widths[:, :1]
    new_means, new_heights = means[:, 0], heights[:, 0]
    if placement == "filter":
        narrowest = np.argmax(np.sum(np.log(np.diagonal(upper, axis1=-2, axis2=-1)), -1), 1)
        shape = upper[rows, narrowest]
        residuals = np.where(q > 0, residuals, 0.0)
        if inputs.poisson:  # counts scatter by the square root of the model: Pearson's weights
            floor = np.maximum(models, np.max(models, axis=1, keepdims=True) * 1e-3)
            # (a model that is 0 everywhere, or so small that the weights overflow, underflowed:
            # leaves the weights as they are)
            with np.errstate(divide="ignore", over="ignore"):
                pearson = q / np.where(floor > 0, floor, 1.0)
            q = np.where((floor > 0) & np.isfinite(pearson), pearson, q)
            centres = _filter_centres(residuals * np.sqrt(q))
        else:
            centres = _filter_centres(residuals)
        gains, found = matched_filter(inputs, residuals, centres, shape, q)
        best = np.argmax(gains, axis=1)
        filtered = gains[rows, best] > 0
        new_means = np.where(filtered[:, None], inputs.X[centres[rows, best]], new_means)
        new_heights = np.where(filtered, found[rows, best], new_heights)
        new_upper = np.where(filtered[:, None, None], shape, new_upper)
    masses = np.exp(log_scale[:, None] + log_weights)
    log_det = np.sum(np.log(np.diagonal(new_upper, axis1=-2, axis2=-1)), axis=-1)
    new = np.maximum(new_heights, TINY) * np.exp(0.5 * d * np.log(2 * np.pi) - log_det)
    masses = np.column_stack([masses, new])
    total = masses.sum(axis=1)
    # the new component's own factor, or (tied) the one they share
    added = new_upper[:, None] if own_covariances(layout.covariance_type) else upper[:, :1]
    grown_upper = np.concatenate([upper, added], axis=1)
    grown = rows_pack(
        bigger.layout,
        np.log(total),
        np.log(masses / total[:, None]),
        np.concatenate([old_means, new_means[:, None]], axis=1),
        rows_raw(bigger.layout, grown_upper),
    )
    tail = thetas[:, layout.n_parameters :]  # a background's parameters
    grown = np.hstack([grown, tail])
    return np.clip(grown, bigger.bounds[:, 0], bigger.bounds[:, 1])


def _inputs_with_components(problem, inputs, n_components):
    """``(problem, inputs)`` with another number of components, for the same densities."""
    other = problem.with_components(n_components)
    return other, other.kernel.with_densities_of(inputs)


def greedy_path_rows(problem, inputs, settings, density):
    """Starts for K components grown one at a time from one, for the rows ``density``:
    fits with 1, 2, ..., K - 1 components (short), each from the previous fit plus a
    component where its residual asks for one (:func:`grown_rows`). ``(R, p)``."""
    n_components = problem.layout.n_components
    current, current_inputs = _inputs_with_components(problem, inputs, 1)
    thetas = peak_starts(current, current_inputs.subset(density))
    short = settings.short()
    for k in range(1, n_components):
        fitted = minimize_rows(
            current_inputs,
            thetas,
            tol=short.tol,
            max_iter=short.max_iter,
            ftol=SHORT_FTOL,
            density=density,
        )
        thetas = np.where(np.isfinite(fitted.loss)[:, None], fitted.theta, thetas)
        thetas = grown_rows(current, current_inputs, thetas, density)
        if k + 1 < n_components:
            current, current_inputs = _inputs_with_components(problem, inputs, k + 1)
    return thetas


def _keep_lower(best, other, rows):
    """Rows ``rows`` of ``best`` replaced by ``other``'s where its loss is lower."""
    lower = other.loss < best.loss[rows]
    take = rows[lower]
    best.theta[take] = other.theta[lower]
    best.loss[take] = other.loss[lower]
    best.n_iter[take] = other.n_iter[lower]
    best.status[take] = other.status[lower]


def parked_rows(problem, inputs, thetas, density, *, width_floor=True):
    """``(R, K)``: the components of each row that fit nothing of their own: less than
    ``NEGLIGIBLE_WEIGHT`` of the fitted mass on the grid, centred outside the grid's
    box, or (``width_floor``) pressed against the width floor (a spike on a point or
    two)."""
    layout = problem.layout
    shares = component_shares_of(inputs, thetas, density)
    _, _, means, raw = rows_split(thetas, layout, inputs.fixed_log_scale[density])
    low, high = problem.grid.min(axis=0), problem.grid.max(axis=0)
    outside = np.any((means < low) | (means > high), axis=2)
    parked = (shares < NEGLIGIBLE_WEIGHT) | outside
    if width_floor:
        diagonal = np.diagonal(rows_upper(layout, raw), axis1=-2, axis2=-1)
        parked |= np.any(diagonal * problem.width_floors(means) >= 0.99, axis=2)
    return parked


def split_rows(problem, inputs, thetas, density):
    """Each row of ``thetas`` with its worst-fitted component (the largest
    responsibility-weighted squared residual) split in two, half a standard deviation
    either side of its mean along its widest axis, each with half its weight (a full
    covariance narrowed along that axis): ``(R, p)`` parameters of
    ``problem.with_components(K + 1)``."""
    layout = problem.layout
    k, cov = layout.n_components, layout.covariance_type
    _, burdens = component_shares_of(inputs, thetas, density, burdens=True)
    index = np.argmax(burdens, axis=1)
    log_scale, log_weights, means, raw = rows_split(thetas, layout, inputs.fixed_log_scale[density])
    rows = np.arange(len(thetas))
    upper = rows_upper(layout, raw)
    factor = upper[rows, index]
    covariance = np.linalg.inv(factor @ np.swapaxes(factor, -1, -2))
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    step = 0.5 * np.sqrt(eigenvalues[:, -1:]) * eigenvectors[:, :, -1]
    means = np.concatenate([means, (means[rows, index] + step)[:, None]], axis=1)
    means[rows, index] -= step
    half = log_weights[rows, index] - np.log(2.0)
    log_weights = np.column_stack([log_weights, half])
    log_weights[rows, index] = half
    new = factor
    if cov == "full":
        narrowed = (
            covariance
            - 0.25
            * eigenvalues[:, -1:, None]
            * (step[:, :, None] * step[:, None, :])
            / np.sum(step * step, axis=1)[:, None, None]
        )
        new = np.swapaxes(np.linalg.inv(np.linalg.cholesky(narrowed)), -1, -2)
        upper[rows, index] = new
    upper = np.concatenate([upper, new[:, None]], axis=1)
    bigger = problem.with_components(k + 1)
    split = rows_pack(bigger.layout, log_scale, log_weights, means, rows_raw(bigger.layout, upper))
    split = np.hstack([split, thetas[:, layout.n_parameters :]])
    return np.clip(split, bigger.bounds[:, 0], bigger.bounds[:, 1])


def weakest_rows(problem, inputs, thetas, density):
    """``(R,)``: each row's component whose removal raises the loss least."""
    layout = problem.layout
    k = layout.n_components
    _, small_inputs = _inputs_with_components(problem, inputs, k - 1)
    rows = len(thetas)
    without = np.vstack(
        [
            rows_without(layout, thetas, np.full(rows, j), inputs.fixed_log_scale[density])
            for j in range(k)
        ]
    )
    losses = losses_of(small_inputs, without, np.tile(density, k)).reshape(k, rows)
    return np.argmin(np.where(np.isfinite(losses), losses, np.inf), axis=0)


def moved_rows(problem, inputs, fits, rows, index, settings, *, ftol=NO_GAIN):
    """Rows ``rows`` of ``fits`` (a :class:`~.rows.RowResults` over all densities) with
    their component ``index`` removed and placed again two ways: where the residual asks
    for it (:func:`grown_rows`) and by splitting the worst-fitted component
    (:func:`split_rows`); short runs compare, the winners are polished (to ``ftol``)
    with the iterations they have left, and kept where the loss drops by more than
    ``MIN_MOVE_GAIN`` of it. Modifies ``fits``; returns the rows that moved."""
    layout = problem.layout
    smaller, small_inputs = _inputs_with_components(problem, inputs, layout.n_components - 1)
    without = rows_without(layout, fits.theta[rows], index, inputs.fixed_log_scale[rows])
    starts = np.vstack(
        [
            grown_rows(smaller, small_inputs, without, rows, placement="filter"),
            split_rows(smaller, small_inputs, without, rows),
        ]
    )
    short = settings.short()
    trials = minimize_rows(
        inputs,
        starts,
        tol=short.tol,
        max_iter=short.max_iter,
        ftol=SHORT_FTOL,
        density=np.tile(rows, 2),
    )
    n = len(rows)
    second = trials.loss[n:] < trials.loss[:n]
    trial_theta = np.where(second[:, None], trials.theta[n:], trials.theta[:n])
    trial_loss = np.where(second, trials.loss[n:], trials.loss[:n])
    promising = trial_loss < (1 - MIN_MOVE_GAIN) * fits.loss[rows]
    budget = settings.max_iter - fits.n_iter[rows]
    promising &= budget >= 1
    if not promising.any():
        return rows[:0]
    candidates = rows[promising]
    polished = minimize_rows(
        inputs,
        trial_theta[promising],
        tol=settings.tol,
        max_iter=np.maximum(budget[promising], 1),  # each row its own: none waits for others
        ftol=ftol,
        density=candidates,
    )
    better = polished.loss < (1 - MIN_MOVE_GAIN) * fits.loss[candidates]
    moved = candidates[better]
    fits.theta[moved] = polished.theta[better]
    fits.loss[moved] = polished.loss[better]
    fits.n_iter[moved] += polished.n_iter[better]
    fits.status[moved] = polished.status[better]
    return moved


def _noise_ratio(inputs, fits, rows):
    """The loss of each of the ``rows`` over that of the white noise its density's values
    show (:func:`~.noise.noise_variance`), or None where no such estimate exists (the
    Poisson loss, scattered points)."""
    if inputs.poisson or rows.size == 0:
        return None
    variance = noise_variance(inputs.X, inputs.Y[rows])
    if variance is None:
        return None
    q = inputs.Q if len(inputs.Q) == 1 else inputs.Q[rows]
    noise_loss = variance * np.sum(q, axis=1) / inputs.normaliser[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(noise_loss > 0, fits.loss[rows] / noise_loss, np.inf)


def _above_the_noise(inputs, fits):
    """The densities whose fit is not exact and whose loss is more than ``ABOVE_NOISE``
    times that of their white noise (none where that cannot be estimated)."""
    rows = np.flatnonzero(np.isfinite(fits.loss) & (fits.loss > EXACT_FIT_LOSS))
    ratio = _noise_ratio(inputs, fits, rows)
    return rows[:0] if ratio is None else rows[ratio > ABOVE_NOISE]


def _progress(verbose, n_densities, inputs):
    """A function printing one line a stage of :func:`fit_densities` when ``verbose``:
    the stage, the rows it ran, their iterations, the best loss so far and the time."""
    if not verbose:
        return lambda *args: None
    start_time = time.perf_counter()
    k, n_points, n_parameters = inputs.layout[0], inputs.X.shape[0], inputs.lower.size
    what = f"{n_densities} densities" if n_densities > 1 else "1 density"
    print(f"DensityGMM: K = {k}, {what} of {n_points} points, {n_parameters} parameters")

    def report(stage, best, rows, run=None):
        ran = best if run is None else run
        losses = best.loss[np.isfinite(best.loss)]
        loss = f"{losses.min():.6g}" if n_densities == 1 and losses.size else "-"
        if n_densities > 1 and losses.size:
            loss = f"median {np.median(losses):.6g}"
        print(
            f"DensityGMM: {stage}: {len(rows)} row{'s' * (len(rows) != 1)}, "
            f"{int(np.sum(ran.n_iter))} iterations, "
            f"loss {loss}, {time.perf_counter() - start_time:.2f} s",
            flush=True,
        )

    return report


def fit_densities(problem, inputs, settings, random_state, *, data_start=data_driven_start):
    """The best fit of every density of ``inputs`` with ``problem``'s K components.

    Every start of every density is a row of the kernel: the data-driven start
    (``init_params``: greedy peaks by default), for densities it does not fit exactly
    the greedy path (:func:`greedy_path_rows`) and ``n_init - 2`` more drawn starts
    (k-means after the greedy peaks), the lowest loss kept; then components left parked
    are placed again, and (with ``n_init`` > 1) the weakest component of a fit that is
    not exact is moved (:func:`moved_rows`): the starts often end alike in an optimum
    where two components share a peak and one covers two. Every density is polished to
    ``tol`` at last. ``random_state``: one random state, or a list of one per density
    (for the starts that draw: ``init_params`` other than 'peaks'). Returns a
    :class:`DensityFits`.
    """
    states = random_state if isinstance(random_state, list) else None
    n_densities = len(inputs.Y)
    progress = _progress(settings.verbose, n_densities, inputs)
    everyone = np.arange(n_densities)
    k = problem.layout.n_components
    n_runs = 1 if settings.starts_are_all_alike(k) else settings.n_init
    run_ftol = RUN_FTOL if n_runs > 1 else NO_GAIN

    def drawn_starts(rows, how=None):
        if how is None:  # the greedy peaks are one start: the others drawn are k-means'
            how = settings
            if settings.init_params == "peaks":
                how = replace(settings, init_params="kmeans")
        starts = []
        for i in rows:
            single = row_problem(problem, inputs, i)
            theta = data_start(single, how, random_state if states is None else states[i])
            starts.append(theta)
        return best_scales(problem, inputs, np.vstack(starts), rows)

    if settings.init_params == "peaks" and not any(settings.user_given):
        starts = peak_starts(problem, inputs)
    else:
        starts = drawn_starts(everyone, settings)
    best = minimize_rows(
        inputs, starts, tol=settings.tol, max_iter=settings.max_iter, ftol=run_ftol
    )
    progress("first start", best, everyone)
    for run in range(1, n_runs):
        rows = everyone[~(best.converged & (best.loss <= EXACT_FIT_LOSS))]
        if rows.size == 0:
            break
        if run == 1 and settings.uses_data_driven_starts(k):
            starts = greedy_path_rows(problem, inputs, settings, rows)
        else:
            starts = drawn_starts(rows)
        other = minimize_rows(
            inputs,
            starts,
            tol=settings.tol,
            max_iter=settings.max_iter,
            ftol=run_ftol,
            density=rows,
        )
        _keep_lower(best, other, rows)
        progress(f"start {run + 1} of {n_runs}", best, rows, other)
    if k > 1:
        # components left parked are placed again (once a component: a parked one that
        # will not move is a component the density does not hold)
        place_parked(
            problem,
            inputs,
            best,
            settings,
            report=lambda rows: progress("parked components placed again", best, rows),
        )
        # the best of the starts may still be an optimum where two components share a
        # peak and one covers two (both starts often end there alike): move the weakest
        inexact = everyone[np.isfinite(best.loss) & (best.loss > EXACT_FIT_LOSS)]
        if n_runs > 1 and inexact.size:
            index = weakest_rows(problem, inputs, best.theta[inexact], inexact)
            moved_rows(problem, inputs, best, inexact, index, settings)
            progress("weakest component moved", best, inexact)
    # a fit whose residual stands well above the density's own noise is probably a local
    # optimum that the starts and moves share: one more start, from k-means
    if n_runs > 1 and settings.init_params == "peaks" and not any(settings.user_given):
        rows = _above_the_noise(inputs, best)
        if rows.size:
            other = minimize_rows(
                inputs,
                drawn_starts(rows),
                tol=settings.tol,
                max_iter=settings.max_iter,
                ftol=run_ftol,
                density=rows,
            )
            _keep_lower(best, other, rows)
            progress("a k-means start where the fit is above the noise", best, rows, other)
    theta, loss = best.theta, best.loss.copy()
    n_iter, converged, status = best.n_iter.copy(), best.converged.copy(), best.status.copy()
    polish = everyone[
        np.isfinite(loss) & (status == FTOL) & (run_ftol > NO_GAIN) & (n_iter < settings.max_iter)
    ]
    if polish.size:
        budget = np.maximum(settings.max_iter - n_iter[polish], 1)
        polished = minimize_rows(
            inputs, theta[polish], tol=settings.tol, max_iter=budget, density=polish
        )
        better = polished.loss <= loss[polish]
        rows = polish[better]
        theta[rows], loss[rows] = polished.theta[better], polished.loss[better]
        n_iter[rows] += polished.n_iter[better]
        converged[rows] = polished.converged[better]
        status[rows] = polished.status[better]
        progress("polished", polished, polish)
    return DensityFits(theta, loss, n_iter, converged, status)
