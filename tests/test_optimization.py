"""The optimiser: Gauss-Newton pieces, Levenberg-Marquardt and its fallback."""

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
from autograd import jacobian

from skdensityfit import _optimization as optimization
from skdensityfit import make_writeup_problem
from skdensityfit._covariance import quadratic_features
from skdensityfit._model import log_component_densities, log_model_density
from skdensityfit._moves import (
    grow_by_one,
    parked_components,
    replace_components,
    split_component,
    weakest_component,
    without_component,
)
from skdensityfit._objective import (
    component_mass_shares,
    gauss_newton_by_group,
    model_density,
    point_losses,
    value_and_gradient,
    value_gradient_and_gauss_newton,
)
from skdensityfit._parameters import ParameterLayout, pack, unpack
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

    step = optimization.lowering_step(theta, value, gradient, matrix, bounds, objective)
    assert objective(step) < value
    # the step is a Levenberg-Marquardt step: it agrees with one iteration of the solver
    one_iteration = optimization.levenberg_marquardt(theta, data, bounds, tol=0.0, max_iter=1).theta
    np.testing.assert_allclose(step, one_iteration)
    # with the unconstrained step's largest move out of bounds, the step stays inside
    # them (a variable at a bound that the gradient pushes outwards stays put) and
    # still lowers the loss
    moved = np.argmax(np.abs(step - theta))
    tight = bounds.copy()
    tight[moved] = np.sort([theta[moved], theta[moved] + 0.1 * (step[moved] - theta[moved])])
    at_bound = theta.copy()
    at_bound[moved] = tight[moved, 1] if step[moved] > theta[moved] else tight[moved, 0]
    value, gradient, matrix = value_gradient_and_gauss_newton(at_bound, data)
    clipped = optimization.lowering_step(at_bound, value, gradient, matrix, tight, objective)
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


def test_levenberg_marquardt_solves_the_writeup_problem_in_few_iterations():
    data, truth, grid = _writeup_data()
    means = (np.array([[14.0], [21.0]]) - grid.mean()) / grid.std()
    theta0 = pack(data.layout, [0.5, 0.5], means, np.ones((2, 1, 1)), log_scale=0.0)
    result = optimization.levenberg_marquardt(
        theta0, data, _bounds(len(theta0)), tol=1e-10, max_iter=100
    )
    assert result.converged and result.n_iter <= 20
    assert result.loss < 1e-20
    fitted_means = np.sort(result.theta[2:4]) * grid.std() + grid.mean()
    np.testing.assert_allclose(fitted_means, truth["means"], atol=1e-6)


def test_levenberg_marquardt_stays_inside_the_bounds():
    data, _, _ = _writeup_data()
    theta0 = pack(data.layout, [0.5, 0.5], np.array([[0.0], [0.5]]), np.ones((2, 1, 1)), 0.0)
    bounds = _bounds(len(theta0))
    bounds[4:, 1] = 0.5  # log precision factors: widths at least exp(-0.5) standard units
    result = optimization.levenberg_marquardt(theta0, data, bounds, tol=1e-10, max_iter=200)
    assert np.all(result.theta >= bounds[:, 0]) and np.all(result.theta <= bounds[:, 1])
    assert np.isfinite(result.loss)
    # the true components are narrower than the bound allows, so the fit presses on it
    assert np.isclose(result.theta[4:], 0.5).any()


def test_quasi_newton_takes_over_when_levenberg_marquardt_stalls(monkeypatch):
    data, _, grid = _writeup_data()
    means = (np.array([[14.0], [21.0]]) - grid.mean()) / grid.std()
    theta0 = pack(data.layout, [0.5, 0.5], means, np.ones((2, 1, 1)), log_scale=0.0)

    def stalls(theta, data, bounds, *, tol, max_iter, ftol):
        return optimization.OptimizationResult(theta, 1.0, 1, False, "stalled")

    monkeypatch.setattr(optimization, "levenberg_marquardt", stalls)
    result = optimization.minimize_objective(
        theta0, data, _bounds(len(theta0)), tol=1e-8, max_iter=500
    )
    assert result.converged and result.loss < 1e-12


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


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("fit_scale", [True, False])
def test_split_keeps_the_mixture_mean_and_removing_undoes_it(covariance_type, fit_scale):
    _, data, theta = _mixture_problem(covariance_type, fit_scale)
    split, bigger = split_component(theta, data, 0)
    assert bigger.layout.n_components == 3
    _, weights, means, _ = unpack(theta, data.layout, 0.3)
    _, new_weights, new_means, _ = unpack(split, bigger.layout, 0.3)
    np.testing.assert_allclose(new_weights @ new_means, weights @ means, atol=1e-12)
    np.testing.assert_allclose(new_weights.sum(), 1.0)
    np.testing.assert_allclose(
        model_density(split, bigger).sum(), model_density(theta, data).sum(), rtol=0.05
    )
    # removing the added component leaves the other two, renormalised
    smaller_theta, smaller = without_component(split, bigger, 2)
    assert smaller.layout.n_components == 2
    _, kept_weights, kept_means, _ = unpack(smaller_theta, smaller.layout, 0.3)
    np.testing.assert_allclose(kept_means[1], means[1])
    np.testing.assert_allclose(kept_weights[1] / kept_weights[0], weights[1] / (0.5 * weights[0]))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_component_parked_outside_the_grid_is_revived(covariance_type):
    grid, data, theta = _mixture_problem(covariance_type)
    _, _, means, prec_chol = unpack(theta, data.layout)
    layout = replace(data.layout, n_components=3)
    if covariance_type != "tied":
        prec_chol = np.concatenate([prec_chol, prec_chol[:1]])
    data3 = replace(data, layout=layout)
    # the target has a third component at (0, 2); the start parks it far outside the grid
    truth = pack(layout, [0.4, 0.3, 0.3], np.vstack([means, [[0.0, 2.0]]]), prec_chol, 0.3)
    data3 = replace(data3, target=model_density(truth, data3))
    parked = pack(layout, [0.4, 0.3, 0.3], np.vstack([means, [[40.0, 40.0]]]), prec_chol, 0.3)
    bounds = _bounds(layout.n_parameters)

    def solve(theta0):
        return optimization.minimize_objective(theta0, data3, bounds, tol=1e-10, max_iter=300)

    stuck = solve(parked)
    assert component_mass_shares(stuck.theta, data3).min() < 1e-4  # still parked
    assert stuck.loss > 1e-3
    parked = partial(parked_components, min_share=1e-4, min_width=0.05)
    np.testing.assert_array_equal(parked(stuck.theta, data3, grid), [2])
    revived = replace_components(stuck, grid, data3, solve, parked)
    assert revived.loss < 1e-12
    assert component_mass_shares(revived.theta, data3).min() >= 1e-4
    assert len(parked(revived.theta, data3, grid)) == 0


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parked_components_are_light_outside_or_at_the_width_floor(covariance_type):
    grid, data, theta = _mixture_problem(covariance_type)
    log_scale, weights, means, prec_chol = unpack(theta, data.layout, 0.3)
    assert len(parked_components(theta, data, grid, 1e-4, 0.05)) == 0
    shift = np.array([[0.0, 0.0], [3.5, 0.0]])
    outside = pack(data.layout, weights, means + shift, prec_chol, log_scale)
    np.testing.assert_array_equal(parked_components(outside, data, grid, 1e-4, 0.05), [1])
    light = pack(data.layout, [1 - 1e-7, 1e-7], means, prec_chol, log_scale)
    np.testing.assert_array_equal(parked_components(light, data, grid, 1e-4, 0.05), [1])
    # the narrowest allowed width is the inverse of the largest precision factor
    largest_factor = np.max(prec_chol)
    at_floor = parked_components(theta, data, grid, 1e-4, 1.0 / largest_factor)
    # component 0 has the largest factor; a tied factor is shared by both
    np.testing.assert_array_equal(at_floor, [0, 1] if covariance_type == "tied" else [0])
    # min_width=0 leaves narrow components alone
    assert len(parked_components(theta, data, grid, 1e-4, 0.0)) == 0


def test_weakest_component_is_moved_from_a_shared_peak_to_an_uncovered_one():
    grid, data, theta = _mixture_problem("full")
    _, _, means, prec_chol = unpack(theta, data.layout)
    layout = replace(data.layout, n_components=3)
    data3 = replace(data, layout=layout)
    precisions = np.concatenate([prec_chol, prec_chol[:1]])
    truth = pack(layout, [0.4, 0.3, 0.3], np.vstack([means, [[0.0, 2.2]]]), precisions, 0.3)
    data3 = replace(data3, target=model_density(truth, data3))
    # components 0 and 2 share the first peak; the peak at (0, 2.2) is left uncovered
    shared = pack(layout, [0.2, 0.3, 0.2], np.vstack([means, means[:1]]), precisions, 0.3)
    stuck = optimization.OptimizationResult(
        shared, value_and_gradient(shared, data3)[0], 0, True, "a local optimum"
    )
    assert stuck.loss > 1e-3
    bounds = _bounds(layout.n_parameters)

    def solve(theta0):
        return optimization.minimize_objective(theta0, data3, bounds, tol=1e-10, max_iter=300)

    assert weakest_component(stuck.theta, data3, grid)[0] in (0, 2)
    moved = replace_components(stuck, grid, data3, solve, weakest_component)
    assert moved.loss < 1e-12


def test_matched_filter_finds_a_broad_low_peak_that_a_noise_spike_outshines():
    grid = np.linspace(-10, 10, 401)[:, None]
    layout = ParameterLayout(1, 1, "full")
    data = FitData(
        quadratic_features(grid, "full"),
        np.zeros(len(grid)),
        np.full(len(grid), 1 / len(grid)),
        layout,
        "l2",
    )
    fitted = pack(layout, [1.0], np.array([[-6.0]]), np.array([[[2.0]]]), 0.0)
    model = model_density(fitted, data)
    broad = 0.3 * np.exp(-0.5 * ((grid[:, 0] - 4.0) / 1.0) ** 2)
    noise = np.random.default_rng(0).normal(0, 0.1, len(grid))
    noise[100] = 1.0  # a spike taller than the broad peak, at x = -5
    data = replace(data, target=model + broad + noise)
    peak_mean = unpack(grow_by_one(fitted, data, grid, "peak")[0], replace(layout, n_components=2))
    filter_mean = unpack(
        grow_by_one(fitted, data, grid, "filter")[0], replace(layout, n_components=2)
    )
    assert peak_mean[2][1, 0] == pytest.approx(-5.0)
    assert filter_mean[2][1, 0] == pytest.approx(4.0, abs=0.5)


def test_matched_filter_gives_the_same_answer_in_chunks_of_points(monkeypatch):
    import skdensityfit._moves as initialization
    import skdensityfit._objective as objective_module

    grid, data, theta = _mixture_problem("full")
    residual = np.random.default_rng(0).normal(size=len(grid)) + data.target
    _, _, _, prec_chol = unpack(theta, data.layout)
    whole = initialization._matched_filter_peak(
        residual, grid, data.quadrature, data.layout, prec_chol[0]
    )
    monkeypatch.setattr(objective_module, "CHUNK_ELEMENTS", 3000)  # chunks of a few dozen points
    chunked = initialization._matched_filter_peak(
        residual, grid, data.quadrature, data.layout, prec_chol[0]
    )
    assert chunked[0] == whole[0]
    assert chunked[1] == pytest.approx(whole[1], rel=1e-12)


def test_a_failed_move_does_not_block_another_component_at_the_same_mean():
    """Two components parked at one mean (one carries an off-grid tail, one is
    negligible): when moving the first does not pay, the second is still tried."""
    from skdensityfit import DensityGMM
    from skdensityfit._problem import problem_of
    from skdensityfit._starts import best_scale_within_bounds

    X = np.linspace(-8, 8, 400)[:, None]
    grid = problem_of(DensityGMM(n_components=3), X, np.ones(400)).grid
    g = grid[:, 0]
    far = g.max() + 2 * np.ptp(g)

    def gaussian(mean, sd):
        return np.exp(-0.5 * ((g - mean) / sd) ** 2) / np.sqrt(2 * np.pi) / sd

    target = 0.5 * gaussian(0.0, 0.2) + 0.3 * gaussian(-1.0, 0.1) + 200 * gaussian(far, 3.0)
    problem = problem_of(DensityGMM(n_components=3), X, target)
    grid, data, bounds = problem.grid, problem.data, problem.bounds
    weights = np.array([0.5, 200, 1e-9])
    precisions = np.array([[[1 / 0.2]], [[1 / 3.0]], [[1 / 0.3]]])
    means = np.array([[0.0], [far], [far]])
    theta = pack(data.layout, weights / weights.sum(), means, precisions, 0.0)
    theta = best_scale_within_bounds(np.clip(theta, bounds[:, 0], bounds[:, 1]), data, bounds)
    start = optimization.OptimizationResult(
        theta, value_and_gradient(theta, data)[0], 0, True, "two parked at one mean"
    )

    def solve(theta0):
        return optimization.minimize_objective(theta0, data, bounds, tol=1e-8, max_iter=500)

    def both_parked(theta, data, grid):
        return np.array([1, 2]) if data.layout.n_components == 3 else np.array([], int)

    moved = replace_components(start, grid, data, solve, both_parked)
    assert moved.loss < 1e-12
