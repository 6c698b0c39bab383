"""Cells of histogram bins and Gaussian cell masses (skdensityfit._model.cells)."""

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import multivariate_normal, norm

import skdensityfit._model.cells as cells_module
from skdensityfit._model.cells import (
    cells_from_edges,
    histogram_to_grid,
    infer_cells,
    log_cell_masses,
    log_cell_masses_raw,
    log_cell_masses_reference,
    log_ndtr_diff,
    make_cells,
)
from skdensityfit._model.covariance import raw_from_cholesky
from skdensityfit._model.covariance import raw_from_upper as _raw_from_upper

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

# log(Phi(b) - Phi(a)) from mpmath at 60 digits (/work/proto-cells/mp_table.py:
# mpmath.log(ncdf(b) - ncdf(a)), mirrored to the lower tail)
MPMATH_LOG_MASSES = [
    (-1.0, 1.0, -0.38171514630212607227),
    (0.0, 0.5, -1.6530635142555676288),
    (30.0, 30.5, -454.32124422188508635),
    (30.0, 31.0, -454.32124395634325204),
    (35.0, 36.0, -616.97510126192251385),
    (37.0, 38.0, -689.03058557689059365),
    (-40.0, -39.0, -765.08315656437754441),
    (-38.5, -37.5, -707.6689893175071911),
    (39.0, 40.0, -765.08315656437754441),
    (-39.9, -30.0, -454.32124395634319711),
    (5.0, 5.01, -18.049021013274982152),
    (35.0, 35.0001, -622.63102839639631092),
    (-30.0, -29.99999, -462.43171399447943248),
    (0.1, 0.100000001, -21.647204370727439747),
    (-0.001, 0.002, -6.7280820235185500817),
    (-2.0, 1e-12, -0.73971509285149955386),
    (1.5, 1.50001, -13.556871498175641611),
    (-8.0, 8.0, -1.2441921148543575987e-15),
    (3.0, 30.0, -6.6077262215103495433),
    (-0.3, -0.29, -5.5676250232495537533),
    (0.2, 1.7, -0.9777012760967100893),
    (-37.0, 36.0, 0.0),
    (10.0, 10.5, -53.236969371752501624),
    (20.0, 20.001, -207.83667731140837173),
]


def _upper_of_precision(precision):
    """Upper-triangular U with U U^T = precision (scikit-learn's convention)."""
    return np.linalg.cholesky(precision[::-1, ::-1])[::-1, ::-1]


def _random_raw(rng, covariance_type, n_components, d, scale=1.0):
    if covariance_type in ("full", "tied"):
        count = n_components if covariance_type == "full" else 1
        a = rng.normal(size=(count, d, d))
        precisions = scale**2 * (a @ np.swapaxes(a, 1, 2) + np.eye(d))
        uppers = np.array([_upper_of_precision(p) for p in precisions])
        return _raw_from_upper(uppers if covariance_type == "full" else uppers[0]).ravel()
    size = n_components * d if covariance_type == "diag" else n_components
    return rng.normal(size=size) * 0.4 + np.log(scale)


# --------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------
def test_infer_cells_1d_nonuniform_any_order():
    centres = np.array([0.0, 1.0, 3.0, 4.0])
    order = np.array([2, 0, 3, 1])
    cells = infer_cells(centres[order])
    expected_lo = np.array([-0.5, 0.5, 2.0, 3.5])
    expected_hi = np.array([0.5, 2.0, 3.5, 4.5])
    np.testing.assert_allclose(cells.lo[:, 0], expected_lo[order])
    np.testing.assert_allclose(cells.hi[:, 0], expected_hi[order])
    np.testing.assert_allclose(cells.volume, (expected_hi - expected_lo)[order])


def test_infer_cells_2d_shuffled_product_grid():
    rng = np.random.default_rng(0)
    x0, x1 = np.array([0.0, 0.5, 1.0]), np.array([-2.0, 0.0, 1.0, 5.0])
    X = np.stack(np.meshgrid(x0, x1, indexing="ij"), -1).reshape(-1, 2)
    perm = rng.permutation(len(X))
    cells = infer_cells(X[perm])
    edges0, edges1 = np.array([-0.25, 0.25, 0.75, 1.25]), np.array([-3.0, -1.0, 0.5, 3.0, 7.0])
    i0 = np.searchsorted(x0, X[perm, 0])
    i1 = np.searchsorted(x1, X[perm, 1])
    np.testing.assert_allclose(cells.lo, np.column_stack([edges0[i0], edges1[i1]]))
    np.testing.assert_allclose(cells.hi, np.column_stack([edges0[i0 + 1], edges1[i1 + 1]]))
    np.testing.assert_allclose(cells.volume, np.prod(cells.hi - cells.lo, axis=1))
    # every point lies in its own cell
    assert np.all((cells.lo < X[perm]) & (X[perm] < cells.hi))


def test_infer_cells_tolerates_float_jitter():
    X = np.linspace(0, 1, 5)
    X2 = np.stack(np.meshgrid(X, X, indexing="ij"), -1).reshape(-1, 2)
    X2[3, 0] += 1e-15
    cells = infer_cells(X2)
    np.testing.assert_allclose(cells.volume, 0.25**2)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.column_stack([np.arange(4.0), np.zeros(4)]), "dimension 1 has the single value"),
        (np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), "full rectilinear grid"),
        (np.array([0.0, 1.0, 1.0, 2.0]), "points 1 and 2 are the same node"),
        (np.array([0.0, np.nan]), "must be finite"),
    ],
)
def test_infer_cells_errors(X, message):
    with pytest.raises(ValueError, match=message):
        infer_cells(X)


def test_cells_from_edges_assigns_points_like_histogramdd():
    edges = [np.array([0.0, 1.0, 1.5, 4.0]), np.array([-1.0, 0.0, 2.0])]
    X = np.array([[0.0, -1.0], [1.0, -0.5], [4.0, 2.0], [1.2, 1.9], [3.0, -0.5]])
    cells = cells_from_edges(X, edges)
    for point, low, high in zip(X, cells.lo, cells.hi, strict=True):
        counts, _ = np.histogramdd(point[None], bins=edges)
        (i0,), (i1,) = np.nonzero(counts)
        np.testing.assert_array_equal(low, [edges[0][i0], edges[1][i1]])
        np.testing.assert_array_equal(high, [edges[0][i0 + 1], edges[1][i1 + 1]])
    # 1-D: a single array of edges and points of shape (n,)
    one = cells_from_edges(np.array([0.5, 2.0, 3.9]), np.array([0.0, 1.0, 3.0, 4.0]))
    np.testing.assert_array_equal(one.lo[:, 0], [0.0, 1.0, 3.0])
    np.testing.assert_array_equal(one.volume, [1.0, 2.0, 1.0])


@pytest.mark.parametrize(
    ("X", "edges", "message"),
    [
        (np.array([0.5, 2.0, 4.5, 5.0]), np.array([0.0, 1.0, 4.0]), r"point 2 of X, \[4.5\]"),
        (np.array([0.5, 0.7]), np.array([0.0, 1.0, 4.0]), "points 0 and 1 of X"),
        (np.array([[0.5, 0.5]]), [np.array([0.0, 1.0])], "one array of edges per dimension"),
        (np.array([0.5]), np.array([0.0, 1.0, 1.0]), "strictly increasing"),
        (np.array([0.5]), np.array([0.0, np.inf]), "must be finite"),
    ],
)
def test_cells_from_edges_errors(X, edges, message):
    with pytest.raises(ValueError, match=message):
        cells_from_edges(X, edges)


def test_histogram_to_grid_1d_and_2d():
    rng = np.random.default_rng(2)
    samples = rng.normal(size=(500, 2))
    counts, edges = np.histogram(samples[:, 0], bins=7)
    X, y = histogram_to_grid(counts, edges)
    assert X.shape == (7,)
    np.testing.assert_allclose(X, 0.5 * (edges[1:] + edges[:-1]))
    np.testing.assert_array_equal(y, counts)
    counts2, edges2 = np.histogramdd(samples, bins=(4, 5))
    X2, y2 = histogram_to_grid(counts2, edges2)
    assert X2.shape == (20, 2)
    # C order: the last dimension varies fastest
    np.testing.assert_allclose(X2[:5, 0], X2[0, 0])
    np.testing.assert_array_equal(y2, counts2.ravel())
    # the cells of the centres are the bins (uniform bins: infer and edges agree)
    by_edges = cells_from_edges(X2, edges2)
    inferred = infer_cells(X2)
    np.testing.assert_allclose(by_edges.lo, inferred.lo, atol=1e-12)
    np.testing.assert_allclose(by_edges.hi, inferred.hi, atol=1e-12)
    with pytest.raises(ValueError, match="pass the two outputs"):
        histogram_to_grid(counts2[:3], edges2)


def test_cells_standardised_keeps_masses():
    rng = np.random.default_rng(3)
    cells = infer_cells(np.stack(np.meshgrid(np.arange(4.0), np.arange(3.0)), -1).reshape(-1, 2))
    mean, scale = np.array([1.5, 1.0]), np.array([2.0, 0.5])
    means = rng.normal(size=(2, 2)) + 1
    upper = np.array([_upper_of_precision(np.array([[2.0, 0.5], [0.5, 1.0]]))] * 2)
    original = log_cell_masses(cells, means, upper, "full", n_nodes=12)
    standard = log_cell_masses(
        cells.standardised(mean, scale),
        (means - mean) / scale,
        upper * scale[None, :, None],
        "full",
        n_nodes=12,
    )
    np.testing.assert_allclose(standard, original, rtol=1e-10)


# --------------------------------------------------------------------------
# log(Phi(b) - Phi(a))
# --------------------------------------------------------------------------
def test_log_ndtr_diff_against_mpmath():
    a, b, expected = (np.array(column) for column in zip(*MPMATH_LOG_MASSES, strict=True))
    got = log_ndtr_diff(a, b)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-15)
    # masses down to 1e-300 and below stay finite and exact in log space
    assert np.all(np.isfinite(got))


def test_log_ndtr_diff_against_scipy_where_accurate():
    rng = np.random.default_rng(4)
    a = rng.uniform(-6, 6, size=2000)
    b = a + rng.uniform(0.05, 4, size=a.size)
    # scipy in the form that has no cancellation for each case
    lower = np.log(norm.cdf(b) - norm.cdf(a))
    upper = np.log(norm.sf(a) - norm.sf(b))
    expected = np.where(a > 0, upper, lower)
    np.testing.assert_allclose(log_ndtr_diff(a, b), expected, rtol=1e-11)


def test_log_ndtr_diff_infinite_and_narrow():
    assert log_ndtr_diff(-np.inf, np.inf) == 0.0
    np.testing.assert_allclose(log_ndtr_diff(-np.inf, -38.0), norm.logcdf(-38.0), rtol=1e-14)
    np.testing.assert_allclose(log_ndtr_diff(5.0, np.inf), norm.logsf(5.0), rtol=1e-14)
    # narrow cells: 100x narrower than the sd, at the centre and in both tails
    for m in (0.0, 1.3, -7.0, 33.0):
        w = 1e-2 / (1 + abs(m)) * np.array([0.999, 1.001])  # just either side of the series switch
        got = log_ndtr_diff(m - w / 2, m + w / 2)
        # midpoint value with its Taylor correction (truncation error below 1e-17 here)
        he2, he4 = m * m - 1, m**4 - 6 * m * m + 3
        expected = np.log(w) + norm.logpdf(m) + np.log1p(w**2 * he2 / 24 + w**4 * he4 / 1920)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


# --------------------------------------------------------------------------
# Cell masses
# --------------------------------------------------------------------------
def test_exact_masses_1d_match_norm_cdf_and_sum_to_one():
    edges = np.linspace(-8, 9, 35)
    cells = cells_from_edges(0.5 * (edges[1:] + edges[:-1]), edges)
    means = np.array([[0.3], [-1.0]])
    sds = np.array([0.7, 2.0])
    log_mass = log_cell_masses(cells, means, 1 / sds, "spherical")
    expected = norm.cdf(edges[1:, None], means[:, 0], sds) - norm.cdf(
        edges[:-1, None], means[:, 0], sds
    )
    np.testing.assert_allclose(np.exp(log_mass), expected, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(
        np.exp(log_mass).sum(axis=0),
        norm.cdf(9.0, means[:, 0], sds) - norm.cdf(-8.0, means[:, 0], sds),
    )


def test_narrow_component_inside_one_cell():
    # a component 100x narrower than its cell: all the mass in one cell, none lost
    edges = np.arange(-3.0, 4.0)
    cells = cells_from_edges(0.5 * (edges[1:] + edges[:-1]), edges)
    sd = 0.01
    log_mass = log_cell_masses(cells, np.array([[0.52]]), np.array([1 / sd]), "spherical")[:, 0]
    np.testing.assert_allclose(log_mass[3], np.log(norm.cdf(0.48 / sd) - norm.cdf(-0.52 / sd)))
    # neighbours at z = 48 to 152 from the mean: finite, exact in log space
    np.testing.assert_allclose(log_mass[4], norm.logsf(0.48 / sd), rtol=1e-12)
    np.testing.assert_allclose(log_mass[2], norm.logcdf(-0.52 / sd), rtol=1e-12)
    assert np.all(np.isfinite(log_mass))


def test_diag_is_product_of_1d():
    rng = np.random.default_rng(5)
    lo = rng.normal(size=(10, 3))
    cells = make_cells(lo, lo + rng.uniform(0.1, 3.0, size=lo.shape))
    means = rng.normal(size=(2, 3))
    factors = np.exp(rng.normal(size=(2, 3)) * 0.5)
    log_mass = log_cell_masses(cells, means, factors, "diag")
    sds = 1 / factors
    expected = np.sum(
        np.log(
            norm.cdf(cells.hi[:, None, :], means, sds) - norm.cdf(cells.lo[:, None, :], means, sds)
        ),
        axis=2,
    )
    np.testing.assert_allclose(log_mass, expected, rtol=1e-10)


@pytest.mark.parametrize("rule", ["hybrid", "tensor"])
def test_cubature_against_dblquad(rule):
    cov = np.array([[1.0, 0.9], [0.9, 1.0]])
    mean = np.array([0.2, -0.1])
    upper = _upper_of_precision(np.linalg.inv(cov))
    lo = np.array([[0.0, 0.0], [1.0, -1.0], [2.0, 2.0], [-0.5, 0.25]])
    cells = make_cells(lo, lo + np.array([1.0, 1.0]))
    mvn = multivariate_normal(mean, cov)
    expected = [
        integrate.dblquad(
            lambda x1, x0: mvn.pdf([x0, x1]), lo_[0], hi_[0], lo_[1], hi_[1], epsabs=1e-13
        )[0]
        for lo_, hi_ in zip(cells.lo, cells.hi, strict=True)
    ]
    got = np.exp(log_cell_masses(cells, mean[None], upper[None], "full", n_nodes=16, rule=rule))
    np.testing.assert_allclose(got[:, 0], expected, rtol=1e-9)
    default = np.exp(log_cell_masses(cells, mean[None], upper[None], "full", rule=rule))
    np.testing.assert_allclose(default[:, 0], expected, rtol=1e-4)


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("rho", [0.0, 0.9])
def test_cubature_error_shrinks_with_nodes_and_masses_sum_to_one(width, rho):
    cov = np.array([[1.0, rho], [rho, 1.0]])
    upper = _upper_of_precision(np.linalg.inv(cov))[None]
    mean = np.array([[0.13, -0.27]])
    c = np.arange(-7, 7 + 1e-9, width) + 0.37 * width
    cells = infer_cells(np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2))
    ref = np.exp(log_cell_masses(cells, mean, upper, "full", n_nodes=24))[:, 0]
    tensor = np.exp(log_cell_masses(cells, mean, upper, "full", n_nodes=24, rule="tensor"))[:, 0]
    big = ref > 1e-3 * ref.max()
    np.testing.assert_allclose(tensor[big], ref[big], rtol=1e-12)
    np.testing.assert_allclose(ref.sum(), 1.0, rtol=1e-9)
    errors = [
        np.max(
            np.abs(
                np.exp(log_cell_masses(cells, mean, upper, "full", n_nodes=m))[big, 0] / ref[big]
                - 1
            )
        )
        for m in (2, 4, 8)
    ]
    assert errors[0] > errors[1] > errors[2] or errors[2] < 1e-13
    assert errors[2] < 1e-6  # the bound measured by benchmarks/bench_histograms.py


def test_chunks_give_the_same_masses(monkeypatch):
    rng = np.random.default_rng(6)
    lo = rng.normal(size=(50, 2))
    cells = make_cells(lo, lo + rng.uniform(0.1, 2.5, size=lo.shape))
    means = rng.normal(size=(3, 2))
    raw = _random_raw(rng, "full", 3, 2)
    whole = log_cell_masses_raw(cells, means, raw, "full")
    monkeypatch.setattr(cells_module, "CHUNK_ELEMENTS", 500)
    chunked = log_cell_masses_raw(cells, means, raw, "full")
    np.testing.assert_allclose(chunked, whole, rtol=1e-14)


def test_sklearn_convention_matches_raw():
    rng = np.random.default_rng(7)
    lo = rng.normal(size=(6, 2))
    cells = make_cells(lo, lo + rng.uniform(0.1, 2.0, size=lo.shape))
    means = rng.normal(size=(2, 2))
    uppers = np.array([_upper_of_precision(np.array([[2.0, 0.3], [0.3, 1.0]]) * s) for s in (1, 3)])
    for cov, factors in (
        ("full", uppers),
        ("tied", uppers[0]),
        ("diag", np.array([[1.0, 2.0], [0.5, 3.0]])),
        ("spherical", np.array([1.5, 0.7])),
    ):
        raw = raw_from_cholesky(factors, cov)
        np.testing.assert_allclose(
            log_cell_masses(cells, means, factors, cov),
            log_cell_masses_raw(cells, means, raw.ravel(), cov),
        )


# --------------------------------------------------------------------------
# Against the autograd reference (the kernel's cell masses are tested against it too)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("where", ["random", "tail"])
def test_masses_match_the_reference(covariance_type, d, where):
    rng = np.random.default_rng(8 + d)
    k = 2
    raw = _random_raw(rng, covariance_type, k, d)
    means = rng.normal(size=(k, d))
    lo = rng.normal(size=(7, d)) * 2
    hi = lo + rng.uniform(0.05, 2.0, size=(7, d))
    if where == "tail":  # cells 8 to 30 sds from the components (masses down to ~1e-200)
        shift = rng.choice([-1.0, 1.0], size=(7, 1)) * rng.uniform(3.0, 8.0, size=(7, 1))
        lo, hi = lo + shift, hi + shift
        raw = raw + np.where(_diag_mask(covariance_type, k, d), np.log(2.5), 0.0)
    cells = make_cells(lo, hi)
    log_mass = log_cell_masses_raw(cells, means, raw, covariance_type)
    reference = log_cell_masses_reference(cells, means, raw, covariance_type)
    np.testing.assert_allclose(log_mass, reference, rtol=1e-12)
    if where == "tail":
        assert log_mass.min() < -30


def _diag_mask(covariance_type, k, d):
    """True on the raw values that are logs of diagonal factors."""
    if covariance_type in ("diag", "spherical"):
        return np.ones(k * d if covariance_type == "diag" else k, dtype=bool)
    rows, cols = np.triu_indices(d)
    per = rows == cols
    return np.tile(per, k if covariance_type == "full" else 1)


@pytest.mark.parametrize("rule", ["hybrid", "tensor"])
def test_both_cubature_rules_match_the_reference(rule):
    rng = np.random.default_rng(9)
    raw = _random_raw(rng, "full", 2, 2)
    means = rng.normal(size=(2, 2))
    lo = rng.normal(size=(5, 2))
    cells = make_cells(lo, lo + rng.uniform(0.1, 3.0, size=lo.shape))
    np.testing.assert_allclose(
        log_cell_masses_raw(cells, means, raw, "full", rule=rule, n_nodes=3),
        log_cell_masses_reference(cells, means, raw, "full", rule=rule, n_nodes=3),
        rtol=1e-12,
    )


# --------------------------------------------------------------------------
# Input errors
# --------------------------------------------------------------------------
def test_mass_input_errors():
    cells = make_cells(np.zeros((2, 2)), np.ones((2, 2)))
    means = np.zeros((1, 2))
    with pytest.raises(ValueError, match="must have 3 values"):
        log_cell_masses_raw(cells, means, np.zeros(2), "full")
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        log_cell_masses_raw(cells, means, np.zeros(3), "banana")
    with pytest.raises(TypeError, match="must be a Cells object"):
        log_cell_masses_raw((np.zeros((2, 2)), np.ones((2, 2))), means, np.zeros(3), "full")
    with pytest.raises(ValueError, match="means must have shape"):
        log_cell_masses_raw(cells, np.zeros((1, 3)), np.zeros(3), "full")
    with pytest.raises(ValueError, match="rule must be one of"):
        log_cell_masses_raw(cells, means, np.zeros(3), "full", rule="simpson")
    with pytest.raises(ValueError, match="needs finite cell edges"):
        log_cell_masses_raw(
            make_cells(np.array([[-np.inf, 0.0]]), np.ones((1, 2))), means, np.zeros(3), "full"
        )
    with pytest.raises(ValueError, match="lo < hi"):
        make_cells(np.ones((2, 2)), np.ones((2, 2)))
