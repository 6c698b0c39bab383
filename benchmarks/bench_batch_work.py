"""The vectorised batch path's work, counted rather than timed: batched evaluations and rows.

Run: python benchmarks/bench_batch_work.py      (about half a minute, one process)
     (on another checkout: PYTHONPATH=that/checkout python benchmarks/bench_batch_work.py)

Timings on this shared machine move by tens of percent from run to run; these counts do not.
For bench_batch's 1-D data sets (2,000 rows each, the same generators and seeds), it runs
``fit_many(grid, Y, DensityGMM(K, random_state=0), n_jobs=1)`` and counts the calls of the
batched evaluation (``_batch_lm.evaluate``: model, Jacobian and Gauss-Newton matrix of the
rows still iterating), the rows they evaluated (``row-evals``, the arithmetic), and the rows
that levenberg_marquardt's ``give_up`` hook was asked about. Every call has a fixed cost of
numpy calls whatever its number of rows, so calls on few rows (a block waiting for its slowest
rows) are the overhead; row-evals are the work. Then, timed (the best of five), one batched
evaluation of the noisy K = 2 rows at their fit, per row, by the number of rows evaluated
together: what a call costs when few rows are left, and when many fall out of cache. Last, the
ceiling those two measurements put on bench_batch's throughput: densities per second on two
processes if the evaluations were the only cost, each at the fastest per-row cost measured,
for each data set, for all 1-D rows in equal parts, and for them if the noise-free half cost
nothing at all.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import time
import warnings

import numpy as np
from bench_batch import GRID, densities_1d

import skdensityfit._batch_fit as batch_fit
import skdensityfit._batch_lm as batch_lm
from skdensityfit import DensityGMM, fit_many

SETS = ((2, 0, 0.0), (3, 1, 0.0), (2, 0, 0.02), (3, 1, 0.02))  # (K, seed, noise) as bench_batch
N_CORES = 2  # bench_batch's n_jobs


def main():
    warnings.simplefilter("ignore")
    counts = {"calls": 0, "rows": 0, "asked": 0}
    evaluate = batch_lm.evaluate
    hopeless = getattr(batch_fit, "hopeless", None)  # (older checkouts have no hook)

    def counted_evaluate(problem, theta, data):
        counts["calls"] += 1
        counts["rows"] += len(theta)
        return evaluate(problem, theta, data)

    def counted_hopeless(problem, theta, data):
        counts["asked"] += len(theta)
        return hopeless(problem, theta, data)

    batch_lm.evaluate = counted_evaluate
    if hopeless is not None:
        batch_fit.hopeless = counted_hopeless
    print(f"{'data':<22} {'rows':>6} {'calls':>7} {'row-evals':>10} {'per row':>8} {'asked':>6}")
    per_row = {}
    for k, seed, noise in SETS:
        truth, noisy = densities_1d(2000, k, seed, noise)
        counts.update(calls=0, rows=0, asked=0)
        result = fit_many(GRID, noisy if noise else truth, DensityGMM(k, random_state=0), n_jobs=1)
        name = f"1-D K={k} {'noise 2%' if noise else 'noise-free'}"
        print(
            f"{name:<22} {len(truth):>6} {counts['calls']:>7} {counts['rows']:>10} "
            f"{counts['rows'] / len(truth):>8.1f} {counts['asked']:>6}   "
            f"(fallback {result.fallback.mean():.2%}, summed loss {np.sum(result.loss):.6e})"
        )
        per_row[name] = counts["rows"] / len(truth)

    batch_lm.evaluate = evaluate
    _, noisy = densities_1d(1024, 2, 0, 0.02)
    problem = batch_lm.BatchProblem(GRID[:, None], 2, "full", "l2")
    data, _ = batch_lm.batch_data(problem, noisy)
    start = batch_fit.em_start(problem, data)
    theta = batch_lm.levenberg_marquardt(problem, start, data, tol=1e-8, max_iter=50).theta
    print()
    print("one batched evaluation (noisy K=2, 200 points), microseconds per row:")
    cost = {}
    for size in (16, 64, 256, 1024):
        best = np.inf
        for _ in range(5):
            begin = time.perf_counter()
            for first in range(0, 1024, size):
                rows = np.arange(first, first + size)
                evaluate(problem, theta[rows], data.take(rows))
            best = min(best, (time.perf_counter() - begin) / 1024 * 1e6)
        cost[size] = best
        print(f"  {size:>5} rows together: {best:6.1f}")
    # An upper bound on throughput: if the batched evaluations were the only cost, each at
    # the fastest per-row cost measured above (K = 2; K = 3 evaluations cost more), on
    # N_CORES processes that scale perfectly.
    fastest = min(cost.values())
    print()
    print(
        f"ceiling if evaluations were the only cost ({fastest:.1f} us a row-evaluation, "
        f"{N_CORES} processes, perfect scaling), densities/s:"
    )
    bounds = {name: N_CORES * 1e6 / (evals * fastest) for name, evals in per_row.items()}
    for name, bound in bounds.items():
        print(f"  {name:<22} {bound:>9.0f}")
    mixed = len(bounds) / sum(1.0 / bound for bound in bounds.values())
    noisy = [bound for name, bound in bounds.items() if "noise 2%" in name]
    half = 2.0 / sum(1.0 / bound for bound in noisy)
    print(
        f"  all 1-D rows (equal parts) {mixed:>5.0f}; with the noise-free half free of cost: "
        f"{2.0 * half:.0f} (issue #15's target: 10,000)"
    )


if __name__ == "__main__":
    main()
