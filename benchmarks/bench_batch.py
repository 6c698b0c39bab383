"""Batch fitting: fit_many serial and parallel, cold and warm, against single DensityGMM fits.

Run: python benchmarks/bench_batch.py            (10,000 densities: about five minutes)
     python benchmarks/bench_batch.py --n-densities 400 --single-subset 40   (a quick look)

Data: 1-D densities on a shared 200-point grid, half with K = 2 and half with K = 3
components, made of time series (``--series-length`` steps each) whose means, widths and
weights drift slowly (``skdensityfit._examples.drifting_mixture_series_1d``), so that
neighbouring rows look alike; noise-free. Each K is one ``fit_many`` call with
``DensityGMM(n_components=K, random_state=0)`` and the default chunk size, whose chunk
boundaries fall inside the series (so some warm starts come from an unrelated density).

Reported per run: densities per second, milliseconds per density, the cost per density
relative to plain ``DensityGMM(K, random_state=0).fit`` calls (made one after the other on
every ``n / single-subset``-th density) and the recovery success rate (relative L2 error of the
fitted density <= 1e-3). The last run keeps every warm fit (no fallback to a fresh start),
to measure whether the fallback is needed.
"""

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import platform
import time
import warnings

import joblib
import numpy as np
from joblib import Parallel, delayed
from sklearn import get_config
from sklearn.exceptions import ConvergenceWarning

from skdensityfit import DensityGMM, fit_many
from skdensityfit._batch import (
    _check_chunk_size,
    _empty_result,
    _fit_chunk,
    _store_chunk,
)
from skdensityfit._examples import (
    drifting_mixture_series_1d,
    mixture_densities_1d,
)

GRID = np.linspace(-5.0, 25.0, 200)
SUCCESS_ERROR = 1e-3


def make_densities(n_densities, n_components, series_length, seed):
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(-(-n_densities // series_length)):
        parts.append(drifting_mixture_series_1d(rng, series_length, n_components))
    weights, means, stds = (np.vstack(p)[:n_densities] for p in zip(*parts, strict=True))
    return mixture_densities_1d(GRID, weights, means, stds)


def relative_errors(result, Y):
    fitted = result.predict_density(GRID)
    return np.linalg.norm(fitted - Y, axis=1) / np.linalg.norm(Y, axis=1)


def fit_many_without_fallback(Y, estimator, n_jobs):
    """fit_many(warm_start=True) that keeps every warm fit (private hook, same chunks)."""
    n = len(Y)
    size = _check_chunk_size(None, n)
    chunks = Parallel(n_jobs=n_jobs)(
        delayed(_fit_chunk)(
            get_config(),
            start,
            estimator,
            GRID[:, None],
            Y[start : start + size],
            None,
            None,
            shared_grid=True,
            warm_start=True,
            return_estimators=False,
            fallback=False,
        )
        for start in range(0, n, size)
    )
    result = _empty_result(estimator, n, 1, False)
    for start, chunk in chunks:
        _store_chunk(result, start, chunk)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-densities", type=int, default=10_000, help="total, both K")
    parser.add_argument("--single-subset", type=int, default=500, help="single fits made")
    parser.add_argument("--series-length", type=int, default=250)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--skip-no-fallback", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", UserWarning)

    data = {}
    for k, seed in ((2, 0), (3, 1)):
        n_k = args.n_densities // 2 if k == 2 else args.n_densities - args.n_densities // 2
        data[k] = make_densities(n_k, k, args.series_length, seed)
    n_total = sum(len(Y) for Y in data.values())
    print(
        f"{n_total} 1-D densities ({len(data[2])} with K=2, {len(data[3])} with K=3), "
        f"{GRID.size} points, series of {args.series_length} drifting steps, noise-free; "
        f"default chunk sizes {_check_chunk_size(None, len(data[2]))} and "
        f"{_check_chunk_size(None, len(data[3]))}"
    )
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start "
        f"(shared with other users: figures vary from run to run), Python "
        f"{platform.python_version()}, numpy {np.__version__}, joblib {joblib.__version__}, "
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
    )

    rows = []

    # single fits on a subset, one after the other
    step = max(1, n_total // args.single_subset)
    errors, elapsed, cpu, n_single = [], 0.0, 0.0, 0
    load = os.getloadavg()[0]
    for k, Y in data.items():
        for y in Y[::step]:
            start, start_cpu = time.perf_counter(), time.process_time()
            model = DensityGMM(k, random_state=0).fit(GRID, y)
            elapsed += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            fitted = model.predict_density(GRID)
            errors.append(np.linalg.norm(fitted - y) / np.linalg.norm(y))
            n_single += 1
    single_ms, single_cpu_ms = 1e3 * elapsed / n_single, 1e3 * cpu / n_single
    rows.append(("single DensityGMM.fit calls", n_single, elapsed, cpu, np.array(errors), load))

    # warm up the process pool so that its start is not timed
    fit_many(GRID, data[2][:4], DensityGMM(2, random_state=0), n_jobs=args.n_jobs, chunk_size=2)

    runs = [
        ("fit_many cold, n_jobs=1", {"n_jobs": 1}),
        (f"fit_many cold, n_jobs={args.n_jobs}", {"n_jobs": args.n_jobs}),
        ("fit_many warm, n_jobs=1", {"n_jobs": 1, "warm_start": True}),
        (f"fit_many warm, n_jobs={args.n_jobs}", {"n_jobs": args.n_jobs, "warm_start": True}),
    ]
    fallback_rows = None
    for name, kwargs in runs:
        errors, elapsed, cpu, n_fresh_after_warm = [], 0.0, 0.0, 0
        load = os.getloadavg()[0]
        for k, Y in data.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            result = fit_many(GRID, Y, DensityGMM(k, random_state=0), **kwargs)
            elapsed += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            errors.append(relative_errors(result, Y))
            if kwargs.get("warm_start"):
                chunk_firsts = -(-len(Y) // _check_chunk_size(None, len(Y)))
                n_fresh_after_warm += int(np.sum(~result.warm_started)) - chunk_firsts
        in_process = kwargs["n_jobs"] == 1  # CPU time is only seen for in-process work
        rows.append(
            (name, n_total, elapsed, cpu if in_process else None, np.concatenate(errors), load)
        )
        if kwargs.get("warm_start"):
            fallback_rows = n_fresh_after_warm
        print(f"  done: {name} ({elapsed:.1f} s)", flush=True)
    if not args.skip_no_fallback:
        errors, elapsed = [], 0.0
        load = os.getloadavg()[0]
        for k, Y in data.items():
            start = time.perf_counter()
            result = fit_many_without_fallback(Y, DensityGMM(k, random_state=0), args.n_jobs)
            elapsed += time.perf_counter() - start
            errors.append(relative_errors(result, Y))
        name = f"warm without fallback, n_jobs={args.n_jobs}"
        rows.append((name, n_total, elapsed, None, np.concatenate(errors), load))
        print(f"  done: {name} ({elapsed:.1f} s)", flush=True)

    print()
    header = (
        f"{'run':<34} {'densities':>9} {'seconds':>8} {'densities/s':>11} "
        f"{'ms/density':>10} {'vs single':>9} {'CPU ms/density':>14} {'CPU vs single':>13} "
        f"{'success':>8} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for name, n, elapsed, cpu, errs, load in rows:
        ms = 1e3 * elapsed / n
        cpu_ms = "-" if cpu is None else f"{1e3 * cpu / n:.2f}"
        cpu_ratio = "-" if cpu is None else f"{1e3 * cpu / n / single_cpu_ms:.2f}"
        print(
            f"{name:<34} {n:>9} {elapsed:>8.1f} {n / elapsed:>11.1f} {ms:>10.2f} "
            f"{ms / single_ms:>9.2f} {cpu_ms:>14} {cpu_ratio:>13} "
            f"{np.mean(errs <= SUCCESS_ERROR):>8.2%} {load:>5.2f}"
        )
    print()
    print(
        "vs single: wall time per density relative to the single fits (below 1 is cheaper; "
        "with n_jobs=2, 0.50 would be a perfect speed-up). CPU columns: process CPU time, "
        "less sensitive to other users of the machine, for the in-process runs only. load: "
        "1-minute load average when the run started (2 cores)."
    )
    print(
        f"success: relative L2 error of the fitted density <= {SUCCESS_ERROR:g}. "
        f"Warm runs: {fallback_rows} rows were refitted from a fresh start after a rejected "
        "warm fit and kept the fresh fit."
    )


if __name__ == "__main__":
    main()
