"""What one row of the compiled kernel costs: an evaluation, and a Levenberg-Marquardt iteration.

Run: python benchmarks/bench_kernel_cost.py      (under a minute, after the kernel is compiled)

On bench_batch's 1-D data (200 points, K = 2, 2% noise), in thread time (wall time times the
threads): the loss of 200,000 rows at one parameter vector (``losses_of``), on one thread and
on two; and Levenberg-Marquardt on 20,000 rows from starts perturbed around a fit
(``minimize_rows``), per iteration (an iteration evaluates the loss, its gradient and its
Gauss-Newton matrix at the trial point and solves the damped system). Then the same
evaluations of a 2-D row (bench_batch's 32x32 grid, K = 2 full covariances), one thread.
First, what an exp costs in a loop over a block of values: numba's ``math.exp`` (a call
to libm, which stops the loop's vectorisation) and the kernel's ``_exp``.
"""

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import math

import numpy as np
from bench_batch import GRID, GRID_2D, densities_1d, densities_2d
from numba import njit

from skdensityfit import DensityGMM
from skdensityfit._engine import kernel as _kernel
from skdensityfit._engine.problem import problem_of
from skdensityfit._engine.rows import (
    KernelInputs,
    curvatures_of,
    kernel_threads,
    losses_of,
    minimize_rows,
)


@njit(fastmath=_kernel.FASTMATH)
def _exps_libm(x, out, repeats):
    for _ in range(repeats):
        for i in range(x.shape[0]):
            out[i] = math.exp(x[i])


@njit(fastmath=_kernel.FASTMATH)
def _exps_kernel(x, out, repeats):
    for _ in range(repeats):
        for i in range(x.shape[0]):
            out[i] = _kernel._exp(x[i])


def exp_cost():
    """ns a value of numba's exp (libm) and of the kernel's, in a loop over 64 values."""
    x = -np.random.default_rng(0).uniform(0.0, 40.0, 64)
    out = np.empty_like(x)
    print("exp in a loop over 64 values (a block), 1 thread")
    for name, function in (("numba's math.exp", _exps_libm), ("the kernel's _exp", _exps_kernel)):
        function(x, out, 10)
        start = time.perf_counter()
        function(x, out, 200_000)
        print(f"  {name}: {(time.perf_counter() - start) / (200_000 * 64) * 1e9:.2f} ns a value")


def main():
    warnings.simplefilter("ignore")
    exp_cost()
    _, noisy = densities_1d(10, 2, 0, 0.02)
    model = DensityGMM(2, random_state=0).fit(GRID, noisy[0])
    problem = problem_of(model, GRID[:, None], noisy[0], None)
    theta = problem.to_fit(model.weights_, model.means_, model.precisions_cholesky_, model.scale_)
    inputs = KernelInputs.of(problem)
    rows = np.tile(theta, (200_000, 1))
    losses_of(inputs, rows[:10])
    print(f"1-D, {GRID.size} points, K = 2, {theta.size} parameters")
    for threads in (1, 2):
        with kernel_threads(threads):
            start = time.perf_counter()
            losses_of(inputs, rows)
            seconds = time.perf_counter() - start
        per_row = seconds / len(rows) * threads * 1e6
        print(
            f"  loss only, {threads} thread(s): {per_row:.2f} us a row "
            f"({per_row / GRID.size * 1e3:.1f} ns a point)"
        )
    with kernel_threads(1):
        curvatures_of(inputs, rows[:10])
        start = time.perf_counter()
        curvatures_of(inputs, rows[:50_000])
        per_row = (time.perf_counter() - start) / 50_000 * 1e6
    print(
        f"  loss, gradient and Gauss-Newton matrix, 1 thread: {per_row:.2f} us a row "
        f"({per_row / GRID.size * 1e3:.1f} ns a point)"
    )
    starts = theta + 0.05 * np.random.default_rng(0).normal(size=(20_000, theta.size))
    with kernel_threads(2):
        start = time.perf_counter()
        result = minimize_rows(inputs, starts, tol=1e-8, max_iter=100)
        seconds = time.perf_counter() - start
    iterations = result.n_iter.mean()
    print(
        f"  Levenberg-Marquardt, 20,000 rows on 2 threads: {seconds:.2f} s, "
        f"{iterations:.1f} iterations a row, {seconds / len(starts) * 2e6 / iterations:.1f} us "
        "of thread time an iteration"
    )

    image = densities_2d(1, 5)[0]
    model = DensityGMM(2, random_state=0).fit(GRID_2D, image)
    problem = problem_of(model, GRID_2D, image, None)
    theta = problem.to_fit(model.weights_, model.means_, model.precisions_cholesky_, model.scale_)
    inputs = KernelInputs.of(problem)
    rows = np.tile(theta, (5_000, 1))
    n = GRID_2D.shape[0]
    print(f"2-D, {n} points (32x32), K = 2 full, {theta.size} parameters, 1 thread")
    with kernel_threads(1):
        for name, function in (("loss only", losses_of), ("with derivatives", curvatures_of)):
            function(inputs, rows[:10])
            start = time.perf_counter()
            function(inputs, rows)
            per_row = (time.perf_counter() - start) / len(rows) * 1e6
            print(f"  {name}: {per_row:.1f} us a row ({per_row / n * 1e3:.1f} ns a point)")


if __name__ == "__main__":
    main()
