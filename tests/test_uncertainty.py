"""Standard errors against the spread of refits on independently noised copies."""

import warnings

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


@pytest.mark.parametrize("bins", [False, True])
def test_raw_counts_on_unequal_bins_warn_under_the_l2_loss_too(bins):
    """histogram_to_grid's raw counts on bins of two widths, fitted with the default l2
    loss (with or without the bins): counts depend on the widths, so the fit warns."""
    edges = np.concatenate([np.linspace(-4, 2, 25), np.linspace(2.5, 8, 12)])
    rng = np.random.default_rng(2)
    counts, _ = np.histogram(np.r_[rng.normal(0, 1, 6000), rng.normal(4, 0.7, 4000)], edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    with pytest.warns(UserWarning, match="cells differ in size"):
        DensityGMM(2, bins=[edges] if bins else None, random_state=0).fit(centres, counts)
    with warnings.catch_warnings():  # the recipe: a density, the widths as sample_weight
        warnings.simplefilter("error", UserWarning)
        width = np.diff(edges)
        DensityGMM(2, bins=[edges] if bins else None, random_state=0).fit(
            centres, counts / width, sample_weight=width
        )


def test_a_uniform_grid_rounded_when_written_is_not_read_as_unequal_cells():
    """A linspace grid printed with 4 decimals (cells within 1e-3 of each other) has equal
    cells; one printed with 2 (4% apart) does not."""
    grid = np.linspace(0, 100, 400)
    counts = np.random.default_rng(0).poisson(50 * np.exp(-0.5 * ((grid - 40) / 3) ** 2) + 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DensityGMM(1, loss="poisson", background="constant", random_state=0).fit(
            np.round(grid, 4), counts
        )
    with pytest.warns(UserWarning, match="cells differ in size"):
        DensityGMM(1, loss="poisson", background="constant", random_state=0).fit(
            np.round(grid, 2), counts
        )


# ----------------------------------------------------------------------
# fit_many: every row's errors at once (issue #27)
# ----------------------------------------------------------------------
def _batch_case(loss, background, seed=0):
    x = np.linspace(0, 25, 200)
    rng = np.random.default_rng(seed)
    rows = []
    for m in (6.0, 8.0, 10.0):
        y = 0.6 * norm.pdf(x, m, 1.2) + 0.4 * norm.pdf(x, m + 7, 2.0)
        if background == "linear":
            y = y + 0.02 + 0.001 * x
        elif background == "exponential":
            y = y + 0.05 * np.exp(-0.1 * x)
        if loss == "poisson":
            y = rng.poisson(4000 * y).astype(float)
        else:
            y = y + 0.002 * rng.normal(size=x.size)
        rows.append(y)
    return x, np.array(rows)


def _reported(errors, i):
    parts = [errors["weights"][i], errors["means"][i].ravel(), errors["covariances"][i].ravel()]
    return np.concatenate([*parts, [errors["scale"][i]], errors.get("background", [[]] * 3)[i]])


@pytest.mark.parametrize("background", [None, "linear", "exponential"])
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_fit_many_standard_errors_are_the_delta_method_of_every_row(
    covariance_type, loss, background
):
    """result.standard_errors: the delta method (autograd's Jacobian of every row at once)
    under the kernel's Gauss-Newton curvature equals the single fit's delta method under
    that curvature; and it is close to DensityGMM.standard_errors (the exact Hessian)."""
    from skdensityfit import fit_many
    from skdensityfit._engine.rows import derivatives_of
    from skdensityfit._engine.uncertainty import reported_errors

    x, Y = _batch_case(loss, background)
    settings = dict(covariance_type=covariance_type, loss=loss, background=background)
    result = fit_many(x, Y, DensityGMM(2, random_state=0, **settings))
    errors = result.standard_errors(x, Y)
    assert errors["means"].shape == result.means.shape
    assert errors["covariances"].shape == result.covariances.shape
    assert ("background" in errors) == (background is not None)
    for i in range(len(Y)):
        single = DensityGMM(2, random_state=0, **settings).fit(x, Y[i])
        problem, theta, _, y = single._problem_of_fit(x, Y[i], None)
        loss_value, _, curvature = derivatives_of(problem.kernel, theta)
        if loss == "l2":
            covariance = 2 * loss_value / (len(y) - theta.size) * np.linalg.inv(curvature)
        else:
            unit = problem.standardisation.density_unit
            information = unit * len(y) * problem.data.normaliser * curvature
            covariance = np.linalg.inv(information)
        expected = reported_errors(problem, theta, covariance)
        np.testing.assert_allclose(_reported(errors, i), expected, rtol=1e-7)
        exact = single.standard_errors(x, Y[i])
        exact = np.concatenate(
            [
                exact["weights"],
                exact["means"].ravel(),
                np.ravel(exact["covariances"]),
                [exact["scale"]],
                exact.get("background", []),
            ]
        )
        # the Gauss-Newton and the exact curvature agree up to terms in the residuals
        if covariance_type != "tied":  # a tied fit of unequal widths leaves structure
            np.testing.assert_allclose(_reported(errors, i), exact, rtol=0.05)


def test_fit_many_standard_errors_of_a_choice_of_k_and_failed_rows():
    from skdensityfit import DensityGMMCV, fit_many

    x, Y = _batch_case("l2", None)
    one = 0.6 * norm.pdf(x, 9, 1.5) + 0.002 * np.random.default_rng(1).normal(size=x.size)
    Y = np.vstack([Y[:2], np.zeros(x.size), one])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(x, Y, DensityGMMCV(n_components=4, random_state=0))
    assert list(result.n_components) == [2, 2, 0, 1] and result.failed[2]
    errors = result.standard_errors(x, Y)
    assert np.all(np.isnan(errors["means"][2])) and np.all(np.isnan(errors["means"][3, 1:]))
    assert np.all(np.isfinite(errors["means"][3, :1])) and np.all(errors["means"][:2, :2] > 0)
    single = DensityGMM(1, random_state=0).fit(x, Y[3])
    np.testing.assert_allclose(
        errors["means"][3, 0], single.standard_errors(x, Y[3])["means"][0], rtol=0.05
    )
    with pytest.raises(ValueError, match="rows"):
        result.standard_errors(x, Y[:2])


def test_equal_bins_with_a_gap_warn_and_the_advice_mends_it():
    """Equal bins with five left out: the points beside the gap get larger cells, so raw
    counts warn; sample_weight=np.ones(n), as the warning says, reads each as one bin's and
    is silent, and recovers the mixture."""
    rng = np.random.default_rng(0)
    samples = np.r_[rng.normal(0, 1, 3000), rng.normal(4, 0.7, 2000)]
    counts, edges = np.histogram(samples, bins=np.linspace(-4, 7, 56))
    keep = np.ones(counts.size, dtype=bool)
    keep[20:25] = False
    x, y = 0.5 * (edges[1:] + edges[:-1])[keep], counts[keep].astype(float)
    with pytest.warns(UserWarning, match=r"left out \(a gap\).*sample_weight=np.ones"):
        DensityGMM(2, loss="poisson", random_state=0).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = DensityGMM(2, loss="poisson", random_state=0).fit(
            x, y, sample_weight=np.ones(y.size)
        )
        model.bic(x, y, sample_weight=np.ones(y.size))
    np.testing.assert_allclose(np.sort(model.means_.ravel()), [0.0, 4.0], atol=0.1)
