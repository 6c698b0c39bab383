"""Histograms fitted with their bins integrated (``DensityGMM(bins=...)``, issue #14).

- the kernel's binned Gauss-Newton matrix is autograd's exact Hessian at an
  exact fit, every covariance type, 1-D and 2-D, both losses;
- ``bins=None`` is the centre model, unchanged;
- coarse histograms (bins 1.5-2 component sds wide) of known mixtures: the
  integrated model recovers them, where the centre model's variances are
  inflated by Sheppard's h^2 / 12;
- predictions are bin averages, scores compare like with like, standard errors
  and information criteria use the binned likelihood; errors and warnings.
"""

import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture._gaussian_mixture import _compute_precision_cholesky
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from skdensityfit import DensityGMM, fit_many, histogram_to_grid
from skdensityfit._engine.problem import build_problem
from skdensityfit._engine.rows import component_shares_of, derivatives_of, models_of
from skdensityfit._model.cells import cells_from_edges, log_cell_masses
from skdensityfit._model.reference import log_model_of, objective, objective_hessian

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
# expected counts are no integers, and small test grids cut densities at their edges
pytestmark = [
    pytest.mark.filterwarnings("ignore:loss='poisson' reads y as counts"),
    pytest.mark.filterwarnings("ignore:The fitted mixture at the edge"),
]


def _grid(d):
    c = np.linspace(-3, 3, 9)
    if d == 1:
        return c[:, None]
    return np.stack(np.meshgrid(c, c[:7], indexing="ij"), -1).reshape(-1, 2)


def _binned_problem(d, covariance_type, loss, n_components=2, seed=0):
    rng = np.random.default_rng(seed)
    X = _grid(d)
    y = rng.uniform(0.1, 1.0, len(X))
    problem = build_problem(
        X,
        y,
        None,
        n_components=n_components,
        covariance_type=covariance_type,
        loss=loss,
        scale=None,
        bins="infer",
    )
    theta = rng.uniform(-0.5, 0.5, problem.layout.n_parameters)
    return problem, theta


@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 2])
def test_binned_gauss_newton_is_the_hessian_at_an_exact_fit(d, covariance_type, loss):
    """The kernel's binned Gauss-Newton matrix equals autograd's exact Hessian of the
    reference objective where the model fits exactly (tests/test_kernel.py checks the
    loss, gradient and matrix at random parameters); the mass shares sum to one."""
    problem, theta = _binned_problem(d, covariance_type, loss)
    data = problem.data
    model = np.exp(log_model_of(theta, data))
    np.testing.assert_allclose(models_of(problem.kernel, theta[None])[0], model, rtol=1e-11)
    exact = problem.kernel.with_densities(model[None])
    loss_value, gradient, matrix = derivatives_of(exact, theta)
    hessian = objective_hessian(theta, replace(data, target=model))
    assert abs(loss_value - objective(theta, replace(data, target=model))) <= 1e-12
    np.testing.assert_allclose(gradient, 0.0, atol=1e-9 * np.abs(matrix).max())
    np.testing.assert_allclose(matrix, hessian, rtol=1e-7, atol=1e-9 * np.abs(hessian).max())
    shares = component_shares_of(problem.kernel, theta[None])[0]
    assert shares.sum() == pytest.approx(1.0) and np.all(shares > 0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bins_none_is_the_centre_model(covariance_type):
    X = _grid(2)
    y = np.exp(-0.5 * np.sum(X**2, axis=1))
    plain = build_problem(
        X, y, None, n_components=1, covariance_type=covariance_type, loss="l2", scale=None
    )
    assert plain.data.cells is None
    a = DensityGMM(covariance_type=covariance_type, random_state=0).fit(X, y)
    b = DensityGMM(covariance_type=covariance_type, bins=None, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    assert b.bin_edges_ is None
    np.testing.assert_array_equal(b.predict(X), a.scale_ * np.exp(a.score_samples(X)))


# --------------------------------------------------------------------------
# recovery from coarse histograms
# --------------------------------------------------------------------------
TRUE_2D = {
    "full": np.array([[[1.0, 0.4], [0.4, 0.8]], [[1.2, -0.3], [-0.3, 1.0]]]),
    "tied": np.array([[1.0, 0.3], [0.3, 0.9]]),
    "diag": np.array([[1.0, 0.7], [1.3, 1.0]]),
    "spherical": np.array([1.0, 1.2]),
}


def _expected_counts_2d(covariance_type, n=5000):
    edges = [np.arange(-6, 10.01, 1.5), np.arange(-5, 7.01, 2.0)]  # 1.5-2 sds wide
    X, _ = histogram_to_grid(np.zeros((edges[0].size - 1, edges[1].size - 1)), edges)
    means, weights = np.array([[0.0, 0.0], [4.0, 1.0]]), np.array([0.55, 0.45])
    covariances = TRUE_2D[covariance_type]
    prec_chol = _compute_precision_cholesky(covariances, covariance_type)
    masses = np.exp(log_cell_masses(cells_from_edges(X, edges), means, prec_chol, covariance_type))
    return X, n * masses @ weights, edges, (weights, means, covariances)


@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_recovery_from_coarse_2d_histogram(covariance_type, loss):
    X, y, edges, (weights, means, covariances) = _expected_counts_2d(covariance_type)
    fits = {}
    for bins in (None, edges):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the centre model's fit is poor by design
            fits[bins is None] = DensityGMM(
                2, covariance_type=covariance_type, loss=loss, bins=bins, random_state=0
            ).fit(X, y)
    integrated, centre = fits[False], fits[True]
    np.testing.assert_allclose(integrated.means_, means, atol=1e-4)
    np.testing.assert_allclose(integrated.covariances_, covariances, atol=1e-4)
    np.testing.assert_allclose(integrated.weights_, weights, atol=1e-4)
    assert integrated.score(X, y) > 1 - 1e-9
    # the centre model: variances inflated by about h^2 / 12 (0.19 and 0.33 here)
    assert np.abs(centre.covariances_ - covariances).max() > 0.1


@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_recovery_from_coarse_1d_histogram(covariance_type, loss):
    edges = np.arange(-8, 14.01, 1.5)
    weights, means, sds = np.array([0.6, 0.4]), np.array([0.0, 5.0]), np.array([1.0, 1.5])
    cdf = weights @ norm.cdf(edges[None], means[:, None], sds[:, None])
    X, y = histogram_to_grid(10000 * np.diff(cdf), edges)
    for bins, tolerance in ((None, None), (edges, 1e-5), ("infer", 1e-5)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gmm = DensityGMM(
                2, covariance_type=covariance_type, loss=loss, bins=bins, random_state=0
            ).fit(X, y)
        error = np.abs(np.sqrt(gmm.covariances_.ravel()) / sds - 1).max()
        if tolerance is None:
            assert error > 0.05  # Sheppard: sqrt(1 + 1.5^2 / 12) - 1 = 0.09
        else:
            assert error < tolerance
            np.testing.assert_allclose(gmm.means_.ravel(), means, atol=1e-5)
            assert gmm.scale_ == pytest.approx(10000 * 1.5, rel=1e-6)  # counts x bin width


@pytest.mark.parametrize("d", [1, 2])
def test_sampled_histogram_within_its_noise(d):
    """One seed of samples, bins 2 sds wide: the integrated sds within 3 standard errors."""
    rng = np.random.default_rng(3)
    n = 20000
    cov = np.eye(1) if d == 1 else np.array([[1.0, 0.5], [0.5, 1.0]])
    samples = rng.multivariate_normal(np.full(d, 0.1), cov, size=n)
    edges = [np.arange(-7.3, 7.4, 2.0)] * d
    counts, edges = np.histogramdd(samples, bins=edges)
    X, y = histogram_to_grid(counts, edges)
    keep = y > 0  # empty bins left out (no warning: the least count kept is many)
    X, y = X[keep], y[keep]
    integrated = DensityGMM(loss="poisson", bins=edges, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        centre = DensityGMM(loss="poisson", random_state=0).fit(X, y)
    true_sd = np.sqrt(np.diag(cov))
    sd_error = np.sqrt(np.diag(np.atleast_2d(integrated.covariances_[0]))) / true_sd - 1
    centre_error = np.sqrt(np.diag(np.atleast_2d(centre.covariances_[0]))) / true_sd - 1
    standard_error = 1.0 / np.sqrt(2 * n)  # of a sd estimated from n samples
    assert np.all(np.abs(sd_error) < 4 * standard_error * 1.3)  # bins cost some information
    assert np.all(centre_error > 0.1)  # Sheppard: 0.155
    errors = integrated.standard_errors(X, y)
    # the binned likelihood's errors of the means: about sd / sqrt(n), a little larger
    ratio = errors["means"].ravel() / (true_sd / np.sqrt(n))
    assert np.all((ratio > 0.95) & (ratio < 1.3))
    assert integrated.bic(X, y) > integrated.aic(X, y)


# --------------------------------------------------------------------------
# predictions, scores, criteria, errors and warnings
# --------------------------------------------------------------------------
def test_predictions_are_bin_averages():
    X, y, edges, _ = _expected_counts_2d("full")
    gmm = DensityGMM(2, loss="poisson", bins=edges, random_state=0).fit(X, y)
    np.testing.assert_allclose(gmm.predict(X), y, rtol=1e-5)
    np.testing.assert_allclose(gmm.predict_density(X[::3]), y[::3], rtol=1e-5)
    assert [e.tolist() for e in gmm.bin_edges_] == [e.tolist() for e in edges]
    # the pdf at the points stays score_samples; it differs from the bin averages
    pdf = gmm.scale_ * np.exp(gmm.score_samples(X))
    assert np.abs(pdf / gmm.predict(X) - 1).max() > 0.05
    # any point of a bin predicts that bin's average
    np.testing.assert_allclose(gmm.predict(X + 0.3), gmm.predict(X), rtol=1e-12)
    with pytest.raises(ValueError, match="score_samples"):
        gmm.predict(np.array([[100.0, 0.0]]))
    assert gmm.score(X, y) > 1 - 1e-9


def test_infer_needs_a_full_grid_and_edges_must_match():
    X, y = histogram_to_grid(np.arange(1.0, 7.0).reshape(2, 3), [[0, 1, 2], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match="full rectilinear grid"):
        DensityGMM(bins="infer").fit(X[1:], y[1:])
    with pytest.raises(ValueError, match="one array of edges per dimension"):
        DensityGMM(bins=[[0, 1, 2]]).fit(X, y)
    with pytest.raises(ValueError, match="outside the edges"):
        DensityGMM(bins=[[0, 1, 2], [0, 1, 2]]).fit(X, y)
    with pytest.raises(ValueError, match="bins"):
        DensityGMM(bins="centres").fit(X, y)


def test_poisson_warns_of_values_that_are_not_counts():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=30000)
    density, edges = np.histogram(samples, bins=40, range=(-5, 5), density=True)
    counts, _ = np.histogram(samples, bins=40, range=(-5, 5))
    X, y = histogram_to_grid(density, edges)
    with pytest.warns(UserWarning, match="counts per bin"):
        gmm = DensityGMM(loss="poisson", bins=edges, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="sample_weight"):
        gmm.standard_errors(X, y)
    with pytest.warns(UserWarning, match="counts per bin"):
        gmm.bic(X, y)
    # the density with the bin sizes as sample_weight: the errors of the counts
    widths = np.diff(edges) * len(samples)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_density = gmm.standard_errors(X, y, sample_weight=widths)["means"]
        gmm_counts = DensityGMM(loss="poisson", bins=edges, random_state=0).fit(X, counts)
        from_counts = gmm_counts.standard_errors(X, counts)["means"]
    np.testing.assert_allclose(from_density, from_counts, rtol=1e-3)
    assert from_counts[0, 0] == pytest.approx(1 / np.sqrt(len(samples)), rel=0.1)


def test_in_pipeline_grid_search_and_fit_many():
    X, y, edges, _ = _expected_counts_2d("diag")
    search = GridSearchCV(
        DensityGMM(covariance_type="diag", loss="poisson", bins=edges, random_state=0),
        {"n_components": [1, 2]},
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    assert search.best_params_ == {"n_components": 2}
    pipe = make_pipeline(DensityGMM(2, covariance_type="diag", bins=edges, random_state=0))
    assert pipe.fit(X, y).score(X, y) > 1 - 1e-9
    Y = np.vstack([y, 2 * y])
    result = fit_many(X, Y, DensityGMM(2, covariance_type="diag", bins=edges, random_state=0))
    np.testing.assert_allclose(result.scale[1], 2 * result.scale[0], rtol=1e-6)


def test_empty_bins_left_out_and_missing_centres_under_infer_are_warned_of():
    """A new user's review: a histogram with its empty bins dropped (the docs said bins
    may be left out) was fitted with every width too large, silently; bins='infer' on
    centres with some missing widened the bins beside each gap, silently."""
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(0, 1, 300), rng.normal(5, 0.7, 200)])
    counts, edges = np.histogram(samples, bins=np.linspace(-6, 10, 161))
    X, y = histogram_to_grid(counts, edges)
    full = DensityGMM(2, loss="poisson", bins=edges, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        full.fit(X, y)  # every bin, zeros too: no warning
    kept = y > 0
    dropped = DensityGMM(2, loss="poisson", bins=edges, random_state=0)
    with pytest.warns(UserWarning, match="81 of the 160 bins of bins= hold no grid point"):
        dropped.fit(X[kept], y[kept])
    assert dropped.scale_ > full.scale_  # the bias the warning names: mass put in the gaps
    with pytest.warns(UserWarning, match="empty bins left out .* in 2 of 2 densities"):
        result = fit_many(X[kept], np.vstack([y[kept]] * 2), dropped)
    assert all("hold no grid point" in m for m in result.messages)

    centres = 0.5 * (edges[1:] + edges[:-1])
    pdf = np.diff(norm.cdf(edges, 2.0, 1.5)) / np.diff(edges)
    gappy = np.delete(np.arange(160), [40, 41, 90, 120])
    with pytest.warns(UserWarning, match=r"leave 3 gap\(s\) .*near x = -1.9, 3.05, 6.05"):
        DensityGMM(1, bins="infer", random_state=0).fit(centres[gappy], pdf[gappy])
    log_edges = np.geomspace(1.0, 100.0, 41)  # unequal bins, none missing: no warning
    log_centres = np.sqrt(log_edges[1:] * log_edges[:-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DensityGMM(1, bins="infer", random_state=0).fit(log_centres, norm.pdf(log_centres, 30, 10))
