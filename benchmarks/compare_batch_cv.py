"""The fixed-K batch and the batched search for K on the same spectra, in one process.

Run: python benchmarks/compare_batch_cv.py [N]          (N spectra, default 300; a minute)
     PYTHONPATH=other/checkout python benchmarks/compare_batch_cv.py   (another version)

bench_batch_cv's spectra (seed 0). Prints the seconds of ``fit_many`` with ``DensityGMM(k)``
on the rows of each true K (the fixed-K batch) and with ``DensityGMMCV`` on all rows (the
search), both with ``n_jobs=1``, their ratio and how often the search chose the true K: run on
two checkouts back to back to tell whether a change of the ratio comes from the search or from
the fixed-K batch.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys
import time
import warnings

import numpy as np
from bench_batch_cv import GRID, spectra

import skdensityfit
from skdensityfit import DensityGMM, DensityGMMCV, fit_many


def main():
    warnings.simplefilter("ignore")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    Y, ks = spectra(n, 0)
    start = time.perf_counter()
    for k in range(1, ks.max() + 1):
        fit_many(GRID, Y[ks == k], DensityGMM(n_components=k, random_state=0), n_jobs=1)
    fixed = time.perf_counter() - start
    start = time.perf_counter()
    result = fit_many(GRID, Y, DensityGMMCV(random_state=0), n_jobs=1)
    search = time.perf_counter() - start
    right = np.mean(result.n_components == ks)
    print(
        f"{os.path.dirname(skdensityfit.__file__)}: fixed-K batch {fixed:.2f} s, search "
        f"{search:.2f} s, ratio {search / fixed:.2f}, right {right:.3f}"
    )


if __name__ == "__main__":
    main()
