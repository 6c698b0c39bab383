"""A large noisy grid fitted with more components than it holds: the slow case.

Run: python benchmarks/bench_overfit.py   (about two minutes)
A 250x250 grid holding 3 Gaussians plus noise (sd 0.002, about 3% of the peak), fitted with the
true K = 3 and with K = 6. Surplus components fit noise: the loss is flat in their directions, and
every start converges slowly.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import time
import warnings

import numpy as np

from skdensityfit import DensityGMM
from skdensityfit._examples import mixture_density


def main():
    warnings.simplefilter("ignore")
    axis = np.linspace(-10, 10, 250)
    X = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
    means = np.array([[-4, -3], [3, 4], [4, -4.0]])
    covariances = np.array([np.eye(2) * 2, [[1.5, 0.4], [0.4, 1.0]], np.eye(2)])
    y = mixture_density(X, [0.4, 0.35, 0.25], means, covariances)
    y = y + np.random.default_rng(0).normal(0, 0.002, y.shape)
    print(f"{'K':>2} {'seconds':>8} {'loss':>12} {'iterations':>10} {'converged':>9}")
    for n_components in (3, 6):
        start = time.perf_counter()
        model = DensityGMM(n_components, random_state=0).fit(X, y)
        seconds = time.perf_counter() - start
        print(
            f"{n_components:>2} {seconds:>8.1f} {model.loss_:>12.6g} {model.n_iter_:>10} "
            f"{model.converged_!s:>9}"
        )


if __name__ == "__main__":
    main()
