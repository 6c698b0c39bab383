"""Behaviour of the DensityGMM estimator beyond recovery."""

import pickle
import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.metrics import d2_tweedie_score, r2_score
from sklearn.mixture import GaussianMixture

from skdensityfit import DensityGMM, make_writeup_problem
from skdensityfit._data.validation import quadrature_weights
from skdensityfit._engine.problem import FitData
from skdensityfit._model.covariance import quadratic_features
from skdensityfit._model.parameters import ParameterLayout
from skdensityfit._model.reference import objective


@pytest.fixture
def writeup():
    grid, density, _ = make_writeup_problem()
    return grid, density


def test_fitted_attributes_have_sklearn_shapes(grid_2d):
    density = np.exp(-0.5 * np.sum((grid_2d - 1.0) ** 2, axis=1))
    for covariance_type, shape in [
        ("full", (2, 2, 2)),
        ("tied", (2, 2)),
        ("diag", (2, 2)),
        ("spherical", (2,)),
    ]:
        model = DensityGMM(2, covariance_type=covariance_type, random_state=0).fit(grid_2d, density)
        assert model.weights_.shape == (2,)
        assert model.means_.shape == (2, 2)
        for name in ("covariances_", "precisions_", "precisions_cholesky_"):
            assert getattr(model, name).shape == shape
        assert model.n_features_in_ == 2
        assert np.all(np.isfinite(model.means_))


def test_score_is_r2_for_l2_and_d2_for_poisson(writeup):
    grid, density = writeup
    noisy = density + np.random.default_rng(0).normal(0, 0.01, density.shape)
    model = DensityGMM(2, random_state=0).fit(grid, noisy)
    assert model.score(grid, noisy) == pytest.approx(
        r2_score(noisy, model.predict(grid), sample_weight=quadrature_weights(grid[:, None]))
    )
    assert 0.9 < model.score(grid, noisy) < 1.0
    assert model.score(grid, density) > model.score(grid, noisy)

    counts = np.random.default_rng(1).poisson(500 * density)
    poisson = DensityGMM(2, loss="poisson", random_state=0).fit(grid, counts)
    expected = d2_tweedie_score(counts, poisson.predict(grid), power=1)
    assert poisson.score(grid, counts) == pytest.approx(expected)


def test_perfect_fit_scores_one_and_loss_zero(writeup):
    grid, density = writeup
    model = DensityGMM(2, random_state=0).fit(grid, density)
    assert model.score(grid, density) == pytest.approx(1.0, abs=1e-12)
    assert 0 <= model.loss_ < 1e-14


def test_predictions_agree_with_gaussian_mixture(writeup):
    grid, density = writeup
    model = DensityGMM(2, random_state=0).fit(grid, density)
    gmm = model.to_gaussian_mixture()
    assert isinstance(gmm, GaussianMixture)
    X = np.linspace(-5, 30, 50)[:, None]
    np.testing.assert_allclose(model.score_samples(X), gmm.score_samples(X))
    np.testing.assert_allclose(
        model.predict_density(X), model.scale_ * np.exp(gmm.score_samples(X))
    )
    np.testing.assert_allclose(model.predict(X), model.predict_density(X))
    truth = 0.8 * norm.pdf(X[:, 0], 15, 1) + 0.2 * norm.pdf(X[:, 0], 20, 1)
    np.testing.assert_allclose(model.predict_density(X), truth, rtol=1e-6, atol=1e-12)
    proba = model.predict_proba(X)
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    samples, labels = model.sample(2000)
    assert samples.shape == (2000, 1)
    assert abs(np.mean(labels == 0) - 0.8) < 0.05


def test_fixed_scale(writeup):
    grid, density = writeup
    model = DensityGMM(2, scale=1.0, random_state=0).fit(grid, 3.0 * density)
    assert model.scale_ == pytest.approx(1.0)
    free = DensityGMM(2, random_state=0).fit(grid, 3.0 * density)
    assert free.scale_ == pytest.approx(3.0, rel=1e-6)


def test_same_random_state_gives_identical_parameters(writeup):
    grid, density = writeup
    noisy = density + np.random.default_rng(0).normal(0, 0.005, density.shape)
    a = DensityGMM(2, random_state=7, n_init=3).fit(grid, noisy)
    b = DensityGMM(2, random_state=7, n_init=3).fit(grid, noisy)
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.covariances_, b.covariances_)
    np.testing.assert_array_equal(a.weights_, b.weights_)


def test_clone_and_pickle_round_trip(writeup):
    grid, density = writeup
    model = DensityGMM(2, random_state=0).fit(grid, density)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(grid), model.predict(grid))
    assert clone(model).get_params() == model.get_params()
    assert not hasattr(clone(model), "means_")


def test_warm_start_continues_from_the_previous_fit(writeup):
    grid, density = writeup
    model = DensityGMM(2, random_state=0, warm_start=True).fit(grid, density)
    first = model.means_.copy()
    model.fit(grid, density)
    np.testing.assert_allclose(model.means_, first, rtol=1e-8)
    assert model.n_iter_ <= 2


def test_user_initial_parameters_are_used(writeup):
    """One iteration from the true parameters stays there; from others it cannot get there."""
    grid, density = writeup

    def one_iteration(means):
        model = DensityGMM(
            2,
            means_init=means,
            weights_init=[0.8, 0.2],
            precisions_init=[[[1.0]], [[1.0]]],
            max_iter=1,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(grid, density)

    np.testing.assert_allclose(one_iteration([[15.0], [20.0]]).means_.ravel(), [15, 20], atol=1e-6)
    assert np.abs(one_iteration([[12.0], [23.0]]).means_.ravel() - [15, 20]).max() > 1e-2


def test_max_iter_one_warns_and_keeps_finite_parameters(writeup):
    grid, density = writeup
    with pytest.warns(ConvergenceWarning, match="Increase max_iter"):
        model = DensityGMM(3, max_iter=1, random_state=0).fit(grid, density)
    assert not model.converged_
    for name in ("weights_", "means_", "covariances_"):
        assert np.all(np.isfinite(getattr(model, name)))
    np.testing.assert_allclose(model.weights_.sum(), 1.0)


def test_components_come_in_canonical_order(grid_2d):
    centers = np.array([[3.0, 0.0], [-3.0, 2.0], [0.0, -4.0]])
    density = sum(np.exp(-0.5 * np.sum((grid_2d - c) ** 2, axis=1)) for c in centers)
    for seed in range(3):
        model = DensityGMM(3, random_state=seed, init_params="random_from_data").fit(
            grid_2d, density
        )
        np.testing.assert_allclose(model.means_, centers[np.argsort(centers[:, 0])], atol=1e-5)


def test_integer_weights_equal_repeated_points_in_the_loss():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    target = rng.uniform(size=20)
    counts = rng.integers(1, 4, size=20)
    layout = ParameterLayout(2, 2, "full")
    theta = rng.normal(size=layout.n_parameters) * 0.3

    def loss(points, values, weights):
        data = FitData(
            quadratic_features(points, "full"), values, weights / weights.sum(), layout, "l2"
        )
        return objective(theta, data)

    repeated = loss(np.repeat(X, counts, axis=0), np.repeat(target, counts), np.ones(counts.sum()))
    assert loss(X, target, counts.astype(float)) == pytest.approx(repeated, rel=1e-12)


def test_quadrature_weights_are_cell_sizes():
    x = np.array([0.0, 1.0, 3.0, 3.0, 7.0])
    w = quadrature_weights(x[:, None])
    # the cell of 3 is (2 + 4) / 2 = 3, shared by its two copies
    expected = np.array([1.0, 1.5, 1.5, 1.5, 4.0])
    np.testing.assert_allclose(w, expected / expected.sum())
    grid = np.column_stack([a.ravel() for a in np.meshgrid([0, 1, 3.0], [0, 2.0])])
    w2 = quadrature_weights(grid)
    np.testing.assert_allclose(w2, np.outer([2, 2], [1, 1.5, 2]).ravel() / 18)


@pytest.mark.parametrize(
    ("kwargs", "y_change", "message"),
    [
        ({"loss": "poisson"}, lambda y: y - 0.01, "loss='poisson' needs a non-negative"),
        ({}, lambda y: 0 * y, "no positive value"),
        ({}, lambda y: -y, "no positive value"),
    ],
)
def test_densities_the_loss_cannot_fit_raise_clear_errors(writeup, kwargs, y_change, message):
    grid, density = writeup
    with pytest.raises(ValueError, match=message):
        DensityGMM(2, **kwargs).fit(grid, y_change(density))


def test_l2_accepts_negative_values(writeup):
    grid, density = writeup
    model = DensityGMM(2, random_state=0).fit(grid, density - 0.001)
    assert np.all(np.isfinite(model.means_))


def test_more_components_than_points_is_an_error():
    with pytest.raises(ValueError, match="n_components = 5, n_samples = 3"):
        DensityGMM(5).fit([0.0, 1.0, 2.0], [1.0, 2.0, 1.0])


def test_column_vector_density_warns(writeup):
    grid, density = writeup
    with pytest.warns(DataConversionWarning):
        DensityGMM(2, random_state=0).fit(grid, density[:, None])


def test_one_dimensional_grid_at_predict_time_needs_one_feature(grid_2d):
    density = np.exp(-0.5 * np.sum(grid_2d**2, axis=1))
    model = DensityGMM(1, random_state=0).fit(grid_2d, density)
    with pytest.raises(ValueError, match="Reshape your data"):
        model.predict(np.zeros(3))


def test_summary_is_json_and_report_shows_standard_errors(writeup):
    import json

    grid, density = writeup
    noisy = density + np.random.default_rng(0).normal(0, 0.002, density.shape)
    model = DensityGMM(2, random_state=0).fit(grid, noisy)
    summary = json.loads(json.dumps(model.summary()))
    assert [c["weight"] for c in summary["components"]] == pytest.approx(model.weights_.tolist())
    report = model.fit_report(grid, noisy)
    assert "[[Fit Statistics]]" in report and report.count("+/-") == 7
    assert "+/-" not in model.fit_report()


@pytest.mark.parametrize("seed", range(3))
def test_scores_equal_sklearn_metrics(seed):
    from skdensityfit._reports.reports import score_prediction

    rng = np.random.default_rng(seed)
    y = rng.poisson(5, 60).astype(float)
    predicted, weights = rng.uniform(1, 9, 60), rng.uniform(0.1, 1, 60)
    np.testing.assert_allclose(
        score_prediction("l2", y, predicted, weights),
        r2_score(y, predicted, sample_weight=weights),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        score_prediction("poisson", y, predicted, weights),
        d2_tweedie_score(y, predicted, sample_weight=weights, power=1),
        rtol=1e-12,
    )


def test_scores_of_one_point_and_of_constant_densities():
    from skdensityfit._reports.reports import score_prediction

    for loss in ("l2", "poisson"):
        # one held-out point: undefined, as in scikit-learn (not a huge negative number)
        assert np.isnan(score_prediction(loss, np.array([0.1]), np.array([0.09]), [0.7]))
        constant = np.full(5, 0.3)
        assert score_prediction(loss, constant, constant.copy(), np.ones(5)) == 1.0
        assert score_prediction(loss, constant, constant + 0.1, np.ones(5)) == 0.0


def test_an_exact_fit_ends_the_restarts(monkeypatch, writeup):
    import skdensityfit._engine.fitting as estimator

    calls = []
    original = estimator.minimize_rows

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(estimator, "minimize_rows", counting)
    grid, density = writeup
    model = DensityGMM(2, n_init=5, random_state=0).fit(grid, density)
    assert model.loss_ < 1e-12 and len(calls) == 1
    noisy = density + np.random.default_rng(0).normal(0, 1e-3, density.shape)
    calls.clear()
    DensityGMM(2, n_init=3, random_state=0).fit(grid, noisy)
    assert len(calls) >= 3  # no exact fit: every start runs


def test_warnings_point_at_the_caller(writeup):
    grid, density = writeup
    with pytest.warns(ConvergenceWarning) as record:
        DensityGMM(3, max_iter=1, random_state=0).fit(grid, density)
    assert all(w.filename == __file__ for w in record)


def test_warm_start_after_a_change_of_covariance_type_starts_afresh(grid_2d):
    from skdensityfit._examples import mixture_density

    grid = grid_2d
    means = np.array([[-3.0, 0.0], [3.0, 2.0]])
    density = mixture_density(grid, [0.6, 0.4], means, np.array([np.eye(2) * 2.0, np.eye(2)]))
    model = DensityGMM(2, covariance_type="diag", warm_start=True, random_state=0)
    model.fit(grid, density)
    model.set_params(covariance_type="tied").fit(grid, density)
    cold = DensityGMM(2, covariance_type="tied", random_state=0).fit(grid, density)
    # a fresh fit, not a warm start from the diagonal factors read as a tied one
    assert model.covariances_.shape == (2, 2) and model.n_iter_ == cold.n_iter_
    np.testing.assert_allclose(model.means_, cold.means_, rtol=1e-12)


@pytest.mark.parametrize("unit", [1e-300, 1e-160, 1e-150, 1.0, 1e150, 1e160, 1e300])
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_exact_fits_score_one_in_any_unit(unit, loss, writeup):
    """Scores are computed in normalised units: no under- or overflow at extreme units."""
    grid, density = writeup
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = DensityGMM(2, loss=loss, random_state=0).fit(grid, unit * density)
        assert model.score(grid, unit * density) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(model.means_.ravel(), [15.0, 20.0], rtol=1e-6)
    assert model.scale_ == pytest.approx(unit, rel=1e-6)


@pytest.mark.parametrize("max_iter", [1, 2, 5, 20])
def test_n_iter_never_exceeds_max_iter(max_iter, writeup):
    grid, density = writeup
    noisy = density + np.random.default_rng(0).normal(0, 1e-3, density.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = DensityGMM(3, n_init=3, max_iter=max_iter, random_state=0).fit(grid, noisy)
    assert 1 <= model.n_iter_ <= max_iter


def test_a_spike_narrower_than_the_spacing_warns_of_the_width_floor():
    grid = np.linspace(0, 10, 51)  # spacing 0.2
    spike = norm.pdf(grid, 5.0, 0.02)
    with pytest.warns(UserWarning, match="width floor"):
        model = DensityGMM(1, random_state=0).fit(grid, spike)
    assert abs(model.scale_ - 1.0) > 0.5  # the mass is indeed wrong: the warning is deserved


def test_surplus_components_at_the_width_floor_warn():
    grid = np.linspace(0, 25, 300)
    density = 0.6 * norm.pdf(grid, 10, 1.2) + 0.4 * norm.pdf(grid, 15, 1.5)
    noisy = density + np.random.default_rng(1).normal(0, 0.02 * density.max(), grid.shape)
    with pytest.warns(UserWarning, match="width floor"):
        model = DensityGMM(8, random_state=0).fit(grid, noisy)
    assert np.sqrt(model.covariances_.min()) < 0.05  # half the spacing of 0.084


def test_a_well_resolved_fit_does_not_warn_of_the_width_floor(writeup):
    grid, density = writeup
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DensityGMM(2, random_state=0).fit(grid, density)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("d", [1, 2])
def test_points_far_from_the_grid_have_zero_density_not_nan(covariance_type, d):
    """At x = 1e300 the squared residual overflows: the density is 0, the log-density
    very negative and the responsibilities sum to 1 (issue #27: NaN)."""
    x = np.linspace(-5, 5, 40)
    X = x[:, None] if d == 1 else np.stack(np.meshgrid(x, x), -1).reshape(-1, 2)
    y = np.exp(-0.5 * ((X - 1) ** 2).sum(1)) + np.exp(-0.5 * ((X + 2) ** 2).sum(1))
    gmm = DensityGMM(2, covariance_type=covariance_type, random_state=0).fit(X, y)
    far = np.array([[1e300] * d, [-1e300] * d, [1e300, -1e300][:d], [1e200] * d])
    np.testing.assert_array_equal(gmm.predict_density(far), 0.0)
    log_density = gmm.score_samples(far)
    assert np.all(np.isfinite(log_density)) and np.all(log_density < -1e100)
    resp = gmm.predict_proba(far)
    assert np.all(np.isfinite(resp))
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)


def test_counts_on_cells_of_different_sizes_are_warned_of_at_fit():
    """An independent review: integer counts of unequal bins given at their centres were
    fitted as counts per point, silently; the fit now says how to pass them."""
    x = np.array([0, 1, 2, 3, 5, 8, 12, 17, 23, 30.0])
    y = np.array([1, 5, 20, 40, 30, 10, 8, 3, 1, 0.0])
    with pytest.warns(UserWarning, match="counts / cell size"):
        DensityGMM(1, loss="poisson", random_state=0).fit(x, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DensityGMM(1, loss="poisson", random_state=0).fit(np.arange(10.0), y)
        width = np.gradient(x)
        DensityGMM(1, loss="poisson", random_state=0).fit(x, y / width, sample_weight=width)
    # (the second fit's one Gaussian is high at x = 0: the edge warning is its own)
    assert not [w for w in caught if "cell size" in str(w.message)]
