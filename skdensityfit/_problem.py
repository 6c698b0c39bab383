"""The fitting problem: data, quadrature, bounds, width limits and subsets, in fit coordinates.

:func:`build_problem` turns a validated grid and density into a
:class:`Problem`: the standardised grid, the constant :class:`FitData` the
objective reads, the :class:`~._parameters.Standardisation` back to grid
units, the smallest and largest component width, and box bounds on the
flat parameter vector.

With ``bins`` (``"infer"`` or the edges of each dimension) the data also
holds the standardised :class:`~._cells.Cells` of the points: each value is
then modelled as the mixture's average over its cell (its mass in the cell
divided by the cell's volume) instead of its value at the point.
"""

from dataclasses import dataclass, replace
from functools import cached_property

import autograd.numpy as anp
import numpy as np
from scipy.special import xlogy

from ._cells import cells_from_edges, infer_cells
from ._covariance import MATRIX_TYPES, quadratic_features
from ._parameters import ParameterLayout, Standardisation, unpack
from ._validation import check_sample_weight, quadrature_weights

# Grids larger than this are first fitted on a random subset of this many
# points (or of a quarter of the grid, if fewer).
MAX_PREFIT_POINTS = 50_000
# The smallest width of a component fitted to cell averages, as a fraction of the
# centre model's floor (half the typical spacing): a component narrower than its
# cell still has a well-defined mass in it and its neighbours, down to about a
# tenth of a cell, where all of its mass falls in one cell.
BINNED_WIDTH_FLOOR = 0.2
BACKGROUNDS = ("constant", "linear")
# Background coefficients stay within this many times the largest |value| of the density.
MAX_BACKGROUND = 100.0


@dataclass(frozen=True, eq=False)
class Background:
    """A polynomial of degree 0 or 1 under the mixture, in fit coordinates.

    ``b(u) = beta_0 + s . v`` with ``v = (u - centre) / half`` the point's
    coordinates scaled to ``[-1, 1]`` over the box of the points (``u`` the
    standardised point, or the centre of its cell: the average of a linear
    function over a box is its value at the centre). Its parameters, after
    the mixture's in the flat vector:

    - free (``l2``): ``[beta_0]`` or ``[beta_0, s_1, ..., s_d]``;
    - non-negative (``poisson``): ``[beta_0 >= 0]`` or ``[beta_0, rho_1, ...,
      rho_d]`` with ``s = beta_0 A rho``, ``rho`` in ``[-1, 1]^d``; ``A`` maps
      that cube into ``sum |w_j| <= 1`` (onto it in 1-D and 2-D), so ``b >= 0``
      over the box.
    """

    basis: np.ndarray  # (n_points, d): the points u the background is evaluated at
    degree: int
    nonnegative: bool
    centre: np.ndarray  # (d,)
    half: np.ndarray  # (d,)

    @classmethod
    def of(cls, kind, points, nonnegative):
        low, high = points.min(axis=0), points.max(axis=0)
        half = np.maximum(0.5 * (high - low), 1e-12)
        return cls(points, BACKGROUNDS.index(kind), nonnegative, 0.5 * (low + high), half)

    @property
    def n_features(self):
        return self.basis.shape[1]

    @property
    def n_parameters(self):
        return 1 + self.degree * self.n_features

    @cached_property
    def mixing(self):
        """``A``: the slopes in ``v`` per ``beta_0`` of the non-negative form."""
        d = self.n_features
        if d == 2:
            return np.array([[0.5, 0.5], [0.5, -0.5]])
        return np.eye(d) / d

    def subset(self, indices):
        return replace(self, basis=self.basis[indices])

    def bounds(self):
        low = 0.0 if self.nonnegative else -MAX_BACKGROUND
        rows = [[low, MAX_BACKGROUND]]
        slope = [-1.0, 1.0] if self.nonnegative else [-MAX_BACKGROUND, MAX_BACKGROUND]
        return np.array(rows + [slope] * (self.n_parameters - 1))

    def _slopes(self, theta):
        """``s``, the slopes in ``v`` (*autograd-safe*)."""
        if self.degree == 0:
            return anp.zeros(self.n_features)
        if self.nonnegative:
            return theta[0] * anp.dot(self.mixing, theta[1:])
        return theta[1:]

    def coefficients(self, theta):
        """``(a_0, a)`` of ``b(u) = a_0 + a . u`` (*autograd-safe*)."""
        slopes = self._slopes(theta)
        return theta[0] - anp.sum(slopes * self.centre / self.half), slopes / self.half

    def coefficient_jacobian(self, theta):
        """``d [a_0, a] / d theta``, shape ``(1 + d, n_parameters)`` (numpy)."""
        d = self.n_features
        dslopes = np.zeros((d, self.n_parameters))
        if self.degree == 1 and self.nonnegative:
            dslopes[:, 0] = self.mixing @ theta[1:]
            dslopes[:, 1:] = theta[0] * self.mixing
        elif self.degree == 1:
            dslopes[:, 1:] = np.eye(d)
        first = np.zeros(self.n_parameters)
        first[0] = 1.0
        constant = first - (self.centre / self.half) @ dslopes
        return np.vstack([constant, dslopes / self.half[:, None]])

    def values(self, theta, basis=None):
        """``b`` at the points (*autograd-safe*)."""
        a0, a = self.coefficients(theta)
        return a0 + anp.dot(self.basis if basis is None else basis, a)

    def jacobian_t(self, theta, rows):
        """``d b / d theta`` at the points ``rows``, transposed: ``(n_parameters, n)``."""
        jac = self.coefficient_jacobian(theta)
        return (jac[0][:, None] + jac[1:].T @ self.basis[rows].T).reshape(self.n_parameters, -1)

    def parameters_from(self, a0, a):
        """The parameters of ``b(u) = a_0 + a . u``, clipped into the bounds (numpy)."""
        slopes = np.asarray(a, dtype=float) * self.half
        beta0 = float(a0 + np.sum(slopes * self.centre / self.half))
        if self.degree == 0:
            theta = np.array([beta0])
        elif self.nonnegative:
            beta0 = max(beta0, 1e-6)
            rho = np.linalg.solve(self.mixing, slopes / beta0)
            theta = np.concatenate([[beta0], rho])
        else:
            theta = np.concatenate([[beta0], slopes])
        bounds = self.bounds()
        return np.clip(theta, bounds[:, 0], bounds[:, 1])


@dataclass(frozen=True)
class FitData:
    """Constant data of one fit, in standardised coordinates."""

    features: np.ndarray  # (n_points, n_coef) quadratic features of the grid
    target: np.ndarray  # (n_points,) density divided by its largest |value|
    quadrature: np.ndarray  # (n_points,) quadrature weights, summing to one
    layout: ParameterLayout
    loss: str
    fixed_log_scale: float = 0.0
    cells: object = None  # standardised Cells of the points, or None (the centre model)
    background: object = None  # a Background under the mixture, or None

    @cached_property
    def normaliser(self):
        """The loss of the zero model (l2) or the target mass (poisson)."""
        if self.loss == "l2":
            return float(np.sum(self.quadrature * self.target**2))
        return float(np.sum(self.quadrature * self.target))

    @cached_property
    def poisson_constant(self):
        return float(np.sum(self.quadrature * (xlogy(self.target, self.target) - self.target)))

    def with_components(self, n_components):
        return replace(self, layout=self.layout.with_components(n_components))

    def subset(self, indices, renormalise=True):
        """The data of some grid points (their quadrature renormalised to sum to one)."""
        quadrature = self.quadrature[indices]
        return replace(
            self,
            features=self.features[indices],
            target=self.target[indices],
            quadrature=quadrature / quadrature.sum() if renormalise else quadrature,
            cells=None if self.cells is None else self.cells.subset(indices),
            background=None if self.background is None else self.background.subset(indices),
        )

    def without_cells(self):
        """The same data under the centre model (values at the points)."""
        return replace(self, cells=None)


@dataclass(frozen=True)
class Problem:
    """One fit's standardised grid, data, coordinate change, width limits and bounds."""

    grid: np.ndarray  # (n_points, n_features), standardised
    data: FitData
    standardisation: Standardisation
    width_limits: tuple  # smallest and largest component width
    bounds: np.ndarray  # (n_parameters, 2)

    @property
    def layout(self):
        return self.data.layout

    @property
    def n_points(self):
        return len(self.data.target)

    def unpack(self, theta):
        """``(log_scale, weights, means, precisions_cholesky)`` in fit coordinates."""
        return unpack(theta, self.layout, self.data.fixed_log_scale)

    def to_grid(self, theta):
        """Named parameters of ``theta`` in grid units (see ``Standardisation.to_grid``)."""
        return self.standardisation.to_grid(theta, self.layout, self.data.fixed_log_scale)

    def to_fit(self, weights, means, precisions_cholesky, scale):
        """The parameter vector of a mixture given in grid units."""
        return self.standardisation.to_fit(self.layout, weights, means, precisions_cholesky, scale)

    def with_components(self, n_components):
        """The same data with another number of components (bounds from this grid)."""
        data = self.data.with_components(n_components)
        return replace(self, data=data, bounds=_bounds(self.grid, data, self.width_limits))

    @property
    def n_mixture_parameters(self):
        return self.layout.n_parameters

    def background_to_grid(self, theta):
        """``[c_0, c_1, ..., c_d]`` of the background ``c_0 + c . x`` in grid units and the
        units of ``y`` (``[c_0]`` for a constant); *autograd-safe*."""
        background = self.data.background
        a0, a = background.coefficients(theta[self.n_mixture_parameters :])
        st = self.standardisation
        unit = st.density_unit
        constant = unit * (a0 - anp.sum(a * st.center / st.spread))
        if background.degree == 0:
            return anp.reshape(constant, (1,))
        return anp.concatenate([anp.reshape(constant, (1,)), unit * a / st.spread])

    def background_to_fit(self, coefficients):
        """The background's parameters from ``[c_0, c_1, ...]`` in grid units (inverse of
        :meth:`background_to_grid`, clipped into the bounds)."""
        st = self.standardisation
        coefficients = np.asarray(coefficients, dtype=float)
        slopes = np.zeros(self.layout.n_features)
        if coefficients.size > 1:
            slopes = coefficients[1:] * st.spread / st.density_unit
        a0 = coefficients[0] / st.density_unit + np.sum(slopes * st.center / st.spread)
        return self.data.background.parameters_from(a0, slopes)

    def mixture_only(self, target=None):
        """The problem of the mixture alone (no background), on ``target`` if given."""
        data = replace(
            self.data,
            background=None,
            target=self.data.target if target is None else target,
        )
        return replace(self, data=data, bounds=self.bounds[: self.n_mixture_parameters])

    def subset(self, indices):
        """The problem on some grid points, with this problem's bounds."""
        return replace(self, grid=self.grid[indices], data=self.data.subset(indices))

    @property
    def binned(self):
        return self.data.cells is not None

    def without_cells(self):
        """The same problem under the centre model, with the centre model's width floor."""
        limits = width_limits(self.grid)
        data = self.data.without_cells()
        bounds = _bounds(self.grid, data, limits)
        return replace(self, data=data, width_limits=limits, bounds=bounds)

    def random_subset(self, size, random_state):
        """:meth:`subset` of ``size`` random points (always with the largest value)."""
        return self.subset(random_subset(self.n_points, size, self.data.target, random_state))


def cells_of(X, bins):
    """The :class:`~._cells.Cells` of the points ``X`` under ``bins`` (None: no cells)."""
    if bins is None:
        return None
    if isinstance(bins, str):
        if bins != "infer":
            raise ValueError(f"bins must be None, 'infer' or a list of edges; got {bins!r}.")
        return infer_cells(X)
    return cells_from_edges(X, bins)


def build_problem(
    X,
    y,
    sample_weight,
    *,
    n_components,
    covariance_type,
    loss,
    scale,
    bins=None,
    background=None,
):
    """The :class:`Problem` of fitting ``y`` on the grid ``X`` (both validated).

    ``sample_weight`` None uses the grid's cell sizes as quadrature weights
    (with ``bins``, the volumes of the bins); ``scale`` None fits the total
    mass, a number fixes it; ``bins`` (see :func:`cells_of`) models each value
    as the mixture's average over its bin; ``background`` ('constant' or
    'linear') adds a polynomial under the mixture (:class:`Background`).
    """
    cells = cells_of(X, bins)
    if sample_weight is None:
        quadrature = quadrature_weights(X) if cells is None else cells.volume / cells.volume.sum()
    else:
        quadrature = check_sample_weight(sample_weight, len(y))
        quadrature = quadrature / quadrature.sum()
    standardisation = Standardisation.from_data(X, y, covariance_type)
    grid = standardisation.grid(X)
    layout = ParameterLayout(n_components, X.shape[1], covariance_type, scale is None)
    fit_cells = None
    if cells is not None:
        fit_cells = cells.standardised(standardisation.center, standardisation.spread)
    floor = None
    if background is not None:
        if background not in BACKGROUNDS:
            raise ValueError(
                f"background must be None, 'constant' or 'linear'; got {background!r}."
            )
        points = grid if fit_cells is None else 0.5 * (fit_cells.lo + fit_cells.hi)
        floor = Background.of(background, points, nonnegative=loss == "poisson")
    data = FitData(
        features=quadratic_features(grid, covariance_type),
        target=y / standardisation.density_unit,
        quadrature=quadrature,
        layout=layout,
        loss=loss,
        fixed_log_scale=0.0 if scale is None else np.log(scale) - standardisation.log_unit,
        cells=fit_cells,
        background=floor,
    )
    limits = width_limits(grid)
    if cells is not None:
        limits = (BINNED_WIDTH_FLOOR * limits[0], limits[1])
    return Problem(grid, data, standardisation, limits, _bounds(grid, data, limits))


def _bounds(grid, data, limits):
    """:func:`parameter_bounds`, then the background's."""
    bounds = parameter_bounds(grid, data.layout, limits)
    if data.background is None:
        return bounds
    return np.vstack([bounds, data.background.bounds()])


def problem_of(estimator, X, y, sample_weight=None):
    """:func:`build_problem` with an estimator's ``n_components``, ``covariance_type``,
    ``loss``, ``scale``, ``bins`` and ``background`` (None for estimators without them)."""
    return build_problem(
        X,
        y,
        sample_weight,
        n_components=estimator.n_components,
        covariance_type=estimator.covariance_type,
        loss=estimator.loss,
        scale=estimator.scale,
        bins=getattr(estimator, "bins", None),
        background=getattr(estimator, "background", None),
    )


def random_subset(n_points, size, target, random_state):
    """Sorted indices of ``size`` random points, always with the largest value."""
    # numpy's Generator draws without replacement in O(size); RandomState permutes all points
    generator = np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    subset = generator.choice(n_points, size, replace=False)
    return np.unique(np.append(subset, np.argmax(target)))


def prefit_size(n_points):
    """Points of the subset a large grid is first fitted on.

    A quarter of the grid at most: a prefit on most of it would cost a full fit.
    """
    return min(MAX_PREFIT_POINTS, n_points // 4)


def width_limits(grid):
    """Smallest and largest component width allowed on a standardised grid."""
    extent = np.maximum(np.ptp(grid, axis=0), 1e-12)
    # rows in lexicographic order (np.unique along axis 0 sorts them far more slowly)
    rows = grid[np.lexsort(grid.T[::-1])]
    n_distinct = 1 + int(np.count_nonzero(np.any(rows[1:] != rows[:-1], axis=1)))
    # the side of the cube each distinct point has to itself: robust to jitter and scatter
    typical = np.exp(np.mean(np.log(extent)) - np.log(n_distinct) / grid.shape[1])
    return 0.5 * typical, 100.0 * extent.max()


def parameter_bounds(grid, layout, width_limits):
    """Box bounds that keep every parameter finite and meaningful.

    Widths range from half the typical grid spacing (the side of the cell each
    distinct point has in the grid's bounding box), below which a
    component falls between grid points and is fixed by one or two values
    only (in cross-validation it would hide between training points), to a
    hundred times the grid's extent; means stay within two extents of it.
    """
    low, high = grid.min(axis=0), grid.max(axis=0)
    extent = np.maximum(high - low, 1e-12)
    min_width, max_width = width_limits
    log_u_low, log_u_high = -np.log(max_width), -np.log(min_width)

    d, k = layout.n_features, layout.n_components
    cov = layout.covariance_type
    if cov in MATRIX_TYPES:
        rows, cols = np.triu_indices(d)
        one = np.where(rows == cols, log_u_low, -1.0 / min_width)
        two = np.where(rows == cols, log_u_high, 1.0 / min_width)
        chol = np.tile(np.column_stack([one, two]), (k if cov == "full" else 1, 1))
    else:
        chol = np.tile([log_u_low, log_u_high], (layout.n_cholesky, 1))
    blocks = []
    if layout.fit_scale:
        blocks.append([[-100.0, 100.0]])
    blocks.append(np.tile([-40.0, 40.0], (k - 1, 1)))
    blocks.append(np.column_stack([np.tile(low - 2 * extent, k), np.tile(high + 2 * extent, k)]))
    blocks.append(chol)
    return np.vstack([np.reshape(b, (-1, 2)) for b in blocks])
