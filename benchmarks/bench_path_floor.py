"""The least a search along K = 1, 2, ... can cost, in single fits at the true K.

Run: python benchmarks/bench_path_floor.py     (a few minutes, one process)

A search that scores K = 1, 2, ... and stops two candidates past the best (DensityGMMCV's
``early_stopping``) fits at least K = 1 .. K* + 2 on all points, K* the true K, before any fold
is refitted. For bench_choose_k's families where the clear-peaks bound rarely applies
(``density=True`` histograms, 2-D images) and, for contrast, 1-D densities at 1% noise, this
times ``DensityGMM(k).fit`` for every k = 1 .. K* + 2 on each case (the fastest of three, the
case's seed as random_state) and prints the median over the cases of their sum divided by the
fit at K*: the cost floor of such a path, against bench_choose_k's target of 5.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics
import time
import warnings

from bench_choose_k import FAMILIES, make_case

from skdensityfit import DensityGMM


def fastest(k, case):
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        DensityGMM(k, loss=case.loss, random_state=case.seed).fit(case.grid, case.y)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    warnings.simplefilter("ignore")
    print(f"{'family':<10} {'cases':>6} {'median floor':>13} {'min':>6} {'max':>6}")
    for family in ("histl2", "noisy2d", "noisy1"):
        floors = []
        for seed in range(FAMILIES[family][1]):
            case = make_case(family, seed)
            times = {k: fastest(k, case) for k in range(1, case.true_k + 3)}
            floors.append(sum(times.values()) / times[case.true_k])
        print(
            f"{family:<10} {len(floors):>6} {statistics.median(floors):>13.1f} "
            f"{min(floors):>6.1f} {max(floors):>6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
