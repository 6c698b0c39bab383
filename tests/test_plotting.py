"""plot_fit: what is drawn, and the errors."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.exceptions import NotFittedError

from skdensityfit import DensityGMM, DensityGMMCV, make_writeup_problem, plot_fit
from skdensityfit._examples import mixture_density

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def writeup():
    grid, density, _ = make_writeup_problem()
    return DensityGMM(n_components=2, random_state=0).fit(grid, density), grid, density


WEIGHTS_2D = np.array([0.5, 0.3, 0.2])
MEANS_2D = np.array([[-4.0, -3.0], [1.0, 2.0], [5.0, -4.0]])
COVARIANCES_2D = np.array(
    [[[2.0, 0.8], [0.8, 1.0]], [[1.0, 0.0], [0.0, 3.0]], [[1.5, -0.6], [-0.6, 1.0]]]
)


@pytest.fixture(scope="module")
def fit_2d():
    axis = np.linspace(-10.0, 10.0, 40)
    X = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
    y = mixture_density(X, WEIGHTS_2D, MEANS_2D, COVARIANCES_2D)
    return DensityGMM(n_components=3, random_state=0).fit(X, y), X, y


def with_gid(artists, prefix):
    return [a for a in artists if (a.get_gid() or "").startswith(prefix)]


def test_1d_draws_target_fit_components_and_residuals(writeup):
    model, grid, density = writeup
    ax, ax_residuals = plot_fit(model, grid, density)
    assert len(with_gid(ax.lines, "component")) == model.n_components == 2
    (target,) = with_gid(ax.lines, "target")
    np.testing.assert_array_equal(target.get_xdata(), grid)  # the grid is sorted already
    np.testing.assert_array_equal(target.get_ydata(), density)
    (fit,) = with_gid(ax.lines, "fit")
    x = np.asarray(fit.get_xdata())
    assert np.all(np.isin(grid, x)) and x.size > grid.size  # a fine curve through the grid
    np.testing.assert_allclose(fit.get_ydata(), model.predict_density(x), rtol=1e-12)
    (residuals,) = with_gid(ax_residuals.lines, "residuals")
    np.testing.assert_allclose(
        residuals.get_ydata(), density - model.predict_density(grid), atol=1e-15
    )
    assert ax.get_legend() is not None
    assert ax.figure is ax_residuals.figure


def test_1d_components_are_weighted_gaussians_summing_to_the_fit(writeup):
    model, grid, density = writeup
    ax, _ = plot_fit(model, grid, density)
    parts = [line.get_ydata() for line in with_gid(ax.lines, "component")]
    x = with_gid(ax.lines, "component-0")[0].get_xdata()
    stds = np.sqrt(model.covariances_.ravel())
    for k, part in enumerate(parts):
        expected = model.scale_ * model.weights_[k] * norm.pdf(x, model.means_[k, 0], stds[k])
        np.testing.assert_allclose(part, expected, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(np.sum(parts, axis=0), model.predict_density(x), rtol=1e-9)


def test_1d_unsorted_grid_on_given_axes_without_residuals(writeup):
    model, grid, density = writeup
    order = np.random.default_rng(0).permutation(grid.size)
    _, given = plt.subplots()
    ax, ax_residuals = plot_fit(
        model, grid[order], density[order], ax=given, residuals=False, components=False
    )
    assert ax is given and ax_residuals is None
    assert with_gid(ax.lines, "component") == []
    (target,) = with_gid(ax.lines, "target")
    assert np.all(np.diff(target.get_xdata()) > 0)


def test_residual_panel_on_given_axes(writeup):
    model, grid, density = writeup
    figure, given = plt.subplots()
    ax, ax_residuals = plot_fit(model, grid, density, ax=given)
    assert ax is given and ax_residuals in figure.axes


def test_a_pair_of_axes_receives_fit_and_residuals(writeup, fit_2d):
    from matplotlib.figure import Figure  # no pyplot: what the command line uses

    model, grid, density = writeup
    top, bottom = Figure().subplots(2, 1, sharex=True)
    assert plot_fit(model, grid, density, ax=(top, bottom)) == (top, bottom)
    assert with_gid(bottom.lines, "residuals") and with_gid(top.lines, "fit")
    model_2d, X, y = fit_2d
    left, right = Figure().subplots(1, 2)
    assert plot_fit(model_2d, X, y, ax=[left, right]) == (left, right)
    assert with_gid(right.collections, "residuals")
    with pytest.raises(ValueError, match="a pair"):
        plot_fit(model, grid, density, ax=(top, bottom, left))


def test_cv_search_draws_its_best_estimator():
    grid = np.linspace(-5, 12, 120)
    density = 0.6 * norm.pdf(grid, 0, 1) + 0.4 * norm.pdf(grid, 6, 1.5)
    search = DensityGMMCV(n_components=3, random_state=0).fit(grid, density)
    ax, _ = plot_fit(search, grid, density)
    assert len(with_gid(ax.lines, "component")) == search.n_components_


def test_2d_product_grid_draws_contours_ellipses_and_means(fit_2d):
    model, X, y = fit_2d
    ax, ax_residuals = plot_fit(model, X, y)
    assert ax_residuals is None
    assert len(with_gid(ax.patches, "ellipse")) == 2 * model.n_components
    assert len(with_gid(ax.lines, "mean")) == model.n_components
    (target,) = with_gid(ax.collections, "target")
    (fit,) = with_gid(ax.collections, "fit")
    assert target.filled and not fit.filled and len(fit.levels) >= 3
    # The ellipses: the 1-sigma one of component k has its covariance's axes.
    for k, covariance in enumerate(model.covariances_):
        (ellipse,) = with_gid(ax.patches, f"ellipse-{k}-1")
        np.testing.assert_allclose(ellipse.center, model.means_[k])
        axes = sorted([ellipse.width / 2, ellipse.height / 2])
        np.testing.assert_allclose(axes, np.sqrt(np.linalg.eigvalsh(covariance)), rtol=1e-12)
        (two_sigma,) = with_gid(ax.patches, f"ellipse-{k}-2")
        np.testing.assert_allclose(two_sigma.width, 2 * ellipse.width)


def test_2d_ellipse_orientation_follows_the_covariance():
    # One elongated component along the diagonal: its major axis is at 45 degrees.
    axis = np.linspace(-6.0, 6.0, 30)
    X = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
    covariance = np.array([[[2.0, 1.5], [1.5, 2.0]]])
    y = mixture_density(X, [1.0], [[0.0, 0.0]], covariance)
    model = DensityGMM(random_state=0).fit(X, y)
    ax, _ = plot_fit(model, X, y, n_sigma=(1,))
    (ellipse,) = with_gid(ax.patches, "ellipse")
    assert ellipse.width > ellipse.height
    assert ellipse.angle % 180 == pytest.approx(45.0, abs=1e-3)


def test_2d_scattered_points_and_residuals(fit_2d):
    model, _, _ = fit_2d
    X = np.random.default_rng(0).uniform(-10, 10, (600, 2))
    y = mixture_density(X, WEIGHTS_2D, MEANS_2D, COVARIANCES_2D)
    ax, ax_residuals = plot_fit(model, X, y, residuals=True, n_sigma=(1, 2, 3))
    assert len(with_gid(ax.patches, "ellipse")) == 3 * model.n_components
    assert with_gid(ax.collections, "target") and with_gid(ax_residuals.collections, "residuals")


@pytest.mark.parametrize("covariance_type", ["tied", "diag", "spherical"])
def test_2d_other_covariance_types(fit_2d, covariance_type):
    _, X, y = fit_2d
    model = DensityGMM(n_components=3, covariance_type=covariance_type, random_state=0)
    model.fit(X, y)
    ax, _ = plot_fit(model, X, y)
    assert len(with_gid(ax.patches, "ellipse")) == 6


def test_three_dimensions_are_refused_with_what_to_do():
    axis = np.linspace(-3, 3, 8)
    X = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis, axis)])
    y = mixture_density(X, [1.0], [[0.0, 0.0, 0.0]], [np.eye(3)])
    model = DensityGMM(random_state=0).fit(X, y)
    with pytest.raises(ValueError, match=r"3 grid dimensions\. Plot a slice or a marginal"):
        plot_fit(model, X, y)


def test_unfitted_model_is_refused():
    grid, density, _ = make_writeup_problem()
    with pytest.raises(NotFittedError):
        plot_fit(DensityGMM(), grid, density)
    with pytest.raises(NotFittedError):
        plot_fit(DensityGMMCV(), grid, density)


def test_a_pipeline_is_refused_with_what_to_do(writeup):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, grid, density = writeup
    pipe = make_pipeline(StandardScaler(), DensityGMM(2, random_state=0))
    pipe.fit(grid.reshape(-1, 1), density)
    with pytest.raises(TypeError, match=r"plot_fit\(pipe\[-1\], pipe\[:-1\]\.transform\(X\), y\)"):
        plot_fit(pipe, grid, density)
    ax, _ = plot_fit(pipe[-1], pipe[:-1].transform(grid.reshape(-1, 1)), density)
    assert len(with_gid(ax.lines, "component")) == 2


def test_mismatched_data_is_refused(writeup, fit_2d):
    model, grid, density = writeup
    with pytest.raises(ValueError, match="fitted on a grid of 1 feature"):
        plot_fit(model, np.column_stack([grid, grid]), density)
    with pytest.raises(ValueError, match="y has shape"):
        plot_fit(model, grid, density[:-1])


def test_missing_matplotlib_says_how_to_install(writeup, monkeypatch):
    model, grid, density = writeup
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "skdensityfit\[plot\]"'):
        plot_fit(model, grid, density)


def test_importing_the_package_does_not_import_matplotlib():
    code = "import sys, skdensityfit; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
