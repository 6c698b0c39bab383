"""The optimiser: the numpy objective's Gauss-Newton pieces, the kernel's Levenberg-Marquardt."""

from dataclasses import replace

import numpy as np
import pytest
from autograd import jacobian

from skdensityfit import make_writeup_problem
from skdensityfit._covariance import quadratic_features
from skdensityfit._model import log_component_densities, log_model_density
from skdensityfit._objective import (
    component_mass_shares,
    gauss_newton_by_group,
    model_density,
    point_losses,
    value_and_gradient,
    value_gradient_and_gauss_newton,
)
from skdensityfit._optimization import lowering_step
from skdensityfit._parameters import ParameterLayout, pack
from skdensityfit._problem import FitData

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _random_problem(covariance_type, loss, n_features, fit_scale=True, seed=0):
    rng = np.random.default_rng(seed)
    layout = ParameterLayout(3, n_features, covariance_type, fit_scale)
    X = rng.normal(size=(120, n_features))
    data = FitData(
        features=quadratic_features(X, covariance_type),
        target=np.abs(rng.normal(size=120)),
        quadrature=rng.dirichlet(np.ones(120)),
        layout=layout,
        loss=loss,
        fixed_log_scale=0.2,
    )
    return data, 0.3 * rng.normal(size=layout.n_parameters)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("n_features", [1, 2])
@pytest.mark.parametrize("fit_scale", [True, False])
def test_gauss_newton_matrix_is_jacobian_product(covariance_type, loss, n_features, fit_scale):
    """J^T diag(c) J with J from autograd, c = 2 q f^2 / norm (l2) or q f / norm (poisson)."""
    data, theta = _random_problem(covariance_type, loss, n_features, fit_scale)
    value, gradient, matrix = value_gradient_and_gauss_newton(theta, data)
    reference_value, reference_gradient = value_and_gradient(theta, data)
    J = jacobian(lambda t: log_model_density(t, data.features, data.layout, 0.2))(theta)
    f = np.exp(log_model_density(theta, data.features, data.layout, 0.2))
    q = data.quadrature / data.normaliser
    c = 2 * q * f**2 if loss == "l2" else q * f
    np.testing.assert_allclose(value, reference_value, rtol=1e-12)
    np.testing.assert_allclose(gradient, reference_gradient, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(matrix, (J * c[:, None]).T @ J, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model_density(theta, data), f, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize(("n_features", "fit_scale"), [(1, True), (2, True), (3, False)])
def test_gauss_newton_by_group_matches_each_group_alone(
    covariance_type, loss, n_features, fit_scale, monkeypatch
):
    """The shared-Jacobian terms of each group equal the full terms on its points.

    A group may count a point more than once (repeated training indices): it
    then equals the group with the point repeated. Small chunks check the
    accumulation over chunks.
    """
    import skdensityfit._objective as analytic

    monkeypatch.setattr(analytic, "CHUNK_ELEMENTS", 500)
    data, theta = _random_problem(covariance_type, loss, n_features, fit_scale)
    rng = np.random.default_rng(1)
    counts = (rng.random((3, len(data.target))) < 0.6) * rng.integers(1, 3, (3, len(data.target)))
    values, gradients, matrices = gauss_newton_by_group(theta, data, counts)
    for count, value, gradient, matrix in zip(counts, values, gradients, matrices, strict=True):
        rows = np.repeat(np.arange(len(count)), count)
        alone = replace(
            data,
            features=data.features[rows],
            target=data.target[rows],
            quadrature=data.quadrature[rows],
        )
        # the group's terms keep the whole problem's normaliser and leave out the
        # Poisson constant
        reference_value, reference_gradient, reference_matrix = (
            term * alone.normaliser / data.normaliser
            for term in value_gradient_and_gauss_newton(theta, alone)
        )
        if loss == "poisson":
            reference_value -= alone.poisson_constant / data.normaliser
        np.testing.assert_allclose(value, reference_value, rtol=1e-10)
        np.testing.assert_allclose(value, count @ point_losses(theta, data), rtol=1e-12)
        np.testing.assert_allclose(gradient, reference_gradient, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(matrix, reference_matrix, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_lowering_step_lowers_the_loss_or_stays(covariance_type):
    data, theta = _random_problem(covariance_type, "l2", 2)
    bounds = _bounds(len(theta))
    value, gradient, matrix = value_gradient_and_gauss_newton(theta, data)

    def objective(candidate):
        return value_and_gradient(candidate, data)[0]

    step = lowering_step(theta, value, gradient, matrix, bounds, objective)
    assert objective(step) < value
    # with the unconstrained step's largest move out of bounds, the step stays inside
    # them (a variable at a bound that the gradient pushes outwards stays put) and
    # still lowers the loss
    moved = np.argmax(np.abs(step - theta))
    tight = bounds.copy()
    tight[moved] = np.sort([theta[moved], theta[moved] + 0.1 * (step[moved] - theta[moved])])
    at_bound = theta.copy()
    at_bound[moved] = tight[moved, 1] if step[moved] > theta[moved] else tight[moved, 0]
    value, gradient, matrix = value_gradient_and_gauss_newton(at_bound, data)
    clipped = lowering_step(at_bound, value, gradient, matrix, tight, objective)
    assert np.all(clipped >= tight[:, 0]) and np.all(clipped <= tight[:, 1])
    pushed_out = gradient[moved] < 0 if step[moved] > theta[moved] else gradient[moved] > 0
    if pushed_out:
        assert clipped[moved] == at_bound[moved]
    assert objective(clipped) < value


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_mass_shares_sum_to_one_and_match_densities(covariance_type):
    data, theta = _random_problem(covariance_type, "l2", 2)
    logits = np.append(theta[1:3], 0.0)
    log_weights = logits - np.log(np.exp(logits).sum())
    joint = np.exp(log_component_densities(theta, data.features, data.layout) + log_weights)
    masses = data.quadrature @ joint
    np.testing.assert_allclose(component_mass_shares(theta, data), masses / masses.sum())


def _writeup_data():
    grid, density, truth = make_writeup_problem()
    x = (grid - grid.mean()) / grid.std()
    layout = ParameterLayout(2, 1, "full")
    data = FitData(
        quadratic_features(x[:, None], "full"),
        density / density.max(),
        np.full(len(x), 1 / len(x)),
        layout,
        "l2",
    )
    return data, truth, grid


def _bounds(n_parameters):
    return np.tile([-50.0, 50.0], (n_parameters, 1))


def _writeup_rows():
    """The write-up's problem in the kernel, and a start near its two components."""
    from skdensityfit import DensityGMM
    from skdensityfit._problem import problem_of

    grid, density, truth = make_writeup_problem()
    problem = problem_of(DensityGMM(2), grid[:, None], density, None)
    start = problem.to_fit(
        np.array([0.5, 0.5]), np.array([[14.0], [21.0]]), np.full((2, 1, 1), 0.5), 1.0
    )
    return problem, start, truth


def test_levenberg_marquardt_solves_the_writeup_problem_in_few_iterations():
    from skdensityfit._parameters import rows_split
    from skdensityfit._rows import minimize_rows

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

    from skdensityfit._rows import minimize_rows

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


# ----------------------------------------------------------------------
# moves between numbers of components
# ----------------------------------------------------------------------
def _mixture_problem(covariance_type, fit_scale=True):
    """A 2-D grid with a two-component density, in fit coordinates."""
    axis = np.linspace(-3, 3, 25)
    grid = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
    layout = ParameterLayout(2, 2, covariance_type, fit_scale)
    precisions = {
        "full": np.array([np.eye(2) * 1.5, [[1.2, 0.3], [0.0, 1.0]]]),
        "tied": np.eye(2) * 1.3,
        "diag": np.array([[1.5, 1.0], [1.2, 0.8]]),
        "spherical": np.array([1.5, 1.1]),
    }[covariance_type]
    theta = pack(layout, [0.6, 0.4], np.array([[-1.0, 0.5], [1.2, -0.4]]), precisions, 0.3)
    data = FitData(
        quadratic_features(grid, covariance_type),
        np.zeros(len(grid)),
        np.full(len(grid), 1 / len(grid)),
        layout,
        "l2",
        fixed_log_scale=0.3,
    )
    target = model_density(theta, data)
    return grid, replace(data, target=target), theta
