"""Built-in example problems."""

import numpy as np
from scipy.stats import multivariate_normal, norm


def make_writeup_problem():
    """The problem of the write-up this project started from.

    Two Gaussians with means 15 and 20, standard deviations 1 and 1 and
    weights 0.8 and 0.2, tabulated without noise at the 75 points
    ``numpy.arange(0, 25, 25 / 75)``.

    Returns
    -------
    grid : ndarray of shape (75,)
    density : ndarray of shape (75,)
    truth : dict
        ``weights``, ``means`` and ``stds`` of the two components.

    Examples
    --------
    >>> from skdensityfit import make_writeup_problem
    >>> grid, density, truth = make_writeup_problem()
    >>> grid.shape, truth["means"]
    ((75,), array([15., 20.]))
    """
    grid = np.arange(0, 25, 25 / 75)
    truth = {
        "weights": np.array([0.8, 0.2]),
        "means": np.array([15.0, 20.0]),
        "stds": np.array([1.0, 1.0]),
    }
    density = norm.pdf(grid[:, None], truth["means"], truth["stds"]) @ truth["weights"]
    return grid, density, truth


def mixture_density(X, weights, means, covariances, scale=1.0):
    """``scale * sum_k weights[k] * N(X; means[k], covariances[k])`` (full covariances).

    Parameters
    ----------
    X : ndarray of shape (n_points, n_features)
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray of shape (n_components, n_features, n_features)
    scale : float, default=1.0

    Returns
    -------
    density : ndarray of shape (n_points,)
    """
    X = np.asarray(X, dtype=float).reshape(len(X), -1)
    pdfs = [
        multivariate_normal(m, c).pdf(X).reshape(-1)
        for m, c in zip(means, covariances, strict=True)
    ]
    return scale * (np.column_stack(pdfs) @ np.asarray(weights))


def random_separated_mixture_1d(rng, n_components, *, min_separation=2.5, min_weight=0.05):
    """Random 1-D mixture whose adjacent means are ``min_separation`` sds apart or more.

    Separation is measured in the larger of the two standard deviations.
    Returns ``(weights, means, stds)``, means sorted.
    """
    stds = rng.uniform(0.5, 1.5, n_components)
    gaps = (min_separation + rng.uniform(0.0, 2.0, n_components - 1)) * np.maximum(
        stds[:-1], stds[1:]
    )
    means = np.concatenate([[0.0], np.cumsum(gaps)]) + rng.uniform(-5, 5)
    weights = rng.dirichlet(np.full(n_components, 3.0))
    weights = np.maximum(weights, min_weight)
    return weights / weights.sum(), means, stds


def random_mixture_2d(rng, n_components, *, box=(-10.0, 10.0), min_separation=2.5):
    """Random 2-D full-covariance mixture inside ``box``, components separated.

    Any two means are at least ``min_separation`` times the larger of the two
    components' largest standard deviations apart. Returns ``(weights, means,
    covariances)``.
    """
    low, high = box
    means, covariances, widest = [], [], []
    while len(means) < n_components:
        sd = rng.uniform(0.6, 1.8, 2)
        angle = rng.uniform(0, np.pi)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        cov = rotation @ np.diag(sd**2) @ rotation.T
        mean = rng.uniform(low + 3 * sd.max(), high - 3 * sd.max(), 2)
        if all(
            np.linalg.norm(mean - m) >= min_separation * max(sd.max(), w)
            for m, w in zip(means, widest, strict=True)
        ):
            means.append(mean)
            covariances.append(cov)
            widest.append(sd.max())
    weights = rng.dirichlet(np.full(n_components, 3.0))
    weights = np.maximum(weights, 0.05)
    return weights / weights.sum(), np.array(means), np.array(covariances)


def drifting_mixture_series_1d(rng, n_steps, n_components, *, drift=0.3):
    """A time series of 1-D mixtures whose parameters drift slowly and smoothly.

    Starts from :func:`random_separated_mixture_1d` centred at 10; each mean
    oscillates by up to ``drift`` of its standard deviation, each standard
    deviation by up to 10% and each weight's logit by up to 0.2, with random
    periods of 100 to 400 steps and random phases. Neighbouring steps look
    alike, as neighbouring pixels or time steps of real data do.

    Returns
    -------
    weights : ndarray of shape (n_steps, n_components)
    means : ndarray of shape (n_steps, n_components)
    stds : ndarray of shape (n_steps, n_components)
    """
    weights, means, stds = random_separated_mixture_1d(rng, n_components)
    means = means - means.mean() + 10.0
    t = np.arange(n_steps)[:, None]

    def wave():
        period = rng.uniform(100, 400, n_components)
        return np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi, n_components))

    series_means = means + drift * stds * wave()
    series_stds = stds * (1 + 0.1 * wave())
    logits = np.log(weights) + 0.2 * wave()
    series_weights = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return series_weights, series_means, series_stds


def mixture_densities_1d(grid, weights, means, stds):
    """Densities of many 1-D mixtures on one grid: row ``i`` is mixture ``i``.

    Parameters
    ----------
    grid : ndarray of shape (n_points,)
    weights, means, stds : ndarray of shape (n_densities, n_components)

    Returns
    -------
    densities : ndarray of shape (n_densities, n_points)
    """
    z = (np.asarray(grid)[None, None, :] - means[:, :, None]) / stds[:, :, None]
    pdf = np.exp(-0.5 * z**2) / (np.sqrt(2 * np.pi) * stds[:, :, None])
    return np.einsum("nk,nkp->np", weights, pdf)
