"""The kernel's Levenberg-Marquardt, the held-out folds' steps and the mass shares."""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from skdensityfit import make_writeup_problem
from skdensityfit._engine.problem import build_problem
from skdensityfit._engine.rows import component_shares_of, losses_of, minimize_rows, models_of
from skdensityfit._model.reference import log_component_densities
from skdensityfit._selection.rules import PointFolds

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _random_problem(covariance_type, loss, n_features, seed=0):
    """Three components on a random 2-D or 1-D cloud of points, at random parameters."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, n_features))
    problem = build_problem(
        X,
        np.abs(rng.normal(size=120)),
        rng.dirichlet(np.ones(120)) * 120,
        n_components=3,
        covariance_type=covariance_type,
        loss=loss,
        scale=None,
    )
    theta = np.clip(
        0.3 * rng.normal(size=problem.bounds.shape[0]), problem.bounds[:, 0], problem.bounds[:, 1]
    )
    return problem, theta


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("n_features", [1, 2])
def test_fold_steps_lower_each_training_loss(covariance_type, loss, n_features):
    """Each held-out fold's step is the kernel's first step on its training points alone,
    and lowers their loss."""
    problem, theta = _random_problem(covariance_type, loss, n_features)
    splits = list(KFold(3, shuffle=True, random_state=0).split(problem.grid))
    y = problem.data.target
    fits = PointFolds(splits, y, np.ones(len(y)), loss).fit(theta, problem)
    for fit, (train, _) in zip(fits, splits, strict=True):
        alone = problem.subset(train).kernel
        assert losses_of(alone, fit[None])[0] < losses_of(alone, theta[None])[0]
        step = minimize_rows(alone, theta[None], tol=0.0, max_iter=1).theta[0]
        np.testing.assert_allclose(fit, step, rtol=1e-7, atol=1e-9)


def test_fold_steps_skip_folds_without_a_positive_value():
    problem, theta = _random_problem("full", "l2", 1)
    y = problem.data.target.copy()
    splits = list(KFold(3).split(problem.grid))
    y[splits[0][0]] = 0.0  # the first fold trains on zeros only
    fits = PointFolds(splits, y, np.ones(len(y)), "l2").fit(theta, problem)
    assert fits[0] is None and fits[1] is not None and fits[2] is not None


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mass_shares_and_burdens_match_the_reference(covariance_type):
    problem, theta = _random_problem(covariance_type, "l2", 2)
    data = problem.data
    weights = problem.unpack(theta)[1]
    joint = np.exp(log_component_densities(theta, data.features, data.layout)) * weights
    masses = data.quadrature @ joint
    shares, burdens = component_shares_of(problem.kernel, theta[None], burdens=True)
    np.testing.assert_allclose(shares[0], masses / masses.sum(), rtol=1e-10)
    # the squared residual, weighted by each component's responsibility
    residual = data.target - models_of(problem.kernel, theta[None])[0]
    responsibility = joint / joint.sum(axis=1, keepdims=True)
    expected = (data.quadrature * residual**2) @ responsibility
    np.testing.assert_allclose(burdens[0], expected, rtol=1e-9)


def _writeup_rows():
    """The write-up's problem in the kernel, and a start near its two components."""
    from skdensityfit import DensityGMM
    from skdensityfit._engine.problem import problem_of

    grid, density, truth = make_writeup_problem()
    problem = problem_of(DensityGMM(2), grid[:, None], density, None)
    start = problem.to_fit(
        np.array([0.5, 0.5]), np.array([[14.0], [21.0]]), np.full((2, 1, 1), 0.5), 1.0
    )
    return problem, start, truth


def test_levenberg_marquardt_solves_the_writeup_problem_in_few_iterations():
    from skdensityfit._engine.rows import minimize_rows
    from skdensityfit._model.parameters import rows_split

    problem, start, truth = _writeup_rows()
    result = minimize_rows(problem.kernel, start[None], tol=1e-10, max_iter=100)
    assert result.converged[0] and result.n_iter[0] <= 20
    assert result.loss[0] < 1e-18  # a relative L2 error of 1e-9 (fastmath sums)
    _, _, means, _ = rows_split(result.theta, problem.layout)
    standardisation = problem.standardisation
    fitted = np.sort(standardisation.center[0] + standardisation.spread[0] * means[0, :, 0])
    np.testing.assert_allclose(fitted, truth["means"], atol=1e-6)


def test_levenberg_marquardt_stays_inside_the_bounds():
    from dataclasses import replace as replaced

    from skdensityfit._engine.rows import minimize_rows

    problem, start, _ = _writeup_rows()
    layout = problem.layout
    upper = problem.bounds[:, 1].copy()
    cholesky = slice(layout.offsets[3], layout.offsets[4])
    upper[cholesky] = 0.5  # log precision factors: widths at least exp(-0.5) standard units
    inputs = replaced(problem.kernel, upper=upper)
    result = minimize_rows(inputs, np.minimum(start, upper)[None], tol=1e-10, max_iter=200)
    theta = result.theta[0]
    assert np.all(theta >= problem.bounds[:, 0]) and np.all(theta <= upper)
    assert np.isfinite(result.loss[0])
    # the true components are narrower than the bound allows, so the fit presses on it
    assert np.isclose(theta[cholesky], 0.5).any()
