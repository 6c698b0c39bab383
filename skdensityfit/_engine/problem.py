"""The fitting problem: data, quadrature, bounds, width limits and subsets, in fit coordinates.

:func:`build_problem` turns a validated grid and density into a
:class:`Problem`: the standardised grid, the constant :class:`FitData` the
objective reads, the :class:`~.parameters.Standardisation` back to grid
units, the smallest and largest component width, and box bounds on the
flat parameter vector.

With ``bins`` (``"infer"`` or the edges of each dimension) the data also
holds the standardised :class:`~.cells.Cells` of the points: each value is
then modelled as the mixture's average over its cell (its mass in the cell
divided by the cell's volume) instead of its value at the point.
"""

import itertools
from dataclasses import dataclass, replace
from functools import cached_property
from math import comb

import autograd.numpy as anp
import numpy as np
from numpy.polynomial import legendre
from scipy.special import xlogy

from .._compat import warn_at_caller
from .._data.rowwise import combined_columns, row_products
from .._data.validation import check_sample_weight, quadrature_weights, unique_values
from .._model.cells import cells_from_edges, infer_cells
from .._model.covariance import MATRIX_TYPES, own_covariances, quadratic_features, triu_indices
from .._model.parameters import ParameterLayout, Standardisation, unpack
from .rows import KernelInputs, loss_normalisers

# Grids larger than this are first fitted on a random subset of this many
# points (or of a quarter of the grid, if fewer).
MAX_PREFIT_POINTS = 50_000
# The smallest width of a component fitted to cell averages, as a fraction of the
# centre model's floor (half the typical spacing): a component narrower than its
# cell still has a well-defined mass in it and its neighbours, down to about a
# tenth of a cell, where all of its mass falls in one cell.
BINNED_WIDTH_FLOOR = 0.2
BACKGROUND_DEGREES = {"constant": 0, "linear": 1, "quadratic": 2, "cubic": 3}
BACKGROUNDS = (*BACKGROUND_DEGREES, "exponential")
# Background coefficients stay within this many times the largest |value| of the density.
MAX_BACKGROUND = 100.0
# An exponential background's rate, per half the grid's range (exp(30) is 1e13).
MAX_RATE = 30.0


def background_spec(background):
    """``(kind, detail)`` of a ``background`` parameter: ('polynomial', degree) for a
    name of :data:`BACKGROUND_DEGREES` or a degree, ('exponential', None), ('basis',
    function) for a callable; None for None."""
    if background is None:
        return None
    if callable(background):
        return "basis", background
    if isinstance(background, str):
        if background == "exponential":
            return "exponential", None
        if background in BACKGROUND_DEGREES:
            return "polynomial", BACKGROUND_DEGREES[background]
    elif isinstance(background, (int, np.integer)) and not isinstance(background, bool):
        if background >= 0:
            return "polynomial", int(background)
    raise ValueError(
        "background must be None, 'constant', 'linear', 'quadratic', 'cubic', a polynomial "
        "degree (int >= 0), 'exponential' or a callable returning the basis columns at the "
        f"points, shape (n_points, n_terms); got {background!r}."
    )


def background_term_names(background, n_features):
    """A name for each coefficient of ``background_``: ``1``, ``x0``, ``x0^2``, ``x0*x1``,
    ...; ``A`` and ``rate``; or ``c0``, ``c1``, ... of a user's basis."""
    kind, detail = background_spec(background)
    if kind == "exponential":
        return ["A", "rate"]
    if kind == "polynomial":
        return [
            "*".join(
                f"x{axis}" + (f"^{power}" if power > 1 else "")
                for axis, power in enumerate(powers)
                if power
            )
            or "1"
            for powers in polynomial_powers(detail, n_features)
        ]
    return None


def user_basis(function, X):
    """The columns ``function(X)`` of a user's background basis, checked: ``(n, J)``."""
    columns = np.asarray(function(X), dtype=float)
    if columns.ndim == 1:
        columns = columns[:, None]
    if columns.ndim != 2 or columns.shape[0] != len(X) or columns.shape[1] == 0:
        raise ValueError(
            "A background basis function must return an array of shape (n_points, n_terms) "
            f"for points of shape {np.shape(X)}; got shape {columns.shape}."
        )
    if not np.all(np.isfinite(columns)):
        raise ValueError("The background basis function returned NaN or infinite values.")
    return columns


def background_size(background, X):
    """The number of coefficients ``background_`` holds for ``background`` on grid ``X``."""
    kind, detail = background_spec(background)
    if kind == "polynomial":
        return len(polynomial_powers(detail, X.shape[1]))
    if kind == "exponential":
        return 2
    return user_basis(detail, X[:1]).shape[1]


def polynomial_powers(degree, n_features):
    """The exponents ``(J, d)`` of the polynomial terms of total degree at most ``degree``:
    the constant first, then by degree, and within a degree the first axis's highest
    power first (for degree 1: ``1, x_1, ..., x_d``)."""
    powers = [
        exponents
        for total in range(degree + 1)
        for exponents in itertools.product(range(total, -1, -1), repeat=n_features)
        if sum(exponents) == total
    ]
    return np.array(powers, dtype=int).reshape(-1, n_features)


def _legendre_values(v, powers):
    """``prod_i P_{powers[j, i]}(v_i)`` for every point (rows of ``v``) and term ``j``."""
    degree = int(powers.max(initial=0))
    per_axis = np.stack([legendre.legvander(v[:, i], degree) for i in range(v.shape[1])], 1)
    return np.prod(np.take_along_axis(per_axis, powers.T[None], axis=2), axis=1)


def _legendre_averages(v_lo, v_hi, powers):
    """The averages over the boxes ``[v_lo, v_hi]`` of the same terms (exact)."""
    degree = int(powers.max(initial=0))
    per_axis = []
    for i in range(v_lo.shape[1]):
        # the antiderivative of P_m is (P_{m+1} - P_{m-1}) / (2m + 1); of P_0, P_1
        vander_hi = legendre.legvander(v_hi[:, i], degree + 1)
        vander_lo = legendre.legvander(v_lo[:, i], degree + 1)
        integrals = np.empty((len(v_lo), degree + 1))
        integrals[:, 0] = vander_hi[:, 1] - vander_lo[:, 1]
        for m in range(1, degree + 1):
            upper = vander_hi[:, m + 1] - vander_hi[:, m - 1]
            lower = vander_lo[:, m + 1] - vander_lo[:, m - 1]
            integrals[:, m] = (upper - lower) / (2 * m + 1)
        per_axis.append(integrals / (v_hi[:, i] - v_lo[:, i])[:, None])
    per_axis = np.stack(per_axis, 1)
    return np.prod(np.take_along_axis(per_axis, powers.T[None], axis=2), axis=1)


@dataclass(frozen=True, eq=False)
class Background:
    """A baseline under the mixture, in fit coordinates (the density divided by its unit).

    Three kinds:

    - ``'polynomial'``: ``b(u) = sum_j c_j L_j(v)`` with ``v = (u - centre) / half`` the
      point's coordinates scaled to ``[-1, 1]`` over the box of the points (``u`` the
      standardised point) and ``L_j`` products of Legendre polynomials, of total degree
      at most the degree (``powers``): orthogonal over the box, so the coefficients are
      well conditioned at any degree. With bins, ``basis`` holds the terms' averages
      over the cells (exact);
    - ``'exponential'`` (one dimension): ``b(u) = c exp(r v)``, a free amplitude and rate
      (``basis`` holds ``v``);
    - ``'basis'``: ``b = sum_j c_j B_j(x)``, the user's columns ``B_j`` evaluated at the
      grid points in the grid's units (``function``).

    With the Poisson loss the model must stay positive at the points: the loss is
    infinite elsewhere, so the fit never goes there; the polynomial's constant term and
    the exponential's amplitude are non-negative.
    """

    basis: np.ndarray  # (n_points, J) for a linear kind; (n_points, 1) of v: exponential
    powers: object  # (J, d) Legendre degrees of a polynomial's terms, else None
    nonnegative: bool
    centre: np.ndarray  # (d,)
    half: np.ndarray  # (d,)
    kind: str = "polynomial"
    function: object = None  # the user's basis

    @classmethod
    def of(cls, background, points, nonnegative, cells=None, X=None):
        """The background ``background`` (a parameter :func:`background_spec` reads) over
        ``points`` (standardised; with ``cells``, averaged over them; ``X`` the points in
        the grid's units, for a user's basis)."""
        kind, detail = background_spec(background)
        low, high = points.min(axis=0), points.max(axis=0)
        if cells is not None:
            if kind != "polynomial":
                raise ValueError(
                    f"background={background!r} is not integrated over bins: use a "
                    "polynomial background (a name or a degree) with bins, or bins=None."
                )
            low, high = (
                np.minimum(low, cells.lo.min(axis=0)),
                np.maximum(high, cells.hi.max(axis=0)),
            )
        half = np.maximum(0.5 * (high - low), 1e-12)
        centre = 0.5 * (low + high)
        if kind == "exponential":
            if points.shape[1] != 1:
                raise ValueError(
                    "background='exponential' is a baseline along one dimension: the grid "
                    f"has {points.shape[1]}. Use a polynomial or a callable basis."
                )
            basis = (points - centre) / half
            return cls(np.ascontiguousarray(basis), None, nonnegative, centre, half, kind)
        if kind == "basis":
            basis = user_basis(detail, X)
            return cls(np.ascontiguousarray(basis), None, nonnegative, centre, half, kind, detail)
        powers = polynomial_powers(detail, points.shape[1])
        if cells is None:
            basis = _legendre_values((points - centre) / half, powers)
        else:
            basis = _legendre_averages(
                (cells.lo - centre) / half, (cells.hi - centre) / half, powers
            )
        return cls(np.ascontiguousarray(basis), powers, nonnegative, centre, half)

    @property
    def n_parameters(self):
        if self.kind == "exponential":
            return 2
        return self.basis.shape[1]

    @property
    def exponential(self):
        return self.kind == "exponential"

    def subset(self, indices):
        return replace(self, basis=self.basis[indices])

    def bounds(self):
        bounds = np.tile([-MAX_BACKGROUND, MAX_BACKGROUND], (self.n_parameters, 1))
        if self.exponential:
            bounds[1] = [-MAX_RATE, MAX_RATE]
        if self.nonnegative and self.kind != "basis":
            bounds[0, 0] = 0.0
        return bounds

    def values(self, theta, basis=None):
        """``b`` at the points (*autograd-safe*)."""
        basis = self.basis if basis is None else basis
        if self.exponential:
            return theta[0] * anp.exp(theta[1] * basis[:, 0])
        return anp.dot(basis, theta)

    def values_rows(self, thetas):
        """``b`` of each row of ``thetas`` ``(R, J)`` at the points: ``(R, n)``."""
        if self.exponential:
            return thetas[:, :1] * np.exp(thetas[:, 1:2] * self.basis[None, :, 0])
        return combined_columns(thetas, self.basis)

    def derivatives(self, theta, rows=slice(None)):
        """``d b / d theta`` at the points ``rows``: ``(J, n_rows)``."""
        basis = self.basis[rows]
        if self.exponential:
            e = np.exp(theta[1] * basis[:, 0])
            return np.vstack([e, theta[0] * basis[:, 0] * e])
        return basis.T

    def fitted_to(self, target, points):
        """The coefficients of the least-squares baseline through the values on the rim
        of the points (the outer 5% of their range along some axis; clipped into the
        bounds), for a target ``(n,)`` or each row of ``(R, n)``; an exponential through
        the logarithms of the positive ones. For a non-negative background one that is
        not positive at every point is replaced by the rim's mean value (at least 0)."""
        rows = np.atleast_2d(target)
        rim = self.rim(points)
        # C order: a row's sums the same bits alone and stacked (see _data.rowwise)
        values, design = np.ascontiguousarray(rows[:, rim]), self.basis[rim]
        theta = np.zeros((len(rows), self.n_parameters))
        theta[:, 0] = values.mean(axis=1)
        if self.exponential:  # least squares of log b = log c + r v on each row's positive values
            positive = values > 0
            count = positive.sum(axis=1)
            v = np.where(positive, design[:, 0], 0.0)
            logs = np.where(positive, np.log(np.where(positive, values, 1.0)), 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                v_mean, log_mean = v.sum(axis=1) / count, logs.sum(axis=1) / count
                dv = np.where(positive, design[:, 0] - v_mean[:, None], 0.0)
                slope = np.sum(dv * logs, axis=1) / np.sum(dv**2, axis=1)
            ok = (count >= 2) & np.isfinite(slope)
            theta[ok, 0] = np.exp(log_mean[ok] - slope[ok] * v_mean[ok])
            theta[ok, 1] = slope[ok]
        elif values.shape[1] > self.n_parameters:
            theta = row_products(values, np.linalg.pinv(design).T)
        if self.nonnegative and self.kind != "exponential":
            bad = np.min(self.values_rows(theta), axis=1) <= 0
            theta[bad] = 0.0
            if self.kind == "polynomial":
                theta[bad, 0] = np.maximum(values[bad].mean(axis=1), 0.0)
        bounds = self.bounds()
        theta = np.clip(theta, bounds[:, 0], bounds[:, 1])
        return theta[0] if np.ndim(target) == 1 else theta

    def rim(self, points):
        """The points in the outer 5% of the box along some axis."""
        return np.any(np.abs((points - self.centre) / self.half) >= _RIM, axis=1)

    def to_grid(self, theta, center, spread, unit):
        """The background's coefficients in the grid's units and the density's
        (``background_``), from its parameters ``theta`` (``(J,)`` or rows ``(R, J)``;
        *autograd-safe*): a polynomial's monomial coefficients (see
        :func:`polynomial_powers`), an exponential's ``[A, rate]`` of ``A exp(rate x)``,
        a user's basis's coefficients; ``x`` measured from the point where ``center``
        (the grid's standardisation's, less an origin) puts 0."""
        if self.kind == "polynomial":
            return unit * anp.dot(theta, self.monomial_map(center, spread).T)
        if self.kind == "basis":
            return unit * theta
        origin, width = self._axis(center, spread)
        amplitude = theta[..., 0] * anp.exp(-theta[..., 1] * origin / width)
        amplitude = amplitude * np.reshape(unit, np.shape(amplitude))
        return anp.stack([amplitude, theta[..., 1] / width], axis=-1)

    def to_fit(self, coefficients, center, spread, unit):
        """The parameters of the coefficients ``background_`` (inverse of :meth:`to_grid`,
        clipped into the bounds; ``(J,)`` or rows ``(R, J)``)."""
        coefficients = np.asarray(coefficients, dtype=float)
        if self.kind == "polynomial":
            theta = np.linalg.solve(self.monomial_map(center, spread), (coefficients / unit).T).T
        elif self.kind == "basis":
            theta = coefficients / unit
        else:  # the amplitude is in the density's unit, the rate in the grid's
            origin, width = self._axis(center, spread)
            rate = coefficients[..., 1] * width
            amplitude = coefficients[..., 0] / np.reshape(unit, np.shape(coefficients[..., 0]))
            theta = np.stack([amplitude * np.exp(rate * origin / width), rate], -1)
        bounds = self.bounds()
        return np.clip(theta, bounds[:, 0], bounds[:, 1])

    def _axis(self, center, spread):
        """``(origin, width)``: the grid coordinate where ``v = 0`` and ``dx / dv``."""
        return float(center[0] + spread[0] * self.centre[0]), float(spread[0] * self.half[0])

    def monomial_map(self, center, spread):
        """``M`` with ``monomial coefficients = M @ c``: the same polynomial in the grid's
        units, ``sum_j m_j prod_i x_i^{powers[j, i]}``, the grid coordinates being
        ``x = center + spread * u``."""
        origin = center + spread * self.centre  # x where v = 0
        width = spread * self.half  # dx per unit of v
        index = {tuple(power): j for j, power in enumerate(self.powers)}
        matrix = np.zeros((self.n_parameters, self.n_parameters))
        for j, power in enumerate(self.powers):
            # prod_i P_{a_i}(v_i), v_i = (x_i - origin_i) / width_i, expanded in x
            terms = {(): 1.0}
            for axis, degree in enumerate(power):
                coefficients = legendre.leg2poly(np.eye(degree + 1)[degree])
                expanded = {}
                for k, a_k in enumerate(coefficients):
                    for m in range(k + 1):
                        shift = comb(k, m) * (-origin[axis]) ** (k - m) / width[axis] ** k
                        for key, value in terms.items():
                            new = (*key, m)
                            expanded[new] = expanded.get(new, 0.0) + value * a_k * shift
                terms = expanded
            for key, value in terms.items():
                matrix[index[key], j] += value
        return matrix


# the rim: points in the outer 5% of the grid's range along some dimension
_RIM = 0.9


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
        """The loss of the zero model, or of the background alone (l2), or the target
        mass (poisson): :func:`~.rows.loss_normalisers`."""
        background = self.background
        basis = np.zeros((len(self.target), 0)) if background is None else background.basis
        exponential = background is not None and background.exponential
        return float(
            loss_normalisers(self.target, self.quadrature[None], self.loss, basis, exponential)[0]
        )

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
    graded: tuple | None = None  # a graded 1-D grid's local spacings (graded_spacing)

    @property
    def layout(self):
        return self.data.layout

    @cached_property
    def kernel(self):
        """The compiled kernel's inputs (:class:`~.rows.KernelInputs`)."""
        return KernelInputs.of(self)

    @property
    def n_points(self):
        return len(self.data.target)

    def unpack(self, theta):
        """``(log_scale, weights, means, precisions_cholesky)`` in fit coordinates."""
        return unpack(theta, self.layout, self.data.fixed_log_scale)

    def to_grid(self, theta, unpacked=None):
        """Named parameters of ``theta`` in grid units (see ``Standardisation.to_grid``)."""
        return self.standardisation.to_grid(theta, self.layout, self.data.fixed_log_scale, unpacked)

    def to_fit(self, weights, means, precisions_cholesky, scale):
        """The parameter vector of a mixture given in grid units."""
        return self.standardisation.to_fit(self.layout, weights, means, precisions_cholesky, scale)

    def width_floors(self, means):
        """The width floor at each component's mean (fit coordinates, ``(..., K, d)``), as
        ``(..., K, 1)``: on a graded grid half the grid's spacing there (a component
        narrower falls between its points; with bins ``BINNED_WIDTH_FLOOR`` of that), never
        below the bounds' floor."""
        floor = self.width_limits[0]
        means = np.asarray(means)
        if self.graded is None:
            return np.full((*means.shape[:-1], 1), floor)
        centres, spacings, _ = self.graded
        local = 0.5 * np.interp(means[..., :1], centres, spacings)
        return np.maximum(floor, BINNED_WIDTH_FLOOR * local if self.binned else local)

    def with_components(self, n_components):
        """The same data with another number of components (bounds from this grid); made
        once a number (the search asks for the same ones many times)."""
        if n_components == self.layout.n_components:
            return self
        if n_components not in self._with:
            data = self.data.with_components(n_components)
            self._with[n_components] = replace(
                self, data=data, bounds=_bounds(self.grid, data, self.width_limits)
            )
        return self._with[n_components]

    @cached_property
    def _with(self):
        return {}

    @property
    def n_mixture_parameters(self):
        return self.layout.n_parameters

    def background_to_grid(self, theta):
        """The background's coefficients in grid units and the units of ``y``
        (:meth:`Background.to_grid` of the parameters after the mixture's);
        *autograd-safe*."""
        st = self.standardisation
        return self.data.background.to_grid(
            theta[self.n_mixture_parameters :],
            st.center - st.background_origin,
            st.spread,
            st.density_unit,
        )

    def background_to_fit(self, coefficients):
        """The background's parameters from its coefficients in grid units (inverse of
        :meth:`background_to_grid`, clipped into the bounds)."""
        st = self.standardisation
        return self.data.background.to_fit(
            coefficients, st.center - st.background_origin, st.spread, st.density_unit
        )

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
    """The :class:`~.cells.Cells` of the points ``X`` under ``bins`` (None: no cells)."""
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
    as the mixture's average over its bin; ``background`` (a polynomial's name or
    degree, 'exponential' or a callable basis) adds a baseline under the mixture
    (:class:`Background`).
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
        floor = Background.of(background, grid, nonnegative=loss == "poisson", cells=fit_cells, X=X)
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
    limits, graded = _width_limits(grid)
    if cells is not None:
        limits = (BINNED_WIDTH_FLOOR * limits[0], limits[1])
    check_representable(limits[0] * standardisation.spread)
    return Problem(grid, data, standardisation, limits, _bounds(grid, data, limits), graded)


# A grid whose points float64 rounds by more than this part of their spacing has lost digits.
DIGITS_LOST = 0.01


def check_representable(floor):
    """Refuse a grid in units so small or large that the variance of a component at the
    width floor ``floor`` (grid units, per axis) under- or overflows float64: its
    covariances and precisions could not be reported."""
    with np.errstate(over="ignore", under="ignore"):
        squares = floor**2
    large = ~np.isfinite(squares)
    bad = large | (squares < np.finfo(float).tiny)
    if bad.any():
        axis = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"The grid's units along feature {axis} are too "
            f"{'large' if large[axis] else 'small'} for float64: the narrowest component it "
            f"resolves there (sd {floor[axis]:.3g}) has a variance that "
            f"{'overflows' if large[axis] else 'underflows'}, so covariances and precisions "
            "in these units cannot be represented. Rescale the grid (e.g. X / X.std(axis=0)) "
            "and scale the fitted means and covariances back."
        )


def digits_lost_message(X):
    """The warning (text, or None) for a grid that float64 rounds by more than
    ``DIGITS_LOST`` of the spacing along some axis (the median gap between its distinct
    values): values far larger than their spacing (an offset such as 1e6 + 1e-7 t) have
    lost the digits that tell points apart."""
    magnitude = np.max(np.abs(X), axis=0)
    rounding = 0.5 * np.spacing(magnitude)
    # cheap first: the mean gap bounds what the median gap can be on any sensible grid
    mean_gap = np.ptp(X, axis=0) / max(len(X) - 1, 1)
    for axis in np.flatnonzero(rounding > 1e-6 * DIGITS_LOST * mean_gap):
        gaps = np.diff(unique_values(X[:, axis]))
        step = float(np.median(gaps)) if gaps.size else 0.0
        if step > 0 and rounding[axis] > DIGITS_LOST * step:
            return (
                f"The grid's values along feature {axis} reach {magnitude[axis]:.3g} with "
                f"points about {step:.3g} apart, so float64 rounds their positions by up to "
                f"{rounding[axis]:.3g}, {rounding[axis] / step:.1%} of the spacing (an offset "
                "has cost the grid its digits), and the fit can be off by as much. Build the "
                "grid about an origin (e.g. x - 1e6 before it is rounded to float64) and add "
                "the origin to the fitted means."
            )
    return None


def warn_if_digits_lost(X):
    """Warn of :func:`digits_lost_message`'s grids."""
    message = digits_lost_message(X)
    if message is not None:
        warn_at_caller(message)


def _bounds(grid, data, limits):
    """:func:`parameter_bounds`, then the background's."""
    bounds = parameter_bounds(grid, data.layout, limits)
    if data.background is None:
        return bounds
    return np.vstack([bounds, data.background.bounds()])


def problem_of(estimator, X, y, sample_weight=None, **settings):
    """:func:`build_problem` with an estimator's ``n_components``, ``covariance_type``,
    ``loss``, ``scale``, ``bins`` and ``background`` (None for estimators without them),
    or the ``settings`` given in their place."""
    names = ("n_components", "covariance_type", "loss", "scale", "bins", "background")
    chosen = {name: getattr(estimator, name, None) for name in names}
    return build_problem(X, y, sample_weight, **{**chosen, **settings})


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
    """Smallest and largest component width allowed on a standardised grid: half the
    typical spacing (half the finest on a graded 1-D grid, :func:`graded_spacing`) and a
    hundred extents."""
    return _width_limits(grid)[0]


def _width_limits(grid):
    """:func:`width_limits` and :func:`graded_spacing` of a standardised grid."""
    typical, extent = _typical_spacing(grid)
    graded = graded_spacing(grid, typical)
    if graded is not None:
        typical = graded[2]
    return (0.5 * typical, 100.0 * extent.max()), graded


def _typical_spacing(grid):
    """The side of the cube each distinct point has to itself in the grid's bounding box
    (robust to jitter and scatter), and the box's extents."""
    extent = np.maximum(np.ptp(grid, axis=0), 1e-12)
    # rows in lexicographic order (np.unique along axis 0 sorts them far more slowly)
    rows = grid[np.lexsort(grid.T[::-1])]
    n_distinct = 1 + int(np.count_nonzero(np.any(rows[1:] != rows[:-1], axis=1)))
    return np.exp(np.mean(np.log(extent)) - np.log(n_distinct) / grid.shape[1]), extent


# A 1-D grid whose finest local spacing is below this part of its typical spacing is
# graded (log-spaced over a decade and more, refined where the lines are): its width floor
# is set by the finest part. (Random points rarely come that close: a tenth of their gaps
# averages near their mean.)
GRADED = 0.25
# The local spacing is the mean of this many neighbouring gaps, or of a tenth of them.
LOCAL_GAPS = 9


def graded_spacing(grid, typical):
    """For a graded 1-D grid, ``(centres, spacings, finest)``: the local spacing (the mean
    of ``LOCAL_GAPS``, or a tenth of all, consecutive gaps between its distinct values) at
    the centre of each run of gaps, and its least, when that is under ``GRADED`` of the
    grid's ``typical`` spacing (:func:`_typical_spacing`); else None (and in more
    dimensions, where one floor serves every axis)."""
    if grid.shape[1] != 1:
        return None
    values = unique_values(grid[:, 0])
    if values.size < 2:
        return None
    size = min(max(LOCAL_GAPS, (values.size - 1) // 10), values.size - 1)
    spacings = (values[size:] - values[:-size]) / size
    finest = float(np.min(spacings))
    if not finest < GRADED * typical:
        return None
    return 0.5 * (values[size:] + values[:-size]), spacings, finest


def parameter_bounds(grid, layout, width_limits):
    """Box bounds that keep every parameter finite and meaningful.

    Widths range from half the typical grid spacing (the side of the cell each
    distinct point has in the grid's bounding box; the finest part's on a graded
    grid, :func:`width_limits`), below which a
    component falls between grid points and is fixed by one or two values
    only (in cross-validation it would hide between training points), to a
    hundred times the grid's extent; means stay within two extents of it.
    """
    low, high = grid.min(axis=0), grid.max(axis=0)
    extent = np.maximum(high - low, 1e-12)
    min_width, max_width = width_limits
    log_u_low, log_u_high = -np.log(max_width), -np.log(min_width)

    d, k = layout.n_features, layout.n_components
    offsets = layout.offsets
    bounds = np.empty((offsets[4], 2))
    bounds[: offsets[1]] = (-100.0, 100.0)  # the log scale, when fitted
    bounds[offsets[1] : offsets[2]] = (-40.0, 40.0)  # the logits
    bounds[offsets[2] : offsets[3], 0] = np.tile(low - 2 * extent, k)
    bounds[offsets[2] : offsets[3], 1] = np.tile(high + 2 * extent, k)
    cov = layout.covariance_type
    # a row per factor: the logs of its diagonal, then +-1 / min_width off it
    chol = bounds[offsets[3] :].reshape(k if own_covariances(cov) else 1, -1, 2)
    chol[...] = (log_u_low, log_u_high)
    if cov in MATRIX_TYPES:
        rows, cols = triu_indices(d)
        chol[:, rows != cols] = (-1.0 / min_width, 1.0 / min_width)
    return bounds
