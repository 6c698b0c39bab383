"""The data-driven starts: density-weighted moments and EM on the grid."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from skdensityfit._engine.starts import _weighted_moments
from skdensityfit._model.covariance import log_gaussian_density
from skdensityfit._model.parameters import ParameterLayout

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def _problem(covariance_type, n_features, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, n_features)) * [2.0, 0.5, 1.0][:n_features] + 1.5
    mass = rng.random(300)
    resp = rng.dirichlet(np.ones(3), size=300)
    return X, mass / mass.sum(), resp, ParameterLayout(3, n_features, covariance_type)


def _covariances(covariance_type, prec_chol, n_components, n_features):
    """Covariance matrices from the precision Cholesky factors of each layout."""
    if covariance_type == "full":
        return np.linalg.inv(prec_chol @ np.swapaxes(prec_chol, 1, 2))
    if covariance_type == "tied":
        shape = (n_components, n_features, n_features)
        return np.broadcast_to(np.linalg.inv(prec_chol @ prec_chol.T), shape)
    if covariance_type == "diag":
        return np.stack([np.diag(1 / p**2) for p in prec_chol])
    return np.stack([np.eye(n_features) / p**2 for p in prec_chol])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_features", [1, 2, 3])
def test_weighted_moments_and_log_densities_match_direct_formulas(covariance_type, n_features):
    X, mass, resp, _ = _problem(covariance_type, n_features)
    weights, means, prec_chol = _weighted_moments(X, mass, resp, covariance_type, reg_covar=0.0)
    weighted = resp * mass[:, None]
    np.testing.assert_allclose(weights, weighted.sum(axis=0) / weighted.sum())
    np.testing.assert_allclose(means, weighted.T @ X / weighted.sum(axis=0)[:, None])
    full = np.stack(
        [np.cov(X.T, aweights=w, bias=True).reshape(n_features, n_features) for w in weighted.T]
    )
    covariances = _covariances(covariance_type, prec_chol, 3, n_features)
    expected = {
        "full": full,
        "tied": np.broadcast_to(np.einsum("k,kij->ij", weighted.sum(axis=0), full), full.shape)
        / weighted.sum(),
        "diag": full * np.eye(n_features),
        "spherical": np.einsum("kii->k", full)[:, None, None] / n_features * np.eye(n_features),
    }[covariance_type]
    np.testing.assert_allclose(covariances, expected, rtol=1e-10, atol=1e-12)
    log_densities = log_gaussian_density(X, means, prec_chol, covariance_type)
    reference = np.column_stack(
        [multivariate_normal(m, c).logpdf(X) for m, c in zip(means, covariances, strict=True)]
    )
    np.testing.assert_allclose(log_densities, reference, rtol=1e-10)
