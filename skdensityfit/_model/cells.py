"""Histogram cells and the Gaussian mass of each cell.

A histogram value is an integral of the density over its bin, not the
density at the bin centre. This module holds the numerical core of the
integrated ("binned") model as pure functions:

* the cells of the points: :func:`infer_cells` (``bins="infer"``: a
  rectilinear grid of bin centres, edges at the midpoints between
  neighbours), :func:`cells_from_edges` (``bins=[edges_0, ...]``) and
  :func:`histogram_to_grid` (``np.histogram`` / ``np.histogramdd`` output to
  ``(X, y)``);
* ``log P_k(cell_i)``, the log of the mass of Gaussian component ``k`` in the
  cell ``[lo_i, hi_i]``, from scikit-learn style parameters
  (:func:`log_cell_masses`, for predictions) or the raw precision-Cholesky
  parameters of :class:`~.parameters.ParameterLayout`
  (:func:`log_cell_masses_raw`), plus an ``autograd.numpy`` reference of the
  same numbers (:func:`log_cell_masses_reference`), against which the tests
  check the compiled kernel's cell masses and their derivatives.

Components follow scikit-learn's ``precisions_cholesky_`` convention: ``U`` is
upper triangular with precision ``U U^T``, so ``y = U^T (x - mu)`` is standard
normal and ``y_j`` involves only ``x_1 .. x_j``.

Exact forms. In 1-D and for 'diag' / 'spherical' components the cell mass is a
product over dimensions of ``Phi(b) - Phi(a)`` (``a, b`` the whitened edges),
computed in log space by :func:`log_ndtr_diff`, which is accurate in both tails
and for very narrow cells.

Cubature ('full' / 'tied', ``d >= 2``). Because ``y_d`` is the only whitened
coordinate that involves ``x_d``, integrating ``x_d`` over ``[lo_d, hi_d]`` is
exact: ``Phi(y_d(hi_d)) - Phi(y_d(lo_d))`` at fixed ``x_1 .. x_{d-1}``, times
the marginal density of ``x_1 .. x_{d-1}`` (whose precision Cholesky factor is
the leading block of ``U``). The default rule (``rule="hybrid"``) does this and
integrates the first ``d - 1`` dimensions with a tensor Gauss-Legendre rule of
``n_nodes`` nodes per dimension: ``n_nodes ** (d - 1)`` nodes per cell. The
plain tensor rule over all ``d`` dimensions (``rule="tensor"``,
``n_nodes ** d`` nodes, the mass a weighted sum of point densities) is kept
for comparison; ``benchmarks/bench_histograms.py`` measures both. (Fits take
the cell masses and their derivatives from the compiled kernel,
:mod:`.kernel`, which uses the hybrid rule.)

Everything is vectorised over cells, components and dimensions; the cubature
works through the cells in chunks of bounded memory.
"""

from dataclasses import dataclass
from functools import lru_cache

import autograd.numpy as anp
import numpy as np
from autograd.scipy.special import erf as _anp_erf
from autograd.scipy.special import logsumexp as _anp_logsumexp
from autograd.scipy.stats import norm as _anp_norm
from scipy.special import erfc, log_ndtr

from .covariance import (
    LOG_2PI,
    axis_aligned,
    check_covariance_type,
    n_cholesky_values,
    raw_from_cholesky,
    upper_from_raw,
)
from .covariance import triu_indices as _triu_indices

__all__ = [
    "Cells",
    "cells_from_edges",
    "histogram_to_grid",
    "infer_cells",
    "log_cell_masses",
    "log_cell_masses_raw",
    "log_cell_masses_reference",
    "log_ndtr_diff",
    "make_cells",
]

#: Gauss-Legendre nodes per dimension of the cubature (see the module docstring).
DEFAULT_N_NODES = 6
CUBATURE_RULES = ("hybrid", "tensor")

# Elements per chunk of per-point temporaries:
# memory stays bounded whatever the grid's size, while chunks stay large enough
# for numpy's per-call overhead not to matter.
CHUNK_ELEMENTS = 2**20

_SQRT_HALF = np.sqrt(0.5)
_LOG_2PI_HALF = 0.5 * LOG_2PI
# a cell narrower than this (in whitened units, times 1 + |midpoint|) uses the series
_NARROW = 1e-2


def _logsumexp(a, axis=None):
    """``log(sum(exp(a)))`` without overflow (scipy's has more per-call overhead)."""
    peak = np.max(a, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return np.log(np.sum(np.exp(a - peak), axis=axis)) + np.squeeze(peak, axis=axis)


# --------------------------------------------------------------------------
# Cells of the points
# --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Cells:
    """The cell of each point: corners, volume and the per-dimension intervals.

    Attributes
    ----------
    lo, hi : ndarray of shape (n_points, d)
        Lower and upper corners of each point's cell.
    volume : ndarray of shape (n_points,)
    intervals : tuple of d pairs ``(lower_edges, upper_edges)``
        The distinct intervals of each dimension.
    index : ndarray of shape (n_points, d)
        ``lo[i, j] == intervals[j][0][index[i, j]]`` (and the same for ``hi``):
        the exact forms evaluate each interval once and gather.
    """

    lo: np.ndarray
    hi: np.ndarray
    volume: np.ndarray
    intervals: tuple
    index: np.ndarray

    @property
    def n_cells(self):
        return self.lo.shape[0]

    @property
    def n_features(self):
        return self.lo.shape[1]

    @property
    def edges(self):
        """The edges of each dimension's cells, when they tile it without gaps (else None)."""
        out = []
        for low, high in self.intervals:
            if low.size > 1 and not np.array_equal(low[1:], high[:-1]):
                return None
            out.append(np.append(low, high[-1]))
        return out

    def subset(self, indices):
        """The cells of some points (the distinct intervals are kept)."""
        return Cells(
            self.lo[indices],
            self.hi[indices],
            self.volume[indices],
            self.intervals,
            self.index[indices],
        )

    def standardised(self, mean, scale):
        """The same cells in the coordinates ``(x - mean) / scale`` (``scale > 0``)."""
        mean = np.broadcast_to(np.asarray(mean, dtype=float), (self.n_features,))
        scale = np.broadcast_to(np.asarray(scale, dtype=float), (self.n_features,))
        if np.any(~(scale > 0)):
            raise ValueError(f"scale must be positive; got {scale.tolist()}.")
        intervals = tuple(
            ((low - m) / s, (high - m) / s)
            for (low, high), m, s in zip(self.intervals, mean, scale, strict=True)
        )
        return Cells(
            (self.lo - mean) / scale,
            (self.hi - mean) / scale,
            self.volume / np.prod(scale),
            intervals,
            self.index,
        )


def _from_intervals(intervals, index):
    lo = np.column_stack([low[index[:, j]] for j, (low, _) in enumerate(intervals)])
    hi = np.column_stack([high[index[:, j]] for j, (_, high) in enumerate(intervals)])
    for arr in (lo, hi, index, *(a for pair in intervals for a in pair)):
        arr.flags.writeable = False
    return Cells(lo, hi, np.prod(hi - lo, axis=1), tuple(intervals), index)


def make_cells(lo, hi):
    """:class:`Cells` from arbitrary corners ``lo < hi`` of shape ``(n, d)`` (or ``(n,)``).

    Edges may be infinite (for the exact forms: 1-D, 'diag', 'spherical').
    """
    lo = np.asarray(lo, dtype=float)
    hi = np.asarray(hi, dtype=float)
    if lo.ndim == 1:
        lo, hi = lo[:, None], hi[:, None]
    if lo.ndim != 2 or lo.shape != hi.shape or lo.shape[0] == 0:
        raise ValueError(
            f"lo and hi must have the same shape (n_cells, d); got {lo.shape}, {hi.shape}."
        )
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(~(hi > lo)):
        i = int(np.flatnonzero(~np.all(hi > lo, axis=1))[0])
        raise ValueError(
            f"every cell needs lo < hi; cell {i} has lo={lo[i].tolist()}, hi={hi[i].tolist()}."
        )
    intervals = []
    index = np.empty(lo.shape, dtype=np.int64)
    for j in range(lo.shape[1]):
        pairs, inverse = np.unique(
            np.column_stack([lo[:, j], hi[:, j]]), axis=0, return_inverse=True
        )
        intervals.append((pairs[:, 0].copy(), pairs[:, 1].copy()))
        index[:, j] = inverse.ravel()
    return _from_intervals(intervals, index)


def _as_points(X, name="X"):
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"{name} must be an array of points of shape (n_points,) or (n_points, n_features); "
            f"got shape {np.shape(X)}."
        )
    if not np.all(np.isfinite(X)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(X), axis=1))[0])
        raise ValueError(f"{name} must be finite; point {bad} is {X[bad].tolist()}.")
    return X


def _first_duplicate(codes):
    """Indices ``(i, j)``, ``i < j``, of two equal codes, or ``None``."""
    order = np.argsort(codes, kind="stable")
    same = np.flatnonzero(codes[order][1:] == codes[order][:-1])
    if same.size == 0:
        return None
    pairs = np.sort(np.column_stack([order[same], order[same + 1]]), axis=1)
    i, j = pairs[np.argmin(pairs[:, 1])]
    return int(i), int(j)


def infer_cells(X):
    """Cells of a rectilinear grid of bin centres (``bins="infer"``).

    Per dimension the distinct coordinates are sorted; the edges lie at the
    midpoints between neighbours and the outer edges are mirrored (the first
    cell is as wide on its outer side as on its inner side).

    Parameters
    ----------
    X : array-like of shape (n_points,) or (n_points, n_features)
        Bin centres in any order; together they must form the full product grid
        of their coordinates (every combination exactly once). Coordinates that
        agree to 1e-9 of the extent of their dimension count as equal.

    Returns
    -------
    cells : Cells
        ``lo`` and ``hi`` of shape ``(n_points, n_features)`` and ``volume`` of
        shape ``(n_points,)``, row ``i`` for point ``X[i]``.

    Raises
    ------
    ValueError
        If a dimension has a single value, if two points coincide or if points
        of the product grid are missing.
    """
    X = _as_points(X)
    n_points, n_features = X.shape
    index = np.empty(X.shape, dtype=np.int64)
    intervals = []
    codes = np.zeros(n_points, dtype=np.int64)
    shape = []
    for j in range(n_features):
        column = X[:, j]
        extent = np.ptp(column)
        if extent == 0:
            raise ValueError(
                f"bins='infer' needs at least two distinct coordinates in every dimension; "
                f"dimension {j} has the single value {column[0]!r}, so its bin width is "
                "unknown. Pass the edges explicitly: bins=[edges_0, ..., edges_{d-1}]."
            )
        key = np.round((column - column.min()) / extent, 9)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        values = column[first]
        mids = 0.5 * (values[1:] + values[:-1])
        edges = np.concatenate([[2.0 * values[0] - mids[0]], mids, [2.0 * values[-1] - mids[-1]]])
        intervals.append((edges[:-1], edges[1:]))
        index[:, j] = inverse
        shape.append(values.size)
        codes = codes * values.size + inverse
    pair = _first_duplicate(codes)
    if pair is not None:
        i, k = pair
        raise ValueError(
            f"bins='infer' needs each grid node once, but points {i} and {k} are the same node "
            f"{X[i].tolist()}. Sum or average their values first."
        )
    n_nodes = int(np.prod(shape, dtype=float))
    if n_nodes != n_points:
        raise ValueError(
            "bins='infer' needs a full rectilinear grid of bin centres: the points have "
            f"{' x '.join(map(str, shape))} = {n_nodes} distinct coordinate combinations but "
            f"X has only {n_points} points. Fill the missing nodes (with zeros for an empty "
            "bin), or pass the edges explicitly: bins=[edges_0, ..., edges_{d-1}]."
        )
    return _from_intervals(intervals, index)


def _check_edges(edges, n_features):
    if isinstance(edges, np.ndarray) and edges.ndim == 1:
        edges = [edges]
    if not isinstance(edges, (list, tuple)) or (
        len(edges) > 0 and np.ndim(edges[0]) == 0
    ):  # a flat list of numbers: the edges of a 1-D histogram
        edges = [edges]
    if len(edges) != n_features:
        raise ValueError(
            f"bins must hold one array of edges per dimension: X has {n_features} "
            f"dimension(s) but bins has {len(edges)}."
        )
    checked = []
    for j, e in enumerate(edges):
        e = np.asarray(e, dtype=float)
        if e.ndim != 1 or e.size < 2:
            raise ValueError(
                f"bins[{j}] must be a 1-D array of at least two edges; got shape {e.shape}."
            )
        if not np.all(np.isfinite(e)):
            raise ValueError(f"bins[{j}] must be finite; got {e.tolist()}.")
        if np.any(np.diff(e) <= 0):
            k = int(np.flatnonzero(np.diff(e) <= 0)[0])
            raise ValueError(
                f"bins[{j}] must be strictly increasing; edges {k} and {k + 1} are "
                f"{e[k]:.6g} and {e[k + 1]:.6g}."
            )
        checked.append(e)
    return checked


def cells_from_edges(X, edges, *, shared=False):
    """Cells given by explicit edges (``bins=[edges_0, ..., edges_{d-1}]``).

    Each point belongs to the cell that contains it; as in ``np.histogram``
    the cells are half-open ``[e_k, e_{k+1})`` except the last, which includes
    its upper edge.

    Parameters
    ----------
    X : array-like of shape (n_points,) or (n_points, n_features)
        One point in each cell that has a value (cells without a point are
        allowed and simply not modelled).
    edges : array-like or list of array-like
        Strictly increasing, finite edges: one array for 1-D, or a list of
        ``n_features`` arrays (as ``np.histogramdd`` returns them).
    shared : bool, default=False
        Whether points may share a cell (predictions; a fit needs one value per cell).

    Returns
    -------
    cells : Cells
        ``lo``, ``hi`` of shape ``(n_points, n_features)``, ``volume`` ``(n_points,)``.

    Raises
    ------
    ValueError
        Naming the first point outside the edges, or the first two points that
        share a cell.
    """
    X = _as_points(X)
    n_points, n_features = X.shape
    edges = _check_edges(edges, n_features)
    index = np.empty((n_points, n_features), dtype=np.int64)
    outside = np.zeros(n_points, dtype=bool)
    for j, e in enumerate(edges):
        idx = np.searchsorted(e, X[:, j], side="right") - 1
        idx = np.where(X[:, j] == e[-1], e.size - 2, idx)  # the last cell is closed
        outside |= (idx < 0) | (idx > e.size - 2)
        index[:, j] = idx
    if np.any(outside):
        i = int(np.flatnonzero(outside)[0])
        ranges = ", ".join(f"[{e[0]:.6g}, {e[-1]:.6g}]" for e in edges)
        raise ValueError(
            f"point {i} of X, {X[i].tolist()}, lies outside the edges in bins ({ranges}); "
            "every point must lie in one of the cells."
        )
    codes = np.ravel_multi_index(index.T, [e.size - 1 for e in edges])
    pair = None if shared else _first_duplicate(codes)
    if pair is not None:
        i, k = pair
        raise ValueError(
            f"points {i} and {k} of X ({X[i].tolist()} and {X[k].tolist()}) lie in the same "
            "cell of bins; each cell holds one value. Sum their values into one point, or "
            "use bins=None."
        )
    return _from_intervals([(e[:-1], e[1:]) for e in edges], index)


def histogram_to_grid(counts, edges):
    """``(X, y)`` from the output of ``np.histogram`` or ``np.histogramdd``.

    Parameters
    ----------
    counts : array-like of shape (n_0, ..., n_{d-1})
        Bin contents.
    edges : array-like or list of array-like
        The edges: one array of ``n_0 + 1`` values (``np.histogram``), or a list
        of ``d`` arrays (``np.histogramdd``; for ``np.histogram2d`` pass
        ``[xedges, yedges]``).

    Returns
    -------
    X : ndarray of shape (n_bins,) if ``edges`` is one array, else (n_bins, d)
        The bin centres, in C order of ``counts``.
    y : ndarray of shape (n_bins,)
        ``counts`` flattened in C order.

    Examples
    --------
    >>> import numpy as np
    >>> counts, edges = np.histogram([0.1, 0.2, 0.7], bins=2, range=(0, 1))
    >>> histogram_to_grid(counts, edges)
    (array([0.25, 0.75]), array([2., 1.]))
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim == 1 and np.ndim(edges) == 1 and counts.size == np.size(edges) + 1:
        raise ValueError(
            f"counts has {counts.size} values and edges {np.size(edges)}, one fewer: the "
            "arguments are swapped? Pass histogram_to_grid(counts, edges), in np.histogram's "
            "order."
        )
    single = (isinstance(edges, np.ndarray) and edges.ndim == 1) or (
        isinstance(edges, (list, tuple)) and len(edges) > 0 and np.ndim(edges[0]) == 0
    )
    edges = _check_edges(edges, counts.ndim)
    expected = tuple(e.size - 1 for e in edges)
    if counts.shape != expected:
        raise ValueError(
            f"counts has shape {counts.shape} but the edges make {expected} bins; pass the "
            "two outputs of the same np.histogram / np.histogramdd call."
        )
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    y = counts.ravel()
    if single:
        return centres[0].copy(), y
    mesh = np.meshgrid(*centres, indexing="ij")
    return np.column_stack([m.ravel() for m in mesh]), y


# --------------------------------------------------------------------------
# log(Phi(b) - Phi(a)), stably
# --------------------------------------------------------------------------
def _log1mexp(x):
    """``log(1 - exp(x))`` for ``x <= 0``."""
    return np.where(x > -np.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def log_ndtr_diff(a, b):
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, elementwise, without cancellation.

    By symmetry (``Phi(b) - Phi(a) = Phi(-a) - Phi(-b)``) the pair is mirrored
    so that its lower bound is not positive. Then ``erfc`` of both bounds when
    both lie in the lower tail (no difference of two numbers near one) and
    ``erfc(lo) - erfc(hi)`` when they straddle zero (no cancellation but near zero).
    Where that difference would underflow it is recomputed from
    ``log_ndtr`` of the bounds and ``log(1 - exp(.))`` of their difference; an
    interval with ``(b - a) (1 + |midpoint|) < 1e-2`` uses the series
    ``log(w phi(m)) + log(1 + w^2 He_2(m) / 24 + w^4 He_4(m) / 1920)`` (relative
    error below 1e-17). Infinite bounds are allowed.
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        flip = a > 0
        lo = np.where(flip, -b, a)
        hi = np.where(flip, -a, b)
        tail = hi <= 0
        # one erfc per bound: 2 Phi(x) = erfc(-x / sqrt 2); straddling zero,
        # erf(hi) - erf(lo) = erfc(lo) - erfc(hi) (a number in [1, 2] minus one in (0, 1))
        hi_s = hi * _SQRT_HALF
        lo_s = lo * _SQRT_HALF
        mass = erfc(np.where(tail, -hi_s, lo_s)) - erfc(np.where(tail, -lo_s, hi_s))
        out = np.log(0.5 * mass)
        width = hi - lo
        mid = 0.5 * (hi + lo)
        narrow = width * (1.0 + np.abs(mid)) < _NARROW
        # (the erfc difference has relative error eps * Phi(hi) / D, less than the
        # log_ndtr form's eps * |log Phi(lo)| * Phi(hi) / D; it fails only by underflow)
        hard = (mass < 1e-280) | narrow
        out = np.array(out, copy=True)
        if np.any(hard):
            lo_h, hi_h = lo[hard], hi[hard]
            log_hi = log_ndtr(np.minimum(hi_h, 0.0))
            value = log_hi + _log1mexp(log_ndtr(lo_h) - log_hi)
            # a narrow interval straddling zero: the erf sum is accurate
            value = np.where(hi_h > 0, out[hard], value)
            w, m = width[hard], mid[hard]
            series = (w * (1.0 + np.abs(m)) < _NARROW) & np.isfinite(m) & (w > 0)
            m2, w2 = m * m, w * w
            correction = w2 * (m2 - 1.0) / 24.0 + w2 * w2 * (m2 * m2 - 6.0 * m2 + 3.0) / 1920.0
            value = np.where(
                series, np.log(w) - 0.5 * m2 - _LOG_2PI_HALF + np.log1p(correction), value
            )
            out[hard] = value
    return out[()] if out.ndim == 0 else out


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------
def _shaped_raw(raw, covariance_type, n_components, d):
    """``raw`` as ``(K, n_raw)``, broadcast over components for 'tied'."""
    raw = np.asarray(raw, dtype=float)
    n_raw = n_cholesky_values(covariance_type, 1, d)  # a component's
    n_expected = n_cholesky_values(covariance_type, n_components, d)
    if raw.size != n_expected:
        raise ValueError(
            f"raw for {covariance_type!r} with {n_components} components in {d}-D must have "
            f"{n_expected} values; got shape {raw.shape}."
        )
    return np.broadcast_to(raw.reshape(-1, n_raw), (n_components, n_raw))


def _check_cells(cells, means):
    if not isinstance(cells, Cells):
        raise TypeError(
            "cells must be a Cells object (from infer_cells, cells_from_edges or make_cells); "
            f"got {type(cells).__name__}."
        )
    means = np.asarray(means, dtype=float)
    if means.ndim != 2 or means.shape[1] != cells.n_features:
        raise ValueError(
            f"means must have shape (n_components, {cells.n_features}); got {means.shape}."
        )
    return means


# --------------------------------------------------------------------------
# Exact forms: 1-D, 'diag', 'spherical'
# --------------------------------------------------------------------------
def _exact(cells, means, raw):
    """Products over dimensions, each dimension evaluated once per distinct interval."""
    n_components, d = means.shape
    u = np.exp(raw)  # (K, n_raw): n_raw is d (diag), 1 (spherical, or 1-D full/tied)
    u = np.broadcast_to(u, (n_components, d))
    log_mass = np.zeros((cells.n_cells, n_components))
    for j, (low, high) in enumerate(cells.intervals):  # a loop over the d dimensions
        a = u[None, :, j] * (low[:, None] - means[None, :, j])  # (n_intervals_j, K)
        b = u[None, :, j] * (high[:, None] - means[None, :, j])
        log_mass += log_ndtr_diff(a, b)[cells.index[:, j]]
    return log_mass


# --------------------------------------------------------------------------
# Cubature: 'full', 'tied' in d >= 2
# --------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _tensor_rule(n_nodes, n_dims):
    """Gauss-Legendre nodes ``(M, n_dims)`` on ``[-1, 1]^n_dims`` and log weights ``(M,)``."""
    t, w = np.polynomial.legendre.leggauss(n_nodes)
    grids = np.meshgrid(*([t] * n_dims), indexing="ij")
    weights = np.meshgrid(*([w] * n_dims), indexing="ij")
    nodes = np.column_stack([g.ravel() for g in grids])
    log_w = np.sum(np.log(np.column_stack([g.ravel() for g in weights])), axis=1)
    nodes.flags.writeable = log_w.flags.writeable = False
    return nodes, log_w


def _upper(raw, d):
    rows, cols = _triu_indices(d)
    diag = rows == cols
    upper = np.zeros((raw.shape[0], d, d))
    upper[:, rows, cols] = np.where(diag, np.exp(np.where(diag, raw, 0.0)), raw)
    return upper


def _cubature_chunk(lo, hi, means, upper, log_diag, n_nodes, hybrid):
    """One chunk of cells; the arrays run (component, cell, node[, dimension])."""
    n_cells, d = lo.shape
    n_components = means.shape[0]
    q = d - 1 if hybrid else d
    t, log_w = _tensor_rule(n_nodes, q)
    n_per = t.shape[0]
    half = 0.5 * (hi[:, :q] - lo[:, :q])
    nodes = 0.5 * (hi[:, None, :q] + lo[:, None, :q]) + half[:, None, :] * t[None]  # (n, M, q)
    log_weights = np.log(np.prod(half, axis=1))[:, None] + log_w[None]  # (n, M)
    delta = nodes.reshape(1, -1, q) - means[:, None, :q]  # (K, n M, q)
    lead = upper[:, :q, :q]
    y = delta @ lead  # (K, n M, q): y_j = sum_i U_ij delta_i
    log_f = np.sum(log_diag[:, :q], axis=1)[:, None] - 0.5 * np.sum(y * y, axis=2)
    log_f = log_f.reshape(n_components, n_cells, n_per) + (log_weights - 0.5 * q * LOG_2PI)
    if hybrid:
        u_dd = upper[:, d - 1, d - 1][:, None]  # (K, 1)
        shift = (delta @ upper[:, :q, d - 1 :]).reshape(n_components, n_cells, n_per)
        t_lo = u_dd * (lo[None, :, d - 1] - means[:, None, d - 1])  # (K, n)
        t_hi = u_dd * (hi[None, :, d - 1] - means[:, None, d - 1])
        a = t_lo[:, :, None] + shift
        b = t_hi[:, :, None] + shift
        log_f += log_ndtr_diff(a, b)
    return _logsumexp(log_f, axis=2).T  # (n, K)


def _cubature(cells, means, raw, n_nodes, rule):
    lo, hi = cells.lo, cells.hi
    n_cells, d = lo.shape
    n_components = means.shape[0]
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("the cubature of 'full'/'tied' components needs finite cell edges.")
    hybrid = rule == "hybrid"
    upper = _upper(raw, d)
    rows, cols = _triu_indices(d)
    log_diag = raw[:, rows == cols]
    n_per_cell = n_nodes ** (d - 1 if hybrid else d) * n_components * max(d * d, 4)
    chunk = max(1, CHUNK_ELEMENTS // n_per_cell)
    return np.concatenate(
        [
            _cubature_chunk(
                lo[s : s + chunk], hi[s : s + chunk], means, upper, log_diag, n_nodes, hybrid
            )
            for s in range(0, n_cells, chunk)
        ]
    )


def _check_rule(n_nodes, rule):
    if rule not in CUBATURE_RULES:
        raise ValueError(f"rule must be one of {CUBATURE_RULES}; got {rule!r}.")
    if int(n_nodes) != n_nodes or n_nodes < 1:
        raise ValueError(f"n_nodes must be a positive integer; got {n_nodes!r}.")
    return int(n_nodes)


def log_cell_masses_raw(
    cells, means, raw, covariance_type, *, n_nodes=DEFAULT_N_NODES, rule="hybrid"
):
    """``log P_k(cell_i)``, shape ``(n_cells, K)``, from the layout's raw parameters.

    Parameters
    ----------
    cells : Cells
        The cells, in the fit's (standardised) coordinates (see :meth:`Cells.standardised`).
    means : ndarray of shape (K, d)
    raw : ndarray
        The raw precision block of :class:`~.parameters.ParameterLayout`:
        'diag' ``log U_kj`` (``K * d`` values), 'spherical' ``log u_k`` (``K``),
        'full' the packed upper triangles with log diagonal (``K * d(d+1)/2``),
        'tied' one packed triangle (``d(d+1)/2``). Flat or shaped ``(K, n_raw)``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    n_nodes : int, default=6
        Gauss-Legendre nodes per integrated dimension of the cubature (used only
        for 'full'/'tied' with ``d >= 2``).
    rule : {'hybrid', 'tensor'}, default='hybrid'
        The cubature rule (see the module docstring).
    """
    check_covariance_type(covariance_type)
    n_nodes = _check_rule(n_nodes, rule)
    means = _check_cells(cells, means)
    n_components, d = means.shape
    raw = _shaped_raw(raw, covariance_type, n_components, d)
    if axis_aligned(covariance_type, d):
        return _exact(cells, means, raw)
    return _cubature(cells, means, raw, n_nodes, rule)


def log_cell_masses(
    cells, means, precisions_cholesky, covariance_type, *, n_nodes=DEFAULT_N_NODES, rule="hybrid"
):
    """``log P_k(cell_i)``, shape ``(n_cells, K)``, from scikit-learn style parameters.

    ``precisions_cholesky`` as scikit-learn's ``precisions_cholesky_``: 'full'
    ``(K, d, d)``, 'tied' ``(d, d)``, 'diag' ``(K, d)``, 'spherical' ``(K,)``.
    See :func:`log_cell_masses_raw` for the rest.
    """
    raw = raw_from_cholesky(precisions_cholesky, covariance_type)
    return log_cell_masses_raw(cells, means, raw, covariance_type, n_nodes=n_nodes, rule=rule)


# --------------------------------------------------------------------------
# autograd.numpy reference (tests and the benchmark's stand-in fit)
# --------------------------------------------------------------------------
def _log_ndtr_diff_reference(a, b):
    """:func:`log_ndtr_diff` in autograd.numpy, without the narrow-cell series.

    Each branch gets harmless inputs where it is not used, so that no NaN
    reaches the gradient through ``where``.
    """
    flip = anp.asarray(a > 0)
    lo = anp.where(flip, -b, a)
    hi = anp.where(flip, -a, b)
    tail = anp.asarray(hi <= 0)
    log_hi = _anp_norm.logcdf(anp.where(tail, hi, -1.0))
    log_lo = _anp_norm.logcdf(anp.where(tail, lo, -2.0))
    in_tail = log_hi + anp.log(-anp.expm1(log_lo - log_hi))
    mid_lo = anp.where(tail, -1.0, lo)
    mid_hi = anp.where(tail, 1.0, hi)
    middle = anp.log(0.5 * (_anp_erf(mid_hi * _SQRT_HALF) - _anp_erf(mid_lo * _SQRT_HALF)))
    return anp.where(tail, in_tail, middle)


def log_cell_masses_reference(
    cells, means, raw, covariance_type, *, n_nodes=DEFAULT_N_NODES, rule="hybrid"
):
    """The ``log_mass`` of :func:`log_cell_masses_raw` in ``autograd.numpy``.

    A pure function of ``(means, raw)`` for fixed cells, differentiable by
    autograd (the reference for the hand-derived derivatives). ``raw`` must be
    flat (``K * n_raw`` values, ``n_raw`` for 'tied'), ``means`` ``(K, d)``.
    """
    lo, hi = cells.lo, cells.hi
    n_components, d = means.shape
    n_raw = n_cholesky_values(covariance_type, 1, d)
    raw = anp.reshape(raw, (-1, n_raw))
    raw = anp.ones((n_components, 1)) * raw  # 'tied': the one factor for every component
    if axis_aligned(covariance_type, d):
        u = anp.exp(raw)
        a = u[None] * (lo[:, None, :] - means[None])
        b = u[None] * (hi[:, None, :] - means[None])
        return anp.sum(_log_ndtr_diff_reference(a, b), axis=2)
    hybrid = rule == "hybrid"
    q = d - 1 if hybrid else d
    t, log_w = _tensor_rule(n_nodes, q)
    half = 0.5 * (hi[:, :q] - lo[:, :q])
    nodes = 0.5 * (hi[:, None, :q] + lo[:, None, :q]) + half[:, None, :] * t[None]
    log_weights = np.log(np.prod(half, axis=1))[:, None] + log_w[None]
    upper = upper_from_raw(raw, d)
    rows, cols = _triu_indices(d)
    log_diag = raw[:, rows == cols]
    delta = nodes[:, :, None, :] - means[None, None, :, :q]
    y = anp.einsum("nmki,kij->nmkj", delta, upper[:, :q, :q])
    log_f = anp.sum(log_diag[:, :q], axis=1) - 0.5 * anp.sum(y**2, axis=3) - 0.5 * q * LOG_2PI
    if hybrid:
        shift = anp.einsum("nmki,ki->nmk", delta, upper[:, :q, d - 1])
        u_dd = upper[:, d - 1, d - 1]
        a = (u_dd[None] * (lo[:, None, d - 1] - means[None, :, d - 1]))[:, None, :] + shift
        b = (u_dd[None] * (hi[:, None, d - 1] - means[None, :, d - 1]))[:, None, :] + shift
        log_f = log_f + _log_ndtr_diff_reference(a, b)
    return _anp_logsumexp(log_f + log_weights[:, :, None], axis=1)
