"""A background under the peaks (``DensityGMM(background=...)``, issue #14).

- the kernel's value, gradient and Gauss-Newton matrix of ``f = mixture + b``
  equal autograd's on the reference model: every covariance type, 1-D
  and 2-D, both losses, both kinds, with and without bins;
- constant and linear backgrounds are recovered with the mixture, 1-D and
  2-D, l2 and poisson, with and without noise; the issue's 11% offset case;
- the Poisson background stays non-negative over the grid; reports, errors
  and predictions carry it.
"""

import warnings

import autograd
import numpy as np
import pytest
from scipy.stats import norm
from sklearn.utils._param_validation import InvalidParameterError

from skdensityfit import DensityGMM, DensityGMMCV, fit_many
from skdensityfit._engine.problem import build_problem
from skdensityfit._engine.rows import derivatives_of, models_of
from skdensityfit._model.cells import cells_from_edges, log_cell_masses
from skdensityfit._model.covariance import log_gaussian_density
from skdensityfit._model.reference import model_with_background, objective

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
pytestmark = pytest.mark.filterwarnings("ignore:loss='poisson' reads y as counts")


@pytest.mark.parametrize("bins", [None, "infer"])
@pytest.mark.parametrize("kind", ["constant", "linear"])
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("d", [1, 2])
def test_derivatives_match_autograd(d, covariance_type, loss, kind, bins):
    rng = np.random.default_rng(0)
    c = np.linspace(-3, 3, 9)
    X = c[:, None] if d == 1 else np.stack(np.meshgrid(c, c[:7], indexing="ij"), -1).reshape(-1, 2)
    y = rng.uniform(0.1, 1.0, len(X))
    problem = build_problem(
        X,
        y,
        None,
        n_components=2,
        covariance_type=covariance_type,
        loss=loss,
        scale=None,
        bins=bins,
        background=kind,
    )
    data = problem.data
    theta = rng.uniform(-0.5, 0.5, len(problem.bounds))
    # a background positive at every point for poisson: the constant term 0.3, slopes small
    theta[problem.n_mixture_parameters] = 0.3
    theta[problem.n_mixture_parameters + 1 :] *= 0.2
    value, gradient, matrix = derivatives_of(problem.kernel, theta)
    assert value == pytest.approx(objective(theta, data), rel=1e-11)
    reference = autograd.grad(objective)(theta, data)
    scale = np.abs(reference).max()
    np.testing.assert_allclose(gradient, reference, rtol=1e-8, atol=1e-11 * scale)
    jac = autograd.jacobian(lambda t: model_with_background(t, data))(theta)
    model = model_with_background(theta, data)
    if loss == "l2":
        curvature = 2.0 / data.normaliser * data.quadrature
    else:
        curvature = data.quadrature / data.normaliser / model
    expected = jac.T @ (curvature[:, None] * jac)
    np.testing.assert_allclose(matrix, expected, rtol=1e-8, atol=1e-11 * np.abs(expected).max())
    np.testing.assert_allclose(models_of(problem.kernel, theta[None])[0], model, rtol=1e-11)


# --------------------------------------------------------------------------
# recovery
# --------------------------------------------------------------------------
def _peaks_1d(x):
    weights, means, sds = np.array([0.6, 0.4]), np.array([10.0, 16.0]), np.array([1.0, 2.5])
    return weights @ norm.pdf(x[None], means[:, None], sds[:, None]), (weights, means, sds)


def _peaks_2d(X, edges=None):
    """The mixture's density at ``X``, or with ``edges`` its average over each bin."""
    means = np.array([[0.0, 0.0], [4.0, 1.0]])
    weights = np.array([0.55, 0.45])
    covariances = np.array([[[1.0, 0.4], [0.4, 0.8]], [[1.2, -0.3], [-0.3, 1.0]]])
    prec_chol = np.linalg.cholesky(np.linalg.inv(covariances[:, ::-1, ::-1]))[:, ::-1, ::-1]
    if edges is None:
        density = np.exp(log_gaussian_density(X, means, prec_chol, "full")) @ weights
    else:
        cells = cells_from_edges(X, edges)
        masses = np.exp(log_cell_masses(cells, means, prec_chol, "full"))
        density = masses @ weights / cells.volume
    return density, (weights, means, covariances)


@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("kind", ["constant", "linear"])
def test_recovery_1d(kind, loss):
    x = np.linspace(0, 25, 150)
    peaks, (weights, means, sds) = _peaks_1d(x)
    coefficients = np.array([0.05, 0.004])[: 1 if kind == "constant" else 2] * peaks.max()
    background = coefficients[0] + (x * coefficients[1] if kind == "linear" else 0.0)
    gmm = DensityGMM(2, loss=loss, background=kind, random_state=0).fit(x, peaks + background)
    np.testing.assert_allclose(np.sqrt(gmm.covariances_.ravel()), sds, rtol=1e-6)
    np.testing.assert_allclose(gmm.means_.ravel(), means, atol=1e-6)
    np.testing.assert_allclose(gmm.weights_, weights, atol=1e-6)
    np.testing.assert_allclose(gmm.background_, coefficients, atol=1e-8 * peaks.max())
    assert gmm.background_.shape == ((1,) if kind == "constant" else (2,))
    np.testing.assert_allclose(gmm.predict_background(x), background, atol=1e-8 * peaks.max())
    mixture = gmm.predict_density(x) - gmm.predict_background(x)
    pdf = gmm.scale_ * np.exp(gmm.score_samples(x))
    np.testing.assert_allclose(mixture, pdf, rtol=1e-9, atol=1e-12 * peaks.max())


@pytest.mark.parametrize("bins", [False, True])
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("kind", ["constant", "linear"])
def test_recovery_2d(kind, loss, bins):
    ex, ey = np.arange(-6, 10.01, 0.5), np.arange(-5, 7.01, 0.5)
    centres = [0.5 * (e[1:] + e[:-1]) for e in (ex, ey)]
    X = np.stack(np.meshgrid(*centres, indexing="ij"), -1).reshape(-1, 2)
    peaks, (weights, means, covariances) = _peaks_2d(X, [ex, ey] if bins else None)
    coefficients = np.array([0.05, 0.004, -0.003])[: 1 if kind == "constant" else 3] * peaks.max()
    background = coefficients[0] + (X @ coefficients[1:] if kind == "linear" else 0.0)
    # with bins the background's bin averages are its values at the bin centres X
    options = {"loss": loss, "bins": [ex, ey] if bins else None, "random_state": 0}
    gmm = DensityGMM(2, background=kind, **options).fit(X, peaks + background)
    np.testing.assert_allclose(gmm.means_, means, atol=1e-6)
    np.testing.assert_allclose(gmm.covariances_, covariances, atol=1e-6)
    np.testing.assert_allclose(gmm.weights_, weights, atol=1e-6)
    np.testing.assert_allclose(gmm.background_, coefficients, atol=1e-7 * peaks.max())


@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_noisy_recovery_as_accurate_as_without_background(loss):
    """Counts (poisson) or Gaussian noise (l2), one seed: the same draws with and without
    a sloped background give the widths and means to within a little of each other."""
    x = np.linspace(0, 25, 150)
    peaks, (_, means, sds) = _peaks_1d(x)
    peaks = 2000 * peaks
    background = 0.05 * peaks.max() + 0.004 * peaks.max() * x
    rng = np.random.default_rng(1)
    if loss == "poisson":
        with_background = rng.poisson(peaks + background).astype(float)
        without = rng.poisson(peaks).astype(float)
    else:
        noise = rng.normal(0, 0.01 * peaks.max(), len(x))
        with_background, without = peaks + background + noise, peaks + noise
    fitted = DensityGMM(2, loss=loss, background="linear", random_state=0).fit(x, with_background)
    plain = DensityGMM(2, loss=loss, random_state=0).fit(x, without)
    error = np.abs(np.sqrt(fitted.covariances_.ravel()) / sds - 1)
    plain_error = np.abs(np.sqrt(plain.covariances_.ravel()) / sds - 1)
    assert np.all(error < 0.1)
    assert np.all(error < 3 * plain_error + 0.05)
    errors = fitted.standard_errors(x, with_background)
    assert np.all(np.isfinite(errors["background"]))
    # the fitted widths within three of their standard errors of the truth
    sd_errors = errors["covariances"].ravel() / (2 * np.sqrt(fitted.covariances_.ravel()))
    assert np.all(np.abs(np.sqrt(fitted.covariances_.ravel()) - sds) < 3 * sd_errors)
    np.testing.assert_allclose(fitted.means_.ravel(), means, atol=0.1)


@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_the_issues_eleven_percent_offset(loss):
    x = np.linspace(0, 25, 150)
    peaks, (_, _, sds) = _peaks_1d(x)
    y = peaks + 0.11 * peaks.max()
    plain = DensityGMM(2, loss=loss, random_state=0).fit(x, y)
    assert np.sqrt(plain.covariances_.ravel())[1] > 2 * sds[1]  # the broad width doubled
    gmm = DensityGMM(2, loss=loss, background="constant", random_state=0).fit(x, y)
    np.testing.assert_allclose(np.sqrt(gmm.covariances_.ravel()), sds, rtol=0.01)
    assert gmm.background_[0] == pytest.approx(0.11 * peaks.max(), rel=0.01)


def test_poisson_model_stays_positive_at_every_point():
    """No background in the data: the fitted linear one is ~0, and the model (mixture
    plus background) is positive at every point, where the Poisson likelihood needs it
    (on the zero counts of the corners a negative model would lower the loss)."""
    c = np.linspace(-4, 4, 25)
    X = np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    rng = np.random.default_rng(0)
    y = rng.poisson(500 * np.exp(-0.5 * np.sum((X - 0.5) ** 2, axis=1))).astype(float)
    gmm = DensityGMM(loss="poisson", background="linear", random_state=0).fit(X, y)
    assert np.all(gmm.predict_density(X) > 0)
    assert np.all(np.abs(gmm.predict_background(X)) < 0.05)
    # the fit without the background is nested in it: never better
    assert gmm.loss_ <= DensityGMM(loss="poisson", random_state=0).fit(X, y).loss_
    assert np.isfinite(gmm.bic(X, y)) and gmm.bic(X, y) > gmm.aic(X, y)


def test_reports_and_parameters():
    x = np.linspace(0, 25, 150)
    peaks, _ = _peaks_1d(x)
    y = peaks + 0.05 * peaks.max()
    gmm = DensityGMM(2, background="constant", random_state=0).fit(x, y)
    assert gmm.summary()["background"] == pytest.approx(gmm.background_.tolist())
    assert "[[Background]]" in gmm.fit_report(x, y)
    assert "background" not in DensityGMM(2, random_state=0).fit(x, y).summary()
    assert gmm.score(x, y) > 1 - 1e-9
    refit = gmm.set_params(warm_start=True).fit(x, 2 * y)
    np.testing.assert_allclose(refit.background_, 2 * 0.05 * peaks.max(), rtol=1e-6)
    assert np.all(DensityGMM(random_state=0).fit(x, y).predict_background(x) == 0)
    with pytest.raises(InvalidParameterError):
        DensityGMM(background="quartic").fit(x, y)


def test_components_standing_in_for_a_baseline_are_warned_of_and_a_cut_peak_is_not():
    """A component centred outside the grid with only its tail or a broad slope on it
    holds no line; a narrow peak just beyond the edge is a cut line (the edge warning)."""
    x = np.linspace(0.0, 100.0, 300)
    lines = 5 * np.exp(-0.5 * ((x - 30) / 3) ** 2) + 3 * np.exp(-0.5 * ((x - 60) / 2) ** 2)
    with pytest.warns(UserWarning, match="hold no line of their own"):
        DensityGMM(3, random_state=0).fit(x, lines + 0.5 + 0.02 * x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DensityGMM(2, background="linear", random_state=0).fit(x, lines + 0.5 + 0.02 * x)
    cut = lines + 4 * np.exp(-0.5 * ((x - 100.5) / 2) ** 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DensityGMM(3, random_state=0).fit(x, cut)
    messages = [str(w.message) for w in caught]
    assert any("edge of the grid" in m for m in messages)
    assert not any("hold no line" in m for m in messages)


def test_a_broad_dome_inside_the_grid_standing_in_for_a_baseline_is_warned_of():
    """A line on a constant baseline with no background= is fitted by the line and a dome
    centred inside the grid, with a standard deviation near the grid's extent: broader than
    a quarter of the grid, it is warned of (it was silent while only components wider
    than the whole grid were); a broad component the grid holds to +-2.5 sd is not."""
    from skdensityfit._reports.reports import holds_no_line

    x = np.linspace(-100.0, 100.0, 256)
    rng = np.random.default_rng(3)
    y = np.exp(-0.5 * ((x - 20.0) / 4.0) ** 2) + 0.05 + 0.03 * rng.normal(size=x.size)
    with pytest.warns(UserWarning, match="broader than a quarter of the grid"):
        search = DensityGMMCV(random_state=0).fit(x, y)
    assert search.n_components_ > 1  # the baseline's dome is counted: hence the warning
    low, high = np.array([-100.0]), np.array([100.0])
    # rows of a broad component beside a line at 50 (sd 5): broad above 50; alone (the
    # density itself, cut by the grid) or under a line at its centre, not
    means = np.array([[[0.0], [50.0]]] * 3 + [[[0.0], [0.0]], [[0.0], [1.0]]])
    sds = np.array([[55.0, 5.0], [45.0, 5.0], [40.0, 5.0], [55.0, 5.0], [55.0, 5.0]])
    _, broad = holds_no_line(means, sds[..., None, None] ** 2, low, high)
    assert broad[:, 0].tolist() == [True, False, False, False, False]
    assert not holds_no_line(means[:1, :1], sds[:1, :1, None, None] ** 2, low, high)[1].any()
    pdf = 0.7 * np.exp(-0.5 * (x / 40.0) ** 2) / 40 + 0.3 * np.exp(-0.5 * ((x - 30) / 5.0) ** 2) / 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DensityGMM(2, random_state=0).fit(x, pdf)


@pytest.mark.parametrize("noise", [0.0, 0.004])
def test_a_baseline_below_zero_is_warned_of_in_single_fits_searches_and_fit_many(noise):
    """A baseline over-subtracted below zero cannot be taken by any component (they are
    non-negative): the fit is biased, and the warning says so and names background=; the
    same density with a constant background, or without the offset, raises none."""
    x = np.linspace(0.0, 25.0, 100)
    rng = np.random.default_rng(0)
    pdf = 0.8 * norm.pdf(x, 10, 1) + 0.2 * norm.pdf(x, 16, 1.5) + noise * rng.normal(size=100)
    match = "below zero by .* cannot take.*background='constant'"
    with pytest.warns(UserWarning, match=match):
        DensityGMM(2, random_state=0).fit(x, pdf - 0.01)
    with pytest.warns(UserWarning, match=match):
        DensityGMMCV(n_components=4, random_state=0).fit(x, pdf - 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fitted = DensityGMM(2, background="constant", random_state=0).fit(x, pdf - 0.01)
        DensityGMM(2, random_state=0).fit(x, pdf)
    np.testing.assert_allclose(fitted.background_, [-0.01], atol=2e-3)
    with pytest.warns(UserWarning, match="a baseline under the mixture .* in 1 of 2 densities"):
        result = fit_many(x, np.stack([pdf - 0.01, pdf]), DensityGMM(2, random_state=0))
    assert "below zero" in result.messages[0] and "zero" not in result.messages[1]


def test_a_sloped_baseline_crossing_zero_is_warned_of():
    """The twenty-second reviewer: a baseline sloping from -a to +a under the lines averages
    zero in the tails, and the offset test read the mean only (single fits silent in 48 of
    48). The plane through the tails' residual (a constant and a slope) is tested now."""
    x = np.linspace(0.0, 25.0, 200)
    pdf = 0.8 * norm.pdf(x, 10, 1) + 0.2 * norm.pdf(x, 16, 1.5)
    slope = 0.03 * pdf.max() * (x - 12.5) / 12.5
    noise = 0.002 * pdf.max() * np.random.default_rng(2).normal(size=x.size)
    with pytest.warns(UserWarning, match="on both sides of zero by .* cannot take"):
        DensityGMM(2, random_state=0).fit(x, pdf + slope + noise)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DensityGMM(2, background="linear", random_state=0).fit(x, pdf + slope + noise)
        DensityGMM(2, random_state=0).fit(x, pdf + noise)


def test_smoothed_noise_in_the_tails_is_not_read_as_a_baseline():
    """Noise smoothed over many points wanders away from zero in the tails for long
    stretches: the mean's error counts the neighbours' correlation, so no warning."""
    from skdensityfit._reports.reports import baseline_offsets

    x = np.linspace(0.0, 100.0, 400)
    rng = np.random.default_rng(1)
    kernel = np.exp(-0.5 * (np.arange(-12, 13) / 4.0) ** 2)
    smooth = np.convolve(rng.normal(size=424), kernel / np.sqrt(np.sum(kernel**2)), "valid")
    model = np.exp(-0.5 * ((x - 50) / 3.0) ** 2)
    y = model + 0.1 * smooth
    _, _, share = baseline_offsets(x[:, None], y, model, model, np.ones(400))
    assert np.isnan(share[0])
    least, most, share = baseline_offsets(x[:, None], y - 0.2, model, model, np.ones(400))
    assert least[0] < most[0] < 0 and share[0] > 0.5


def test_a_dome_shaped_baseline_tiled_by_components_is_warned_of():
    """The twentieth reviewer: a line on a dome-shaped baseline with no background= got
    K = 6, the dome tiled by components 6-20% of the grid wide that no warning named (15
    of its 40 dome spectra silent). The chosen mixture never falls below 3% of its peak:
    a pedestal, warned of in DensityGMMCV and fit_many alike; with background='quadratic'
    K = 1 and no warning."""
    x = np.arange(300.0)
    t = (x - 149.5) / 150
    clean = 136.5 + 14.1 * t - 103.6 * t**2 + 100.1 * np.exp(-0.5 * ((x - 231.7) / 7.5) ** 2)
    y = clean + np.random.default_rng(3).normal(0, 1.0, x.size)
    with pytest.warns(UserWarning, match="stands on a pedestal.*background="):
        search = DensityGMMCV(n_components=8, random_state=0).fit(x, y)
    assert search.n_components_ > 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        carried = DensityGMMCV(n_components=8, background="quadratic", random_state=0).fit(x, y)
    assert carried.n_components_ == 1
    with pytest.warns(UserWarning, match="a mixture above 3% of its peak everywhere"):
        result = fit_many(x, y[None], DensityGMMCV(n_components=8, random_state=0))
    assert "stands on a pedestal" in result.messages[0]


NIST = __import__("pathlib").Path(__file__).parent / "data" / "nist"


def _nist(name):
    import json

    x, y = np.loadtxt(NIST / f"{name}.csv", delimiter=",", skiprows=1).T
    certified = json.loads((NIST / "certified.json").read_text())[name]
    b = np.array([float(certified["parameters"][f"b{i}"]["value"]) for i in range(1, 9)])
    return x, y, b, float(certified["residual_sum_of_squares"])


@pytest.mark.parametrize("name", ["Gauss1", "Gauss2", "Gauss3"])
def test_nist_certified_values(name):
    """NIST StRD Gauss1-3: two peaks on ``b1 exp(-b2 x)``; the exponential background
    with the mixture reaches every certified parameter (issue #27)."""
    x, y, b, rss = _nist(name)
    gmm = DensityGMM(2, background="exponential", tol=1e-12, max_iter=2000, random_state=0)
    gmm.fit(x, y)
    amplitude, rate = gmm.background_
    sd = np.sqrt(gmm.covariances_.ravel())
    heights = gmm.scale_ * gmm.weights_ / (np.sqrt(2 * np.pi) * sd)
    order = np.argsort(gmm.means_[:, 0])
    peaks = [[heights[k], gmm.means_[k, 0], np.sqrt(2) * sd[k]] for k in order]
    got = np.array([amplitude, -rate, *peaks[0], *peaks[1]])
    np.testing.assert_allclose(got, b, rtol=1e-6)
    assert np.sum((y - gmm.predict_density(x)) ** 2) == pytest.approx(rss, rel=1e-8)


@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("background", ["constant", "linear", "quadratic", 3, "exponential"])
def test_a_background_never_fits_worse_than_none(background, loss):
    """The fit without a background is nested in every background: its loss is never
    above the fit without one (issue #27: Gauss1 with a constant ended below none)."""
    x, y, _, _ = _nist("Gauss1")
    if loss == "poisson":
        y = np.random.default_rng(0).poisson(np.clip(y, 0, None)).astype(float)
    plain = DensityGMM(2, loss=loss, random_state=0).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fitted = DensityGMM(2, loss=loss, background=background, random_state=0).fit(x, y)
    assert fitted.loss_ <= plain.loss_ * (1 + 1e-9)
    if loss == "l2":
        assert fitted.score(x, y) >= plain.score(x, y) - 1e-9


def test_higher_degree_and_a_users_basis():
    """A quadratic baseline is recovered as a degree 2 or a user's basis of 1, x, x**2."""
    x = np.linspace(0, 25, 200)
    peaks, _ = _peaks_1d(x)
    baseline = 0.3 - 0.02 * x + 0.001 * x**2
    y = peaks + baseline
    for background in ("quadratic", 2, lambda X: np.column_stack([X[:, 0] ** j for j in range(3)])):
        gmm = DensityGMM(2, background=background, random_state=0).fit(x, y)
        np.testing.assert_allclose(gmm.predict_background(x), baseline, atol=1e-6)
        np.testing.assert_allclose(gmm.predict_density(x), y, atol=1e-6)
        assert gmm.background_.shape == (3,)
    basis = DensityGMM(2, background=lambda X: np.column_stack([X[:, 0] ** j for j in range(3)]))
    np.testing.assert_allclose(
        basis.set_params(random_state=0).fit(x, y).background_, [0.3, -0.02, 0.001], atol=1e-6
    )
    # without the quadratic term the fit is worse than with it
    linear = DensityGMM(2, background="linear", random_state=0).fit(x, y)
    assert linear.score(x, y) < 1 - 1e-6


def test_fit_many_background_equals_single_fits():
    x = np.linspace(1, 250, 250)
    rng = np.random.default_rng(1)
    rows = []
    for amplitude in (80.0, 100.0, 120.0):
        rows.append(
            amplitude * np.exp(-0.01 * x)
            + 100 * np.exp(-(((x - 100) / 20) ** 2))
            + 70 * np.exp(-(((x - 160) / 15) ** 2))
            + rng.normal(0, 1, x.size)
        )
    Y = np.array(rows)
    estimator = DensityGMM(2, background="exponential", random_state=0)
    result = fit_many(x, Y, estimator)
    assert result.background.shape == (3, 2)
    for row, y in zip(result.background, Y, strict=True):
        single = DensityGMM(2, background="exponential", random_state=0).fit(x, y)
        np.testing.assert_allclose(row, single.background_, rtol=1e-5)
    np.testing.assert_allclose(result.background[:, 1], -0.01, rtol=0.05)


def test_background_errors_say_what_to_do():
    x = np.linspace(0, 10, 50)
    y = np.exp(-0.5 * (x - 5) ** 2)
    X2 = np.stack(np.meshgrid(x[::5], x[::5]), axis=-1).reshape(-1, 2)
    with pytest.raises(ValueError, match="along one dimension"):
        DensityGMM(background="exponential").fit(X2, np.exp(-0.5 * ((X2 - 5) ** 2).sum(1)))
    with pytest.raises(ValueError, match="polynomial"):
        DensityGMM(background="exponential", bins="infer").fit(x, y)
    with pytest.raises(ValueError, match="shape \\(n_points, n_terms\\)"):
        DensityGMM(background=lambda X: np.ones((3, 2))).fit(x, y)
    with pytest.raises(ValueError, match="NaN"):
        DensityGMM(background=lambda X: np.log(X[:, 0] - 5)).fit(x, y)
    with pytest.raises(InvalidParameterError):
        DensityGMM(background=-1).fit(x, y)


@pytest.mark.parametrize("search", [False, True])
def test_fit_many_predicts_with_the_background(search):
    from skdensityfit import DensityGMMCV

    x = np.linspace(0, 25, 200)
    peaks, _ = _peaks_1d(x)
    Y = np.array([peaks + 0.02 + 0.003 * x, peaks + 0.05 - 0.001 * x])
    settings = {"background": "linear", "random_state": 0}
    estimator = DensityGMMCV(n_components=4, **settings) if search else DensityGMM(2, **settings)
    result = fit_many(x, Y, estimator)
    assert result.background.shape == (2, 2) and np.all(np.isfinite(result.background))
    np.testing.assert_allclose(result.background, [[0.02, 0.003], [0.05, -0.001]], atol=1e-6)
    np.testing.assert_allclose(result.predict_density(x), Y, atol=1e-6)


@pytest.mark.parametrize("name", ["Gauss1", "Gauss2", "Gauss3"])
def test_nist_certified_standard_deviations(name):
    """NIST's certified standard deviations of b1, b2 (the exponential) and b4, b7 (the
    peaks' centres): fit_many's standard errors (Gauss-Newton, as NIST's) reproduce
    them, DensityGMM.standard_errors (the exact Hessian) within 1%."""
    import json

    x, y, _, _ = _nist(name)
    certified = json.loads((NIST / "certified.json").read_text())[name]["parameters"]
    sd = np.array([float(certified[f"b{i}"]["std_dev"]) for i in (1, 2, 4, 7)])
    settings = dict(background="exponential", tol=1e-12, max_iter=2000, random_state=0)
    result = fit_many(x, y[None], DensityGMM(2, **settings))
    batch = result.standard_errors(x, y[None])
    got = np.concatenate([batch["background"][0], batch["means"][0, :, 0]])
    np.testing.assert_allclose(got, sd, rtol=1e-5)
    single = DensityGMM(2, **settings).fit(x, y).standard_errors(x, y)
    got = np.concatenate([single["background"], single["means"][:, 0]])
    np.testing.assert_allclose(got, sd, rtol=0.01)
    # the exponential's coefficients go to the fit's parameters and back unchanged
    refit = DensityGMM(2, warm_start=True, **settings).fit(x, y)
    start = refit.background_.copy()
    np.testing.assert_allclose(refit.fit(x, y).background_, start, rtol=1e-9)


def test_offset_grids_keep_every_digit():
    """An independent review: on x = 1e6 .. 1e6 + 100 an exponential's amplitude at x = 0
    overflowed (predictions NaN) and a quintic's monomials in x lost every digit; the
    coefficients are now given about background_origin_ (the grid's middle there)."""
    x = np.linspace(1e6, 1e6 + 100, 301)
    peaks = 100 * norm.pdf(x, 1e6 + 40, 3) + 60 * norm.pdf(x, 1e6 + 65, 4)
    exponential = 5 * np.exp(-0.03 * (x - 1e6))
    u = (x - 1e6) / 100
    quintic = 0.5 + 0.3 * u - 0.8 * u**2 + 0.6 * u**3 + 0.2 * u**4 - 0.1 * u**5
    for background, baseline in (("exponential", exponential), (5, quintic)):
        gmm = DensityGMM(2, background=background, random_state=0).fit(x, peaks + baseline)
        np.testing.assert_allclose(gmm.background_origin_, [1e6 + 50])
        np.testing.assert_allclose(gmm.predict_background(x), baseline, rtol=1e-8, atol=1e-9)
        assert gmm.score(x, peaks + baseline) > 1 - 1e-12
        result = fit_many(x, (peaks + baseline)[None], DensityGMM(2, background=background))
        np.testing.assert_allclose(result.predict_density(x)[0], peaks + baseline, rtol=1e-8)
        assert np.all(np.isfinite(result.standard_errors(x, (peaks + baseline)[None])["means"]))
    gauss1 = DensityGMM(2, background="exponential", random_state=0).fit(*_nist("Gauss1")[:2])
    np.testing.assert_array_equal(gauss1.background_origin_, [0.0])  # x = 1..250: about 0


def test_binned_background_is_averaged_over_each_bin():
    """With bins, predict gives the model's average over each bin: a quadratic baseline's
    too (it was taken at the bin's centre, off by its curvature times h^2 / 12)."""
    edges = np.linspace(-6, 6, 25)
    lo, hi = edges[:-1], edges[1:]
    centres = 0.5 * (lo + hi)
    mixture = (norm.cdf(hi, -1.5, 1) - norm.cdf(lo, -1.5, 1)) * 0.6
    mixture += (norm.cdf(hi, 2, 0.8) - norm.cdf(lo, 2, 0.8)) * 0.4
    # the average over each bin of 0.05 + 0.004 x^2
    quadratic = 0.05 + 0.004 * (hi**3 - lo**3) / (3 * (hi - lo))
    y = mixture / (hi - lo) + quadratic
    gmm = DensityGMM(2, bins=[edges], background="quadratic", random_state=0).fit(centres, y)
    np.testing.assert_allclose(gmm.predict_density(centres), y, rtol=1e-7)
    np.testing.assert_allclose(gmm.background_, [0.05, 0.0, 0.004], atol=1e-6)


def test_the_report_names_every_background_term():
    x = np.linspace(0, 25, 200)
    peaks, _ = _peaks_1d(x)
    quadratic = DensityGMM(2, background="quadratic", random_state=0)
    report = quadratic.fit(x, peaks + 0.1 + 0.001 * x**2).fit_report(x, peaks + 0.1 + 0.001 * x**2)
    assert "x0^2" in report and "x from (0)" in report
    exponential = DensityGMM(2, background="exponential", random_state=0)
    y = peaks + 0.2 * np.exp(-0.1 * x)
    report = exponential.fit(x, y).fit_report(x, y)
    assert " A " in report and "rate" in report
    summary = exponential.summary()
    assert summary["background_origin"] == [0.0] and len(summary["background"]) == 2


def test_a_converged_fit_raises_no_convergence_warning_of_a_start_it_did_not_keep():
    """An independent review: a converged Poisson fit with an exponential background warned
    that 'DensityGMM did not converge ... after 500 iterations', from the joint fit of
    the start it did not keep."""
    x = np.linspace(0, 20, 120)
    y = np.round(100 * (norm.pdf(x, 8, 1.5) + 0.05))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gmm = DensityGMM(2, loss="poisson", background="exponential", random_state=0).fit(x, y)
    assert gmm.converged_
    assert not [w for w in caught if "did not converge" in str(w.message)]


def test_a_background_with_more_terms_than_points_is_warned_of():
    x = np.linspace(0, 10, 30)
    y = np.exp(-0.5 * (x - 5) ** 2)
    with pytest.warns(UserWarning, match="30 points for 44 free parameters"):
        DensityGMM(1, background=40, random_state=0).fit(x, y)


def test_a_component_parked_beside_a_baseline_is_placed_again():
    """An independent review: two peaks near the grid's edge under a quadratic baseline
    ended (single fits and fit_many alike) with one component 131 wide centred at 279,
    off the grid: nearly a baseline itself, along which the joint fit crawled to
    max_iter. Parked components of the joint fit are now placed again."""
    x = np.linspace(0, 100, 301)
    peaks = 100 * (0.6 * norm.pdf(x, 72.36, 5.585) + 0.4 * norm.pdf(x, 92.36, 4.115))
    t = x / 100
    y = peaks + peaks.max() * (0.2 + 0.3 * t - 0.25 * t**2)
    gmm = DensityGMM(2, background="quadratic", random_state=0).fit(x, y)
    assert gmm.loss_ < 1e-12 and gmm.n_iter_ <= gmm.max_iter
    np.testing.assert_allclose(gmm.means_.ravel(), [72.36, 92.36], rtol=1e-6)
    result = fit_many(x, np.vstack([y, 1.1 * y]), DensityGMM(2, background="quadratic"))
    np.testing.assert_allclose(result.means[:, :, 0], [[72.36, 92.36]] * 2, rtol=1e-6)


@pytest.mark.parametrize("background", ["quadratic", "cubic", 5])
def test_a_polynomial_baseline_far_from_the_grid_is_infinite_not_nan(background):
    """An independent review: at x = -1e200 a cubic's terms overflow to inf - inf (NaN);
    the largest term decides the sign."""
    x = np.linspace(0, 25, 200)
    y = norm.pdf(x, 8, 1) + norm.pdf(x, 15, 2) + 0.01 + 0.001 * x - 0.0002 * x**2
    gmm = DensityGMM(2, background=background, random_state=0).fit(x, y)
    far = np.array([[1e200], [-1e200], [1e300], [-1e300]])
    values = gmm.predict_background(far)
    assert np.all(np.isinf(values))
    coefficients = gmm.background_[np.flatnonzero(np.abs(gmm.background_) > 0)[-1]]
    degree = np.flatnonzero(np.abs(gmm.background_) > 0)[-1]
    np.testing.assert_array_equal(
        np.sign(values), np.sign(coefficients) * np.sign(far[:, 0]) ** degree
    )
    assert np.all(np.isfinite(gmm.predict_density(x)))


def test_counts_that_are_zero_beside_a_line_fit_with_a_constant_background():
    """A line of 3,000 counts on 300 channels, 274 of them empty: the background starts at
    its bound 0, the mixture underflows there, and the Poisson curvature w / value
    overflowed, so no start could be fitted (an independent reviewer's detector counts)."""
    from skdensityfit import DensityGMMCV

    rng = np.random.default_rng(0)
    x = np.arange(300.0)
    y = rng.poisson(3000 * np.exp(-0.5 * ((x - 268) / 3.0) ** 2)).astype(float)
    assert np.sum(y == 0) > 250
    model = DensityGMM(1, background="constant", loss="poisson", random_state=0).fit(x, y)
    assert model.means_[0, 0] == pytest.approx(268, abs=0.1)
    assert 0.0 <= model.predict_background(x[:1])[0] < 1e-3
    search = DensityGMMCV(n_components=4, background="constant", loss="poisson", random_state=0)
    assert search.fit(x, y).n_components_ == 1


def test_hot_pixels_beside_a_background_raise_no_floating_point_warning():
    """A search's matched filter weighted the residual by 1 / the model, and a model that was 0
    everywhere divided by zero (numpy's 'divide by zero' and 'invalid value' reached the user).
    The hot pixels themselves are warned of as components against the width floor."""
    from pathlib import Path

    from skdensityfit import DensityGMMCV

    y = np.load(Path(__file__).parent / "data" / "hot_pixel_counts.npz")["counts"].astype(float)
    x = np.arange(len(y), dtype=float)
    search = DensityGMMCV(n_components=8, random_state=0, background="constant")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        search.fit(x, y)
    assert not [w for w in record if issubclass(w.category, RuntimeWarning)]
    assert any("width floor" in str(w.message) for w in record)


@pytest.mark.parametrize("background", ["constant", "linear"])
def test_a_continuum_far_above_the_lines_changes_neither_the_fit_nor_the_choice(background):
    """An independent review: two lines of 15-40 noise sd on a continuum 1e4 to 1e5 times
    their noise got K = 1 (the loss, measured against the continuum, read as an exact
    fit). The loss is now normalised by what the background alone leaves."""
    from skdensityfit import DensityGMMCV

    v = np.linspace(-100.0, 100.0, 256)
    rng = np.random.default_rng(99)
    lines = 0.6 * np.exp(-0.5 * ((v + 40) / 2.5) ** 2) + 0.4 * np.exp(-0.5 * ((v - 42) / 3) ** 2)
    y = lines + rng.normal(0.0, 0.02, v.size)
    plain = DensityGMM(2, background=background, random_state=0).fit(v, y)
    for offset in (1e4, 1e6):
        lifted = DensityGMM(2, background=background, random_state=0).fit(v, y + offset)
        np.testing.assert_allclose(lifted.means_, plain.means_, atol=1e-3)
        np.testing.assert_allclose(lifted.covariances_, plain.covariances_, rtol=1e-3)
        # loss_ keeps its meaning: relative to the data's sum of squares, continuum and all
        expected = np.sum((y + offset - lifted.predict_density(v)) ** 2) / np.sum((y + offset) ** 2)
        np.testing.assert_allclose(lifted.loss_, expected, rtol=1e-6)
    for offset in (0.0, 1e5):
        search = DensityGMMCV(n_components=5, background=background, random_state=0)
        assert search.fit(v, y + offset).n_components_ == 2


def test_noise_alone_is_warned_of_and_a_line_is_not():
    """An independent review: spectra of noise alone got K = 1 with no warning that
    counted. The criterion of no component at all (the background alone) is now
    compared with the choice's."""
    from skdensityfit import DensityGMMCV

    v = np.linspace(-100.0, 100.0, 256)
    rng = np.random.default_rng(3)
    for background in (None, "linear"):
        for seed in range(3):
            noise = np.random.default_rng(seed).normal(0.0, 0.02, v.size)
            with pytest.warns(UserWarning, match="No component is significant"):
                DensityGMMCV(n_components=4, background=background, random_state=0).fit(
                    v, noise + (0.3 if background else 0.0)
                )
        line = 0.15 * np.exp(-0.5 * (v / 3.0) ** 2) + rng.normal(0.0, 0.02, v.size)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            search = DensityGMMCV(n_components=4, background=background, random_state=0)
            search.fit(v, line)
        assert search.n_components_ == 1
        assert not [w for w in caught if "No component" in str(w.message)]
    Y = np.random.default_rng(7).normal(0.0, 0.02, (3, v.size))
    with pytest.warns(UserWarning, match="no component significant") as record:
        result = fit_many(v, Y, DensityGMMCV(n_components=3, random_state=0))
    assert sum("no component significant" in str(w.message) for w in record) == 1
    assert all("No component is significant" in m for m in result.messages)


def test_the_edge_warning_reads_the_fit_not_the_noise_on_the_rim():
    """An independent review: a line in the middle of a noisy spectrum was warned of as
    cut by the grid's edge (a noisy rim value over the data's peak)."""
    v = np.linspace(-100.0, 100.0, 256)
    Y = 4 * 0.02 * np.exp(-0.5 * (v / 2.7) ** 2) + np.random.default_rng(8).normal(
        0.0, 0.02, (20, v.size)
    )
    result = fit_many(v, Y, DensityGMM(1, random_state=0))
    assert not any("edge of the grid" in m for m in result.messages)


def test_a_broad_component_centred_just_beyond_the_edge_holds_no_line():
    """A baseline's broad component centred beyond the edge by less than its sd (an
    eighth to a quarter of the grid wide) is flagged; a line cut by the edge is not."""
    from skdensityfit._reports.reports import holds_no_line

    low, high = np.array([-100.0]), np.array([100.0])
    means = np.array([[[124.0]], [[104.0]], [[0.0]]])
    sds = np.array([43.0, 5.0, 43.0])
    outside, wide = holds_no_line(means, sds[:, None, None, None] ** 2, low, high)
    assert outside.ravel().tolist() == [True, False, False]
    assert not wide.any()
