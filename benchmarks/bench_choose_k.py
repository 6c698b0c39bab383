"""How often a selector of the number of components K gets it right, family by family.

Run:   python benchmarks/bench_choose_k.py           (full: 419 cases, under a minute a selector)
       python benchmarks/bench_choose_k.py --quick   (81 cases: every 6th of each generated
                                                      family and all of Old Faithful, 1 min)
(times for the default selectors, today's DensityGMMCV and BIC; a selector costing 20 single
fits takes about 25 min in full)
Options: --selector NAME (repeatable; 'cv' = DensityGMMCV with default settings, 'bic' =
DensityGMM(k, loss='poisson').bic on histograms of counts, or 'path/to/file.py:function' /
'module:function' for any callable ``f(grid, y, *, loss, max_components, random_state) -> int``,
which may return None for cases it does not apply to); --jobs N (processes, at most 2 here);
--seed-offset S (draw every generated family from seeds S, S+1, ... instead of 0, 1, ...: a
confirmation range for rules tuned on the default seeds); --output FILE.
The full run writes benchmarks/results/choose_k.txt.

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
"""

import argparse
import importlib
import importlib.util
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
QUICK_EVERY = 6


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

    @property
    def max_components(self):
        return max(6, self.true_k + 2)


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


def make_case(family, seed, seed_offset=0):
    """The case ``seed`` of a generated family (``seed_offset`` shifts the random stream)."""
    tag = FAMILIES[family][0]
    rng = np.random.default_rng((tag, seed + seed_offset))
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
    """Every case of the benchmark (or of ``families``), quick: every 6th of each family."""
    cases = []
    for family, (_, n_cases) in FAMILIES.items():
        if families and family not in families:
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
def select_cv(grid, y, *, loss, max_components, random_state):
    """Today's DensityGMMCV with its default settings."""
    search = DensityGMMCV(n_components=max_components, loss=loss, random_state=random_state)
    return search.fit(grid, y).n_components_


def select_bic(grid, y, *, loss, max_components, random_state, counts=True):
    """Lowest binned-Poisson BIC of DensityGMM(k, loss='poisson'); histograms of counts only."""
    if loss != "poisson" or not counts:
        return None
    bics = [
        DensityGMM(k, loss="poisson", random_state=random_state).fit(grid, y).bic(grid, y)
        for k in range(1, max_components + 1)
    ]
    return 1 + int(np.argmin(bics))


BUILTIN = {"cv": select_cv, "bic": select_bic}


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
def run_case(case, specs):
    """``[(chosen K, seconds)]`` per selector and the seconds of one fit at the true K."""
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    DensityGMM(case.true_k, loss=case.loss, random_state=case.seed).fit(case.grid, case.y)
    single = time.perf_counter() - start
    outcomes = []
    for spec in specs:
        selector = load_selector(spec)
        start = time.perf_counter()
        kwargs = dict(loss=case.loss, max_components=case.max_components, random_state=case.seed)
        if selector is select_bic:
            kwargs["counts"] = case.counts
        chosen = selector(case.grid, case.y, **kwargs)
        outcomes.append((chosen, time.perf_counter() - start))
    return outcomes, single


def table(name, cases, outcomes):
    """Lines of the per-family table of one selector."""
    head = (
        f"{'family':<10} {'n':>4} {'right':>6} {'1 off':>6} {'(few/many)':>10} "
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
            f"{family:<10} {counts[0]:>4} {counts[1]:>6} {counts[2] + counts[3]:>6} "
            f"{f'{counts[2]}/{counts[3]}':>10} {counts[4] + counts[5]:>6} "
            f"{f'{counts[4]}/{counts[5]}':>10} {cost:>6.1f}   {misses}"
        )
    lines.append(
        f"{'all':<10} {totals[0]:>4} {totals[1]:>6} {totals[2] + totals[3]:>6} "
        f"{f'{totals[2]}/{totals[3]}':>10} {totals[4] + totals[5]:>6} "
        f"{f'{totals[4]}/{totals[5]}':>10}"
    )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--selector", action="append", dest="selectors")
    parser.add_argument("--family", action="append", dest="families")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    specs = args.selectors or ["cv", "bic"]
    wall = time.perf_counter()
    cases = all_cases(args.quick, args.families, args.seed_offset)
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
    lines.append(f"wall time {time.perf_counter() - wall:.0f} s")
    text = "\n".join(lines)
    print(text)
    output = args.output or (None if args.quick or args.families else RESULTS)
    if output:
        Path(output).write_text(text + "\n")


if __name__ == "__main__":
    main()
