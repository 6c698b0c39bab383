"""Standard errors against the spread of refits on independently noised copies."""

import numpy as np
import pytest
from scipy.stats import norm

from skdensityfit import DensityGMM

GRID = np.linspace(0, 25, 200)
CLEAN = 0.6 * norm.pdf(GRID, 10, 1.2) + 0.4 * norm.pdf(GRID, 14, 1.5)


def _noisy(loss, rng):
    if loss == "l2":
        return CLEAN + rng.normal(0, 0.01 * CLEAN.max(), GRID.shape)
    return rng.poisson(20_000 * (GRID[1] - GRID[0]) * CLEAN).astype(float)


def _vector(model):
    return np.concatenate(
        [model.weights_, model.means_.ravel(), model.covariances_.ravel(), [model.scale_]]
    )


@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_standard_errors_match_the_spread_of_200_refits(loss):
    rng = np.random.default_rng(0)
    y = _noisy(loss, rng)
    model = DensityGMM(2, loss=loss, random_state=0).fit(GRID, y)
    errors = model.standard_errors(GRID, y)
    predicted = np.concatenate(
        [
            errors["weights"],
            errors["means"].ravel(),
            errors["covariances"].ravel(),
            [errors["scale"]],
        ]
    )
    refits = np.array(
        [
            _vector(DensityGMM(2, loss=loss, random_state=0).fit(GRID, _noisy(loss, rng)))
            for _ in range(200)
        ]
    )
    spread = refits.std(axis=0, ddof=1)
    np.testing.assert_allclose(predicted, spread, rtol=0.3)


def test_standard_errors_warn_when_the_loss_is_flat():
    # three components for a noise-free two-component density: two of them
    # share one peak, which any split between them fits equally well
    with pytest.warns(UserWarning, match="nearly coincide"):
        model = DensityGMM(3, random_state=0).fit(GRID, CLEAN)
    with pytest.warns(UserWarning, match="cannot be estimated"):
        errors = model.standard_errors(GRID, CLEAN)
    assert np.all(np.isnan(errors["means"]))


def test_poisson_counts_on_unequal_cells_warn():
    grid = np.r_[np.linspace(0, 12, 40, endpoint=False), np.linspace(12, 25, 400)]
    density = 0.6 * norm.pdf(grid, 10, 1.2) + 0.4 * norm.pdf(grid, 14, 1.5)
    counts = np.random.default_rng(0).poisson(300 * density).astype(float)
    model = DensityGMM(2, loss="poisson", random_state=0).fit(grid, counts)
    with pytest.warns(UserWarning, match="cells differ in size"):
        model.standard_errors(grid, counts)
    with pytest.warns(UserWarning, match="cells differ in size"):
        model.bic(grid, counts)
