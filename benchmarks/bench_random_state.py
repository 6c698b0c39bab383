"""What a RandomState instance costs fit_many: the same densities with an integer seed
and with ``np.random.RandomState(0)``, side by side in one run.

Run: python benchmarks/bench_random_state.py     (about ten seconds)

A RandomState instance gives every density a seed of its own (what a single fit with
that seed gives); making a seeded ``RandomState`` costs about 0.1 ms, more than the
kernel's work for a noise-free 1-D density. The fits make it only when a start draws
(``init_params`` other than 'peaks', or more starts than the data-driven ones), so the
two should run at about the same rate. Data: ``bench_batch``'s noise-free 1-D series,
K = 2, 200 points; one thread (``n_jobs=1``); the best of three runs.
"""

import time

import numpy as np
from bench_batch import GRID, densities_1d

from skdensityfit import DensityGMM, fit_many

N_DENSITIES = 1000


def rate(random_state, Y):
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        fit_many(GRID, Y, DensityGMM(2, random_state=random_state()), n_jobs=1)
        best = min(best, time.perf_counter() - start)
    return len(Y) / best


def main():
    Y = densities_1d(N_DENSITIES, 2, 0, 0.0)[0]
    fit_many(GRID, Y[:20], DensityGMM(2, random_state=np.random.RandomState(0)), n_jobs=1)
    seeded = rate(lambda: 0, Y)
    instance = rate(lambda: np.random.RandomState(0), Y)
    print(f"{N_DENSITIES} noise-free 1-D densities, K = 2, one thread, densities/s:")
    print(f"  random_state=0                      {seeded:9.0f}")
    print(f"  random_state=np.random.RandomState  {instance:9.0f}")
    print(f"  ratio (integer seed / instance)     {seeded / instance:9.2f}")


if __name__ == "__main__":
    main()
