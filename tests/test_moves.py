"""Moves of components between fits, row by row: split, park, re-place, grow.

A fit that ends with a component parked (no mass on the grid, off the grid, or
pressed against the width floor), or with two components sharing one peak while
another peak is left uncovered, is in a poor local optimum; the engine's row
functions (``_engine``) find such components and place them again.
"""

import numpy as np
import pytest

from skdensityfit import DensityGMM
from skdensityfit._engine import fitting as engine
from skdensityfit._engine.problem import problem_of
from skdensityfit._engine.rows import RowResults, losses_of
from skdensityfit._examples import mixture_density
from skdensityfit._model.covariance import cholesky_from_covariances
from skdensityfit._model.parameters import rows_split

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
AXIS = np.linspace(-6.0, 6.0, 41)
GRID = np.column_stack([a.ravel() for a in np.meshgrid(AXIS, AXIS)])
MEANS = np.array([[-2.0, -1.5], [2.0, 1.0], [0.0, 3.0]])
COVARIANCE = np.array([[1.0, 0.3], [0.3, 0.8]])


def _covariances(covariance_type, k):
    if covariance_type == "tied":
        return COVARIANCE
    if covariance_type == "diag":
        return np.tile(np.diag(COVARIANCE), (k, 1))
    if covariance_type == "spherical":
        return np.full(k, np.mean(np.diag(COVARIANCE)))
    return np.tile(COVARIANCE, (k, 1, 1))


def _full(covariance_type, covariances, k):
    if covariance_type == "tied":
        return np.tile(covariances, (k, 1, 1))
    if covariance_type == "diag":
        return np.array([np.diag(c) for c in covariances])
    if covariance_type == "spherical":
        return np.array([c * np.eye(2) for c in covariances])
    return covariances


def _problem(covariance_type, target_k=3, fit_k=3):
    """A noise-free target of ``target_k`` components and the problem of fitting ``fit_k``."""
    covariances = _covariances(covariance_type, target_k)
    weights = np.full(target_k, 1.0 / target_k)
    y = mixture_density(
        GRID, weights, MEANS[:target_k], _full(covariance_type, covariances, target_k)
    )
    problem = problem_of(DensityGMM(fit_k, covariance_type=covariance_type), GRID, y, None)
    return problem, y


def _theta(problem, weights, means, covariance_type):
    k = len(weights)
    covariances = _covariances(covariance_type, k)
    precisions = cholesky_from_covariances(covariances, covariance_type)
    theta = problem.to_fit(np.asarray(weights), np.asarray(means), precisions, 1.0)
    return np.clip(theta, problem.bounds[:, 0], problem.bounds[:, 1])[None]


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_split_keeps_the_mixture_mean_and_adds_a_component(covariance_type):
    problem, _ = _problem(covariance_type, fit_k=2)
    theta = _theta(problem, [0.6, 0.4], MEANS[:2], covariance_type)
    split = engine.split_rows(problem, problem.kernel, theta, np.array([0]))
    bigger = problem.with_components(3).layout
    _, log_weights, means, _ = rows_split(theta, problem.layout)
    _, new_log_weights, new_means, _ = rows_split(split, bigger)
    weights, new_weights = np.exp(log_weights[0]), np.exp(new_log_weights[0])
    np.testing.assert_allclose(new_weights.sum(), 1.0)
    np.testing.assert_allclose(new_weights @ new_means[0], weights @ means[0], atol=1e-12)
    assert np.all(np.isfinite(losses_of(problem.with_components(3).kernel, split)))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_parked_components_are_light_outside_or_at_the_width_floor(covariance_type):
    problem, _ = _problem(covariance_type, target_k=2, fit_k=2)
    inputs, rows = problem.kernel, np.array([0])
    theta = _theta(problem, [0.6, 0.4], MEANS[:2], covariance_type)
    assert not engine.parked_rows(problem, inputs, theta, rows).any()
    shift = np.array([[0.0, 0.0], [9.0, 0.0]])
    outside = _theta(problem, [0.6, 0.4], MEANS[:2] + shift, covariance_type)
    np.testing.assert_array_equal(engine.parked_rows(problem, inputs, outside, rows), [[0, 1]])
    light = _theta(problem, [1 - 1e-7, 1e-7], MEANS[:2], covariance_type)
    np.testing.assert_array_equal(engine.parked_rows(problem, inputs, light, rows), [[0, 1]])
    # pressed against the width floor: the largest precision factor the bounds allow
    narrow = theta.copy()
    layout = problem.layout
    cholesky = slice(layout.offsets[3], layout.offsets[4])
    narrow[0, cholesky] = problem.bounds[cholesky, 1]
    assert engine.parked_rows(problem, inputs, narrow, rows).all()
    assert not engine.parked_rows(problem, inputs, narrow, rows, width_floor=False).any()


def _stuck(problem, theta, settings):
    inputs = problem.kernel
    fit = engine.minimize_rows(inputs, theta, tol=settings.tol, max_iter=settings.max_iter)
    return RowResults(fit.theta, fit.loss, np.zeros(1, dtype=int), fit.status)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_component_parked_outside_the_grid_is_placed_again(covariance_type):
    problem, _ = _problem(covariance_type)
    settings = engine.FitSettings(tol=1e-10, max_iter=300)
    parked = _theta(
        problem, [0.4, 0.3, 0.3], np.vstack([MEANS[:2], [[40.0, 40.0]]]), covariance_type
    )
    fits = _stuck(problem, parked, settings)
    assert fits.loss[0] > 1e-3  # still parked
    rows = np.array([0])
    flags = engine.parked_rows(problem, problem.kernel, fits.theta, rows)
    assert flags[0].sum() == 1
    moved = engine.moved_rows(
        problem, problem.kernel, fits, rows, np.argmax(flags, axis=1), settings
    )
    np.testing.assert_array_equal(moved, [0])
    assert fits.loss[0] < 1e-12


def test_the_weakest_component_moves_from_a_shared_peak_to_an_uncovered_one():
    problem, _ = _problem("full")
    settings = engine.FitSettings(tol=1e-10, max_iter=300)
    # components 0 and 2 share the first peak; the peak at (0, 3) is uncovered
    shared = _theta(problem, [0.2, 0.3, 0.2], np.vstack([MEANS[:2], MEANS[:1]]), "full")
    fits = RowResults(shared, losses_of(problem.kernel, shared), np.zeros(1, int), np.zeros(1, int))
    assert fits.loss[0] > 1e-3
    rows = np.array([0])
    weakest = engine.weakest_rows(problem, problem.kernel, fits.theta, rows)
    assert weakest[0] in (0, 2)
    engine.moved_rows(problem, problem.kernel, fits, rows, weakest, settings)
    assert fits.loss[0] < 1e-12


def test_the_matched_filter_finds_a_broad_low_peak_that_a_noise_spike_outshines():
    x = np.linspace(-10, 10, 401)
    fitted = np.exp(-0.5 * ((x + 6.0) / 0.5) ** 2)
    broad = 0.3 * np.exp(-0.5 * ((x - 4.0) / 1.0) ** 2)
    noise = np.random.default_rng(0).normal(0, 0.1, x.size)
    noise[100] = 1.0  # a spike taller than the broad peak, at x = -5
    y = fitted + broad + noise
    problem = problem_of(DensityGMM(1), x[:, None], y, None)
    one = problem.to_fit(np.ones(1), np.array([[-6.0]]), np.array([[[2.0]]]), 1.0)[None]
    inputs, rows = problem.kernel, np.array([0])
    standardisation = problem.standardisation

    def new_mean(placement):
        grown = engine.grown_rows(problem, inputs, one, rows, placement=placement)
        _, _, means, _ = rows_split(grown, problem.with_components(2).layout)
        return standardisation.center[0] + standardisation.spread[0] * means[0, 1, 0]

    assert new_mean("peaks") == pytest.approx(-5.0)
    assert new_mean("filter") == pytest.approx(4.0, abs=0.5)
