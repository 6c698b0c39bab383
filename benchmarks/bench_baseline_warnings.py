"""Spectra on a baseline fitted without ``background=``: are the extra components warned of?

Run: python benchmarks/bench_baseline_warnings.py     (under a minute on 2 cores)

Without ``background=`` a baseline under the lines is taken by extra components, so the
chosen K is too large; the result must then carry a warning that says so ("hold no line of
their own": a component centred outside the grid, or broader than a quarter of it). This
counts, for ``DensityGMMCV()`` with its defaults:

- on spectra with baselines (256 channels on -100..100, 1-4 lines of sd 2-10 and heights
  0.3-1, a constant, sloped or curved baseline of 2-8% of the peak, white noise of 2-5% of
  it; 100 seeds each) and the same spectra without a baseline, through ``fit_many``: the
  rows whose K is too large, those of them with no warning at all (silent), and the rows
  warned of components holding no line;
- as false alarms, the "hold no line" warning on every case of ``bench_choose_k.py
  --family all`` (each with what its user passes, a baseline family with its
  ``background=``) and on the 98 real 13CO spectra of ``bench_real_spectra.py``, which have
  no baseline.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import collections
import sys
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_choose_k

from skdensityfit import DensityGMMCV, fit_many

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
CHANNELS = np.linspace(-100.0, 100.0, 256)
KINDS = ("none", "constant", "linear", "quadratic")
PHRASES = ("hold no line of their own", "broader than a quarter of the grid")


def spectrum(seed, kind):
    """``(true K, values)``: 1-4 lines on a baseline of ``kind`` with white noise."""
    rng = np.random.default_rng(seed)
    k = 1 + seed % 4
    means, sds, heights = rng.uniform(-70, 70, k), rng.uniform(2, 10, k), rng.uniform(0.3, 1, k)
    y = (heights * np.exp(-0.5 * ((CHANNELS[:, None] - means) / sds) ** 2)).sum(axis=1)
    y /= y.max()
    u = (CHANNELS - CHANNELS.min()) / np.ptp(CHANNELS)
    if kind == "constant":
        baseline = np.full_like(u, rng.uniform(0.02, 0.08))
    elif kind == "linear":
        start = rng.uniform(0, 0.08)
        baseline = np.abs(start + (rng.uniform(0, 0.08) - rng.uniform(0, 0.08)) * u)
    elif kind == "quadratic":
        level = rng.uniform(0.02, 0.08)
        baseline = level * (1 - 0.8 * rng.uniform(0.5, 1) * 4 * u * (1 - u))
    else:
        baseline = np.zeros_like(u)
    return k, y + baseline + rng.uniform(0.02, 0.05) * rng.normal(size=u.size)


def baseline_rows(kind, n_seeds):
    truth, Y = zip(*(spectrum(seed, kind) for seed in range(n_seeds)), strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(CHANNELS, np.array(Y), DensityGMMCV(random_state=0), n_jobs=2)
    over = np.asarray(result.n_components) > np.array(truth)
    spoken = np.array([bool(m) for m in result.messages])
    no_line = np.array([any(p in m for p in PHRASES) for m in result.messages])
    return len(Y), int(over.sum()), int((over & ~spoken).sum()), int(no_line.sum())


def _warned(grid, y, loss, max_components, seed, keywords):
    keywords = dict(keywords)
    weights = keywords.pop("sample_weight", None)
    search = DensityGMMCV(n_components=max_components, loss=loss, random_state=seed, **keywords)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(grid, y, **({} if weights is None else {"sample_weight": weights}))
    return any(p in str(w.message) for w in caught for p in PHRASES)


def false_alarms():
    cases = bench_choose_k.all_cases(families=list(bench_choose_k.FAMILIES))
    spectra = np.load(DATA / "grs_13co_10x10.npz")["spectra"].astype(float)
    spectra = spectra[np.all(np.isfinite(spectra), axis=1)]
    velocity = np.arange(spectra.shape[1], dtype=float)
    jobs = [
        (c.family, (c.grid, c.y, c.loss, c.max_components, c.seed, c.selector_keywords()))
        for c in cases
    ] + [("real 13CO", (velocity, s, "l2", 8, 0, {})) for s in spectra]
    warned = Parallel(n_jobs=2)(delayed(_warned)(*arguments) for _, arguments in jobs)
    counts = collections.defaultdict(lambda: [0, 0])
    for (family, _), flag in zip(jobs, warned, strict=True):
        counts[family][0] += 1
        counts[family][1] += flag
    return counts


def main():
    print("spectra on a baseline, DensityGMMCV() without background= (fit_many, 100 seeds each)")
    header = ("baseline", "rows", "K too large", "silent", "no-line warned")
    print("{:10s} {:>5s} {:>12s} {:>7s} {:>15s}".format(*header))
    for kind in KINDS:
        n, over, silent, no_line = baseline_rows(kind, 100)
        print(f"{kind:10s} {n:5d} {over:12d} {silent:7d} {no_line:15d}")
    print("\nfalse alarms: the 'hold no line' warning where no baseline is left to the mixture")
    for family, (n, flagged) in false_alarms().items():
        print(f"  {family:12s} {flagged:3d} of {n}")


if __name__ == "__main__":
    main()
