"""Bad input gets a clear error; odd but valid input gets the right answer."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import norm
from sklearn.base import clone

from skdensityfit import DensityGMM, DensityGMMCV, fit_many, make_writeup_problem


@pytest.fixture
def fitted():
    grid, density, _ = make_writeup_problem()
    return DensityGMM(2, random_state=0).fit(grid, density)


GRID = np.linspace(0, 10, 50)
DENSITY = norm.pdf(GRID, 5, 1)


@pytest.mark.parametrize(
    ("X", "y", "error", "message"),
    [
        (np.where(GRID == GRID[3], np.nan, GRID), DENSITY, ValueError, "NaN"),
        (GRID, np.where(GRID == GRID[3], np.inf, DENSITY), ValueError, "infinity"),
        (GRID + 1j, DENSITY, ValueError, "[Cc]omplex"),
        (np.array([]), np.array([]), ValueError, "0 sample"),
        (GRID[:1], DENSITY[:1], ValueError, "1 sample"),
        (GRID, DENSITY[:-1], ValueError, "inconsistent numbers of samples"),
        (GRID, np.column_stack([DENSITY, DENSITY]), ValueError, "1d array"),
        (sp.csr_matrix(GRID[:, None]), DENSITY, TypeError, "[Ss]parse"),
        (np.array([*GRID[:-1], "a"], dtype=object), DENSITY, ValueError, "could not convert"),
    ],
)
def test_bad_input_raises_a_clear_error(X, y, error, message):
    with pytest.raises(error, match=message):
        DensityGMM(1).fit(X, y)


def test_wrong_number_of_features_at_predict_time(fitted):
    with pytest.raises(ValueError, match="X has 2 features, but DensityGMM is expecting 1"):
        fitted.predict(np.zeros((3, 2)))


def test_predict_before_fit_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        DensityGMM().predict(GRID)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize(("scale", "shift"), [(1e-9, 0.0), (1e9, 0.0), (1.0, 1e6), (1e9, 1e6)])
def test_units_and_offsets_transform_parameters_exactly(scale, shift, covariance_type):
    grid, density, _ = make_writeup_problem()
    model = DensityGMM(2, covariance_type=covariance_type, random_state=0)
    reference = clone(model).fit(grid, density)
    with np.errstate(all="raise"):
        moved = clone(model).fit(grid * scale + shift, density / scale)
        prediction = moved.predict(grid * scale + shift)
    np.testing.assert_allclose(moved.means_, reference.means_ * scale + shift, rtol=1e-6)
    np.testing.assert_allclose(moved.covariances_, reference.covariances_ * scale**2, rtol=1e-6)
    np.testing.assert_allclose(moved.weights_, reference.weights_, rtol=1e-6)
    np.testing.assert_allclose(moved.scale_, reference.scale_, rtol=1e-6)
    np.testing.assert_allclose(prediction * scale, density, rtol=1e-5, atol=1e-12)


def test_far_tails_predict_zero_not_nan(fitted):
    with np.errstate(all="raise"):
        far = fitted.predict(np.array([-1e3, 1e4, 1e8]))
    np.testing.assert_array_equal(far, 0.0)
    assert np.all(np.isfinite(fitted.score_samples(np.array([1e8]))))


def test_duplicated_grid_points_give_the_same_parameters():
    grid, density, _ = make_writeup_problem()
    clean = DensityGMM(2, random_state=0).fit(grid, density)
    doubled = DensityGMM(2, random_state=0).fit(
        np.r_[grid, grid[::3]], np.r_[density, density[::3]]
    )
    np.testing.assert_allclose(doubled.means_, clean.means_, rtol=1e-6)
    np.testing.assert_allclose(doubled.weights_, clean.weights_, rtol=1e-6)


def test_a_spike_at_one_grid_point_gives_finite_floored_widths():
    y = np.zeros_like(GRID)
    y[20] = 1.0
    model = DensityGMM(1, random_state=0).fit(GRID, y)
    spacing = GRID[1] - GRID[0]
    typical_spacing = np.ptp(GRID) / len(GRID)  # the documented floor is half of this
    assert np.all(np.isfinite(model.means_))
    assert np.sqrt(model.covariances_.ravel()[0]) >= 0.5 * typical_spacing * (1 - 1e-9)
    assert model.means_[0, 0] == pytest.approx(GRID[20], abs=spacing)


def test_the_width_floor_of_a_graded_grid_is_half_its_finest_spacing():
    """On a log-spaced grid the floor was half the typical spacing, 70 times the finest gap:
    components at its fine end were held 5 to 10 times wider than they are (an independent
    review). It is now half the finest part's spacing (the least mean of a tenth of the
    gaps). Uniform, jittered, random (another review: its floor fell six-fold) and
    scattered grids, a grid with a point just past its end (the floor fell a
    hundred-fold) and 2-D grids (one floor serves both axes) keep half the typical
    spacing."""
    from skdensityfit._engine.problem import width_limits

    graded = np.geomspace(0.1, 100, 160)[:, None]
    assert width_limits(graded)[0] == pytest.approx(0.5 * (graded[15, 0] - graded[0, 0]) / 15)
    uniform = np.linspace(0.0, 10.0, 101)[:, None]
    rng = np.random.default_rng(0)
    jittered = uniform + rng.uniform(-0.03, 0.03, uniform.shape)
    random = np.sort(rng.uniform(0, 10, 100))[:, None]
    past_the_end = np.r_[uniform[:, 0], 10.001][:, None]
    for grid in (uniform, jittered, random, past_the_end):
        typical = np.ptp(grid) / len(grid)
        assert width_limits(grid)[0] == pytest.approx(0.5 * typical)
    scattered = rng.uniform(-5, 5, (1000, 2))
    log_by_plain = np.column_stack(
        [g.ravel() for g in np.meshgrid(np.geomspace(1, 300, 75), np.linspace(0, 1, 21))]
    )
    for grid in (scattered, log_by_plain):
        side = np.sqrt(np.prod(np.ptp(grid, 0)) / len(grid))
        assert width_limits(grid)[0] == pytest.approx(0.5 * side)
    y = np.exp(-0.5 * ((graded[:, 0] - 0.5) / 0.05) ** 2)
    model = DensityGMM(1, random_state=0).fit(graded, y)
    assert np.sqrt(model.covariances_.ravel()[0]) == pytest.approx(0.05, rel=1e-6)


def test_a_component_narrower_than_the_coarse_spacing_of_a_graded_grid_warns():
    """The floor of a graded grid is its fine part's: at its coarse end a component can
    be narrower than the points are apart there, a spike on one point. The floor each
    component is judged by is half the spacing where it sits (on other grids the bounds'
    floor), so such a component is warned of (and moved, while fitting, as a parked one)."""
    from skdensityfit._engine.problem import build_problem

    grid = np.geomspace(1.0, 1000.0, 150)
    y = np.exp(-0.5 * ((grid - 3.0) / 0.4) ** 2)
    problem = build_problem(
        grid[:, None], y, None, n_components=2, covariance_type="full", loss="l2", scale=None
    )
    at = problem.standardisation
    means = (np.array([[1.0], [700.0]]) - at.center) / at.spread  # (K, d)
    floors = problem.width_floors(means)[:, 0] * at.spread[0]
    assert floors[0] == pytest.approx(problem.width_limits[0] * at.spread[0])
    assert floors[1] == pytest.approx(0.5 * 700.0 * (1000 ** (1 / 149) - 1), rel=0.1)
    uniform = build_problem(
        np.linspace(0, 10, 101)[:, None], y[:101], None, n_components=2,
        covariance_type="full", loss="l2", scale=None,
    )  # fmt: skip
    assert np.all(uniform.width_floors(np.zeros((3, 1))) == uniform.width_limits[0])
    y[130] += 0.5  # one loud point where the points are 20 apart
    with pytest.warns(UserWarning, match=r"against the width floor \(half the grid spacing where"):
        model = DensityGMM(2, random_state=0).fit(grid, y)
    spike = np.argmax(model.means_[:, 0])
    assert model.means_[spike, 0] == pytest.approx(grid[130], rel=0.01)
    assert np.sqrt(model.covariances_[spike, 0, 0]) < 0.5 * (grid[131] - grid[130])


def test_fit_many_judges_components_by_the_local_floor_as_single_fits_do():
    """fit_many's rows carry the floor warning of a graded grid's coarse end (the floor
    where each component sits) exactly where single fits give it."""
    grid = np.geomspace(1.0, 1000.0, 150)
    Y = np.array([np.exp(-0.5 * ((grid - 3.0 - i) / 0.4) ** 2) for i in range(4)])
    Y[1, 126] += 0.5
    Y[3, 128] += 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(grid, Y, DensityGMM(2, random_state=0))
    alone = []
    for y in Y:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            DensityGMM(2, random_state=0).fit(grid, y)
        alone.append(any("width floor" in str(w.message) for w in caught))
    assert alone == [False, True, False, True]
    assert ["width floor" in message for message in result.messages] == alone


def test_a_spike_is_not_reported_as_a_converged_zero_model():
    y = np.zeros(75)
    y[30] = 1.0
    model = DensityGMM(1, reg_covar=0.0, random_state=0).fit(np.linspace(0, 25, 75), y)
    assert model.loss_ < 0.5
    assert model.predict(np.linspace(0, 25, 75))[30] > 0.5


def test_spike_on_scattered_points_respects_the_width_floor():
    rng = np.random.default_rng(0)
    points = rng.uniform(-5, 5, (1000, 2))
    y = np.zeros(1000)
    y[17] = 1.0
    model = DensityGMM(1, covariance_type="spherical", random_state=0).fit(points, y)
    typical_spacing = np.sqrt(100 / 1000)
    assert np.sqrt(model.covariances_[0]) >= 0.45 * typical_spacing


def test_constant_grid_feature_is_an_error():
    grid, density, _ = make_writeup_problem()
    with pytest.raises(ValueError, match=r"feature\(s\) \[1\] are constant"):
        DensityGMM(2).fit(np.column_stack([grid, np.full_like(grid, 3.0)]), density)


def test_warm_start_after_changing_the_model_starts_afresh():
    grid, density, _ = make_writeup_problem()
    model = DensityGMM(2, warm_start=True, random_state=0).fit(grid, density)
    model.set_params(n_components=3).fit(grid, density)
    assert model.means_.shape == (3, 1)
    model.set_params(covariance_type="diag").fit(grid, density)
    assert model.covariances_.shape == (3, 1)


def test_non_symmetric_precisions_init_is_refused(grid_2d):
    y = np.exp(-0.5 * np.sum(grid_2d**2, axis=1))
    with pytest.raises(ValueError, match="symmetric"):
        DensityGMM(1, precisions_init=[[[1.0, 0.9], [0.0, 1.0]]]).fit(grid_2d, y)


def test_jittered_product_grid_keeps_its_cell_weights():
    from skdensityfit._data.validation import quadrature_weights

    x = np.geomspace(1, 100, 30)
    grid = np.column_stack([a.ravel() for a in np.meshgrid(x, np.linspace(0, 1, 20))])
    jittered = grid + np.random.default_rng(0).normal(0, 1e-15, grid.shape)
    np.testing.assert_allclose(quadrature_weights(jittered), quadrature_weights(grid), rtol=1e-9)


def test_grid_on_a_line_in_2d_is_an_error():
    t = np.linspace(0, 1, 100)
    with pytest.raises(ValueError, match="lower-dimensional subspace"):
        DensityGMM(1).fit(np.column_stack([t, 2 * t + 1]), np.exp(-0.5 * ((t - 0.5) / 0.1) ** 2))


def test_fewer_points_than_parameters_warns_but_fits():
    with pytest.warns(UserWarning, match="4 points for 6 free parameters"):
        model = DensityGMM(2, random_state=0).fit(np.arange(4.0), [1.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    assert np.all(model.weights_ > 0)


def test_more_components_than_supported_give_simplex_weights_and_a_warning():
    grid, density, _ = make_writeup_problem()
    with pytest.warns(UserWarning, match="does not support 5 components"):
        model = DensityGMM(5, random_state=0).fit(grid, density)
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    assert np.all(model.weights_ >= 0)
    assert np.all(np.isfinite(model.covariances_))


def test_plateau_warns_that_the_density_is_cut_at_the_grid_edge():
    grid, _, _ = make_writeup_problem()
    with pytest.warns(UserWarning, match="edge of the grid reaches 100% of its peak"):
        model = DensityGMM(3, random_state=0).fit(grid, np.ones_like(grid))
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    assert np.all(np.isfinite(model.means_)) and np.isfinite(model.scale_)


def test_non_finite_start_everywhere_is_a_clear_error(monkeypatch):
    import skdensityfit._engine.fitting as engine
    from skdensityfit._engine.kernel import NOT_FINITE
    from skdensityfit._engine.rows import RowResults

    def broken(inputs, thetas, **options):
        thetas = np.atleast_2d(thetas)
        n = len(thetas)
        return RowResults(thetas, np.full(n, np.inf), np.zeros(n, int), np.full(n, NOT_FINITE))

    monkeypatch.setattr(engine, "minimize_rows", broken)
    with pytest.raises(ValueError, match="not finite at any start"):
        DensityGMM(1).fit(GRID, DENSITY)


def test_best_finite_restart_is_kept(monkeypatch):
    import skdensityfit._engine.fitting as engine

    calls = []
    original = engine.minimize_rows

    def first_run_fails(inputs, thetas, **options):
        calls.append(1)
        results = original(inputs, thetas, **options)
        if len(calls) == 1:
            results.loss[0], results.theta[0] = np.inf, np.nan
        return results

    monkeypatch.setattr(engine, "minimize_rows", first_run_fails)
    grid, density, _ = make_writeup_problem()
    model = DensityGMM(2, n_init=2, random_state=0).fit(grid, density)
    assert len(calls) >= 2  # the greedy second start also fits one component on its way
    assert np.all(np.isfinite(model.means_)) and model.converged_


def test_component_far_outside_the_grid_gives_finite_results():
    grid = np.linspace(0, 25, 200)
    density = 0.7 * norm.pdf(grid, 10, 1) + 0.3 * norm.pdf(grid, 500, 1)  # 2nd: 490 sd away
    model = DensityGMM(2, random_state=0).fit(grid, density)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(model, name)))
    np.testing.assert_allclose(model.weights_.sum(), 1.0)
    np.testing.assert_allclose(model.predict(grid), density, atol=1e-6 * density.max())


@pytest.mark.parametrize(
    "values",
    [
        np.sort(np.random.default_rng(0).integers(0, 5, 50)).astype(float),  # sorted: one pass
        np.random.default_rng(1).integers(0, 5, 50).astype(float),
        np.array([2.0, 2.0, np.nan, np.nan]),
        np.array([3.0]),
        np.array([]),
    ],
)
def test_unique_values_equal_numpys(values):
    from skdensityfit._data.validation import unique_values

    flags = {"return_index": True, "return_inverse": True, "return_counts": True}
    for got, expected in zip(
        unique_values(values, **flags), np.unique(values, **flags), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(unique_values(values), np.unique(values))


def test_missing_values_and_masks_say_how_to_pass_points_without_a_value():
    """An independent review: NaN gave scikit-learn's bare "Input y contains NaN", and a
    masked array's mask was dropped silently (the values under it were fitted)."""

    x = np.linspace(0.0, 10.0, 50)
    y = np.exp(-0.5 * (x - 5.0) ** 2)
    gap = y.copy()
    gap[3] = np.nan
    with pytest.raises(ValueError, match=r"contains NaN.*sample_weight 0"):
        DensityGMM(1).fit(x, gap)
    masked = np.ma.masked_array(y, mask=x < 1.0)
    with pytest.raises(ValueError, match="masked array with 5 masked values"):
        DensityGMM(1).fit(x, masked)
    with pytest.raises(ValueError, match="Y is a masked array"):
        fit_many(
            x, np.ma.masked_array(np.vstack([y, y]), mask=np.vstack([x < 1.0] * 2)), DensityGMM(1)
        )
    with pytest.warns(UserWarning, match="could not be fitted"):
        result = fit_many(x, np.vstack([y, gap]), DensityGMM(1, random_state=0))
    assert result.failed.tolist() == [False, True]
    assert "per_density_grids=True" in result.messages[1]


def test_a_boolean_density_is_refused_and_an_unused_cv_is_warned_of():
    """A new user's review: a boolean mask passed as the density was fitted as 0s and 1s,
    and cv= was ignored silently under the default selection (BIC, no folds)."""
    from sklearn.model_selection import KFold

    x = np.linspace(0.0, 10.0, 50)
    y = np.exp(-0.5 * (x - 5.0) ** 2)
    with pytest.raises(ValueError, match="y is boolean"):
        DensityGMM(1).fit(x, y > 0.5)
    with pytest.raises(ValueError, match="Y is boolean"):
        fit_many(x, np.vstack([y, y]) > 0.5, DensityGMM(1))
    with pytest.warns(UserWarning, match="cv=3 is not used: selection='auto'"):
        DensityGMMCV(n_components=2, cv=3, random_state=0).fit(x, y)
    with pytest.warns(UserWarning, match="cv=KFold.* is not used"):
        fit_many(x, np.vstack([y, y]), DensityGMMCV(n_components=2, cv=KFold(3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DensityGMMCV(n_components=2, random_state=0).fit(x, y)
        DensityGMMCV(n_components=2, cv=3, selection="standard_error", random_state=0).fit(x, y)


@pytest.mark.parametrize("unit", [1e-200, 1e200])
def test_a_grid_whose_covariances_cannot_be_represented_is_refused(unit):
    """A grid in units of 1e-200 (or 1e200): its variances under- (over-)flow float64, so
    the reported covariances cannot hold them: a clear error, not numpy's LinAlgError; 1e150
    still fits."""
    x = np.linspace(0, 25, 75)
    y = 0.8 * np.exp(-0.5 * (x - 15) ** 2) + 0.2 * np.exp(-0.5 * (x - 20) ** 2)
    with pytest.raises(ValueError, match="Rescale the grid"):
        DensityGMM(2, random_state=0).fit(x * unit, y)
    model = DensityGMM(2, random_state=0).fit(x * 1e150, y)
    np.testing.assert_allclose(model.means_.ravel() / 1e150, [15.0, 20.0], rtol=1e-6)


def test_a_grid_whose_offset_cost_its_digits_is_warned_of():
    """x = 1e6 + 1e-6 t: float64 rounds the points by up to 5.8e-11, 1.2% of their spacing
    (at 1e6 + 1e-9 t ten distinct values are left of 200; at 1e6 + 1e-12 t one, which is
    refused): a warning says so and what to do. 1e6 + 1e-4 t, everyday offsets (6563 + t,
    1.4e9 + 1e6 t, Unix times 1 ms apart) and a 2-D grid whose second axis is three Unix times
    (an independent review: the first version read the axes' spacing as one and warned) fit
    without one."""
    t = np.linspace(0, 1, 200)
    y = np.exp(-0.5 * ((t - 0.6) / 0.1) ** 2) + 0.5 * np.exp(-0.5 * ((t - 0.3) / 0.05) ** 2)
    for span in (1e-6, 1e-9):
        with pytest.warns(UserWarning, match=r"1.2%|50.0%.*cost the grid its digits.*an origin"):
            DensityGMM(2, random_state=0).fit(1e6 + span * t, y)
    with pytest.raises(ValueError, match=r"all lie at one value.*lost the differences"):
        DensityGMM(2, random_state=0).fit(1e6 + 1e-12 * t, y)
    for offset, span in ((1e6, 1e-4), (6563.0, 50.0), (1.4e9, 1e6), (1.7e9, 0.2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = DensityGMM(2, random_state=0).fit(offset + span * t, y)
        np.testing.assert_allclose(
            np.sort(model.means_.ravel()),
            offset + span * np.array([0.3, 0.6]),
            rtol=0,
            atol=1e-4 * span,
        )
    wavelengths, times = np.linspace(500, 800, 300), 1.7e9 + 1e-3 * np.arange(3)
    grid = np.column_stack([g.ravel() for g in np.meshgrid(wavelengths, times, indexing="ij")])
    values = np.exp(-0.5 * ((grid[:, 0] - 650) / 20) ** 2) * (1 + 0.1 * (grid[:, 1] > 1.7e9))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DensityGMM(1, covariance_type="diag", random_state=0).fit(grid, values)
    assert not [w for w in caught if "digits" in str(w.message)]


@pytest.mark.parametrize("searched", [False, True])
def test_fit_many_gives_every_row_the_grid_digits_warning_and_says_it_once(searched):
    """The digits warning is the grid's: fit_many put it in no row's messages and raised
    it once a chunk (an independent review); now every row's messages hold it, as a
    single fit's warnings do, and the summary says it once."""
    t = np.linspace(0, 1, 200)
    y = np.exp(-0.5 * ((t - 0.6) / 0.1) ** 2) + 0.5 * np.exp(-0.5 * ((t - 0.3) / 0.05) ** 2)
    x, Y = 1e6 + 1e-6 * t, np.vstack([y * (1 + 0.1 * i) for i in range(4)])
    estimator = (
        DensityGMMCV(n_components=3, random_state=0) if searched else DensityGMM(2, random_state=0)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_many(x, Y, estimator, chunk_size=2)
    digits = [str(w.message) for w in caught if "its digits" in str(w.message)]
    assert len(digits) == 1 and digits[0].startswith("fit_many:") and "4 of 4" in digits[0]
    assert all("cost the grid its digits" in message for message in result.messages)
