"""Why the density-weighted k-means of the starts is written here and not taken from scikit-learn.

Run: python benchmarks/bench_starts.py

Times, side by side on the same inputs, our weighted k-means++ seeding and Lloyd iterations
(skdensityfit._engine.starts) against sklearn.cluster.kmeans_plusplus and
sklearn.cluster.KMeans(init=..., n_init=1, sample_weight=...), on the write-up's 75-point grid
(K=2) and a 64x64 grid (K=4), and compares each with a whole DensityGMM fit of the same data.
tests/test_engine.py::test_weighted_lloyd_agrees_with_kmeans checks both Lloyd versions reach
the same centres.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"

import time

import numpy as np
from sklearn.cluster import KMeans, kmeans_plusplus

from skdensityfit import DensityGMM, make_writeup_problem
from skdensityfit._engine.starts import _weighted_kmeans_plusplus, _weighted_lloyd
from skdensityfit._examples import mixture_density


def best_time(function, repeats=30):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def cases():
    grid, density, _ = make_writeup_problem()
    yield "write-up, 75 points, K=2", grid[:, None], density, 2
    axis = np.linspace(-10, 10, 64)
    grid2 = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
    means = np.array([[-4.0, -4.0], [4.0, 3.0], [-3.0, 5.0], [5.0, -5.0]])
    density2 = mixture_density(grid2, [0.3, 0.3, 0.2, 0.2], means, np.array([np.eye(2)] * 4))
    yield "2-D 64x64, K=4", grid2, density2, 4


def main():
    print(f"{'case':28s} {'step':12s} {'ours ms':>9s} {'sklearn ms':>11s} {'sklearn/ours':>13s}")
    for title, X, density, k in cases():
        mass = density / density.sum()
        rng = np.random.RandomState(0)

        def ours_seeding(X=X, mass=mass, k=k, rng=rng):
            return _weighted_kmeans_plusplus(X, mass, k, rng)

        ours_seed = best_time(ours_seeding)
        theirs_seed = best_time(
            lambda X=X, mass=mass, k=k: kmeans_plusplus(X, k, sample_weight=mass, random_state=0)
        )
        centres = _weighted_kmeans_plusplus(X, mass, k, np.random.RandomState(0))
        ours_lloyd = best_time(lambda X=X, mass=mass, c=centres: _weighted_lloyd(X, mass, c))
        theirs_lloyd = best_time(
            lambda X=X, mass=mass, c=centres, k=k: KMeans(k, init=c, n_init=1, max_iter=20).fit(
                X, sample_weight=mass
            )
        )
        grid = X[:, 0] if X.shape[1] == 1 else X
        fit = best_time(lambda g=grid, d=density, k=k: DensityGMM(k, random_state=0).fit(g, d), 5)
        for step, ours, theirs in (
            ("k-means++", ours_seed, theirs_seed),
            ("Lloyd", ours_lloyd, theirs_lloyd),
        ):
            print(
                f"{title:28s} {step:12s} {1e3 * ours:9.3f} {1e3 * theirs:11.3f} "
                f"{theirs / ours:13.1f}"
            )
        print(f"{title:28s} {'whole fit':12s} {1e3 * fit:9.3f}")


if __name__ == "__main__":
    main()
