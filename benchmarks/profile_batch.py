"""Where a batch's time goes: the kernel's Levenberg-Marquardt, its other calls, and the rest.

Run: python benchmarks/profile_batch.py      (under a minute after the kernel is compiled)

One thread (``n_jobs=1``), profiled with cProfile: ``fit_many`` of 2,000 noisy 1-D K = 2 rows
(bench_batch's data, 2% noise) in chunks of 1,000, and ``fit_many`` with ``DensityGMMCV`` on 400
spectra (bench_batch_cv's data). Prints the time a density, the Levenberg-Marquardt
iterations it takes (its starts, path, moves and polish; for DensityGMMCV, every candidate's),
and the time's split by the functions' own time: ``_engine.kernel.fit_rows`` (Levenberg-Marquardt),
the greedy peaks and matched filters, the kernel's other calls, and everything else (the
Python and numpy between the kernel's calls,
which holds the GIL while the kernel's other threads wait). Between the two, 5,000 noisy rows
on two threads with chunks of 256 densities and with the default chunks.
"""

import cProfile
import os
import pstats
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_batch
import bench_batch_cv

import skdensityfit._engine.fitting as engine
import skdensityfit._selection.search as search
from skdensityfit import DensityGMM, DensityGMMCV, fit_many

PARTS = {
    "Levenberg-Marquardt (kernel.fit_rows)": ("fit_rows",),
    "greedy peaks and matched filters": (
        "greedy_peaks",
        "matched_filter",
        "matched_filter_uniform",
    ),
    "the kernel's other calls": ("evaluate_rows", "component_shares", "jacobian", "derivatives_of"),
}


def _counting(minimize, counts):
    """``minimize_rows`` that adds the iterations it runs to ``counts[0]``."""

    def counted(*args, **kwargs):
        result = minimize(*args, **kwargs)
        counts[0] += int(result.n_iter.sum())
        return result

    return counted


def profile(name, grid, Y, estimator, **kwargs):
    fit_many(grid, Y[:20], estimator, n_jobs=1)  # the kernel loaded
    counts = [0]
    minimize = engine.minimize_rows  # the same function in both modules
    engine.minimize_rows = search.minimize_rows = _counting(minimize, counts)
    try:
        fit_many(grid, Y, estimator, n_jobs=1, **kwargs)
    finally:
        engine.minimize_rows = search.minimize_rows = minimize
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    fit_many(grid, Y, estimator, n_jobs=1, **kwargs)
    profiler.disable()
    seconds = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    own = {}
    for (filename, _, function), (_, _, tottime, _, _) in stats.items():
        if Path(filename).parts[-2:] == ("_engine", "kernel.py"):
            own[function] = own.get(function, 0.0) + tottime
    total = sum(tottime for (_, _, tottime, _, _) in stats.values())
    print(
        f"{name}: {seconds / len(Y) * 1e6:.0f} us a density (profiled, one thread); "
        f"{counts[0] / len(Y):.1f} Levenberg-Marquardt iterations a density"
    )
    counted = 0.0
    for part, functions in PARTS.items():
        share = sum(own.get(f, 0.0) for f in functions)
        counted += share
        print(f"  {part:42s} {100 * share / total:5.1f}%")
    print(f"  {'the rest (Python, numpy)':42s} {100 * (total - counted) / total:5.1f}%")


def chunk_sizes(Y, estimator):
    """Densities a second on two threads with chunks of 256 (the default before the chunks
    held 2**18 values) and with the default."""
    fit_many(bench_batch.GRID, Y[:20], estimator, n_jobs=2)
    for chunk_size in (256, None):
        start = time.perf_counter()
        fit_many(bench_batch.GRID, Y, estimator, n_jobs=2, chunk_size=chunk_size)
        rate = len(Y) / (time.perf_counter() - start)
        print(f"  {len(Y)} rows on two threads, chunk_size={chunk_size}: {rate:,.0f} densities/s")


def main():
    warnings.simplefilter("ignore")
    _, noisy = bench_batch.densities_1d(2000, 2, 0, bench_batch.NOISE)
    profile(
        "noisy 1-D K = 2", bench_batch.GRID, noisy, DensityGMM(2, random_state=0), chunk_size=1000
    )
    _, noisy = bench_batch.densities_1d(5000, 2, 0, bench_batch.NOISE)
    chunk_sizes(noisy, DensityGMM(2, random_state=0))
    spectra, _ = bench_batch_cv.spectra(400, 0)
    profile(
        "DensityGMMCV, 1-D spectra K = 1..5",
        bench_batch_cv.GRID,
        spectra,
        DensityGMMCV(random_state=0),
    )


if __name__ == "__main__":
    main()
