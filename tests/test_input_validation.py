"""Bad input gets a clear error; odd but valid input gets the right answer."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import norm

from skdensityfit import DensityGMM, make_writeup_problem


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


@pytest.mark.parametrize(("scale", "shift"), [(1e-9, 0.0), (1e9, 0.0), (1.0, 1e6), (1e9, 1e6)])
def test_units_and_offsets_transform_parameters_exactly(scale, shift):
    grid, density, _ = make_writeup_problem()
    reference = DensityGMM(2, random_state=0).fit(grid, density)
    with np.errstate(all="raise"):
        moved = DensityGMM(2, random_state=0).fit(grid * scale + shift, density / scale)
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
    assert np.all(np.isfinite(model.means_))
    assert np.sqrt(model.covariances_.ravel()[0]) >= 0.5 * spacing * (1 - 1e-9)
    assert model.means_[0, 0] == pytest.approx(GRID[20], abs=spacing)
