"""Per-density K in a batch: fit_many with DensityGMMCV, vectorised, against DensityGMMCV alone.

Run: python benchmarks/bench_batch_cv.py            (1,000 spectra: 16 s on 2 cores)
     python benchmarks/bench_batch_cv.py --n 10000  (about two minutes: from 4,096 densities
                                                     on, the vectorised chunks run on processes)

Issue #15's check, side by side in one run with ``--n-jobs`` processes (2):

- ``fit_many(grid, Y, DensityGMMCV(random_state=0))``, the vectorised path (default): every
  density's path of candidates, folds and choice advanced together;
- ``fit_many(..., method="loop")``: ``DensityGMMCV.fit`` on each density alone (the reference K);
- the fixed-K batch: ``fit_many(grid, Y_k, DensityGMM(k, random_state=0))`` on the rows of each
  true K (the cost the target is measured against).

Data (seeded, generated here, independent of the tests' generators): 1-D spectra on 200 points
over [-5, 25]; K uniform in 1..5; standard deviations uniform in [0.4, 1.2]; means uniform in
[0, 20], redrawn until neighbours are 3 of the larger standard deviations apart; weights
Dirichlet(4) floored at 0.08; Gaussian noise of 2% of each spectrum's peak.

Printed: densities per second of each, the ratio of the vectorised path's cost per density to the
fixed-K batch's, the agreement of the chosen K with DensityGMMCV alone and with the truth.
Targets (issue #26): >= 2,000 spectra/s, the same K as DensityGMMCV alone in >= 99% of rows.
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import platform
import time
import warnings

import numpy as np

from skdensityfit import DensityGMM, DensityGMMCV, fit_many
from skdensityfit._examples import mixture_densities_1d

GRID = np.linspace(-5.0, 25.0, 200)
NOISE = 0.02
MAX_K = 5


def spectra(n, seed):
    """``(Y (n, 200), true K (n,))``: noisy 1-D mixtures with K = 1..MAX_K."""
    rng = np.random.default_rng(seed)
    ks = rng.integers(1, MAX_K + 1, n)
    weights = np.zeros((n, MAX_K))
    means = np.zeros((n, MAX_K))
    stds = np.ones((n, MAX_K))
    for i, k in enumerate(ks):  # data generation, not the code measured
        s = rng.uniform(0.4, 1.2, k)
        while True:
            m = np.sort(rng.uniform(0.0, 20.0, k))
            if k == 1 or np.all(np.diff(m) >= 3.0 * np.maximum(s[:-1], s[1:])):
                break
        w = np.maximum(rng.dirichlet(np.full(k, 4.0)), 0.08)
        weights[i, :k], means[i, :k], stds[i, :k] = w / w.sum(), m, s
    truth = mixture_densities_1d(GRID, weights, means, stds)
    noisy = truth + NOISE * truth.max(axis=1, keepdims=True) * rng.normal(size=truth.shape)
    return noisy, ks


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="spectra")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    n_jobs = args.n_jobs
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start, "
        f"Python {platform.python_version()}, numpy {np.__version__}, n_jobs={n_jobs}"
    )
    Y, ks = spectra(args.n, args.seed)
    print(
        f"data: {args.n} spectra, K = 1..{MAX_K} ({np.bincount(ks)[1:].tolist()}), seed {args.seed}"
    )
    # start the process pool and load the kernel in its workers and here
    fit_many(GRID, Y[:8], DensityGMMCV(random_state=0), n_jobs=n_jobs, chunk_size=4, method="loop")
    fit_many(GRID, Y[:8], DensityGMMCV(random_state=0), n_jobs=n_jobs, chunk_size=4)

    fixed_seconds = 0.0
    for k in range(1, MAX_K + 1):
        rows = ks == k
        _, seconds = timed(fit_many, GRID, Y[rows], DensityGMM(k, random_state=0), n_jobs=n_jobs)
        fixed_seconds += seconds
    cv = DensityGMMCV(random_state=0)
    vec, vec_seconds = timed(fit_many, GRID, Y, cv, n_jobs=n_jobs)
    loop, loop_seconds = timed(fit_many, GRID, Y, cv, n_jobs=n_jobs, method="loop")

    n = args.n
    print()
    print(f"{'peer':<34} {'seconds':>8} {'dens/s':>9} {'cost / fixed-K':>15}")
    for name, seconds in (
        ("fixed-K batch (true K)", fixed_seconds),
        ("DensityGMMCV vectorized", vec_seconds),
        ("DensityGMMCV loop (alone)", loop_seconds),
    ):
        print(f"{name:<34} {seconds:>8.2f} {n / seconds:>9.1f} {seconds / fixed_seconds:>14.1f}x")
    same = vec.n_components == loop.n_components
    print()
    print(
        f"same K as DensityGMMCV alone: {same.mean():.1%} ({same.sum()} of {n}); "
        f"vectorized right: {np.mean(vec.n_components == ks):.1%}, "
        f"alone right: {np.mean(loop.n_components == ks):.1%}; two or more off: "
        f"vectorized {int(np.sum(np.abs(vec.n_components - ks) >= 2))}, "
        f"alone {int(np.sum(np.abs(loop.n_components - ks) >= 2))}"
    )
    diff = np.flatnonzero(~same)
    if diff.size:
        print("rows that differ (row: true, vectorized, alone):")
        print(
            "  "
            + ", ".join(
                f"{i}: {ks[i]} {vec.n_components[i]} {loop.n_components[i]}" for i in diff[:40]
            )
        )
    print("targets: >= 2,000 spectra/s vectorized, same K as alone >= 99%")


if __name__ == "__main__":
    main()
