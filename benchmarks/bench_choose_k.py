"""How often a selector of the number of components K gets it right, family by family.

Run:   python benchmarks/bench_choose_k.py           (full: 419 cases, under a minute a selector)
       python benchmarks/bench_choose_k.py --quick   (81 cases: every 6th of each generated
                                                      family and all of Old Faithful, 1 min)
(times for the default selectors, today's DensityGMMCV and BIC; a selector costing 20 single
fits takes about 25 min in full)
       python benchmarks/bench_choose_k.py --family new --selector cv --selector bicfit
              --output benchmarks/results/choose_k_new_families.txt
              (the harder families below, 280 cases, 2 min; --quick: 49 cases, 15 s; not part
               of the default run, whose 419 cases and results file stay as they were;
               --family all runs both sets)
Options: --selector NAME (repeatable; 'cv' = DensityGMMCV with default settings, 'bic' =
DensityGMM(k, loss='poisson').bic on histograms of counts, 'bicfit' = the reference below, or
'path/to/file.py:function' / 'module:function' for any callable
``f(grid, y, *, loss, max_components, random_state) -> int``, which may return None for cases it
does not apply to); --family NAME (repeatable; 'new' = the new families, 'all' = every family);
--jobs N (processes, at most 2 here); --seed-offset S (draw every generated family from seeds
S, S+1, ... instead of 0, 1, ...: a confirmation range for rules tuned on the default seeds);
--describe (print one line per case: K, widths, weights, noise, baseline, bins; no fits);
--output FILE. The full default run writes benchmarks/results/choose_k.txt.

What a user would pass besides the grid and y: cases of the new families may carry a
``background`` (the true kind of baseline), ``bins`` (edges) and ``sample_weight`` (bin
widths). A selector then also gets the keywords ``background=`` (what a user would ask for:
'linear' for constant and sloped baselines, the true kind, e.g. 'quadratic', for curved ones),
``bins=`` and ``sample_weight=``, each only when it is not None, so the selectors of the old
families keep working unchanged. A selector whose signature does not take such a keyword (the
call would raise TypeError) counts as not applicable (None) for that case, as does one that
returns None: e.g. 'cv' when DensityGMMCV has no ``background`` parameter or rejects its value,
'bicfit' when DensityGMM rejects a curved ``background``. Each table ends, for the new families,
with how many cases a selector did not apply to.

The reference selector 'bicfit' is no part of the library's rule: fixed-K
``DensityGMM(k, loss=..., background=..., bins=..., random_state=...)`` fitted on all points
for K = 1..max_components, the lowest BIC wins. For loss='poisson' BIC is
``DensityGMM.bic(grid, y, sample_weight=...)`` (binned Poisson likelihood, ln of the number of
counts per parameter); for loss='l2' BIC = chi^2 + p ln n, chi^2 = sum((y - predict)^2) /
sigma^2 with sigma = 1.4826 median(|second differences of y along the grid|) / sqrt(6) (white
noise only: on AR(1) noise of lag-1 correlation rho the second differences have variance
(6 - 8 rho + 2 rho^2) sigma^2, so sigma comes out low by a factor 0.79 at rho = 0.3 and chi^2
is inflated), p = K (1 + d + d (d + 1) / 2) plus the background's coefficients (3K in 1-D), n
the number of points.

For every case the table counts right, one off (too few / too many), more than one off (too
few / too many) against the reference K, and the median cost in single fits: the selection's
wall time divided by that of one ``DensityGMM(true K, loss=...).fit`` on the same data with
default settings, timed in the same process. Candidates are 1..max(6, true K + 2).

Families (each drawn from its own ``numpy.random.default_rng((family tag, seed))``; the draws
and code are independent of tests/test_cv.py and skdensityfit/_examples.py):

- ``clean100``, ``clean400``: noise-free 1-D mixtures, K = 1..6 (12 seeds each), on 100 or
  400 grid points; loss='l2'.
- ``comb``: 5..12 equal peaks (same weight and width) spaced 10 apart, width 1.2 to 2.0
  (drawn), on 400 to 1,000 points; noise-free, loss='l2'.
- ``noisy1``, ``noisy5``: 1-D mixtures, K = 1..5, on 150, 300 or 600 points, plus Gaussian
  white noise of standard deviation 1% or 5% of the clean density's maximum; loss='l2'.
- ``hist300``, ``hist2k``, ``hist20k``: histograms of 300 / 2,000 / 20,000 samples of a 1-D
  mixture (K = 1..3 / 1..4 / 1..5) in 20 to 200 bins (log-uniform), counts with loss='poisson'.
- ``histl2``: histograms of 2,000 or 20,000 samples as ``density=True`` with loss='l2'.
- ``noisy2d``: 64 x 64 images of 2-D full-covariance mixtures, K = 1..4, plus white noise of
  standard deviation 2% of the clean maximum; loss='l2'.
- ``faithful``: Old Faithful (tests/data/faithful.csv): eruptions and waiting times in 20 and
  40 bins, both together in 15 x 15 and 25 x 25 bins, counts with loss='poisson'; the 1-D ones
  also as ``density=True`` with loss='l2'. The reference K is sklearn ``GaussianMixture``
  (full covariance, n_init=10, random_state=0) on the 272 raw samples: the smallest K = 1..6
  whose BIC is within 2 of the lowest (K = 2 for all three: the eruptions' BIC at K = 4 is
  0.5 lower than at K = 2, within that margin).

Identifiability rules of the generated mixtures (a draw that breaks one is redrawn):

- weights: ``w_min + (1 - K w_min) * Dirichlet(1, ..., 1)`` with w_min = 0.05 (0.15 for
  histograms of 300 samples), so every weight is at least w_min and some come close to it;
- 1-D widths: log-uniform in [1, 10] (a 10x range) before the grid is set;
- separation: adjacent 1-D means at least 2.5 (noise-free and noisy) or 3 (histograms) times
  the larger of the two standard deviations apart; 2-D means at least 2.5 times the larger of
  the two components' largest standard deviations apart (Euclidean);
- resolution: the narrowest standard deviation spans at least 1 grid spacing (1-D grids of
  100 points), 1.5 spacings (other 1-D grids and 2-D), or 1 bin (histograms, whose bin count
  is redrawn up to 200);
- visibility under noise: each component's own peak ``w_k N(mu_k; mu_k, Sigma_k)`` is at
  least 5 noise standard deviations, i.e. at least 5 x the noise level times the clean
  maximum (noisy families), and at least 2% of the maximum in noise-free ones;
- the 1-D grids span the means +- 4.5 standard deviations of each component (histograms: +-
  4); 2-D means lie at least 3.5 standard deviations inside the 64 x 64 image.

New families (tags 111-116; their draws share no code or rule with the families above, only
the Gaussian pdf; run only when named, e.g. ``--family new``). They go where the families above
seldom do: components 0.5 to 2.5 grid spacings wide, weights down to 0.05, baselines,
correlated noise, unequal bins. Values are the density at the grid points (channel centres),
not channel averages, so the model with ``bins=None`` holds exactly; K cycles with the seed.

- ``narrow`` (50 cases, K = 1..5): a spectrograph's detector row of n = 120..400 pixels (uniform)
  at a spacing log-uniform in [0.2, 5] (the grid is in those units, from a random origin); the
  narrowest sd log-uniform in [0.5, 2.5] pixels, the others that times log-uniform [1, 6];
  weights: amplitudes log-uniform in [1, 20], normalised, the draw rejected if one is below
  0.05; means uniform at least 4 sd + 2 pixels inside the row; white Gaussian noise of sd
  ``level x max(clean)``, level uniform in [0.01, 0.03]; loss='l2'.
- ``narrowclean`` (40 cases, K = 1..5): as ``narrow`` on n = 100..200 pixels without noise.
  Its K is exact, so a choice below it is unambiguous (noise-free: a selector should never
  fall below the true K; one above it may be a harmless split of nothing).
- ``corr`` (50 cases, K = 1..5): a radio spectrum of 256, 384 or 512 channels, velocity axis at
  0.25 to 2 km/s per channel; line FWHMs log-uniform in [3, 20] channels (sd 1.3 to 8.5);
  weights as ``narrow`` but amplitudes log-uniform in [1, 15]; line centres uniform in the
  central 80% of the band and at least 5 sd from its edges; at most half of the channels lie
  within 3 sd of a line (mostly line-free, as real spectra); correlated Gaussian noise of lag-1
  autocorrelation rho uniform in [0.2, 0.5]: AR(1) or white noise smoothed by a 3-tap kernel
  ``[a, 1, a]`` (a from rho = 2a / (1 + 2a^2)) in alternate blocks of 5 seeds, unit marginal
  variance times sigma; sigma set so that the faintest line's own peak on the grid is log-uniform in
  [5, 15] sigma (so every line is at least 5 sigma); loss='l2'.
- ``baseline`` (60 cases, K = 1..5, 15 per kind): lines as ``corr`` on 256 or 512 channels, on
  a baseline of kind constant, linear, quadratic or exponential ((seed // 5) % 4), recorded as
  ``Case.background``; noise white (seeds 0-19, 40-59) or AR(1) with rho in [0.2, 0.4] (20-39),
  sigma as ``corr``. Baseline in units of the clean spectrum's maximum P, over u = 0..1 across
  the band: constant c, c uniform [0.02, 0.10]; linear from b(0) to b(1), both uniform [0.02,
  0.10] and at least 0.03 apart; quadratic through b(0), b(1/2), b(1) uniform [0.02, 0.10] with
  curvature |b(0) + b(1) - 2 b(1/2)| >= 0.04; exponential f + a exp(-u / tau) (or mirrored),
  f uniform [0, 0.03], a uniform [0.02, 0.07], tau uniform [0.15, 0.5]. Selectors are told
  background='linear' for the constant and linear kinds, the true kind for curved ones.
- ``unequal`` (50 cases, K = 1..5): histograms of 1,000-20,000 samples (log-uniform) of a 1-D
  mixture, sds log-uniform in [1, 5], weights Dirichlet(1.5, ..., 1.5) rejected below
  max(0.05, 100 / n_samples) (so every component has at least 100 expected samples), means
  uniform over a span of 3 to 5 times the sum of the sds, every pair with Ashman's
  D = sqrt(2) |mu_i - mu_j| / sqrt(s_i^2 + s_j^2) >= 3. 20 to 100 bins (log-uniform) of unequal
  width covering all samples, by scheme ((seed // 5) % 3): quantiles of a pilot sample of 300
  (equal-probability bins), geometric widths growing 5 to 30 times across the range (either
  direction), or random widths (Gamma(1.5) shares of the range). Resolution: the bin holding
  each mean is at most one sd of its component wide (else the bins are redrawn, 25% more of
  them, up to 400). Passed as docs/histograms.md tells users: ``y = counts / width``,
  ``sample_weight = width``, ``bins = edges``, loss='poisson'.
- ``wide2d`` (30 cases, K = 1..5): a 48 x 48 or 64 x 64 pixel image cut-out: one point source
  (minor sd log-uniform in [1, 2] pixels, the major up to 1.3 times it) among extended sources
  (each sd log-uniform in [1.5, 6] pixels); random orientations; weights as ``narrow``; means
  uniform at least 4 major sds + 1 pixel inside the image; white noise of 1-3% of the clean
  maximum (uniform); loss='l2', full covariances.

- ``gain`` (50 cases, K = 1..5): lines as ``corr`` on 256, 384 or 512 channels whose noise
  grows with the signal over a floor: sd = floor sqrt(1 + (L^2 - 1) s), s the clean spectrum
  over its maximum squared (a detector gain's noise, sd proportional to the signal; seeds in
  alternate blocks of 5) or not squared (photon noise, variance proportional to it), L
  log-uniform in [3, 12] (the noise at the highest point over the floor); the floor set so
  that the line with the least own peak over the noise's sd where it peaks has log-uniform
  [5, 15] of them; loss='l2'.
- ``smooth`` (60 cases, K = 1..5): lines as ``corr`` on 256, 384 or 512 channels; the noise
  white noise smoothed by a kernel (in alternate blocks of 5 seeds): Gaussian of sd
  log-uniform in [1, 2.5] channels (lag-1 autocorrelation 0.78 to 0.96), a boxcar of 3 to 5
  channels (0.67 to 0.80) or Hanning's [1, 2, 1] / 4 (0.67); unit marginal variance times
  sigma, sigma as ``corr``; loss='l2' (the noise a spectrometer's smoothing or resampling
  leaves).

- ``graded`` (40 cases, K = 1..4): a log-spaced grid (a particle-size axis) of 120 to 300
  points over 2 to 3 decades, in units log-uniform in [0.01, 100]; means log-uniform over the
  inner 80% of the log range, each sd 0.7 to 8 local spacings (log-uniform), every pair at
  least 1.5 (max(s_i, h_i) + max(s_j, h_j)) apart (h the local spacing at the mean), 4 sd
  inside the grid; weights as ``narrow`` (amplitudes 1 to 20); noise-free at even seeds
  (each component's own peak at least 2.5% of the maximum), white noise of 1-3% of the
  maximum at odd seeds (each own peak at least 5 noise sds); loss='l2'. An independent
  review's log-spaced grids found noise-free mixtures chosen below their K there.

Identifiability of the new families (a draw that breaks a rule is redrawn):

- ``narrow``/``narrowclean``: every pair of means at least 1.5 (max(s_i, h) + max(s_j, h))
  apart (h the spacing: two one-pixel spikes at least 3 pixels apart, equal widths s >= h at
  least 3 s); each component's own peak on the grid, max_i w_k N(x_i; mu_k, s_k), at least 5
  noise sds (``narrow``) or 2.5% of the clean maximum (``narrowclean``);
- ``corr``/``baseline``/``smooth``: every pair of centres at least 1.2 times their mean FWHM
  apart (a spectroscopist's resolved pair: 1.2 x the Rayleigh-like criterion of one FWHM);
  each line's own peak on the grid at least 5 (marginal) noise sds; lines at least 10% of the
  band and 5 sd from its edges (the baseline is seen on line-free channels at both ends);
- ``wide2d``: every pair of means at least 1.5 (max(major sd_i, 1) + max(major sd_j, 1))
  pixels apart (Euclidean); each component's own peak on the grid at least 5 noise sds;
- ``unequal``: Ashman's D >= 3 for every pair, at least 100 expected samples and weight 0.05 a
  component, a bin no wider than one sd at each mean.
"""

import argparse
import importlib
import importlib.util
import inspect
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
from joblib import Parallel, delayed
from sklearn.mixture import GaussianMixture
from sklearn.utils._param_validation import InvalidParameterError

from skdensityfit import DensityGMM, DensityGMMCV

ROOT = Path(__file__).resolve().parents[1]
FAITHFUL = ROOT / "tests" / "data" / "faithful.csv"
RESULTS = ROOT / "benchmarks" / "results" / "choose_k.txt"

FAMILIES = {
    # name: (tag of its random stream, number of cases)
    "clean100": (101, 72),
    "clean400": (102, 72),
    "comb": (103, 24),
    "noisy1": (104, 50),
    "noisy5": (105, 50),
    "hist300": (106, 27),
    "hist2k": (107, 28),
    "hist20k": (108, 30),
    "histl2": (109, 16),
    "noisy2d": (110, 40),
    "faithful": (None, 10),
}
NEW_FAMILIES = {
    # harder families, run only when named (--family NAME, or --family new / all)
    "narrow": (111, 50),
    "narrowclean": (112, 40),
    "corr": (113, 50),
    "baseline": (114, 60),
    "unequal": (115, 50),
    "wide2d": (116, 30),
    "gain": (117, 50),
    "smooth": (118, 60),
    "graded": (119, 40),
}
DEFAULT_FAMILIES = tuple(FAMILIES)
FAMILIES.update(NEW_FAMILIES)
QUICK_EVERY = 6
CURVED_BASELINES = ("quadratic", "exponential")


@dataclass
class Case:
    family: str
    seed: int
    grid: np.ndarray
    y: np.ndarray
    loss: str
    true_k: int
    counts: bool  # y holds counts of a histogram (BIC applies)
    label: str = ""
    background: str | None = None  # true baseline: 'constant', 'linear', 'quadratic', ...
    bins: np.ndarray | None = None  # bin edges (1-D) when y is a histogram on them
    sample_weight: np.ndarray | None = None  # bin widths when y = counts / width

    @property
    def max_components(self):
        return max(6, self.true_k + 2)

    @property
    def requested_background(self):
        """What a user would ask for: 'linear' for constant and sloped baselines, else the kind."""
        if self.background in ("constant", "linear"):
            return "linear"
        return self.background

    def selector_keywords(self):
        """The keywords a user would pass besides the grid and y, those that are not None."""
        keywords = {
            "background": self.requested_background,
            "bins": self.bins,
            "sample_weight": self.sample_weight,
        }
        return {name: value for name, value in keywords.items() if value is not None}


# --------------------------------------------------------------------------------------------
# generators
# --------------------------------------------------------------------------------------------
def _weights(rng, k, min_weight):
    return min_weight + (1 - k * min_weight) * rng.dirichlet(np.ones(k))


def _gauss(x, mean, sd):
    return np.exp(-0.5 * ((x - mean) / sd) ** 2) / (np.sqrt(2 * np.pi) * sd)


def _draw_1d(rng, k, *, min_weight=0.05, separation=2.5):
    """Weights, means, sds of a 1-D mixture: sds log-uniform in [1, 10], adjacent means apart."""
    sds = np.exp(rng.uniform(0, np.log(10), k))
    order = rng.permutation(k)
    sds = sds[order]
    gaps = np.maximum(sds[:-1], sds[1:]) * (separation + rng.exponential(1.0, k - 1))
    means = np.concatenate([[0.0], np.cumsum(gaps)])
    return _weights(rng, k, min_weight), means, sds


def _peaks_visible(weights, means, sds, min_share):
    x = np.linspace(means.min() - 4 * sds.max(), means.max() + 4 * sds.max(), 4001)
    top = (_gauss(x[:, None], means, sds) @ weights).max()
    return bool(np.all(weights / (np.sqrt(2 * np.pi) * sds) >= min_share * top))


def _mixture_1d_on_grid(rng, k, n_points, min_resolution, min_share, separation=2.5):
    while True:
        weights, means, sds = _draw_1d(rng, k, separation=separation)
        low, high = (means - 4.5 * sds).min(), (means + 4.5 * sds).max()
        spacing = (high - low) / (n_points - 1)
        if sds.min() >= min_resolution * spacing and _peaks_visible(weights, means, sds, min_share):
            grid = np.linspace(low, high, n_points)
            return grid, _gauss(grid[:, None], means, sds) @ weights


def _clean(rng, seed, n_points):
    k = 1 + seed % 6
    grid, y = _mixture_1d_on_grid(rng, k, n_points, 1.0 if n_points <= 100 else 1.5, 0.02)
    return grid, y, "l2", k, False


def _comb(rng, seed):
    k = 5 + seed % 8
    sd = rng.uniform(1.2, 2.0)
    centres = 10.0 * np.arange(k) + rng.uniform(0, 10)
    n_points = int(rng.integers(400, 1001))
    grid = np.linspace(centres[0] - 10, centres[-1] + 10, n_points)
    return grid, _gauss(grid[:, None], centres, sd).sum(axis=1), "l2", k, False


def _noisy(rng, seed, level):
    k = 1 + seed % 5
    n_points = (150, 300, 600)[(seed // 5) % 3]
    grid, y = _mixture_1d_on_grid(rng, k, n_points, 1.5, 5 * level)
    return grid, y + rng.normal(0, level * y.max(), y.shape), "l2", k, False


def _samples_1d(rng, weights, means, sds, n):
    labels = rng.choice(len(weights), size=n, p=weights)
    return rng.normal(means[labels], sds[labels])


def _histogram(rng, seed, n_samples, max_k, density=False):
    k = 1 + seed % max_k
    min_weight = 0.15 if n_samples < 1000 else 0.05
    while True:
        weights, means, sds = _draw_1d(rng, k, min_weight=min_weight, separation=3.0)
        if _peaks_visible(weights, means, sds, 0.02):
            break
    low, high = (means - 4 * sds).min(), (means + 4 * sds).max()
    needed = int(np.ceil((high - low) / sds.min()))  # bins of at most one sd
    bins = int(np.exp(rng.uniform(np.log(20), np.log(200))))
    bins = min(200, max(bins, needed))
    x = _samples_1d(rng, weights, means, sds, n_samples)
    values, edges = np.histogram(x, bins=bins, range=(low, high), density=density)
    centres = 0.5 * (edges[1:] + edges[:-1])
    return centres, values.astype(float), "l2" if density else "poisson", k, not density


def _noisy_2d(rng, seed, level=0.02, size=64):
    k = 1 + seed % 4
    axis = np.arange(size, dtype=float)
    grid = np.column_stack([g.ravel() for g in np.meshgrid(axis, axis, indexing="ij")])
    while True:
        means, covs, widest = [], [], []
        for _ in range(200):
            sd = np.exp(rng.uniform(np.log(1.5), np.log(6.0), 2))
            angle = rng.uniform(0, np.pi)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            margin = 3.5 * sd.max()
            if margin >= (size - 1) / 2:
                continue
            mean = rng.uniform(margin, size - 1 - margin, 2)
            if all(
                np.linalg.norm(mean - m) >= 2.5 * max(sd.max(), w)
                for m, w in zip(means, widest, strict=True)
            ):
                means.append(mean)
                covs.append(rot @ np.diag(sd**2) @ rot.T)
                widest.append(sd.max())
            if len(means) == k:
                break
        if len(means) < k:
            continue
        weights = _weights(rng, k, 0.05)
        pdfs = np.column_stack([_gauss_2d(grid, m, c) for m, c in zip(means, covs, strict=True)])
        y = pdfs @ weights
        own_peaks = weights / (2 * np.pi * np.sqrt([np.linalg.det(c) for c in covs]))
        if np.all(own_peaks >= 5 * level * y.max()):
            return grid, y + rng.normal(0, level * y.max(), y.shape), "l2", k, False


def _gauss_2d(points, mean, cov):
    diff = points - mean
    solved = np.linalg.solve(cov, diff.T).T
    return np.exp(-0.5 * np.sum(diff * solved, axis=1)) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))


def faithful():
    """Old Faithful: array of shape (272, 2), columns eruptions and waiting (minutes)."""
    return np.loadtxt(FAITHFUL, delimiter=",", skiprows=1)


def reference_k(samples, max_k=6, margin=2.0):
    """Smallest K whose GaussianMixture BIC on the raw samples is within ``margin`` of the lowest.

    The eruptions' BIC is 580.9 at K = 2 and 580.4 at K = 4 (n_init=10; sklearn's default
    n_init=1 finds 582 or more at K = 4): a difference below 2 is no evidence (Kass & Raftery
    1995), so the smaller K is the reference.
    """
    samples = samples.reshape(len(samples), -1)
    bics = np.array(
        [
            GaussianMixture(k, n_init=10, random_state=0).fit(samples).bic(samples)
            for k in range(1, max_k + 1)
        ]
    )
    return 1 + int(np.flatnonzero(bics <= bics.min() + margin)[0])


def _faithful_cases():
    data = faithful()
    settings = [
        ("eruptions", 0, 20, False),
        ("eruptions", 0, 40, False),
        ("waiting", 1, 20, False),
        ("waiting", 1, 40, False),
        ("both", None, 15, False),
        ("both", None, 25, False),
        ("eruptions", 0, 20, True),
        ("eruptions", 0, 40, True),
        ("waiting", 1, 20, True),
        ("waiting", 1, 40, True),
    ]
    references = {}
    cases = []
    for seed, (name, column, bins, density) in enumerate(settings):
        samples = data if column is None else data[:, column]
        if name not in references:
            references[name] = reference_k(samples)
        if column is None:
            counts, ex, ey = np.histogram2d(samples[:, 0], samples[:, 1], bins=bins)
            cx, cy = 0.5 * (ex[1:] + ex[:-1]), 0.5 * (ey[1:] + ey[:-1])
            grid = np.column_stack([g.ravel() for g in np.meshgrid(cx, cy, indexing="ij")])
            y = counts.ravel()
        else:
            y, edges = np.histogram(samples, bins=bins, density=density)
            grid = 0.5 * (edges[1:] + edges[:-1])
        label = f"{name} {bins} bins {'density l2' if density else 'counts poisson'}"
        loss = "l2" if density else "poisson"
        cases.append(
            Case(
                "faithful", seed, grid, y.astype(float), loss, references[name], not density, label
            )
        )
    return cases


# --------------------------------------------------------------------------------------------
# new families (own draws and rules; see the module docstring)
# --------------------------------------------------------------------------------------------
FWHM_PER_SD = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _log_uniform(rng, low, high, size=None):
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _amplitude_weights(rng, k, ratio, min_weight=0.05):
    """Weights from amplitudes log-uniform in [1, ratio], or None if one is below min_weight."""
    weights = _log_uniform(rng, 1.0, ratio, k)
    weights /= weights.sum()
    return weights if weights.min() >= min_weight else None


def _place_means(rng, low, high, min_gap, tries=200):
    """Means uniform in [low_k, high_k], every pair at least min_gap[i, j] apart, or None."""
    if np.any(high <= low):
        return None
    for _ in range(tries):
        means = rng.uniform(low, high)
        apart = np.abs(means[:, None] - means[None, :]) >= min_gap
        if np.all(apart | np.eye(len(means), dtype=bool)):
            return means
    return None


def _components(channels, weights, means, sds):
    """Weighted unit-area Gaussians at the channels: shape (n_channels, K)."""
    return _gauss(channels[:, None], means, sds) * weights


def _fmt(values, digits=2):
    return "[" + " ".join(f"{v:.{digits}f}" for v in values) + "]"


def _narrow(rng, family, seed, noisy):
    """A detector row with a component 0.5 to 2.5 pixels wide, white noise of 1-3% or none."""
    k = 1 + seed % 5
    while True:
        n = int(rng.integers(120, 401)) if noisy else int(rng.integers(100, 201))
        narrowest = _log_uniform(rng, 0.5, 2.5)
        sds = narrowest * np.concatenate([[1.0], _log_uniform(rng, 1.0, 6.0, k - 1)])
        weights = _amplitude_weights(rng, k, 20.0)
        if weights is None:
            continue
        resolved = np.maximum(sds, 1.0)
        min_gap = 1.5 * (resolved[:, None] + resolved[None, :])
        margin = 4 * sds + 2
        means = _place_means(rng, margin, n - 1 - margin, min_gap)
        if means is None:
            continue
        channels = np.arange(n, dtype=float)
        parts = _components(channels, weights, means, sds)
        clean = parts.sum(axis=1)
        own_peaks = parts.max(axis=0)
        if noisy:
            level = rng.uniform(0.01, 0.03)
            if np.all(own_peaks >= 5 * level * clean.max()):
                break
        elif np.all(own_peaks >= 0.025 * clean.max()):
            level = 0.0
            break
    spacing = _log_uniform(rng, 0.2, 5.0)
    grid = spacing * (channels + rng.uniform(-n, n))
    y = clean / spacing
    if noisy:
        y = y + rng.normal(0, level * y.max(), n)
        own = own_peaks / (level * clean.max())
        noise = f"noise {level:.3f} of max, own peaks/sigma {_fmt(own, 1)}"
    else:
        noise = f"noise-free, own peaks/max {_fmt(own_peaks / clean.max(), 3)}"
    label = f"n={n} sd/h {_fmt(sds)} w {_fmt(weights)} {noise}"
    return Case(family, seed, grid, y, "l2", k, False, label)


def _spectral_lines(rng, k, n, amplitude_ratio=15.0):
    """Channel positions, sds and weights of K lines on n channels, mostly line-free."""
    channels = np.arange(n, dtype=float)
    while True:
        fwhm = _log_uniform(rng, 3.0, 20.0, k)
        sds = fwhm / FWHM_PER_SD
        weights = _amplitude_weights(rng, k, amplitude_ratio)
        if weights is None:
            continue
        min_gap = 1.2 * 0.5 * (fwhm[:, None] + fwhm[None, :])
        margin = np.maximum(0.1 * n, 5 * sds)
        means = _place_means(rng, margin, n - 1 - margin, min_gap)
        if means is None:
            continue
        near_line = np.any(np.abs(channels[:, None] - means) <= 3 * sds, axis=1)
        if near_line.mean() <= 0.5:
            return channels, _components(channels, weights, means, sds), sds, weights


def _correlated_noise(rng, n, rho, kind):
    """Unit-variance Gaussian noise of lag-1 autocorrelation rho: 'ar1' or 'kernel' [a, 1, a]."""
    if kind == "ar1":
        z = rng.normal(size=n)
        noise = np.empty(n)
        noise[0] = z[0]
        innovation = np.sqrt(1 - rho**2)
        for i in range(1, n):
            noise[i] = rho * noise[i - 1] + innovation * z[i]
        return noise
    a = (1 - np.sqrt(1 - 2 * rho**2)) / (2 * rho)
    return np.convolve(rng.normal(size=n + 2), [a, 1.0, a], mode="valid") / np.sqrt(1 + 2 * a**2)


def _smoothed_noise(rng, n, kind):
    """Unit-variance white noise smoothed by a kernel many channels wide: 'gaussian' (sd
    log-uniform in [1, 2.5] channels), 'boxcar' (3 to 5 channels) or 'hanning' ([1, 2, 1] / 4)."""
    if kind == "gaussian":
        width = _log_uniform(rng, 1.0, 2.5)
        offsets = np.arange(-int(np.ceil(4 * width)), int(np.ceil(4 * width)) + 1)
        kernel = np.exp(-0.5 * (offsets / width) ** 2)
    elif kind == "boxcar":
        kernel = np.ones(int(rng.integers(3, 6)))
    else:
        kernel = np.array([1.0, 2.0, 1.0])
    noise = np.convolve(rng.normal(size=n + len(kernel) - 1), kernel, mode="valid")
    label = f"gaussian {width:.2f}" if kind == "gaussian" else kind
    return noise / np.sqrt(np.sum(kernel**2)), label


def _velocity_axis(rng, n):
    width = rng.choice([0.25, 0.5, 1.0, 2.0])  # km/s per channel
    return rng.uniform(-100, 100) + width * (np.arange(n) - n / 2)


def _corr(rng, family, seed):
    """A radio spectrum: a few lines, mostly line-free channels, correlated noise."""
    k = 1 + seed % 5
    n = int(rng.choice([256, 384, 512]))
    _, parts, sds, weights = _spectral_lines(rng, k, n)
    sigma = parts.max(axis=0).min() / _log_uniform(rng, 5.0, 15.0)
    rho = rng.uniform(0.2, 0.5)
    kind = ("ar1", "kernel")[(seed // 5) % 2]
    y = parts.sum(axis=1) + sigma * _correlated_noise(rng, n, rho, kind)
    grid = _velocity_axis(rng, n)
    label = (
        f"n={n} sd/h {_fmt(sds)} w {_fmt(weights)} {kind} rho={rho:.2f} "
        f"own peaks/sigma {_fmt(parts.max(axis=0) / sigma, 1)}"
    )
    return Case(family, seed, grid, y, "l2", k, False, label)


def _smooth(rng, family, seed):
    """A spectrum as ``corr`` whose noise is white noise smoothed over several channels."""
    k = 1 + seed % 5
    n = int(rng.choice([256, 384, 512]))
    _, parts, sds, weights = _spectral_lines(rng, k, n)
    sigma = parts.max(axis=0).min() / _log_uniform(rng, 5.0, 15.0)
    noise, kind = _smoothed_noise(rng, n, ("gaussian", "boxcar", "hanning")[(seed // 5) % 3])
    y = parts.sum(axis=1) + sigma * noise
    grid = _velocity_axis(rng, n)
    label = (
        f"n={n} sd/h {_fmt(sds)} w {_fmt(weights)} {kind} "
        f"own peaks/sigma {_fmt(parts.max(axis=0) / sigma, 1)}"
    )
    return Case(family, seed, grid, y, "l2", k, False, label)


def _baseline_shape(rng, kind, n):
    """A baseline over n channels in units of the clean maximum (2-10% of it)."""
    u = np.linspace(0.0, 1.0, n)
    if kind == "constant":
        return np.full(n, rng.uniform(0.02, 0.10))
    if kind == "linear":
        while True:
            start, end = rng.uniform(0.02, 0.10, 2)
            if abs(end - start) >= 0.03:
                return start + (end - start) * u
    if kind == "quadratic":
        while True:
            values = rng.uniform(0.02, 0.10, 3)
            if abs(values[0] + values[2] - 2 * values[1]) >= 0.04:
                return np.polyval(np.polyfit([0.0, 0.5, 1.0], values, 2), u)
    floor, height, tau = rng.uniform(0, 0.03), rng.uniform(0.02, 0.07), rng.uniform(0.15, 0.5)
    shape = floor + height * np.exp(-u / tau)
    return shape[::-1] if rng.random() < 0.5 else shape


def _baseline(rng, family, seed):
    """A spectrum as ``corr`` (white or AR(1) noise) on a constant, sloped or curved baseline."""
    k = 1 + seed % 5
    kind = ("constant", "linear", *CURVED_BASELINES)[(seed // 5) % 4]
    n = int(rng.choice([256, 512]))
    _, parts, sds, weights = _spectral_lines(rng, k, n)
    sigma = parts.max(axis=0).min() / _log_uniform(rng, 5.0, 15.0)
    clean = parts.sum(axis=1)
    base = clean.max() * _baseline_shape(rng, kind, n)
    if (seed // 20) % 2 == 1:
        rho = rng.uniform(0.2, 0.4)
        noise = f"ar1 rho={rho:.2f}"
        y = clean + base + sigma * _correlated_noise(rng, n, rho, "ar1")
    else:
        noise = "white"
        y = clean + base + rng.normal(0, sigma, n)
    grid = _velocity_axis(rng, n)
    label = (
        f"n={n} sd/h {_fmt(sds)} w {_fmt(weights)} {noise} own peaks/sigma "
        f"{_fmt(parts.max(axis=0) / sigma, 1)} {kind} baseline {base[0] / clean.max():.3f}.."
        f"{base[n // 2] / clean.max():.3f}..{base[-1] / clean.max():.3f} of max, "
        f"{base.max() / sigma:.1f} sigma at most"
    )
    return Case(family, seed, grid, y, "l2", k, False, label, background=kind)


def _mixture_samples(rng, weights, means, sds, n):
    component = rng.choice(len(weights), size=n, p=weights)
    return means[component] + sds[component] * rng.normal(size=n)


def _unequal_edges(rng, scheme, n_bins, low, high, pilot):
    if scheme == "quantile":
        edges = np.quantile(pilot, np.linspace(0, 1, n_bins + 1))
        edges[0], edges[-1] = min(edges[0], low), max(edges[-1], high)
        return edges
    if scheme == "geometric":
        growth = _log_uniform(rng, 5.0, 30.0) ** (1 / max(n_bins - 1, 1))
        widths = growth ** np.arange(n_bins)
        widths = widths if rng.random() < 0.5 else widths[::-1]
    else:
        widths = rng.gamma(1.5, size=n_bins)
    return low + (high - low) * np.concatenate([[0.0], np.cumsum(widths) / widths.sum()])


def _unequal(rng, family, seed):
    """A histogram of a 1-D mixture in bins of unequal width, as y = counts / width."""
    k = 1 + seed % 5
    n_samples = int(_log_uniform(rng, 1000, 20000))
    scheme = ("quantile", "geometric", "random")[(seed // 5) % 3]
    while True:
        sds = _log_uniform(rng, 1.0, 5.0, k)
        weights = rng.dirichlet(np.full(k, 1.5))
        if weights.min() < max(0.05, 100 / n_samples):
            continue
        span = rng.uniform(3, 5) * sds.sum()
        means = rng.uniform(0, span, k)
        distance = np.abs(means[:, None] - means[None, :])
        ashman = np.sqrt(2) * distance / np.sqrt(sds[:, None] ** 2 + sds[None, :] ** 2)
        if np.all((ashman >= 3) | np.eye(k, dtype=bool)):
            break
    samples = _mixture_samples(rng, weights, means, sds, n_samples)
    pilot = _mixture_samples(rng, weights, means, sds, 300)
    low, high = samples.min(), samples.max()
    n_bins = int(_log_uniform(rng, 20, 100))
    while True:
        edges = _unequal_edges(rng, scheme, n_bins, low, high, pilot)
        widths = np.diff(edges)
        at_means = np.clip(np.searchsorted(edges, means, side="right") - 1, 0, len(widths) - 1)
        if np.all(widths[at_means] <= sds):
            break
        n_bins = int(np.ceil(1.25 * n_bins))
        if n_bins > 400:
            n_bins = int(_log_uniform(rng, 20, 100))
    counts, _ = np.histogram(samples, bins=edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    label = (
        f"{n_samples} samples sd {_fmt(sds)} w {_fmt(weights)} {scheme} {len(widths)} bins, "
        f"widths {widths.min():.3g}..{widths.max():.3g}, bin/sd at means "
        f"{_fmt(widths[at_means] / sds)}"
    )
    return Case(
        family,
        seed,
        centres,
        counts / widths,
        "poisson",
        k,
        True,
        label,
        bins=edges,
        sample_weight=widths,
    )


def _wide2d(rng, family, seed):
    """An image cut-out: a point source 1-2 pixels wide among extended sources, white noise."""
    k = 1 + seed % 5
    size = int(rng.choice([48, 64]))
    axis = np.arange(size, dtype=float)
    grid = np.column_stack([g.ravel() for g in np.meshgrid(axis, axis, indexing="ij")])
    while True:
        point = _log_uniform(rng, 1.0, 2.0) * np.array([1.0, _log_uniform(rng, 1.0, 1.3)])
        sds = [point] + [_log_uniform(rng, 1.5, 6.0, 2) for _ in range(k - 1)]
        angles = rng.uniform(0, np.pi, k)
        weights = _amplitude_weights(rng, k, 20.0)
        if weights is None:
            continue
        major = np.array([s.max() for s in sds])
        resolved = np.maximum(major, 1.0)
        margin = np.repeat((4 * major + 1)[:, None], 2, axis=1)
        if np.any(2 * margin >= size - 1):
            continue
        means = None
        for _ in range(200):
            candidate = rng.uniform(margin, size - 1 - margin)
            distance = np.linalg.norm(candidate[:, None] - candidate[None, :], axis=2)
            min_gap = 1.5 * (resolved[:, None] + resolved[None, :])
            if np.all((distance >= min_gap) | np.eye(k, dtype=bool)):
                means = candidate
                break
        if means is None:
            continue
        covs = []
        for sd, angle in zip(sds, angles, strict=True):
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            covs.append(rot @ np.diag(sd**2) @ rot.T)
        parts = np.column_stack(
            [w * _gauss_2d(grid, m, c) for w, m, c in zip(weights, means, covs, strict=True)]
        )
        clean = parts.sum(axis=1)
        level = rng.uniform(0.01, 0.03)
        own = parts.max(axis=0) / (level * clean.max())
        if np.all(own >= 5):
            break
    y = clean + rng.normal(0, level * clean.max(), clean.shape)
    label = (
        f"{size}x{size} sds/px {' '.join(_fmt(s) for s in sds)} w {_fmt(weights)} noise "
        f"{level:.3f} of max, own peaks/sigma {_fmt(own, 1)}"
    )
    return Case(family, seed, grid, y, "l2", k, False, label)


def _gain(rng, family, seed):
    """A spectrum as ``corr``'s lines whose noise grows with the signal: a detector gain's
    (sd proportional to it) or photon noise (variance proportional to it), over a floor."""
    k = 1 + seed % 5
    n = int(rng.choice([256, 384, 512]))
    _, parts, sds, weights = _spectral_lines(rng, k, n)
    clean = parts.sum(axis=1)
    kind = ("gain", "photon")[(seed // 5) % 2]
    shape = (clean / clean.max()) ** (2.0 if kind == "gain" else 1.0)
    loud = _log_uniform(rng, 3.0, 12.0)  # the noise at the highest point over the floor
    relative = np.sqrt(1.0 + (loud**2 - 1.0) * shape)  # the noise's sd over the floor
    peaks = parts.max(axis=0)
    # the line with the least of its own peak over the noise where it peaks: 5 to 15 sds
    floor = np.min(peaks / relative[np.argmax(parts, axis=0)]) / _log_uniform(rng, 5.0, 15.0)
    sd = floor * relative
    y = clean + sd * rng.normal(size=n)
    grid = _velocity_axis(rng, n)
    label = (
        f"n={n} sd/h {_fmt(sds)} w {_fmt(weights)} {kind} noise, {loud:.1f} x the floor at the "
        f"peak, own peaks/floor {_fmt(peaks / floor, 1)} "
        f"own peaks/own noise {_fmt(peaks / sd[np.argmax(parts, axis=0)], 1)}"
    )
    return Case(family, seed, grid, y, "l2", k, False, label)


def _graded(rng, family, seed):
    """Components on a log-spaced grid (a particle-size axis), each 0.7 to 8 local spacings
    wide; noise-free (even seeds) or white noise of 1-3% (odd seeds)."""
    k = 1 + seed % 4
    noisy = seed % 2 == 1
    while True:
        n = int(rng.integers(120, 301))
        unit = _log_uniform(rng, 1e-2, 1e2)
        grid = unit * np.geomspace(1.0, 10.0 ** rng.uniform(2.0, 3.0), n)
        growth = grid[1] / grid[0] - 1.0  # local spacing over position
        weights = _amplitude_weights(rng, k, 20.0)
        if weights is None:
            continue
        span = np.log(grid[-1] / grid[0])
        means = np.exp(rng.uniform(np.log(grid[0]) + 0.1 * span, np.log(grid[-1]) - 0.1 * span, k))
        local = growth * means
        sds = local * _log_uniform(rng, 0.7, 8.0, k)
        resolved = np.maximum(sds, local)
        apart = np.abs(means[:, None] - means[None, :]) >= 1.5 * (
            resolved[:, None] + resolved[None, :]
        )
        inside = np.all((means - 4 * sds > grid[0]) & (means + 4 * sds < grid[-1]))
        if not (inside and np.all(apart | np.eye(k, dtype=bool))):
            continue
        parts = _components(grid, weights, means, sds)
        clean = parts.sum(axis=1)
        own_peaks = parts.max(axis=0)
        level = rng.uniform(0.01, 0.03) if noisy else 0.0
        if np.all(own_peaks >= (5 * level if noisy else 0.025) * clean.max()):
            break
    y = clean + (rng.normal(0, level * clean.max(), n) if noisy else 0.0)
    what = f"noise {level:.3f} of max" if noisy else "noise-free"
    label = (
        f"n={n} x {grid[0]:.3g}..{grid[-1]:.3g} sd/local spacing {_fmt(sds / local)} "
        f"w {_fmt(weights)} {what}, own peaks/max {_fmt(own_peaks / clean.max(), 3)}"
    )
    return Case(family, seed, grid, y, "l2", k, False, label)


NEW_GENERATORS = {
    "narrow": lambda rng, family, seed: _narrow(rng, family, seed, noisy=True),
    "narrowclean": lambda rng, family, seed: _narrow(rng, family, seed, noisy=False),
    "corr": _corr,
    "baseline": _baseline,
    "unequal": _unequal,
    "wide2d": _wide2d,
    "gain": _gain,
    "smooth": _smooth,
    "graded": _graded,
}


def make_case(family, seed, seed_offset=0):
    """The case ``seed`` of a generated family (``seed_offset`` shifts the random stream)."""
    tag = FAMILIES[family][0]
    rng = np.random.default_rng((tag, seed + seed_offset))
    if family in NEW_GENERATORS:
        return NEW_GENERATORS[family](rng, family, seed)
    draw = {
        "clean100": lambda: _clean(rng, seed, 100),
        "clean400": lambda: _clean(rng, seed, 400),
        "comb": lambda: _comb(rng, seed),
        "noisy1": lambda: _noisy(rng, seed, 0.01),
        "noisy5": lambda: _noisy(rng, seed, 0.05),
        "hist300": lambda: _histogram(rng, seed, 300, 3),
        "hist2k": lambda: _histogram(rng, seed, 2000, 4),
        "hist20k": lambda: _histogram(rng, seed, 20000, 5),
        "histl2": lambda: _histogram(rng, seed, (2000, 20000)[seed % 2], 4, density=True),
        "noisy2d": lambda: _noisy_2d(rng, seed),
    }[family]
    grid, y, loss, k, counts = draw()
    return Case(family, seed, grid, y, loss, k, counts)


def all_cases(quick=False, families=None, seed_offset=0):
    """Every case of the default families (or of ``families``), quick: every 6th of each."""
    families = families or DEFAULT_FAMILIES
    cases = []
    for family, (_, n_cases) in FAMILIES.items():
        if family not in families:
            continue
        if family == "faithful":
            family_cases = _faithful_cases()
        else:
            family_cases = [make_case(family, s, seed_offset) for s in range(n_cases)]
        cases.extend(
            family_cases[::QUICK_EVERY] if quick and family != "faithful" else family_cases
        )
    return cases


# --------------------------------------------------------------------------------------------
# selectors
# --------------------------------------------------------------------------------------------
def select_cv(
    grid,
    y,
    *,
    loss,
    max_components,
    random_state,
    background=None,
    bins=None,
    sample_weight=None,
):
    """Today's DensityGMMCV with its default settings (and what the user passes, if anything).

    None (not applicable) when DensityGMMCV takes no ``background`` or rejects a setting.
    """
    settings = {"bins": bins, "background": background}
    settings = {name: value for name, value in settings.items() if value is not None}
    try:
        search = DensityGMMCV(
            n_components=max_components, loss=loss, random_state=random_state, **settings
        )
    except TypeError:  # no such parameter (background, today)
        return None
    try:
        if sample_weight is None:
            search.fit(grid, y)
        else:
            search.fit(grid, y, sample_weight=sample_weight)
    except InvalidParameterError:  # e.g. a background kind it does not know
        return None
    return search.n_components_


def select_bic(
    grid, y, *, loss, max_components, random_state, counts=True, bins=None, sample_weight=None
):
    """Lowest binned-Poisson BIC of DensityGMM(k, loss='poisson'); histograms of counts only.

    With ``bins`` / ``sample_weight`` (unequal bins: y = counts / width) both are passed on.
    """
    if loss != "poisson" or not counts:
        return None
    settings = {} if bins is None else {"bins": bins}
    weights = {} if sample_weight is None else {"sample_weight": sample_weight}
    bics = [
        DensityGMM(k, loss="poisson", random_state=random_state, **settings)
        .fit(grid, y, **weights)
        .bic(grid, y, **weights)
        for k in range(1, max_components + 1)
    ]
    return 1 + int(np.argmin(bics))


def robust_noise_sd(grid, y):
    """1.4826 median(|second differences of y|) / sqrt(6): white noise's sd, robust to peaks.

    Differences are taken along the sorted grid in 1-D and along each axis of a full
    rectilinear N-D grid (pooled); on other N-D points along their order.
    """
    grid = np.asarray(grid, dtype=float)
    y = np.asarray(y, dtype=float)
    if grid.ndim == 1 or grid.shape[1] == 1:
        second = np.diff(y[np.argsort(grid.ravel(), kind="stable")], 2)
    else:
        axes = [np.unique(grid[:, j], return_inverse=True) for j in range(grid.shape[1])]
        shape = tuple(len(values) for values, _ in axes)
        if np.prod(shape) == len(y):
            image = np.full(shape, np.nan)
            image[tuple(inverse.ravel() for _, inverse in axes)] = y
            second = np.concatenate(
                [np.diff(image, 2, axis=j).ravel() for j in range(len(shape)) if shape[j] > 2]
            )
            second = second[np.isfinite(second)]
        else:
            second = np.diff(y, 2)
    sigma = 1.4826 * np.median(np.abs(second)) / np.sqrt(6)
    if not sigma > 0:  # a plateau or mostly empty bins: fall back to the root mean square
        sigma = np.sqrt(np.mean(second**2) / 6)
    return max(sigma, 1e-12 * np.abs(y).max(), np.finfo(float).tiny)


def select_bicfit(
    grid,
    y,
    *,
    loss,
    max_components,
    random_state,
    background=None,
    bins=None,
    sample_weight=None,
):
    """Reference (not the library's rule): lowest BIC of fixed-K DensityGMM fits, K = 1..max.

    loss='poisson': ``DensityGMM.bic(grid, y, sample_weight=...)``; loss='l2': chi^2 + p ln n
    with chi^2 against the robust noise sd of :func:`robust_noise_sd`, p = K (1 + d +
    d (d + 1) / 2) plus the background's coefficients, n the number of points. None when
    DensityGMM rejects a setting (a curved ``background``, today).
    """
    grid = np.asarray(grid, dtype=float)
    y = np.asarray(y, dtype=float)
    d = 1 if grid.ndim == 1 else grid.shape[1]
    sigma = robust_noise_sd(grid, y) if loss == "l2" else None
    bics = []
    for k in range(1, max_components + 1):
        model = DensityGMM(
            k, loss=loss, background=background, bins=bins, random_state=random_state
        )
        try:
            model.fit(grid, y, sample_weight=sample_weight)
        except InvalidParameterError:
            return None
        if loss == "poisson":
            bics.append(model.bic(grid, y, sample_weight=sample_weight))
            continue
        chi2 = np.sum((y - model.predict(grid)) ** 2) / sigma**2
        background_size = 0 if model.background_ is None else model.background_.size
        n_parameters = k * (1 + d + d * (d + 1) // 2) + background_size
        bics.append(chi2 + n_parameters * np.log(len(y)))
    return 1 + int(np.argmin(bics))


BUILTIN = {"cv": select_cv, "bic": select_bic, "bicfit": select_bicfit}


def load_selector(spec):
    if spec in BUILTIN:
        return BUILTIN[spec]
    target, _, name = spec.rpartition(":")
    if target.endswith(".py"):
        module_spec = importlib.util.spec_from_file_location(Path(target).stem, target)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    return getattr(module, name)


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
def _single_fit(case, extra):
    """One DensityGMM fit at the true K with what the user passes (no background it rejects)."""
    settings = {name: extra[name] for name in ("background", "bins") if name in extra}
    weights = {"sample_weight": extra["sample_weight"]} if "sample_weight" in extra else {}
    try:
        DensityGMM(case.true_k, loss=case.loss, random_state=case.seed, **settings).fit(
            case.grid, case.y, **weights
        )
    except InvalidParameterError:
        settings.pop("background", None)
        DensityGMM(case.true_k, loss=case.loss, random_state=case.seed, **settings).fit(
            case.grid, case.y, **weights
        )


def _select_with_keywords(selector, case, kwargs):
    """The selector's choice, or None if it does not take a keyword (a TypeError on call).

    The signature is checked first, so a TypeError raised inside a selector stays an error.
    """
    try:
        inspect.signature(selector).bind(case.grid, case.y, **kwargs)
    except TypeError:
        return None
    except ValueError:  # no signature to read: the call tells
        try:
            return selector(case.grid, case.y, **kwargs)
        except TypeError:
            return None
    return selector(case.grid, case.y, **kwargs)


def run_case(case, specs):
    """``[(chosen K, seconds)]`` per selector and the seconds of one fit at the true K."""
    warnings.simplefilter("ignore")
    extra = case.selector_keywords()
    start = time.perf_counter()
    if extra:
        _single_fit(case, extra)
    else:
        DensityGMM(case.true_k, loss=case.loss, random_state=case.seed).fit(case.grid, case.y)
    single = time.perf_counter() - start
    outcomes = []
    for spec in specs:
        selector = load_selector(spec)
        start = time.perf_counter()
        kwargs = dict(loss=case.loss, max_components=case.max_components, random_state=case.seed)
        if selector is select_bic:
            kwargs["counts"] = case.counts
        kwargs.update(extra)
        if extra:
            chosen = _select_with_keywords(selector, case, kwargs)
        else:
            chosen = selector(case.grid, case.y, **kwargs)
        outcomes.append((chosen, time.perf_counter() - start))
    return outcomes, single


def table(name, cases, outcomes):
    """Lines of the per-family table of one selector (and its not-applicable new cases)."""
    width = max([10] + [len(c.family) for c in cases])
    head = (
        f"{'family':<{width}} {'n':>4} {'right':>6} {'1 off':>6} {'(few/many)':>10} "
        f"{'>1 off':>6} {'(few/many)':>10} {'cost':>6}   misses (seed: true->chosen)"
    )
    lines = [f"selector: {name}", head, "-" * len(head)]
    totals = np.zeros(6, dtype=int)
    for family in FAMILIES:
        rows = [(c, o) for c, o in zip(cases, outcomes, strict=True) if c.family == family]
        rows = [(c, o) for c, o in rows if o[0] is not None]
        if not rows:
            continue
        off = np.array([o[0] - c.true_k for c, o in rows])
        cost = statistics.median(o[1] / o[2] for _, o in rows)
        counts = [
            len(off),
            np.sum(off == 0),
            np.sum(off == -1),
            np.sum(off == 1),
            np.sum(off < -1),
            np.sum(off > 1),
        ]
        totals += counts
        misses = " ".join(f"{c.seed}:{c.true_k}->{o[0]}" for c, o in rows if o[0] != c.true_k)
        lines.append(
            f"{family:<{width}} {counts[0]:>4} {counts[1]:>6} {counts[2] + counts[3]:>6} "
            f"{f'{counts[2]}/{counts[3]}':>10} {counts[4] + counts[5]:>6} "
            f"{f'{counts[4]}/{counts[5]}':>10} {cost:>6.1f}   {misses}"
        )
    lines.append(
        f"{'all':<{width}} {totals[0]:>4} {totals[1]:>6} {totals[2] + totals[3]:>6} "
        f"{f'{totals[2]}/{totals[3]}':>10} {totals[4] + totals[5]:>6} "
        f"{f'{totals[4]}/{totals[5]}':>10}"
    )
    skipped = {
        family: sum(
            c.family == family and o[0] is None for c, o in zip(cases, outcomes, strict=True)
        )
        for family in NEW_FAMILIES
    }
    if any(c.family in NEW_FAMILIES for c in cases):
        lines.append(
            "not applicable (None): "
            + ", ".join(
                f"{family} {number}"
                for family, number in skipped.items()
                if any(c.family == family for c in cases)
            )
        )
    return lines


def describe(case):
    """One line: family, seed, true K, what the user passes, the draw's parameters."""
    extra = case.selector_keywords()
    passed = ", ".join(
        f"{name}={value!r}" if isinstance(value, str) else f"{name}=<{len(value)}>"
        for name, value in extra.items()
    )
    return (
        f"{case.family} {case.seed}: K={case.true_k} n={len(case.y)} loss={case.loss}"
        f"{' ' + passed if passed else ''} | {case.label}"
    )


def expand_families(names):
    """Family names, with 'new' for the new families and 'all' for every one."""
    if not names:
        return None
    expanded = []
    for name in names:
        group = {"new": list(NEW_FAMILIES), "all": list(FAMILIES)}.get(name, [name])
        for family in group:
            if family not in FAMILIES:
                raise SystemExit(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
            if family not in expanded:
                expanded.append(family)
    return expanded


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--selector", action="append", dest="selectors")
    parser.add_argument("--family", action="append", dest="families")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--output", default=None)
    parser.add_argument("--describe", action="store_true")
    args = parser.parse_args(argv)
    specs = args.selectors or ["cv", "bic"]
    wall = time.perf_counter()
    families = expand_families(args.families)
    cases = all_cases(args.quick, families, args.seed_offset)
    if args.describe:
        print("\n".join(describe(case) for case in cases))
        return
    results = Parallel(n_jobs=min(args.jobs, 2), verbose=0)(
        delayed(run_case)(case, specs) for case in cases
    )
    lines = [
        f"bench_choose_k: {len(cases)} cases ({'quick' if args.quick else 'full'}, seed offset "
        f"{args.seed_offset}), {min(args.jobs, 2)} processes; cost = median selection time / "
        "one DensityGMM.fit at the true K",
        "faithful cases (seed: setting, reference K from GaussianMixture + BIC on raw samples): "
        + "; ".join(f"{c.seed}: {c.label}, K={c.true_k}" for c in cases if c.family == "faithful"),
        "",
    ]
    for index, spec in enumerate(specs):
        outcomes = [(o[index][0], o[index][1], single) for o, single in results]
        lines += [*table(spec, cases, outcomes), ""]
    new_cases = [i for i, c in enumerate(cases) if c.family in NEW_FAMILIES]
    if new_cases:
        lines.append("new-family cases (true K; chosen per selector, '-' = not applicable):")
        for i in new_cases:
            chosen = " ".join(
                f"{spec}={'-' if o is None else o}"
                for spec, (o, _) in zip(specs, results[i][0], strict=True)
            )
            lines.append(f"  {describe(cases[i])} || {chosen}")
        lines.append("")
    lines.append(f"wall time {time.perf_counter() - wall:.0f} s")
    text = "\n".join(lines)
    print(text)
    output = args.output or (None if args.quick or args.families else RESULTS)
    if output:
        Path(output).write_text(text + "\n")


if __name__ == "__main__":
    main()
