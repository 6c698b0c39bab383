"""The data-driven starts: density-weighted moments and EM on the grid."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from skdensityfit import DensityGMM, fit_many
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


def test_lazy_random_state_draws_as_the_random_state_it_stands_for():
    """A seed's draws are RandomState(seed)'s; a RandomState instance is drawn from in
    place (its stream advances, as it did when it was passed on directly)."""
    from skdensityfit._engine.starts import LazyRandomState

    lazy = LazyRandomState(3)
    eager = np.random.RandomState(3)
    assert np.array_equal(lazy.randint(10**6, size=5), eager.randint(10**6, size=5))
    assert np.array_equal(lazy.uniform(size=3), eager.uniform(size=3))
    shared = np.random.RandomState(4)
    LazyRandomState(shared).uniform(size=2)
    assert np.array_equal(shared.uniform(size=2), np.random.RandomState(4).uniform(size=4)[2:])


def test_fit_many_with_a_random_state_instance_matches_single_fits():
    """Per-density seeds drawn from a RandomState instance (each made into its
    RandomState only when a start draws): k-means starts, the same fits as one
    DensityGMM.fit per density with that density's seed."""
    rng = np.random.default_rng(0)
    x = np.linspace(-5.0, 15.0, 120)
    Y = np.array(
        [
            0.6 * np.exp(-0.5 * (x - m) ** 2) + 0.4 * np.exp(-0.5 * ((x - m - 5.0) / 1.5) ** 2)
            for m in rng.uniform(0.0, 4.0, 6)
        ]
    )
    Y = Y + 0.01 * rng.normal(size=Y.shape)
    estimator = DensityGMM(2, init_params="kmeans", n_init=3, random_state=np.random.RandomState(7))
    batch = fit_many(x, Y, estimator)
    seeds = np.random.RandomState(7).randint(np.iinfo(np.int32).max, size=len(Y))
    for row, seed in enumerate(seeds):
        single = DensityGMM(2, init_params="kmeans", n_init=3, random_state=int(seed)).fit(
            x, Y[row]
        )
        assert np.allclose(batch.means[row], single.means_, atol=1e-6)
