"""Where a noisy 1-D row's Levenberg-Marquardt goes: each stage of the vectorised fit.

Run: python benchmarks/profile_noisy_rows.py [--n 5000]      (a minute on one core)

``fit_many(grid, Y, DensityGMM(K), n_jobs=1)`` on ``bench_batch``'s noisy 1-D sets (2% noise,
K = 2 and K = 3), with ``minimize_rows`` counted by the function that asks for it (the first
start, the greedy path, the weakest component's move trials, their polish, the final polish):
its calls, rows, iterations and seconds; and how many rows the move trials moved
(``moved_rows``' return). The seconds include the threads' hand-over but not the Python
around the kernel; the total is the fit's wall time on one thread.
"""

import argparse
import collections
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_batch
import numpy as np

import skdensityfit._engine.fitting as fitting
from skdensityfit import DensityGMM, fit_many


def profile(k, n):
    _, Y = bench_batch.densities_1d(n, k, k - 2, 0.02)
    fit_many(bench_batch.GRID, Y[:8], DensityGMM(k), n_jobs=1)  # the kernel loaded
    stages = collections.defaultdict(lambda: [0, 0, 0, 0.0])
    moved = [0, 0]
    minimize, move = fitting.minimize_rows, fitting.moved_rows

    def counted_minimize(inputs, thetas, **kwargs):
        start = time.perf_counter()
        result = minimize(inputs, thetas, **kwargs)
        caller = sys._getframe(1).f_code.co_name
        stage = stages[caller]
        stage[0] += 1
        stage[1] += len(result.loss)
        stage[2] += int(result.n_iter.sum())
        stage[3] += time.perf_counter() - start
        return result

    def counted_move(problem, inputs, fits, rows, *args, **kwargs):
        result = move(problem, inputs, fits, rows, *args, **kwargs)
        moved[0] += len(rows)
        moved[1] += len(result)
        return result

    fitting.minimize_rows, fitting.moved_rows = counted_minimize, counted_move
    try:
        start = time.perf_counter()
        fit_many(bench_batch.GRID, Y, DensityGMM(k, random_state=0), n_jobs=1)
        seconds = time.perf_counter() - start
    finally:
        fitting.minimize_rows, fitting.moved_rows = minimize, move
    print(f"noisy 1-D K = {k}: {n} rows in {seconds:.2f} s on one thread ({n / seconds:,.0f}/s)")
    print(f"  {'asked by':<22}{'calls':>6}{'rows':>8}{'iter/row':>10}{'seconds':>9}{'share':>7}")
    for caller, (calls, rows, iterations, spent) in sorted(stages.items(), key=lambda s: -s[1][3]):
        print(
            f"  {caller:<22}{calls:>6}{rows:>8}{iterations / max(rows, 1):>10.1f}"
            f"{spent:>9.3f}{spent / seconds:>7.0%}"
        )
    total = sum(s[2] for s in stages.values())
    print(f"  {total / n:.1f} iterations a row; move trials on {moved[0]} rows moved {moved[1]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}")
    for k in (2, 3):
        profile(k, args.n)


if __name__ == "__main__":
    main()
