"""The kernel's inputs from a :class:`~.problem.Problem`, and rows run through it.

:class:`KernelInputs` holds what the compiled kernel (:mod:`.kernel`) reads:
the grid-level arrays (points, cells, background basis, the covariance
type's parameter map, bounds) and the per-density arrays (targets,
quadrature weights, fixed log scales, the losses' normalisers). A single
fit is one density; ``fit_many`` stacks many on one grid
(:meth:`KernelInputs.with_densities`). :func:`minimize_rows` runs
Levenberg-Marquardt on many parameter vectors at once (each a *row*: a
density and a start), :func:`losses_of` and :func:`models_of` evaluate them.
"""

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import xlogy

from .._data.rowwise import combined_columns, row_grams, row_products
from .._model.covariance import axis_aligned, cholesky_parameter_map
from . import kernel as _kernel
from .processes import CacheCode, available_cores

# A thread gets at least this many rows (a few rows cost less than handing them over).
SERIAL_ROWS = 8
# Values of the Jacobians the leverages hold at once (32 MB).
LEVERAGE_VALUES = 4_000_000


# The kernel's entry points, run from numba's cache in every process (:mod:`.processes`).
_fit_rows = CacheCode(_kernel.fit_rows)
_evaluate_rows = CacheCode(_kernel.evaluate_rows)
_jacobian_rows = CacheCode(_kernel.jacobian_rows)
_greedy_peaks = CacheCode(_kernel.greedy_peaks)
_matched_filter = CacheCode(_kernel.matched_filter)
_matched_filter_uniform = CacheCode(_kernel.matched_filter_uniform)
_component_shares = CacheCode(_kernel.component_shares)


_THREADS = threading.local()
_POOL = {}
_POOL_LOCK = threading.Lock()


def _n_threads():
    return getattr(_THREADS, "n", None) or available_cores()


@contextmanager
def kernel_threads(n_threads):
    """Run the kernel's rows on ``n_threads`` threads (None: one a core) inside the block
    (in this thread)."""
    previous = getattr(_THREADS, "n", None)
    _THREADS.n = None if n_threads is None else max(1, int(n_threads))
    try:
        yield
    finally:
        _THREADS.n = previous


def _in_threads(function, n_rows, *args):
    """``function(first, last, *args)`` over the rows ``0 .. n_rows - 1``: in this thread
    for a few rows, else in ranges on a pool of threads (the kernel releases the GIL;
    the ranges write disjoint rows of the outputs)."""
    n_threads = min(_n_threads(), max(1, n_rows // SERIAL_ROWS))
    if n_threads == 1:
        function(0, n_rows, *args)
        return
    with _POOL_LOCK:
        pool = _POOL.get(n_threads)
        if pool is None:
            pool = _POOL[n_threads] = ThreadPoolExecutor(n_threads, "skdensityfit-kernel")
    # more ranges than threads: rows converge at different speeds
    bounds = np.linspace(0, n_rows, 4 * n_threads + 1).astype(int)
    futures = [
        pool.submit(function, int(first), int(last), *args)
        for first, last in itertools.pairwise(bounds)
        if last > first
    ]
    for future in futures:
        future.result()


@dataclass(frozen=True, eq=False)
class KernelInputs:
    """Arrays of the kernel for one grid, one number of components and some densities."""

    X: np.ndarray  # (n, d) standardised points
    lo: np.ndarray  # (n, d) cells' lower bounds (zeros without bins)
    hi: np.ndarray  # (n, d)
    basis: np.ndarray  # (n, J) background basis
    layout: np.ndarray  # (7,) int64
    chol_index: np.ndarray  # (K, d, d) int64, absolute indices into theta
    chol_log: np.ndarray  # (K, d, d) bool
    lower: np.ndarray  # (p,)
    upper: np.ndarray  # (p,)
    Y: np.ndarray  # (D, n) targets
    Q: np.ndarray  # (D or 1, n) quadrature weights
    fixed_log_scale: np.ndarray  # (D,)
    normaliser: np.ndarray  # (D,)
    constant: np.ndarray  # (D,)
    tolerance: np.ndarray  # (D,) the factor of the fits' gradient tolerance (1: the fit's own)

    @property
    def row_arrays(self):
        """What the kernel's row functions read of the problem, in their order: the
        grid-level arrays, the densities, their weights and their fixed log scales."""
        return (
            self.X, self.lo, self.hi, self.Y, self.Q, self.basis, self.layout,
            self.chol_index, self.chol_log, self.fixed_log_scale,
        )  # fmt: skip

    @classmethod
    def of(cls, problem):
        """The inputs of a single-density problem."""
        data, layout = problem.data, problem.data.layout
        k, d = layout.n_components, layout.n_features
        index, log = cholesky_parameter_map(layout.covariance_type, k, d)
        index = np.where(index >= 0, index + layout.offsets[3], -1)
        n = len(data.target)
        background = data.background
        basis = np.zeros((n, 0)) if background is None else background.basis
        n_background = 0 if background is None else background.n_parameters
        cells = data.cells
        # full and tied components over cells in several dimensions: the kernel's cubature
        cubature = not axis_aligned(layout.covariance_type, d)
        if cells is None:
            lo = hi = np.zeros((n, d))
        else:
            lo, hi = cells.lo, cells.hi
        kind = np.array(
            [
                k,
                d,
                int(layout.fit_scale),
                problem.bounds.shape[0],
                n_background,
                0 if data.loss == "l2" else 1,
                0 if cells is None else (_kernel.CUBATURE if cubature else 1),
                int(background is not None and background.exponential),
            ],
            dtype=np.int64,
        )
        return cls(
            X=np.ascontiguousarray(problem.grid, dtype=float),
            lo=np.ascontiguousarray(lo, dtype=float),
            hi=np.ascontiguousarray(hi, dtype=float),
            basis=np.ascontiguousarray(basis, dtype=float),
            layout=kind,
            chol_index=np.ascontiguousarray(index),
            chol_log=np.array(log),  # writable: numba compiles a read-only array as another type
            lower=np.ascontiguousarray(problem.bounds[:, 0], dtype=float),
            upper=np.ascontiguousarray(problem.bounds[:, 1], dtype=float),
            Y=np.ascontiguousarray(data.target[None], dtype=float),
            Q=np.ascontiguousarray(data.quadrature[None], dtype=float),
            fixed_log_scale=np.array([data.fixed_log_scale], dtype=float),
            normaliser=np.array([data.normaliser], dtype=float),
            constant=np.array([poisson_constant(data.target, data.quadrature, data.loss)]),
            tolerance=np.ones(1),
        )

    @property
    def n_parameters(self):
        return int(self.layout[3])

    @property
    def poisson(self):
        return bool(self.layout[5])

    def loss_units(self):
        """``(D,)``: each density's normaliser over its zero model's loss (l2; 1 for
        poisson): a loss times this is relative to ``sum q y^2``, as ``loss_`` is reported."""
        if self.poisson:
            return np.ones(len(self.Y))
        if self.basis.shape[1] == 0:  # the normaliser is that sum (at least tiny): no pass
            return self.normaliser / np.maximum(self.normaliser, 1e-300)
        return self.normaliser / np.maximum(np.sum(self.Q * self.Y**2, axis=1), 1e-300)

    def with_densities_of(self, other):
        """This grid and parameter map with ``other``'s densities: their targets, weights,
        fixed log scales, normalisers and constants (none depends on K)."""
        return replace(
            self,
            Y=other.Y,
            Q=other.Q,
            fixed_log_scale=other.fixed_log_scale,
            normaliser=other.normaliser,
            constant=other.constant,
            tolerance=other.tolerance,
        )

    def subset(self, rows):
        """The densities ``rows`` only (in that order)."""
        return replace(
            self,
            Y=self.Y[rows],
            Q=self.Q if len(self.Q) == 1 else self.Q[rows],
            fixed_log_scale=self.fixed_log_scale[rows],
            normaliser=self.normaliser[rows],
            constant=self.constant[rows],
            tolerance=self.tolerance[rows],
        )

    def with_densities(self, Y, Q=None, fixed_log_scale=None, tolerance=None):
        """The same grid with the targets ``Y`` ``(D, n)`` (standardised: each divided by
        its unit), quadrature weights ``Q`` (``(D, n)``, or None: this one's), and
        per-density fixed log scales and gradient tolerances' factors (None: 1)."""
        Y = np.ascontiguousarray(Y, dtype=float)
        Q = self.Q if Q is None else np.ascontiguousarray(np.atleast_2d(Q), dtype=float)
        loss = "poisson" if self.poisson else "l2"
        if fixed_log_scale is None:
            fixed_log_scale = np.full(len(Y), self.fixed_log_scale[0])
        return replace(
            self,
            Y=Y,
            Q=Q,
            fixed_log_scale=np.ascontiguousarray(fixed_log_scale, dtype=float),
            normaliser=loss_normalisers(Y, Q, loss, self.basis, self.layout[_kernel._EXPONENTIAL]),
            constant=poisson_constant(Y, Q, loss),
            tolerance=np.ones(len(Y)) if tolerance is None else np.asarray(tolerance, float),
        )


# The l2 normaliser under a background is at least this fraction of the zero model's loss:
# a density that is all background leaves a residual of rounding errors.
MIN_BACKGROUND_FREE = 1e-16


def loss_normalisers(Y, Q, loss, basis, exponential):
    """Each density's loss normaliser ``(D,)``: for 'poisson' its mass ``sum q |y|``; for
    'l2' the loss of the zero model ``sum q y^2``, or with a background (columns
    ``basis``, ``(n, J)``) the loss of the background alone, its least-squares fit (a
    constant stands for an ``exponential`` one). A continuum far above the lines then
    leaves the loss, its gradient and the exact-fit tests on the scale of the lines."""
    Y = np.atleast_2d(Y)
    if loss == "poisson":
        return np.maximum(np.sum(Q * np.abs(Y), axis=1), np.finfo(float).tiny)
    energy = np.sum(Q * Y**2, axis=1)
    if basis.shape[1] == 0:
        return np.maximum(energy, np.finfo(float).tiny)
    residual = Y - background_fits(Y, Q, basis, exponential)
    free = np.sum(Q * residual**2, axis=1)
    return np.maximum(np.maximum(free, MIN_BACKGROUND_FREE * energy), np.finfo(float).tiny)


def background_fits(Y, Q, basis, exponential):
    """``(D, n)``: the weighted least-squares fit of each row of ``Y`` by the background's
    columns ``basis`` ``(n, J)`` alone (a constant stands for an ``exponential`` one),
    ``Q`` the weights (one row, or one a density)."""
    columns = np.ones((basis.shape[0], 1)) if exponential else basis
    n_columns = columns.shape[1]
    gram = row_grams(Q, columns)  # (D or 1, J, J)
    moments = row_products(Y * Q, columns)
    # from the Gram matrix scaled to a unit diagonal (pinv: a user's columns may be dependent)
    scale = np.sqrt(np.einsum("djj->dj", gram))
    scale = np.where(scale > 0, scale, 1.0)
    scaled = gram / (scale[:, :, None] * scale[:, None, :])
    inverse = np.broadcast_to(np.linalg.pinv(scaled), (len(Y), n_columns, n_columns))
    coefficients = np.sum(inverse * (moments / scale)[:, None, :], axis=2) / scale
    return combined_columns(coefficients, columns)


def poisson_constant(Y, Q, loss):
    """``sum q (y log y - y)`` per density (the Poisson loss's part that no fit moves)."""
    if loss != "poisson":
        return np.zeros(np.shape(Y)[:-1]) if np.ndim(Y) > 1 else 0.0
    values = np.sum(Q * (xlogy(Y, Y) - Y), axis=-1)
    return values if np.ndim(Y) > 1 else float(values)


@dataclass
class RowResults:
    """Levenberg-Marquardt's outcome for each row."""

    theta: np.ndarray  # (R, p)
    loss: np.ndarray  # (R,) inf where not finite
    n_iter: np.ndarray  # (R,)
    status: np.ndarray  # (R,) one of _kernel's statuses

    @property
    def converged(self):
        return self.status <= _kernel.NO_DECREASE

    def message(self, row):
        return _kernel.STATUS_MESSAGES[int(self.status[row])]


def _density_index(inputs, density, n_rows):
    """The density of each row: ``density``, or None for row ``r`` of density ``r`` (or
    of the one density)."""
    if density is None:
        n_densities = len(inputs.Y)
        if n_densities not in (1, n_rows):
            raise ValueError(f"{n_rows} rows of {n_densities} densities: say which is which.")
        return np.arange(n_rows, dtype=np.int64) if n_densities > 1 else np.zeros(n_rows, np.int64)
    # a writable copy: numba compiles a read-only array (a broadcast) as another type
    return np.array(np.broadcast_to(density, (n_rows,)), dtype=np.int64)


def minimize_rows(inputs, thetas, *, tol, max_iter, ftol=_kernel.NO_GAIN, density=None):
    """Levenberg-Marquardt on each row of ``thetas`` ``(R, p)`` (row ``r`` fits density
    ``density[r]``, default 0), each within the bounds and to its own convergence: a
    gradient of at most ``tol`` times its density's ``inputs.tolerance``, at most
    ``max_iter`` iterations (a number, or one a row)."""
    thetas = np.array(np.atleast_2d(thetas), dtype=float, order="C")
    n_rows = len(thetas)
    max_iters = np.array(np.broadcast_to(max_iter, (n_rows,)), dtype=np.int64)
    losses = np.empty(n_rows)
    n_iter = np.empty(n_rows, dtype=np.int64)
    status = np.empty(n_rows, dtype=np.int64)
    _in_threads(
        _fit_rows,
        n_rows,
        thetas,
        _density_index(inputs, density, n_rows),
        *inputs.row_arrays,
        inputs.normaliser,
        inputs.constant,
        inputs.tolerance,
        inputs.lower,
        inputs.upper,
        float(tol),
        float(ftol),
        max_iters,
        losses,
        n_iter,
        status,
    )
    return RowResults(thetas, losses, n_iter, status)


def _evaluate(
    inputs, thetas, density, *, with_models=False, with_curvatures=False, with_gradients=False
):
    """``(losses (R,), models (R, n) or (0, n), Gauss-Newton matrices (R, p, p) or (0, p,
    p), gradients (R, p) or (0, p))`` of the rows ``thetas`` (gradients only with the
    matrices)."""
    thetas = np.ascontiguousarray(np.atleast_2d(thetas), dtype=float)
    n_rows, p = thetas.shape
    losses = np.empty(n_rows)
    models = np.empty((n_rows if with_models else 0, inputs.X.shape[0]))
    curvatures = np.empty((n_rows if with_curvatures else 0, p, p))
    gradients = np.empty((n_rows if with_gradients else 0, p))
    _in_threads(
        _evaluate_rows,
        n_rows,
        thetas,
        _density_index(inputs, density, n_rows),
        *inputs.row_arrays,
        inputs.normaliser,
        inputs.constant,
        losses,
        models,
        curvatures,
        gradients,
    )
    return losses, models, curvatures, gradients


def losses_of(inputs, thetas, density=None):
    """The loss of each row (inf where not finite)."""
    return _evaluate(inputs, thetas, density)[0]


def models_of(inputs, thetas, density=None):
    """The model of every value of each row's density, ``(R, n)``, in fit units."""
    return _evaluate(inputs, thetas, density, with_models=True)[1]


def curvatures_of(inputs, thetas, density=None):
    """``(losses (R,), Gauss-Newton matrices (R, p, p))`` of the rows ``thetas``."""
    losses, _, curvatures, _ = _evaluate(inputs, thetas, density, with_curvatures=True)
    return losses, curvatures


def derivatives_of(inputs, theta, density=0):
    """``(loss, gradient, Gauss-Newton matrix)`` of one parameter vector."""
    losses, _, curvatures, gradients = _evaluate(
        inputs, theta, np.array([density]), with_curvatures=True, with_gradients=True
    )
    return losses[0], gradients[0], curvatures[0]


def component_shares_of(inputs, thetas, density=None, burdens=False):
    """Each component's share of the fitted mass on the grid, ``(R, K)``; with
    ``burdens`` also each one's responsibility-weighted squared residual, ``(R, K)``."""
    thetas = np.ascontiguousarray(np.atleast_2d(thetas), dtype=float)
    n_rows = len(thetas)
    shares = np.empty((n_rows, int(inputs.layout[0])))
    burden = np.empty_like(shares)
    _in_threads(
        _component_shares,
        n_rows,
        thetas,
        _density_index(inputs, density, n_rows),
        *inputs.row_arrays,
        shares,
        burden,
    )
    return (shares, burden) if burdens else shares


def greedy_peaks(inputs, widths, n_components, residuals=None):
    """``(means (D, K, d), sds (D, K), heights (D, K))`` of each density's greedy peaks
    (of ``residuals`` ``(D, n)`` if given), widths among ``widths``."""
    Y = inputs.Y if residuals is None else np.ascontiguousarray(residuals, dtype=float)
    D, d = len(Y), inputs.X.shape[1]
    means = np.empty((D, n_components, d))
    sds = np.empty((D, n_components))
    heights = np.empty((D, n_components))
    _in_threads(
        _greedy_peaks,
        D,
        inputs.X,
        Y,
        inputs.Q,
        np.ascontiguousarray(widths, dtype=float),
        means,
        sds,
        heights,
    )
    return means, sds, heights


def matched_filter(inputs, residuals, centres, upper, q=None):
    """``(gains (R, C), heights (R, C))``: the Gaussian shape of precision Cholesky
    factor ``upper[r]`` (peak 1) at each candidate centre ``centres[r, c]`` (point
    indices) fitted to ``residuals[r]`` (see :func:`~.kernel.matched_filter`); ``q``
    the quadrature weights (one row, or one per row; default the inputs')."""
    centres = np.ascontiguousarray(centres, dtype=np.int64)
    gains = np.empty(centres.shape)
    heights = np.empty(centres.shape)
    residuals = np.ascontiguousarray(residuals, dtype=float)
    q = np.ascontiguousarray(inputs.Q if q is None else q, dtype=float)
    upper = np.ascontiguousarray(upper, dtype=float)
    spacing = uniform_spacing(inputs.X)
    if spacing is not None:
        _in_threads(
            _matched_filter_uniform, len(centres), residuals, q, centres, upper,
            spacing, gains, heights,
        )  # fmt: skip
        return gains, heights
    _in_threads(
        _matched_filter,
        len(centres),
        inputs.X,
        residuals,
        q,
        centres,
        upper,
        gains,
        heights,
    )
    return gains, heights


def uniform_spacing(X):
    """The spacing of a 1-D grid of equally spaced points in increasing order, else None."""
    if X.shape[1] != 1 or len(X) < 2:
        return None
    steps = np.diff(X[:, 0])
    spacing = float(steps[0])
    if spacing > 0 and np.all(np.abs(steps - spacing) <= 1e-9 * spacing):
        return spacing
    return None


def jacobian_of(inputs, theta, density=0):
    """The model's Jacobian at every point of the grid: ``(n, p)`` for one parameter
    vector, ``(R, n, p)`` for rows ``theta`` ``(R, p)`` of densities ``density``."""
    thetas = np.array(np.atleast_2d(theta), dtype=float, order="C")
    n_rows = len(thetas)
    out = np.empty((n_rows, inputs.X.shape[0], thetas.shape[1]))
    _in_threads(
        _jacobian_rows,
        n_rows,
        thetas,
        _density_index(inputs, density, n_rows),
        inputs.X,
        inputs.lo,
        inputs.hi,
        inputs.basis,
        inputs.layout,
        inputs.chol_index,
        inputs.chol_log,
        inputs.fixed_log_scale,
        out,
    )
    return out[0] if np.ndim(theta) == 1 else out


def leverages_of(inputs, theta, density=0):
    """Each point's leverage in the weighted least-squares fit ``theta`` of density
    ``density``: the diagonal of the hat matrix ``W^1/2 J (J^T W J)^-1 J^T W^1/2`` (they
    sum to the parameters the data determine). A residual's variance is the noise's
    times ``1 - leverage``. ``theta`` ``(R, p)`` and ``density`` ``(R,)``: ``(R, n)``,
    a stacked singular value decomposition for a chunk of rows at a time."""
    thetas = np.atleast_2d(theta)
    densities = np.broadcast_to(density, len(thetas))
    n, p = inputs.X.shape[0], thetas.shape[1]
    out = np.empty((len(thetas), n))
    chunk = max(1, LEVERAGE_VALUES // (n * p))  # bounds the memory the Jacobians take
    for first in range(0, len(thetas), chunk):
        rows = slice(first, first + chunk)
        q = inputs.Q[0] if len(inputs.Q) == 1 else inputs.Q[densities[rows]]
        columns = np.sqrt(q)[..., None] * jacobian_of(inputs, thetas[rows], densities[rows])
        scale = np.linalg.norm(columns, axis=1, keepdims=True)
        columns = np.divide(columns, scale, out=np.zeros_like(columns), where=scale > 0)
        u, singular, _ = np.linalg.svd(columns, full_matrices=False)
        kept = singular > singular[:, :1] * 1e-10  # directions the data do not determine
        out[rows] = np.einsum("rnk,rk->rn", u**2, kept)
    return out[0] if np.ndim(theta) == 1 else out
