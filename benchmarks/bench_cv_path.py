"""Cost of choosing K by DensityGMMCV over K = 1..8 against one DensityGMM fit at the true K.

Run: python benchmarks/bench_cv_path.py
400-point 1-D densities with K = 1..4 separated components and 1% additive noise; default
settings for both; the ratio is the median over cases of (CV time / single-fit time).
"""

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skdensityfit import DensityGMM, DensityGMMCV
from skdensityfit._examples import mixture_density, random_separated_mixture_1d


def main(n_cases=8):
    warnings.simplefilter("ignore", ConvergenceWarning)
    print(f"{'seed':>4} {'K':>2} {'chosen':>6} {'single s':>9} {'cv s':>8} {'ratio':>6}")
    ratios = []
    for seed in range(n_cases):
        rng = np.random.default_rng(seed)
        n_components = 1 + seed % 4
        weights, means, stds = random_separated_mixture_1d(rng, n_components)
        grid = np.linspace(means.min() - 5 * stds.max(), means.max() + 5 * stds.max(), 400)
        y = mixture_density(grid, weights, means[:, None], stds[:, None, None] ** 2)
        y = y + rng.normal(0, 0.01 * y.max(), y.shape)
        start = time.perf_counter()
        DensityGMM(n_components, random_state=seed).fit(grid, y)
        single = time.perf_counter() - start
        start = time.perf_counter()
        search = DensityGMMCV(n_components=8, random_state=seed).fit(grid, y)
        cv = time.perf_counter() - start
        ratios.append(cv / single)
        print(
            f"{seed:>4} {n_components:>2} {search.n_components_:>6} {single:>9.3f} "
            f"{cv:>8.3f} {cv / single:>6.1f}"
        )
    print(f"median ratio CV / single fit: {np.median(ratios):.1f}")


if __name__ == "__main__":
    main()
