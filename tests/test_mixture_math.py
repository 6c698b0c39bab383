"""The pure mixture math: log densities, gradients, packing."""

import numpy as np
import pytest
from autograd.test_util import check_grads
from scipy.stats import multivariate_normal

from skdensityfit._engine.problem import FitData
from skdensityfit._model.covariance import quadratic_features
from skdensityfit._model.parameters import ParameterLayout, pack, unpack
from skdensityfit._model.reference import log_component_densities, objective

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _random_problem(covariance_type, loss, fit_scale=True, seed=0, n_features=3):
    rng = np.random.default_rng(seed)
    layout = ParameterLayout(3, n_features, covariance_type, fit_scale)
    X = rng.normal(size=(150, n_features))
    data = FitData(
        features=quadratic_features(X, covariance_type),
        target=np.abs(rng.normal(size=150)),
        quadrature=rng.dirichlet(np.ones(150)),
        layout=layout,
        loss=loss,
        fixed_log_scale=0.2,
    )
    theta = 0.3 * rng.normal(size=layout.n_parameters)
    return X, data, theta


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_log_component_densities_match_scipy(covariance_type):
    X, data, theta = _random_problem(covariance_type, "l2")
    layout = data.layout
    _, _, means, prec_chol = unpack(theta, layout)
    log_dens = log_component_densities(theta, data.features, layout)
    for k in range(layout.n_components):
        if covariance_type in ("full", "tied"):
            U = prec_chol[k] if covariance_type == "full" else prec_chol
            covariance = np.linalg.inv(U @ U.T)
        elif covariance_type == "diag":
            covariance = np.diag(1.0 / prec_chol[k] ** 2)
        else:
            covariance = np.eye(X.shape[1]) / prec_chol[k] ** 2
        expected = multivariate_normal(means[k], covariance).logpdf(X)
        np.testing.assert_allclose(log_dens[:, k], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_autograd_gradient_passes_check_grads(covariance_type, loss):
    _, data, theta = _random_problem(covariance_type, loss)
    check_grads(lambda t: objective(t, data), modes=["rev"], order=2)(theta)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_pack_unpack_round_trip(covariance_type):
    _, data, theta = _random_problem(covariance_type, "l2")
    unpacked = unpack(theta, data.layout)
    np.testing.assert_allclose(pack(data.layout, unpacked[1], *unpacked[2:], unpacked[0]), theta)


def test_softmax_weights_generalise_the_logit_trick():
    layout = ParameterLayout(2, 1, "spherical")
    _, weights, _, _ = unpack(np.array([0.0, 1.3, 0.0, 1.0, 0.0, 0.0]), layout)
    np.testing.assert_allclose(weights[0], 1 / (1 + np.exp(-1.3)))
    np.testing.assert_allclose(weights.sum(), 1.0)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_reported_and_constrained_covariances_keep_what_the_type_holds(covariance_type):
    from skdensityfit._model.covariance import as_reported, constrained, parameter_shape

    rng = np.random.default_rng(0)
    factors = rng.normal(size=(2, 3, 3, 3))
    matrices = factors @ np.swapaxes(factors, -1, -2) + 3 * np.eye(3)  # (rows, K, d, d)
    if covariance_type == "tied":
        matrices[:] = matrices[:, :1]
    reported = as_reported(matrices, covariance_type)
    assert reported.shape == (2, *parameter_shape(covariance_type, 3, 3))
    projected = constrained(matrices, covariance_type)
    diagonal = np.diagonal(matrices, axis1=-2, axis2=-1)
    off_diagonal = projected * (1.0 - np.eye(3))
    if covariance_type in ("full", "tied"):
        np.testing.assert_array_equal(projected, matrices)
        np.testing.assert_array_equal(
            reported, matrices[:, 0] if covariance_type == "tied" else matrices
        )
    elif covariance_type == "diag":
        np.testing.assert_array_equal(reported, diagonal)
        np.testing.assert_array_equal(np.diagonal(projected, axis1=-2, axis2=-1), diagonal)
        np.testing.assert_array_equal(off_diagonal, 0.0)
    else:
        np.testing.assert_array_equal(reported, matrices[..., 0, 0])
        mean = np.repeat(diagonal.mean(axis=-1, keepdims=True), 3, axis=-1)
        np.testing.assert_allclose(np.diagonal(projected, axis1=-2, axis2=-1), mean, rtol=1e-15)
        np.testing.assert_array_equal(off_diagonal, 0.0)


def test_holds_type_tells_tied_from_diag_factors_of_the_same_shape():
    from skdensityfit._model.covariance import check_covariance_type, holds_type

    tied = np.triu(np.arange(1.0, 10.0).reshape(3, 3))  # (d, d): also the shape of diag, K = 3
    diag = np.full((3, 3), 0.5)
    assert holds_type(tied, "tied", 3, 3) and not holds_type(tied, "diag", 3, 3)
    assert holds_type(diag, "diag", 3, 3) and not holds_type(diag, "tied", 3, 3)
    assert not holds_type(-diag, "diag", 3, 3)
    assert not holds_type(np.ones(3), "diag", 3, 3) and holds_type(np.ones(3), "spherical", 3, 3)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        check_covariance_type("isotropic")
