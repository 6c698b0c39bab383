"""fit_many's rows against DensityGMMCV alone, to the last bit, over its settings.

Run: python benchmarks/check_batch_parity.py [--seeds 0 1 2 3]   (about a minute a seed on 2 cores)

For each seed and setting, six seeded densities (generated here: 1-D mixtures of three
Gaussians on 257 points, white or correlated noise, a sloped or exponential baseline, Poisson
counts, histograms on unequal bins, and 2-D images on 24x24) are chosen for by
``fit_many(grid, Y, DensityGMMCV(...))``, by ``DensityGMMCV(...).fit`` on each alone, and by
``fit_many`` on the rows reversed. Printed per setting: whether the chosen K, the polished
fits' losses and their weights, means and covariances are the same bits alone and stacked,
and K and losses the same reversed. The README says a row of
``fit_many`` is what ``DensityGMMCV.fit`` gives that density: any ``False`` contradicts it.
(numpy's matrix products are not the same bits for one row and for several: the background's
least squares and the search's moment starts were such products, and a search turned their
last bits into another K for a real chromatogram.)
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import warnings

import numpy as np

from skdensityfit import DensityGMMCV, fit_many
from skdensityfit._examples import mixture_densities_1d

X1 = np.linspace(0.0, 40.0, 257)
AXIS = np.linspace(-6.0, 6.0, 24)
X2 = np.stack(np.meshgrid(AXIS, AXIS, indexing="ij"), axis=-1).reshape(-1, 2)
EDGES = np.concatenate([np.linspace(0.0, 20.0, 41), np.geomspace(20.5, 40.0, 30)])


def densities(rng, kind, n=6):
    """``(grid, Y, keywords)`` of one setting's ``n`` densities."""
    if kind == "2-D":
        Y = np.zeros((n, len(X2)))
        for i in range(n):
            for _ in range(rng.integers(1, 4)):
                mean, sd = rng.uniform(-3, 3, 2), rng.uniform(0.6, 1.5, 2)
                Y[i] += rng.uniform(0.3, 1) * np.exp(-0.5 * np.sum(((X2 - mean) / sd) ** 2, axis=1))
        return X2, Y + 0.02 * rng.normal(size=Y.shape), {}
    weights = rng.dirichlet(np.ones(3), n)
    means = np.sort(rng.uniform(5, 35, (n, 3)), axis=1)
    sds = rng.uniform(0.5, 3.0, (n, 3))
    if kind == "unequal bins":
        counts = np.zeros((n, len(EDGES) - 1))
        for i in range(n):
            k = rng.choice(3, 2000, p=weights[i])
            counts[i] = np.histogram(rng.normal(means[i, k], sds[i, k]), EDGES)[0]
        centres = 0.5 * (EDGES[1:] + EDGES[:-1])
        return centres, counts, {"loss": "poisson", "bins": EDGES}
    Y = mixture_densities_1d(X1, weights, means, sds)
    peak = Y.max(axis=1, keepdims=True)
    if kind == "counts":
        return (
            X1,
            rng.poisson(Y / peak * rng.uniform(50, 500, (n, 1))).astype(float),
            {"loss": "poisson"},
        )
    if kind == "sloped baseline":
        Y = Y + 0.01 * peak * (1 + rng.uniform(-1, 1, (n, 1)) * (X1 - 20) / 20)
    if kind == "exponential baseline":
        Y = Y + 0.02 * peak * np.exp(-X1 / rng.uniform(5, 20, (n, 1)))
    noise = rng.uniform(0.005, 0.03, (n, 1)) * peak * rng.normal(size=Y.shape)
    if kind == "correlated":
        noise[:, 1:] += 0.6 * noise[:, :-1]
    return X1, Y + noise, {}


SETTINGS = [
    ("white", "white", {}),
    ("correlated", "correlated", {}),
    ("sloped, background='linear'", "sloped baseline", {"background": "linear"}),
    ("sloped, background='quadratic'", "sloped baseline", {"background": "quadratic"}),
    ("exponential baseline", "exponential baseline", {"background": "exponential"}),
    ("Poisson counts", "counts", {}),
    ("unequal bins, counts", "unequal bins", {}),
    ("held-out selection", "white", {"selection": "standard_error", "cv": 3}),
    ("2-D 24x24", "2-D", {}),
]


def _same_mixture(result, row, fitted):
    """Whether row ``row`` of a fit_many ``result`` holds ``fitted``'s weights, means and
    covariances to the last bit (a row's arrays are padded to the largest K)."""
    k = fitted.n_components
    return (
        np.array_equal(result.weights[row][:k], fitted.weights_)
        and np.array_equal(result.means[row][:k], fitted.means_)
        and np.array_equal(np.asarray(result.covariances[row])[: len(fitted.covariances_)],
                           fitted.covariances_)
    )  # fmt: skip


def check(seed):
    rng = np.random.default_rng(seed)
    differing = 0
    for label, kind, options in SETTINGS:
        grid, Y, keywords = densities(rng, kind)
        keywords = {**keywords, **options}
        estimator = DensityGMMCV(n_components=5, random_state=0, **keywords)
        stacked = fit_many(grid, Y, estimator)
        reversed_ = fit_many(grid, Y[::-1], estimator)
        alone = [DensityGMMCV(n_components=5, random_state=0, **keywords).fit(grid, y) for y in Y]
        alone_k = np.array([a.n_components_ for a in alone])
        alone_loss = np.array([a.best_estimator_.loss_ for a in alone])
        same = (
            np.array_equal(stacked.n_components, alone_k),
            np.array_equal(stacked.loss, alone_loss)
            and all(_same_mixture(stacked, i, a.best_estimator_) for i, a in enumerate(alone)),
            np.array_equal(reversed_.n_components[::-1], alone_k)
            and np.array_equal(reversed_.loss[::-1], alone_loss),
        )
        differing += not all(same)
        print(
            f"seed {seed} {label:32s} K alone = stacked {same[0]!s:5s} loss and mixture bits "
            f"{same[1]!s:5s} reversed {same[2]!s:5s} K {stacked.n_components.tolist()}",
            flush=True,
        )
    return differing


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    differing = sum(check(seed) for seed in args.seeds)
    print(f"settings with any difference: {differing} of {len(SETTINGS) * len(args.seeds)}")


if __name__ == "__main__":
    main()
