"""Noise models of a density: what its values scatter by, for information criteria.

:class:`NoiseModel` turns the residual of a fit into ``-2 log L`` (up to a
constant that is the same for every fit of the density), so that fits with
different numbers of components can be compared by BIC or AIC. The kinds:

- ``'white'``: independent Gaussian noise of one standard deviation,
  estimated from the density itself (:func:`white_noise_sd`);
- ``'correlated'``: stationary Gaussian noise correlated along each grid
  axis (real spectra: neighbouring channels share noise), the residual
  whitened by the banded Cholesky factor of its first lags' autocorrelations
  (zero beyond: a moving average), or, when no process has those with zero
  beyond (noise smoothed over several points), by the autoregression that has
  them (:func:`whiten`); one model an axis when the axes' differ;
- ``'poisson'``: counts (a histogram's, or values that are counts times a
  constant quantum such as ``np.histogram(..., density=True)``'s): the
  binned Poisson likelihood, by its deviance;
- ``'given'``: the user's standard deviation, one for all points or one per
  point.

The white and correlated standard deviations come from second differences of
neighbouring values, which remove a smooth density and keep the noise; a
robust scale of them (the median absolute deviation, then the mean square of
the differences within three of it) is not moved by the few points of a
sharp peak. On grids that are not rectilinear, differences to the nearest
neighbour take their place.
"""

from dataclasses import dataclass, replace

import numpy as np
from scipy.linalg import LinAlgError, cholesky_banded, solve_banded, solve_toeplitz
from scipy.ndimage import uniform_filter
from scipy.special import xlogy
from scipy.stats import norm

from .rowwise import combined_columns, row_products, row_sums
from .validation import unique_values

NOISE_KINDS = ("auto", "white", "correlated", "poisson")
# The median absolute deviation of a standard normal variable is 1 / MAD_TO_SD.
MAD_TO_SD = 1.482602218505602
# The robust scale keeps the differences within TRIM of its current value and
# corrects the mean square of a normal variable truncated there.
TRIM = 3.0
TRIM_STEPS = 2
_TRUNCATED_VARIANCE = 1.0 - 2.0 * TRIM * norm.pdf(TRIM) / (2.0 * norm.cdf(TRIM) - 1.0)
# The standard deviation is never taken below this fraction of the density's
# root mean square: the precision to which fits are compared.
SD_FLOOR = 1e-6
# With noise='auto' the residual's noise is taken as correlated when its lag-1
# autocorrelation exceeds CORRELATION_GATE / sqrt(number of neighbouring pairs):
# an over-fit of white noise leaves a slightly negative one.
CORRELATION_GATE = 3.0
# Heteroscedastic noise: the residual's variance where the model is highest (its top
# tenth, at least MIN_GROUP points) over that where it is lowest (below its median).
HETEROSCEDASTIC_RATIO = 2.0
HETEROSCEDASTIC_Z = 4.0
MIN_GROUP = 10
# ... the highest being the points above this level (a fraction of the peak) when they are
# fewer than a tenth (a narrow line's few points, diluted in a tenth of a long grid) but at
# least MIN_HIGH (benchmarks/results/choose_k_gain.txt).
HIGH_LEVEL = 0.25
MIN_HIGH = 5
VARIANCE_ITERATIONS = 5
PROFILE_ITERATIONS = 20
# Second differences of white noise on an even grid have lag-1 correlation -2/3, those of
# a smooth density's curvature near +1: differences that correlate more than this are
# not taken for noise.
NOISE_DIFFERENCE_CORRELATION = -1.0 / 3.0
# Tests made on many rows at once pass what they would pass one row at a time within
# this margin (their sums are rounded otherwise, their groups' bounds may differ by a
# point); the row alone then decides.
MARGIN = 0.05
# A smallest value shared by this share of the points is a floor the values were cut at.
CENSORED_SHARE = 0.05
CENSORED_CLEARANCE = 2.0
# A residual is studentised by sqrt(1 - leverage), the leverage taken at most 1 - this.
MIN_FREEDOM = 0.05
# Lags of the correlated model: kept while their autocorrelation exceeds
# LAG_SIGNIFICANCE / sqrt(pairs), at most MAX_LAG (a moving average), or, for an
# autoregression, while their partial autocorrelation does, at most AR_MAX_LAG.
MAX_LAG = 3
AR_MAX_LAG = 6
LAG_SIGNIFICANCE = 2.0
# Values that are integer multiples of a quantum within this relative error are counts;
# the quantum is the smallest positive value divided by 1 .. MAX_QUANTUM_DIVISOR, and the
# counts' square roots must scatter by 1/2 (Poisson) within these factors where the counts
# are lower (where higher, a peak's curvature adds to the scatter: no upper bound).
QUANTUM_TOLERANCE = 1e-6
MAX_QUANTUM_DIVISOR = 64
QUANTUM_FEW = 16  # values every divisor is tried on at once before all values are
POISSON_SPREAD = (0.5, 4.0)
# The scatter is judged on differences of values of at least this many counts, when
# there are this many such differences (fewer: the quantum alone speaks).
POISSON_MIN_COUNT = 10
POISSON_MIN_DIFFERENCES = 20
# ... and the scatter at the lower counts at most this many times that at the higher (white
# noise's square roots scatter less the higher the counts).
POISSON_LEVEL_RATIO = 1.75
# Below POISSON_MIN_COUNT the square roots of Poisson counts scatter less, not more: values
# rounded to a quantum with noise of many quanta scatter by more than this there (the
# histograms of bench_choose_k and of an independent reviewer: at most 1.7).
POISSON_LOW_SPREAD = 2.0
# Counts whose fit's Pearson residuals (where it expects at least DISPERSION_MIN_EXPECTED
# counts: the points a surplus component does not follow too) scatter with more than this
# variance are over-dispersed: their criterion divides the deviance by it.
POISSON_OVERDISPERSION = 2.0
DISPERSION_MIN_EXPECTED = 1.0


@dataclass(frozen=True)
class Grid:
    """A grid's neighbourhood structure: rectilinear (``axes``) or scattered (``neighbour``)."""

    n_points: int
    axes: tuple | None  # distinct coordinates per feature, for a full rectilinear grid
    order: np.ndarray | None  # points in C order of the axes
    neighbour: np.ndarray | None  # each point's nearest other point, for scattered points

    @classmethod
    def of(cls, X):
        X = np.asarray(X, dtype=float)
        axes = tuple(unique_values(column) for column in X.T)
        shape = tuple(len(a) for a in axes)
        if np.prod(shape, dtype=float) == len(X) and len(np.unique(X, axis=0)) == len(X):
            return cls(len(X), axes, np.lexsort(X.T[::-1]), None)
        from scipy.spatial import cKDTree  # only scattered points need it

        scale = np.where(np.ptp(X, axis=0) > 0, np.ptp(X, axis=0), 1.0)
        _, index = cKDTree(X / scale).query(X / scale, k=2)
        return cls(len(X), None, None, index[:, 1])

    @property
    def shape(self):
        return tuple(len(a) for a in self.axes)

    def as_array(self, values):
        """``values`` ``(..., n)`` on the grid: ``(..., *shape)``."""
        return values[..., self.order].reshape(*values.shape[:-1], *self.shape)

    def as_points(self, array, lead):
        out = np.empty((*array.shape[:lead], self.n_points))
        out[..., self.order] = array.reshape(*array.shape[:lead], -1)
        return out

    def n_pairs(self):
        """Neighbouring pairs along the axes (lag 1)."""
        if self.axes is None:
            return self.n_points
        total = 0
        for size in self.shape:
            total += (size - 1) * self.n_points // max(size, 1)
        return max(total, 1)


def _second_difference_weights(coordinates):
    """``(m - 2, 3)`` weights of each normalised second divided difference on the axis:
    zero on linear functions, unit norm, so white noise keeps its variance."""
    gaps = np.diff(coordinates)
    gaps = (
        gaps / gaps.max()
    )  # unit free: grids of spacing 1e-200 or 1e200 neither under- nor overflow
    left, right = gaps[:-1], gaps[1:]
    weights = np.column_stack(
        [1.0 / (left * (left + right)), -1.0 / (left * right), 1.0 / (right * (left + right))]
    )
    return weights / np.linalg.norm(weights, axis=1, keepdims=True)


def differences(grid, values):
    """Differences of neighbouring values that keep white noise's variance, ``(..., m)``.

    On a rectilinear grid, the normalised second divided differences along
    every axis of at least three points, pooled; on scattered points, the
    difference to the nearest neighbour divided by ``sqrt(2)``.
    """
    values = np.asarray(values, dtype=float)
    if grid.axes is None:
        return (values - values[..., grid.neighbour]) / np.sqrt(2.0)
    array = grid.as_array(values)
    lead = values.ndim - 1
    parts = []
    for j, coordinates in enumerate(grid.axes):
        if len(coordinates) < 3:
            continue
        w = _second_difference_weights(coordinates)
        along = np.moveaxis(array, lead + j, -1)
        d = w[:, 0] * along[..., :-2] + w[:, 1] * along[..., 1:-1] + w[:, 2] * along[..., 2:]
        parts.append(d.reshape(*values.shape[:-1], -1))
    if not parts:
        return np.zeros((*values.shape[:-1], 0))
    return np.concatenate(parts, axis=-1)


def robust_scale(values, mask=None):
    """The standard deviation of normal values, ``(..., m) -> (...)``, robust to outliers.

    The median absolute deviation about zero, then twice the root mean
    square of the values within ``TRIM`` of the current scale, corrected for
    the truncation: as robust as the median, with most of the mean square's
    efficiency (white noise on 150 points: a relative spread of 8% against
    11% for the median alone). With ``mask`` ``(R, m)``: of each row's masked values
    (the rows' sums rounded as numpy's, not each as a 1-D array's).
    """
    values = np.abs(np.asarray(values, dtype=float))
    if values.shape[-1] == 0:
        return np.zeros(values.shape[:-1])
    if mask is None:
        median, count, sums, mask = np.median(values, axis=-1), values.shape[-1], row_sums, True
    else:
        count = np.sum(mask, axis=-1)
        median = _sorted_quantile(np.sort(np.where(mask, values, np.inf), axis=-1), count, 0.5)
        count, sums = np.maximum(count, 1), lambda a: np.sum(a, axis=-1)
    squares = np.where(mask, values**2, 0.0)
    scale = MAD_TO_SD * median
    # most values zero (empty bins of a histogram, say): their root mean square
    scale = np.where(scale > 0, scale, np.sqrt(sums(squares) / count))
    for _ in range(TRIM_STEPS):
        kept = mask & (values <= TRIM * scale[..., None])
        count = np.maximum(np.sum(kept, axis=-1), 1)
        mean_square = sums(np.where(kept, squares, 0.0)) / count
        scale = np.where(scale > 0, np.sqrt(mean_square / _TRUNCATED_VARIANCE), scale)
    return scale


def white_noise_sd(grid, values):
    """The standard deviation of white noise on ``values`` ``(..., n)``, from differences
    (computed in the unit of the largest ``|value|``: values of 1e-300 do not underflow)."""
    values = np.asarray(values, dtype=float)
    unit = np.max(np.abs(values), axis=-1, keepdims=True)
    unit = np.where(unit > 0, unit, 1.0)
    return robust_scale(differences(grid, values / unit)) * unit[..., 0]


def autocorrelation(grid, residual, max_lag=MAX_LAG, unbiased=True, axis=None):
    """Autocorrelations of ``residual`` ``(n,)`` at lags ``1..max_lag`` along the grid's
    axes, pooled over the axes or along ``axis`` alone (zeros on scattered points).
    ``unbiased=False``: each lag's sum of products over all the values' (a stationary
    process's autocorrelations always, as an autoregression needs)."""
    result = np.zeros(max_lag)
    residual = np.asarray(residual, dtype=float)
    unit = np.max(np.abs(residual))
    if grid.axes is None or not unit > 0:
        return result
    array = grid.as_array(residual / unit)
    total = 0.0
    for j, size in enumerate(grid.shape):
        if size <= max_lag + 1 or axis not in (None, j):
            continue
        along = np.moveaxis(array, j, -1)
        total += np.sum(along**2)
        for lag in range(1, max_lag + 1):
            products = np.sum(along[..., lag:] * along[..., :-lag])
            result[lag - 1] += products * size / (size - lag) if unbiased else products
    return result / total if total > 0 else result


def _predictors(correlation):
    """The autoregressive predictors of orders ``0..p`` of a process with autocorrelations
    ``correlation`` at lags ``1..p``: each order's coefficients and the variance of its
    prediction error (a fraction of the process's). ``None`` where a variance is not
    positive (the autocorrelations are no process's)."""
    rho = np.concatenate([[1.0], np.asarray(correlation, dtype=float)])
    predictors = [(np.zeros(0), 1.0)]
    for order in range(1, len(rho)):
        coefficients = solve_toeplitz(rho[:order], rho[1 : order + 1], check_finite=False)
        variance = 1.0 - float(coefficients @ rho[1 : order + 1])
        if not variance > 1e-12:
            return None
        predictors.append((coefficients, variance))
    return predictors


def partial_autocorrelation(correlation):
    """The partial autocorrelations at lags ``1..p`` (NaN from the first lag at which the
    autocorrelations are no process's)."""
    result = np.full(len(correlation), np.nan)
    for order in range(1, len(correlation) + 1):
        predictors = _predictors(correlation[:order])
        if predictors is None:
            break
        result[order - 1] = predictors[order][0][-1]
    return result


def admissible_correlation(correlation):
    """``correlation`` shrunk towards zero until it is a stationary process's."""
    correlation = np.asarray(correlation, dtype=float)
    for _ in range(200):
        if _predictors(correlation) is not None:
            return correlation
        correlation = 0.9 * correlation
    return np.zeros_like(correlation)


def implied_correlation(correlation, lag):
    """The autocorrelation at ``lag`` of the autoregressive process of ``correlation``."""
    rho = list(np.asarray(correlation, dtype=float))
    coefficients = _predictors(rho)[-1][0]
    while len(rho) < lag:
        rho.append(float(coefficients @ np.concatenate([[1.0], rho])[::-1][: len(coefficients)]))
    return rho[lag - 1] if lag > 0 else 1.0


def _banded_factor(correlation, size):
    """The lower banded Cholesky factor of the Toeplitz correlation matrix ``(1, rho...)``
    (raises ``LinAlgError`` if it is not positive definite)."""
    bands = np.zeros((len(correlation) + 1, size))
    bands[0] = 1.0
    for lag, rho in enumerate(correlation, start=1):
        bands[lag, : size - lag] = rho
    return cholesky_banded(bands, lower=True)


def _prediction_errors(along, correlation):
    """The values ``(..., size)`` less their predictions from the ``p`` before them (fewer
    at the start), over the predictions' standard errors."""
    predictors = _predictors(correlation)
    order, size = len(correlation), along.shape[-1]
    white = along.copy()
    for start in range(1, min(order, size)):
        white[..., start] -= along[..., start - 1 :: -1][..., :start] @ predictors[start][0]
    for start in range(min(order, size)):
        white[..., start] /= np.sqrt(predictors[start][1])
    if size > order:
        coefficients, variance = predictors[order]
        for lag in range(1, order + 1):
            white[..., order:] -= coefficients[lag - 1] * along[..., order - lag : size - lag]
        white[..., order:] /= np.sqrt(variance)
    return white


def whiten(grid, residuals, correlation, autoregressive=False, axis_models=()):
    """``residuals`` ``(m, n)`` whitened along every grid axis (separable over the axes),
    for noise with autocorrelations ``correlation`` at lags ``1..p`` and zero beyond (the
    banded Cholesky factor of their Toeplitz matrix) or, ``autoregressive``, continued as
    the autoregression of order ``p`` that has them (the process of greatest entropy that
    does: each value less its prediction from the ``p`` before it, over its error).
    ``axis_models``: ``(correlation, autoregressive)`` of each axis in their place."""
    residuals = np.atleast_2d(residuals)
    if (len(correlation) == 0 and not axis_models) or grid.axes is None:
        return residuals
    array = grid.as_array(residuals)
    for j, size in enumerate(grid.shape):
        if axis_models:
            correlation, autoregressive = axis_models[j]
            if len(correlation) == 0:
                continue
        along = np.moveaxis(array, 1 + j, -1)
        if autoregressive:
            white = _prediction_errors(along, correlation)
        elif size <= len(correlation) + 1:
            continue
        else:
            factor = _banded_factor(correlation, size)
            columns = along.reshape(-1, size).T
            solved = solve_banded((len(correlation), 0), factor, columns, check_finite=False)
            white = solved.T.reshape(along.shape)
        array = np.moveaxis(white, -1, 1 + j)
    return grid.as_points(array, 1)


def counting_quantum(y, grid=None):
    """The quantum ``q`` of non-negative values that are counts times it (a histogram's
    ``count / (n h)``), or None.

    ``q`` is the largest value of which every value is an integer multiple: the
    smallest positive value or a fraction ``1/m`` of it (``m`` up to
    ``MAX_QUANTUM_DIVISOR``; a histogram's smallest non-empty bin may hold several
    counts), or 1 for integers that are all larger than that. With ``grid``, the
    counts must also scatter as Poisson counts do: differences of their square roots
    with a standard deviation about 1/2 (values rounded to a few decimals are
    multiples of a quantum too, but scatter far more or far less).
    """
    if np.any(y < 0):
        return None
    positive = y[y > 0]
    if positive.size < 3:
        return None
    smallest = positive.min()
    quanta = smallest / np.arange(1, MAX_QUANTUM_DIVISOR + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(positive.max() / quanta)  # no ratio overflows
        # every divisor tried on a few values at once first: most fail there
        passes = _integers(positive[:QUANTUM_FEW] / quanta[:, None])
    for quantum, ratio_finite, passed in zip(quanta, finite, passes, strict=True):
        if not ratio_finite:
            return None
        if passed:
            with np.errstate(over="ignore", invalid="ignore"):
                if _integers(positive / quantum):
                    break
    else:
        # integers all above the divisors' reach (counts on a continuum: an XPS or gamma
        # spectrum's) are counts of one
        if not (smallest > MAX_QUANTUM_DIVISOR and _integers(positive)):
            return None
        quantum = 1.0
    with np.errstate(divide="ignore", over="ignore"):  # a subnormal quantum: 0
        most = np.median(positive) / quantum
    if not most < MAX_TESTED_COUNT:
        return None  # a tiny smallest value (a pdf's tail): every ratio passes for an integer
    if grid is not None:
        # only where the counts are many (the square root of a few counts scatters less),
        # and alike at lower and higher counts (rounded values scatter less the larger)
        counts = np.maximum(y, 0.0) / quantum
        many = counts >= POISSON_MIN_COUNT
        scattered = differences(grid, np.where(many, np.nan, np.sqrt(counts)))
        scattered = scattered[np.isfinite(scattered)]
        if scattered.size >= POISSON_MIN_DIFFERENCES:
            if 2.0 * float(robust_scale(scattered)) > POISSON_LOW_SPREAD:
                return None
        if not many.any():
            return float(quantum)
        lower, higher = _poisson_spreads(grid, counts)
        if lower is not None and not POISSON_SPREAD[0] <= lower <= POISSON_SPREAD[1]:
            return None
        if higher is not None and higher < POISSON_SPREAD[0]:
            return None
        if lower is not None and higher is not None and lower > POISSON_LEVEL_RATIO * higher:
            return None
    return float(quantum)


def _poisson_spreads(grid, counts):
    """Twice the scatter of the counts' square roots in second differences, where the counts
    are many, below and above their median (1 and 1 for Poisson counts; None: too few
    differences). On a rectilinear grid each difference is placed by the level of the values
    two steps either side (a difference needs no neighbours of its own level: a line's flanks
    count); on scattered points, by the lower of its two values."""
    roots = np.sqrt(counts)
    if grid.axes is not None:
        found = _level_differences(grid, roots[None], np.ones(1))
        if found is None:
            return None, None
        scaled, _, level = (part[0] for part in found)
    else:
        scaled, level = differences(grid, roots), np.minimum(roots, roots[grid.neighbour])
    many = level**2 >= POISSON_MIN_COUNT
    if not many.any():
        return None, None
    middle = np.median(level[many])
    spreads = []
    for group in (many & (level < middle), level >= middle):
        enough = np.sum(group) >= POISSON_MIN_DIFFERENCES
        spreads.append(2.0 * float(robust_scale(scaled[group])) if enough else None)
    return spreads


@dataclass(frozen=True)
class NoiseModel:
    """How the values of one density scatter about their expectation.

    ``sd``: the marginal standard deviation (a float, or one per point for
    ``'given'`` and ``'heteroscedastic'``); ``correlation``: autocorrelations at lags
    1, 2, ... along each grid axis (``'correlated'``), ``autoregressive``: continued
    beyond them as the autoregression that has them (else zero beyond); ``axis_models``:
    ``(correlation, autoregressive)`` of each axis when the axes' differ (empty: one for
    all); ``counts_unit``: for ``'poisson'``, what the values are multiplied by to be
    counts (a float or one per point; over-dispersed counts: divided by ``dispersion``,
    the variance of their Pearson residuals, so that the deviance is the quasi-Poisson
    one);
    ``n_observations``: the ``n`` of BIC's ``log n``, the number of points or,
    for counts, of samples; ``loss``: the loss whose fits are the maximum
    likelihood fits under this noise (the search fits the path with it).
    """

    kind: str
    sd: object = None
    correlation: tuple = ()
    autoregressive: bool = False
    counts_unit: object = None
    dispersion: float = 1.0
    axis_models: tuple = ()
    n_observations: float = 1.0
    loss: str = "l2"

    def minus_two_log_likelihood(self, grid, y, models):
        """``-2 log L`` of each model row ``(m, n)`` of ``y``, up to a shared constant."""
        models = np.atleast_2d(models)
        if self.kind == "poisson":
            counts = y * self.counts_unit
            expected = np.maximum(models * self.counts_unit, np.finfo(float).tiny)
            with np.errstate(over="ignore"):  # counts where nothing is expected: inf
                ratio = counts / expected
            return 2.0 * np.sum(xlogy(counts, ratio) - counts + expected, axis=1)
        residual = (y - models) / self.sd
        if self.kind == "correlated":
            residual = self.whiten(grid, residual)
        return np.sum(residual**2, axis=1)

    def whiten(self, grid, residuals):
        """``residuals`` ``(m, n)`` whitened by the correlation (unchanged if none)."""
        return whiten(
            grid, residuals, np.asarray(self.correlation), self.autoregressive, self.axis_models
        )

    def describe(self):
        """A plain dict of the model (DensityGMMCV's ``noise_``)."""
        info = {"kind": self.kind}
        if self.kind in ("white", "correlated") or (self.kind == "given" and np.ndim(self.sd) == 0):
            info["sd"] = float(self.sd)
        if self.kind == "correlated":
            info["correlation"] = [float(c) for c in self.correlation]
            info["autoregressive"] = bool(self.autoregressive)
            if self.axis_models:
                info["correlation_per_axis"] = [[float(c) for c in m] for m, _ in self.axis_models]
                info["autoregressive_per_axis"] = [bool(a) for _, a in self.axis_models]
        if self.kind == "poisson":
            info["n_counts"] = float(self.n_observations)
            info["dispersion"] = float(self.dispersion)
        if self.kind in ("heteroscedastic", "varying"):
            info["sd_range"] = [float(np.min(self.sd)), float(np.max(self.sd))]
        return info


def check_noise(noise, n_points):
    """``noise`` as DensityGMMCV takes it: a kind, a float or an array of standard deviations."""
    if isinstance(noise, str):
        if noise not in NOISE_KINDS:
            raise ValueError(
                f"noise must be one of {NOISE_KINDS}, a float or an array; got {noise!r}."
            )
        return noise
    sd = np.asarray(noise, dtype=float)
    if sd.ndim > 1 or (sd.ndim == 1 and sd.shape != (n_points,)):
        raise ValueError(
            f"noise as standard deviations must be a float or an array of shape ({n_points},) "
            f"(one per grid point), got shape {sd.shape}."
        )
    if not np.all(np.isfinite(sd)) or np.any(sd <= 0):
        raise ValueError(
            "noise as standard deviations must be positive and finite; pass noise='auto' to "
            "estimate it from the density."
        )
    return sd


def initial_noise(X, y, *, loss, noise="auto", sample_weight=None, grid=None):
    """The noise model of ``y`` on ``X`` before any fit: ``(NoiseModel, Grid)``.

    ``noise`` is ``'auto'``, a kind of :data:`NOISE_KINDS`, or standard
    deviations (a float, or an array with one per point). ``'auto'`` reads
    counts as Poisson (``loss='poisson'`` with ``y`` times ``sample_weight``
    integers, or non-negative values that are integer multiples of one
    quantum), and anything else as white noise, which
    :func:`refined_noise` may find correlated after a fit. ``grid``: ``Grid.of(X)``
    when known.
    """
    grid = Grid.of(X) if grid is None else grid
    n = len(y)
    if not isinstance(noise, str):
        return NoiseModel("given", sd=noise, n_observations=n, loss=loss), grid
    if noise == "poisson" and np.any(y < 0):
        raise ValueError(
            "noise='poisson' needs non-negative values (counts, or a density proportional to "
            "them); y has negative ones. Pass noise='auto' or 'white'."
        )
    counts_unit = None
    if noise in ("auto", "poisson"):
        counts_unit = _counts_unit(y, loss, sample_weight, grid)
    if counts_unit is None and noise == "poisson":
        counts_unit = _poisson_unit_from_differences(grid, y)
    if counts_unit is not None:
        total = float(np.sum(y * counts_unit))
        return (
            NoiseModel("poisson", counts_unit=counts_unit, n_observations=total, loss="poisson"),
            grid,
        )
    sd = max(float(white_noise_sd(grid, y)), _sd_floor(y))
    if noise == "auto":
        # a level varying along the grid first: lines where the noise is high would pass
        # for a variance growing with the values
        per_point = varying_sds(grid, y[None], np.array([sd]))[0]
        if np.all(np.isfinite(per_point)):
            return NoiseModel("varying", sd=per_point, n_observations=n, loss=loss), grid
        per_point = _heteroscedastic_from_differences(grid, y, sd)
        if per_point is not None:
            return NoiseModel("heteroscedastic", sd=per_point, n_observations=n, loss=loss), grid
    kind = "correlated" if noise == "correlated" else "white"
    return NoiseModel(kind, sd=sd, n_observations=n, loss="l2" if loss == "l2" else loss), grid


def _sd_floor(y):
    """``SD_FLOOR`` times the root mean square of ``y`` (without underflow)."""
    unit = float(np.max(np.abs(y)))
    if not unit > 0:
        return np.finfo(float).tiny
    return max(SD_FLOOR * unit * float(np.sqrt(np.mean((y / unit) ** 2))), np.finfo(float).tiny)


def _counts_unit(y, loss, sample_weight, grid):
    """What ``y`` is multiplied by to give counts, when it holds counts; else None.

    With ``loss='poisson'`` the counts are ``y * sample_weight`` when those are integers.
    Under the l2 loss with unequal positive ``sample_weight`` (a histogram's bin widths,
    ``y`` counts or a density per unit width), likewise, or their quantum's multiples
    (``density=True``: counts over the total), when they are plausible counts
    (:func:`_plausible_counts`). Else values that are multiples of one quantum and
    scatter as counts along the grid (:func:`counting_quantum`)."""
    if np.any(y < 0):
        return None
    unit = 1.0 if sample_weight is None else np.asarray(sample_weight, dtype=float)
    counts = y * unit
    integers = _integers(counts)
    if loss == "poisson" and integers:
        return unit
    positive = np.ravel(unit)[np.ravel(unit) > 0]
    if positive.size and np.ptp(positive) > 0:  # unequal bins
        if integers and _plausible_counts(counts[y > 0]):
            return unit
        quantum = counting_quantum(counts)  # no scatter test along a grid of unequal bins
        if quantum is not None and _plausible_counts(counts[y > 0] / quantum):
            return unit / quantum
    quantum = counting_quantum(y, grid)
    return None if quantum is None else 1.0 / quantum


# Counts this large pass any test of being integers (within QUANTUM_TOLERANCE of them).
MAX_TESTED_COUNT = 0.5 / QUANTUM_TOLERANCE


def _integers(counts):
    """Whether every value of ``counts`` (along its last axis) is an integer within
    ``QUANTUM_TOLERANCE``."""
    close = np.abs(counts - np.rint(counts)) <= QUANTUM_TOLERANCE * np.maximum(counts, 1.0)
    return np.all(close, axis=-1)


def _plausible_counts(positive):
    """Whether the counts of the positive values tell anything: each at least one count,
    and not all beyond ``MAX_TESTED_COUNT`` (values in physical units, 1e-17 or 1e7, pass
    the integer test trivially)."""
    return bool(_plausible_rows(positive.size, np.min(positive, initial=np.inf)))


def _plausible_rows(count, smallest):
    """:func:`_plausible_counts` of rows given their number of positive values and the
    least of them (arrays, or numbers)."""
    return (np.asarray(count) > 0) & (np.rint(smallest) >= 1) & (smallest < MAX_TESTED_COUNT)


def histogram_rows(Y, widths):
    """For each row of ``Y`` ``(D, n)`` on bins of unequal ``widths`` ``(n,)``: whether it
    is a histogram passed without its widths, its values times them counts (``counts /
    width``) or summing to one (``np.histogram(..., density=True)``). (Values merely
    rounded, on widths rounded too, make multiples of one quantum as well: they are not.)"""
    widths = np.asarray(widths, dtype=float)
    if not np.ptp(widths) > 1e-6 * np.max(widths):  # equal bins: the values show the quantum
        return np.zeros(len(Y), dtype=bool)
    masses = np.asarray(Y, dtype=float) * widths
    non_negative = np.all(masses >= 0, axis=1)
    # plausible counts, most of them small enough for being integers to tell (values of
    # 1e7 pass trivially)
    positive = masses > 0
    count = np.sum(positive, axis=1)
    ordered = np.sort(np.where(positive, masses, np.inf), axis=1)
    integers = _integers(masses) & _plausible_rows(count, ordered[:, 0])
    integers &= _sorted_quantile(ordered, count, 0.5) < 0.1 * MAX_TESTED_COUNT
    normalised = np.abs(np.sum(masses, axis=1) - 1.0) <= 1e-9
    return non_negative & (integers | normalised)


def _poisson_unit_from_differences(grid, y):
    """``1 / c`` for values whose variance is ``c`` times their mean: the square root
    of Poisson counts times ``c`` has variance ``c / 4``."""
    sd = float(white_noise_sd(grid, np.sqrt(np.maximum(y, 0.0))))
    if not sd > 0:
        raise ValueError(
            "noise='poisson' could not estimate the counts' unit from the density (its square "
            "root has no noise): pass counts with loss='poisson', or noise='white'."
        )
    return 1.0 / (4.0 * sd**2)


def refined_noise(model, grid, y, residual, requested, n_parameters, fitted, leverage=None):
    """The noise model after the fit ``fitted`` (its model of ``y``, with
    ``n_parameters`` free parameters) whose residual is ``residual``; other kinds
    than white, correlated and heteroscedastic are kept.

    From the residual's robust spread (``n - n_parameters`` degrees of freedom; with the
    fit's ``leverage`` at each point, the residual studentised instead):

    - the standard deviation is at least that spread (second differences
      underestimate noise that neighbours share), points at a floor many share left
      out (values clipped at zero: their residual is cut);
    - heteroscedastic, its variance ``a + b * model``, when the residual's variance
      where the model is highest (its top tenth) exceeds ``HETEROSCEDASTIC_RATIO``
      times that where it is lowest (below its median) and ``HETEROSCEDASTIC_Z`` of the
      log ratio's standard errors ('auto' only);
    - but correlated when the residual (over those standard deviations, if
      heteroscedastic) has a lag-1 autocorrelation above ``CORRELATION_GATE /
      sqrt(pairs)`` (``requested`` 'auto'; always for 'correlated'), the residual
      first clipped at three spreads so that a missed line does not pass for
      correlation.
    """
    request = (model, grid, y, residual, requested, n_parameters, fitted, leverage)
    return refined_noises([request])[0]


def _refined(model, grid, y, residual, requested, n_parameters, fitted, leverage=None):
    """:func:`refined_noise` up to its tests of correlated and heteroscedastic noise: the
    model, or ``(white model, (residual, fitted, kept, spread))`` for the tests."""
    if model.kind == "poisson" and requested == "auto":
        return _dispersed(model, y, fitted, n_parameters)
    if model.kind not in ("white", "correlated", "heteroscedastic"):
        return model
    n = len(residual)
    dof = np.sqrt(n / max(n - n_parameters, 1))
    if leverage is not None:
        # studentised: a point the fit follows closely keeps less of its noise
        residual = residual / np.sqrt(np.clip(1.0 - leverage, MIN_FREEDOM, 1.0))
        dof = 1.0
    initial_sd = model.sd if np.ndim(model.sd) == 0 else float(np.median(model.sd))
    kept = ~censored(y)
    if not kept.all():
        # next to the floor the values that are left are cut too: only those well above
        kept &= fitted > np.min(y) + CENSORED_CLEARANCE * initial_sd
        if kept.sum() < MIN_GROUP:
            kept = ~censored(y)
    spread = initial_sd * float(robust_scale(residual[kept] / initial_sd)) * dof
    sd = max(initial_sd, spread, _sd_floor(y))
    white = replace(model, kind="white", correlation=(), sd=sd)
    if not isinstance(requested, str) or requested == "white":
        return white
    return white, (residual, fitted, kept, spread)


def _dispersed(model, y, fitted, n_parameters):
    """The Poisson ``model`` with its counts' unit divided by their dispersion (the
    variance of the fit's Pearson residuals where it expects at least
    DISPERSION_MIN_EXPECTED counts, robustly) when that exceeds POISSON_OVERDISPERSION:
    counts times a detector's gain, say, whose deviance is the gain times too large
    (quasi-Poisson)."""
    expected = fitted * model.counts_unit
    kept = expected >= DISPERSION_MIN_EXPECTED
    if np.sum(kept) < MIN_GROUP:
        return model
    pearson = (y * model.counts_unit - expected)[kept] / np.sqrt(expected[kept])
    count = np.sum(kept)
    freedom = count / max(count - n_parameters, 1)
    dispersion = float(robust_scale(pearson)) ** 2 * freedom
    if not dispersion > POISSON_OVERDISPERSION:
        return model
    return replace(
        model,
        counts_unit=model.counts_unit / dispersion,
        n_observations=model.n_observations / dispersion,
        dispersion=dispersion,
    )


def _correlation_model(grid, residual, correlation, pairs, axis=None):
    """``(autocorrelations, autoregressive)`` of the correlated noise model of ``residual``
    (its autocorrelations ``correlation``): the lags up to the first that is not significant
    and zero beyond when that is a process (moving-average noise: a spectrometer's channels
    sharing their neighbours' signal); else (noise smoothed over several points, whose
    autocorrelations stay near 1 for lags) the autoregression whose order is the lags up to
    the first whose partial autocorrelation is not significant, on the autocorrelations
    that always are a process's."""
    bound = LAG_SIGNIFICANCE / np.sqrt(pairs)
    significant = np.abs(correlation) > bound
    n_lags = max(1, len(correlation) if significant.all() else int(np.argmin(significant)))
    size = max(grid.shape) if axis is None else grid.shape[axis]
    try:
        _banded_factor(correlation[:n_lags], size)
        return correlation[:n_lags], False
    except LinAlgError:
        pass
    process = autocorrelation(grid, residual, AR_MAX_LAG, unbiased=False, axis=axis)
    significant = np.abs(partial_autocorrelation(process)) > bound  # NaN: not significant
    n_lags = max(1, len(process) if significant.all() else int(np.argmin(significant)))
    return admissible_correlation(process[:n_lags]), True


def _difference_variance(correlation, autoregressive):
    """The variance of normalised second differences of noise with these autocorrelations,
    over the noise's: ``(6 - 8 rho_1 + 2 rho_2) / 6``."""
    if len(correlation) == 0:
        return 1.0
    rho2 = (
        implied_correlation(correlation, 2)
        if autoregressive
        else (correlation[1] if len(correlation) > 1 else 0.0)
    )
    return (6.0 - 8.0 * correlation[0] + 2.0 * rho2) / 6.0


def _axis_models(grid, residual, pooled):
    """``(correlation, autoregressive)`` of each axis when some axis's lag-1
    autocorrelation differs from the axes' pooled ``pooled[0]`` by more than
    CORRELATION_GATE / sqrt(its pairs) (noise smoothed along one axis: a detector's
    read-out direction); an axis whose own is not above that, none. Else ``()``."""
    if len(grid.shape) < 2:
        return ()
    correlations = [autocorrelation(grid, residual, axis=j) for j in range(len(grid.shape))]
    pairs = [max((size - 1) * grid.n_points // size, 1) for size in grid.shape]
    bounds = [CORRELATION_GATE / np.sqrt(p) for p in pairs]
    if all(abs(c[0] - pooled[0]) <= b for c, b in zip(correlations, bounds, strict=True)):
        return ()
    models = []
    for j, (c, p, b) in enumerate(zip(correlations, pairs, bounds, strict=True)):
        correlation, autoregressive = (
            _correlation_model(grid, residual, c, p, axis=j) if c[0] > b else ((), False)
        )
        models.append((tuple(float(r) for r in correlation), bool(autoregressive)))
    return tuple(models)


def _correlated_or(white, grid, y, requested, residual, spread, per_point):
    """The model after the tests: correlated when the residual, over the heteroscedastic
    standard deviations ``per_point`` (if any) and clipped at three spreads, is (see
    :func:`refined_noise`); else heteroscedastic with ``per_point``, else ``white``. (A
    residual whose variance grows with the model, clipped at spreads of its quiet part,
    keeps the runs of its loud part: it passed for correlated, and the choice swung
    between the two kinds from one fit to the next.)"""
    if grid.axes is not None:
        standardised = residual if per_point is None else residual * (white.sd / per_point)
        clipped = np.clip(standardised, -3.0 * spread, 3.0 * spread)
        correlation = autocorrelation(grid, clipped)
        pairs = grid.n_pairs()
        if requested == "correlated" or correlation[0] > CORRELATION_GATE / np.sqrt(pairs):
            axis_models = _axis_models(grid, clipped, correlation)
            correlation, autoregressive = _correlation_model(grid, clipped, correlation, pairs)
            if axis_models:
                sizes = np.asarray(grid.shape, dtype=float)
                shares = (sizes - 1) / sizes  # of the second differences along each axis
                factor = sum(
                    share * _difference_variance(*model)
                    for share, model in zip(shares / shares.sum(), axis_models, strict=True)
                )
            else:
                factor = _difference_variance(correlation, autoregressive)
            from_differences = float(white_noise_sd(grid, y)) / np.sqrt(max(factor, 1e-3))
            return replace(
                white,
                kind="correlated",
                sd=max(white.sd, from_differences),
                autoregressive=autoregressive,
                correlation=tuple(float(c) for c in correlation),
                axis_models=axis_models,
            )
    if per_point is not None:
        return replace(white, kind="heteroscedastic", sd=per_point)
    return white


def refined_noises(requests):
    """:func:`refined_noise` of each request (a tuple of its arguments). Its test of
    heteroscedastic noise (with ``requested`` 'auto') is made first on all rows of one
    length at once (with a margin), then exactly on the rows it may hold for; then the
    test of correlated noise on each row."""
    results, pending = [], []
    for request in requests:
        result = _refined(*request)
        if isinstance(result, tuple):
            white, (residual, fitted, kept, spread) = result
            pending.append((len(results), white, residual, fitted, kept, spread, request))
        results.append(result)
    per_points = {}
    testing = [entry for entry in pending if entry[6][4] == "auto"]
    for length in {len(entry[2]) for entry in testing}:
        group = [entry for entry in testing if len(entry[2]) == length]
        residuals = np.array([residual / white.sd for _, white, residual, *_ in group])
        fitted = np.array([entry[3] for entry in group])
        kept = np.array([entry[4] for entry in group])
        peak = np.max(fitted, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            level = np.maximum(fitted / peak, 0.0)
        maybe = _variance_grows(residuals, level, kept, MARGIN)[0] & (peak[:, 0] > 0)
        for (r, white, residual, f, k, _, _), may in zip(group, maybe, strict=True):
            if may:
                per_points[r] = _heteroscedastic_sd(residual, f, white.sd, k)
    for r, white, residual, _, _, spread, request in pending:
        _, grid, y, _, requested, *_ = request
        results[r] = _correlated_or(white, grid, y, requested, residual, spread, per_points.get(r))
    return results


def censored(y):
    """Points at the density's smallest value when many share it (values clipped at
    zero, say): their residual is cut, so its spread says nothing of the noise's."""
    at_floor = y <= np.min(y)
    return at_floor if at_floor.mean() >= CENSORED_SHARE else np.zeros(len(y), dtype=bool)


def _heteroscedastic_sd(residual, fitted, sd, kept):
    """The residual's standard deviation at each point, ``sqrt(a + b * fitted)``, where its
    variance grows with the model (see :func:`refined_noise`; judged on the ``kept``
    points), and at least ``sd``; else None. (Computed in the units of ``sd`` and of the
    largest model value.)"""
    peak = np.max(fitted)
    if not peak > 0:
        return None
    every_level = np.maximum(fitted / peak, 0.0)
    coefficients = _variance_line(residual[kept] / sd, every_level[kept])
    if coefficients is None:
        return None
    # never below the white noise's variance: a residual squeezed where the values are
    # low (clipped at zero, say) is no floor to fit peaks against
    variance = np.maximum(coefficients[0] + coefficients[1] * every_level, 1.0)
    return sd * np.sqrt(variance)


def variance_profile(residual, fitted, iterations=PROFILE_ITERATIONS):
    """The maximum-likelihood variance of ``residual`` as ``a + b * level + c * level**2``
    (``level`` the fit ``fitted`` over its peak): a gamma regression of its squares,
    iteratively reweighted, never below a millionth of their mean. Returns ``(variance
    (n,), 3)``, the second the profile's parameters."""
    peak = np.max(fitted)
    level = np.maximum(fitted, 0.0) / peak if peak > 0 else np.zeros_like(fitted)
    design = np.column_stack([np.ones_like(level), level, level**2])
    squares = residual**2
    mean = max(float(np.mean(squares)), np.finfo(float).tiny)
    variance = np.full_like(squares, mean)
    for _ in range(iterations):
        weights = 1.0 / variance**2
        try:
            coefficients = np.linalg.solve(
                design.T @ (weights[:, None] * design), design.T @ (weights * squares)
            )
        except LinAlgError:
            break
        variance = np.maximum(design @ coefficients, 1e-6 * mean)
    return variance, design.shape[1]


def _variance_line(scaled, level):
    """``(a, b)``: the variance of ``scaled`` (noise in units of a white noise's standard
    deviation) as ``a + b * level`` (``level`` in [0, 1]), when it grows with the level
    (:func:`_variance_grows`); else None."""
    grows, high, low, v_high, v_low = _variance_grows(
        scaled[None], level[None], np.ones((1, len(level)), dtype=bool)
    )
    if not grows[0]:
        return None
    high, low, v_high, v_low = high[0], low[0], v_high[0], v_low[0]
    slope = (v_high - v_low) / max(level[high].mean() - level[low].mean(), np.finfo(float).tiny)
    coefficients = np.array([v_low - slope * level[low].mean(), slope])
    # the line a + b * level through the squared values, weighted as a gamma regression
    # (a squared normal value's variance is twice its mean squared), a value beyond four
    # standard deviations clipped (a line the fit missed): the groups' robust spreads
    # understate the variance where it varies within the group. The variance in the
    # weights is never below the lowest levels' (v_low): nearer zero, the quiet points'
    # weights 1 / variance**2 decided the line alone (a spectrum whose noise grew 25-fold
    # in variance got a profile growing 2-fold)
    design = np.column_stack([np.ones_like(level), level])
    squares = scaled**2
    for _ in range(VARIANCE_ITERATIONS):
        variance = np.maximum(design @ coefficients, v_low)
        weights = 1.0 / variance**2
        clipped = np.minimum(squares, 16.0 * variance)
        gram = design.T @ (weights[:, None] * design)
        coefficients = np.linalg.solve(gram, design.T @ (weights * clipped))
    return coefficients if np.all(np.isfinite(coefficients)) else None


def _level_differences(grid, Y, sd):
    """Second differences of ``Y`` ``(..., n)`` over ``sd`` ``(...)`` along every axis of
    at least six points, each with the next one along the axis and the level of the
    values two steps either side of its centre (see
    :func:`_heteroscedastic_from_differences`): three arrays ``(..., m)``, or None."""
    array = grid.as_array(Y)
    lead = Y.ndim - 1
    scaled, following, level = [], [], []
    for j, coordinates in enumerate(grid.axes):
        if len(coordinates) < 6:
            continue
        w = _second_difference_weights(coordinates)[1:-1]
        along = np.moveaxis(array, lead + j, -1)
        centre = along[..., 1:-1]
        d = w[:, 0] * centre[..., :-2] + w[:, 1] * centre[..., 1:-1] + w[:, 2] * centre[..., 2:]
        d = d / np.reshape(sd, np.shape(sd) + (1,) * (d.ndim - lead))
        scaled.append(d[..., :-1].reshape(*Y.shape[:-1], -1))
        following.append(d[..., 1:].reshape(*Y.shape[:-1], -1))
        level.append((0.5 * (along[..., :-5] + along[..., 4:-1])).reshape(*Y.shape[:-1], -1))
    if not scaled:
        return None
    joined = (np.concatenate(parts, axis=-1) for parts in (scaled, following, level))
    scaled, following, level = joined
    return scaled, following, np.maximum(level, 0.0)


def _heteroscedastic_from_differences(grid, y, sd):
    """Before any fit: the standard deviation at each point, ``sqrt(a + b * level)``, when
    the second differences of ``y`` scatter more where its values are higher (the test of
    :func:`_variance_line`) and are noise where the values are low (their lag-1
    correlation at most ``NOISE_DIFFERENCE_CORRELATION``: the smooth tails of a density
    without noise vary too); else None. A difference's level is the mean of the values
    two steps either side of its centre, which share none of its noise; a point's, the
    mean of its own and its neighbours' values. (White noise read into an over-fit
    leaves a residual too small where the fit is high: from the residual alone, a
    variance growing with the values is not seen.)"""
    if grid.axes is None:
        return None
    found = _level_differences(grid, y, sd)
    if found is None:
        return None
    scaled, following, level = found
    peak = np.max(level)
    if not peak > 0:
        return None
    if not _noise_like(scaled[None], following[None], level[None])[0]:
        return None
    coefficients = _variance_line(scaled, level / peak)
    if coefficients is None:
        return None
    smooth = uniform_filter(grid.as_array(y), size=3, mode="nearest")
    point_level = np.maximum(grid.as_points(smooth[None], 1)[0] / peak, 0.0)
    variance = np.maximum(coefficients[0] + coefficients[1] * point_level, 1.0)
    return sd * np.sqrt(variance)


# Noise whose level varies along a 1-D grid (a detector's sensitivity), not with the values:
# the log-variances of the second differences in VARYING_SEGMENTS runs along the grid lie
# on a line in position that rises (or falls) by a factor VARYING_RATIO or more across the
# grid, VARYING_Z standard errors of its slope from flat, and the runs scatter about it as
# their sizes allow (chi-square per run at most VARYING_FIT: a line's curvature in one run
# is no trend), and better by VARYING_BETTER in that chi-square than a line in the runs'
# mean level (a variance growing with the values: lines crowded at one end, a decaying
# baseline, are no varying level).
VARYING_SEGMENTS = 8
VARYING_RATIO = 4.0
VARYING_Z = 5.0
VARYING_FIT = 4.5
VARYING_BETTER = 4.0
# White noise's second differences correlate with the next at -2/3 (AR(1) noise of 0.4: -0.57).
VARYING_WHITE = -0.6


def varying_sds(grid, Y, sd):
    """For the rows of ``Y`` ``(R, n)`` with white noise ``sd`` ``(R,)`` on a 1-D ``grid``:
    the standard deviation at each point ``(R, n)`` of noise whose variance is
    log-linear in the position (:data:`VARYING_RATIO`), NaN rows where it is not found."""
    Y = np.atleast_2d(Y)
    out = np.full(Y.shape, np.nan)
    if grid.axes is None or len(grid.axes) != 1:
        return out
    found = _level_differences(grid, Y, np.asarray(sd, dtype=float))
    if found is None:
        return out
    scaled, following, level = found
    size = scaled.shape[-1] // VARYING_SEGMENTS
    if size < MIN_GROUP:
        return out
    # white where the values are low (correlated noise under a varying level is left to the
    # correlated model, which the fits refine)
    noise_like = _noise_like(scaled, following, level, VARYING_WHITE - NOISE_DIFFERENCE_CORRELATION)
    used = VARYING_SEGMENTS * size
    runs = scaled[:, :used].reshape(len(Y), VARYING_SEGMENTS, size)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_variance = np.log(robust_scale(runs) ** 2)  # (R, S)
    axis = grid.axes[0]
    centres = axis[2 : 2 + used].reshape(VARYING_SEGMENTS, size).mean(axis=1)
    position = (centres - axis[0]) / (axis[-1] - axis[0])  # (S,)
    weight = size / 2.5  # the inverse variance of a trimmed log-variance of `size` values
    design = np.stack([np.ones(VARYING_SEGMENTS), position], axis=1)
    gram_inverse = np.linalg.inv(weight * design.T @ design)
    with np.errstate(invalid="ignore"):
        coefficients = row_products(row_products(weight * log_variance, design), gram_inverse)
        misfit = log_variance - combined_columns(coefficients, design)
        chi2 = weight * np.sum(misfit**2, axis=1) / (VARYING_SEGMENTS - 2)
        slope, error = coefficients[:, 1], np.sqrt(gram_inverse[1, 1])
    # the same line in each run's mean level instead of its position, row by row
    run_level = level[:, :used].reshape(len(Y), VARYING_SEGMENTS, size).mean(axis=2)
    peak = np.max(run_level, axis=1, keepdims=True)  # in the density's unit: 1e300 overflows
    run_level = run_level / np.where(peak > 0, peak, 1.0)
    centred = run_level - run_level.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        level_slope = np.sum(centred * log_variance, axis=1) / np.sum(centred**2, axis=1)
        level_misfit = log_variance - log_variance.mean(axis=1, keepdims=True)
        level_misfit -= level_slope[:, None] * centred
        level_chi2 = weight * np.sum(level_misfit**2, axis=1) / (VARYING_SEGMENTS - 2)
    level_chi2 = np.where(np.isfinite(level_chi2), level_chi2, np.inf)
    span = np.abs(slope) * (np.max(position) - np.min(position))
    varies = noise_like & np.isfinite(slope) & (span >= np.log(VARYING_RATIO))
    varies &= (np.abs(slope) >= VARYING_Z * error) & (chi2 <= VARYING_FIT)
    varies &= VARYING_BETTER * chi2 <= level_chi2
    along = (axis - axis[0]) / (axis[-1] - axis[0])
    profile = grid.as_points(
        np.exp(0.5 * (coefficients[:, :1] + coefficients[:, 1:] * along[None])), 1
    )
    out[varies] = np.asarray(sd, dtype=float).reshape(-1, 1)[varies] * profile[varies]
    return out


def _variance_grows(scaled, level, mask, margin=0.0):
    """For each row of ``scaled`` ``(R, m)`` (noise in units of a white noise's standard
    deviation, at ``level`` in [0, 1], ``mask`` the values to judge): whether its
    variance at the highest levels (their top tenth, or the levels above ``HIGH_LEVEL``
    where they are fewer but at least ``MIN_HIGH``: a narrow line's) exceeds
    ``HETEROSCEDASTIC_RATIO`` times that at the lowest (below their median) by
    ``HETEROSCEDASTIC_Z`` of the log ratio's standard errors, each within ``margin``
    (rows tested together pass what one row alone would: their sums round otherwise).
    Returns ``(grows (R,), high (R, m), low (R, m), v_high (R,), v_low (R,))``."""
    ordered = np.sort(np.where(mask, level, np.inf), axis=-1)  # the masked ones last
    count = np.sum(mask, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        high = mask & (level >= _sorted_quantile(ordered, count, 0.9)[:, None])
        loud = mask & (level >= HIGH_LEVEL)
        n_loud, n_top = loud.sum(axis=-1), high.sum(axis=-1)
        high = np.where(((MIN_HIGH <= n_loud) & (n_loud < n_top))[:, None], loud, high)
        low = mask & (level <= _sorted_quantile(ordered, count, 0.5)[:, None])
        n_high, n_low = high.sum(axis=-1), low.sum(axis=-1)
        v_high = robust_scale(scaled, high) ** 2
        v_low = robust_scale(scaled, low) ** 2
        # the log of a variance estimated from m normal values has a standard error of
        # about sqrt(2 / m) (trimmed: a little more)
        error = np.sqrt(2.5 / np.maximum(n_high, 1) + 2.5 / np.maximum(n_low, 1))
        grows = (
            (n_high >= MIN_HIGH)
            & (n_low >= MIN_GROUP)
            & (v_low > 0)
            & (v_high > (1.0 - margin) * HETEROSCEDASTIC_RATIO * v_low)
            & (np.log(v_high / v_low) >= HETEROSCEDASTIC_Z * error - margin)
        )
    return grows, high, low, v_high, v_low


def _noise_like(scaled, following, level, margin=0.0):
    """For each row of second differences ``scaled`` ``(R, m)``, with the next one
    along their axis ``following`` and their ``level``: whether those below the median
    level correlate with the next at most ``NOISE_DIFFERENCE_CORRELATION`` (+
    ``margin``), as noise's do and a smooth density's do not."""
    low = level <= np.median(level, axis=-1, keepdims=True)
    products = np.sum(np.where(low, scaled * following, 0.0), axis=-1)
    norms = np.sum(np.where(low, scaled**2, 0.0), axis=-1)
    norms *= np.sum(np.where(low, following**2, 0.0), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return products / np.sqrt(norms) <= NOISE_DIFFERENCE_CORRELATION + margin


def _maybe_heteroscedastic(grid, Y, sd):
    """For the rows of ``Y`` ``(D, n)`` with white noise ``sd`` ``(D,)``: False where
    :func:`_heteroscedastic_from_differences` surely finds none (its tests, on all rows at
    once, with a margin), so that only the others need it."""
    found = _level_differences(grid, Y, sd)
    if found is None:
        return np.zeros(len(Y), dtype=bool)
    scaled, following, level = found
    peak = np.max(level, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = level / peak
    mask = np.ones(level.shape, dtype=bool)
    return (
        _noise_like(scaled, following, level, MARGIN)
        & (peak[:, 0] > 0)
        & _variance_grows(scaled, relative, mask, MARGIN)[0]
    )


def _sorted_quantile(ordered, count, q):
    """The ``q`` quantile of the first ``count`` values of each row of ``ordered`` (sorted),
    interpolated as numpy's default ('linear')."""
    position = q * np.maximum(count - 1, 0)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, np.maximum(count - 1, 0))
    rows = np.arange(len(ordered))
    lower, upper = ordered[rows, below], ordered[rows, above]
    return lower + (upper - lower) * (position - below)


def initial_noises(X, Y, grid, *, loss, noise="auto"):
    """:func:`initial_noise` of every row of ``Y`` ``(D, n)`` on all the points ``X``
    (``grid`` ``Grid.of(X)``), without sample weights: the white noise's standard
    deviations and the first tests of heteroscedastic noise for the rows together; rows
    that may hold counts (no negative value) and the few that may be heteroscedastic one
    by one. A list of ``NoiseModel`` (or the ``ValueError`` a density's raised)."""
    Y = np.asarray(Y, dtype=float)
    models = [None] * len(Y)
    alone = np.ones(len(Y), dtype=bool)
    if noise in ("auto", "white", "correlated") and grid.axes is not None:
        alone = ~np.any(Y < 0, axis=1)
    rows = np.flatnonzero(~alone)
    if rows.size:
        unit = np.max(np.abs(Y[rows]), axis=1)  # as _sd_floor's, rows with a negative value
        floor = SD_FLOOR * unit * np.sqrt(row_sums((Y[rows] / unit[:, None]) ** 2) / Y.shape[1])
        floor = np.maximum(floor, np.finfo(float).tiny)
        sds = np.maximum(white_noise_sd(grid, Y[rows]), floor)
        per_points = np.full(Y[rows].shape, np.nan)
        if noise == "auto":
            alone[rows[_maybe_heteroscedastic(grid, Y[rows], sds)]] = True
            per_points = varying_sds(grid, Y[rows], sds)  # as initial_noise, tested first
        varying = np.all(np.isfinite(per_points), axis=1)
        alone[rows[varying]] = False
        kind = "correlated" if noise == "correlated" else "white"
        n = Y.shape[1]
        for i, sd, per_point, varies in zip(rows, sds, per_points, varying, strict=True):
            if varies:
                models[i] = NoiseModel("varying", sd=per_point, n_observations=n, loss=loss)
            elif not alone[i]:
                models[i] = NoiseModel(kind, sd=float(sd), n_observations=n, loss=loss)
    for i in np.flatnonzero(alone):
        try:
            models[i] = initial_noise(X, Y[i], loss=loss, noise=noise, grid=grid)[0]
        except ValueError as error:  # that density's alone (as its single fit would raise)
            models[i] = error
    return models


def _on_the_grid(X, y):
    """``y`` ``(..., n_points)`` as an array ``(..., *shape)`` of the rectilinear
    grid ``X``, its longest axis first (the points in lexicographic order of
    the columns so arranged), or None for scattered points or fewer than 5
    points along every axis."""
    shape = [len(unique_values(column)) for column in X.T]
    if np.prod(shape) != y.shape[-1] or max(shape) < 5:
        return None
    columns = np.roll(np.arange(X.shape[1]), -int(np.argmax(shape)))  # first longest first
    order = np.lexsort(X[:, columns].T[::-1])
    return y[..., order].reshape(*y.shape[:-1], *np.take(shape, columns))


def noise_variance(X, y):
    """An estimate of the variance of white noise on ``y``, from differences of neighbours.

    On a rectilinear grid (1-D, or a full product grid), differences of
    order 2, 3 and 4 along its longest axis (the first of the longest) remove a
    smooth density (to that order) and keep white noise, whose variance they
    multiply by 6, 20 and 70; the smallest of the three estimates is taken
    (the higher the order, the less of a well-resolved density is left, but
    a coarsely sampled peak leaves more). None for scattered points (no
    neighbours to difference). ``y`` of shape ``(B, n_points)`` gives one
    estimate a row, ``(B,)``.
    """
    y = np.asarray(y)
    values = _on_the_grid(X, y)
    if values is None:
        return None
    axis = y.ndim - 1
    grid_axes = tuple(range(axis, values.ndim))
    estimates = [
        np.mean(np.diff(values, n=k, axis=axis) ** 2, axis=grid_axes) / factor
        for k, factor in ((2, 6.0), (3, 20.0), (4, 70.0))
    ]
    smallest = np.min(estimates, axis=0)
    return float(smallest) if y.ndim == 1 else smallest
