"""Time and peak memory of fits on large grids.

Run: python benchmarks/bench_large_grids.py
Peak memory is what numpy and Python allocate during `fit` (tracemalloc), above what the grid and
density already hold. Cases: 1-D K=3 at 1e4..1e6 points; 2-D K=4/5 at 256x256..1024x1024.
"""

import time
import tracemalloc
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skdensityfit import DensityGMM
from skdensityfit._examples import mixture_density


def one_d(n_points):
    X = np.linspace(-10, 10, n_points)[:, None]
    means = np.array([[-4.0], [0.0], [5.0]])
    covariances = np.array([[[1.0]], [[2.0]], [[0.5]]])
    return X, mixture_density(X, [0.3, 0.5, 0.2], means, covariances), 3


def two_d(side, n_components):
    axis = np.linspace(-10, 10, side)
    X = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
    means = np.array([[-5, -5], [5, 5], [-5, 5], [5, -5], [0, 0.0]])[:n_components]
    covariances = np.array(
        [
            [[1.0, 0.3], [0.3, 1.5]],
            np.eye(2) * 2,
            np.eye(2) * 1.5,
            [[0.8, -0.2], [-0.2, 0.6]],
            np.eye(2) * 1.2,
        ]
    )[:n_components]
    weights = np.full(n_components, 1.0 / n_components)
    return X, mixture_density(X, weights, means, covariances), n_components


def measure(X, y, n_components):
    tracemalloc.start()
    start = time.perf_counter()
    model = DensityGMM(n_components, random_state=0).fit(X, y)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    error = np.linalg.norm(model.predict(X) - y) / np.linalg.norm(y)
    return seconds, peak / 2**20, error


def main():
    warnings.simplefilter("ignore", ConvergenceWarning)
    print(f"{'case':<22} {'points':>9} {'seconds':>8} {'peak MiB':>9} {'rel. L2 err':>12}")
    sizes, times = [], []
    for n_points in (10_000, 100_000, 1_000_000):
        seconds, peak, error = measure(*one_d(n_points))
        sizes.append(n_points)
        times.append(seconds)
        print(f"{'1-D K=3':<22} {n_points:>9} {seconds:>8.2f} {peak:>9.0f} {error:>12.1e}")
    slope = np.polyfit(np.log(sizes), np.log(times), 1)[0]
    print(f"1-D time ~ n^{slope:.2f} (log-log slope)")
    for side, n_components in ((256, 4), (512, 4), (1024, 5)):
        seconds, peak, error = measure(*two_d(side, n_components))
        label = f"2-D K={n_components} {side}x{side}"
        print(f"{label:<22} {side * side:>9} {seconds:>8.2f} {peak:>9.0f} {error:>12.1e}")


if __name__ == "__main__":
    main()
