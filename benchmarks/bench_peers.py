"""Compare DensityGMM with the ways a user would otherwise fit a mixture to a gridded density.

Run: python benchmarks/bench_peers.py [--quick]   (needs the bench extra: pip install -e ".[bench]")

Every method gets the grid, the density on it and the true number of components K, and is run
side by side on the same cases, generated from fixed seeds (the seed is also every method's
random_state). The peers, each written as a competent user would write it:

- curve_fit: scipy.optimize.curve_fit on a sum of K scaled Gaussians, started from the K most
  prominent scipy.signal.find_peaks peaks (1-D only);
- lmfit: a sum of K lmfit GaussianModel, each started with guess() around its peak (1-D only);
- grid EM: density-weighted EM on the grid points from a k-means++ start, then the scale by
  least squares;
- GaussianMixture: sklearn.mixture.GaussianMixture on 5,000 samples drawn from the gridded
  density, then the scale by least squares;
- write-up: the original write-up's autograd + BFGS fit (write-up problem only).

Measured per case family and method: the success rate, the median relative L2 error of the
fitted density on the grid (against the noise-free truth), the median and 90th-percentile fit
time (fit only, including the method's own initialisation; each the fastest of up to 3 fits of
the case, repeated while they take under 0.2 s in all, after one untimed fit of the family's
first case: a first call loads numba's compiled kernel, which bench_compile.py measures) and
DensityGMM's median time divided by the method's. Without noise a fit succeeds when its relative
error is at most 1e-3; with noise (or for a histogram) when its error is at most 1.2 times that
of DensityGMM started at the true parameters. A fit that raises counts as a failure with an
infinite error. DensityGMM's noisy misses whose loss is below that of its fit started at the
truth are counted apart: there the loss's optimum lies away from the truth, so they are not
failures of the search.

The scaling cases (1-D K=3 at 1e3..1e6 points, 2-D K=4 at 256x256 and 512x512) report time,
peak memory (tracemalloc, during the fit) and the log-log slope of time against n, for the
methods that handle that many points in reasonable time. `--quick` runs fewer seeds and skips
the largest scaling cases.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"  # every method single-threaded; set before numpy loads

import argparse
import datetime
import time
import tracemalloc
import warnings
from dataclasses import dataclass

import autograd.numpy as anp
import lmfit
import numpy as np
from autograd import grad
from autograd.scipy.stats import norm as anorm
from bench_large_grids import one_d, two_d
from scipy.optimize import curve_fit, minimize
from scipy.signal import find_peaks, peak_widths
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.cluster import kmeans_plusplus
from sklearn.mixture import GaussianMixture

from skdensityfit import DensityGMM
from skdensityfit._examples import (
    make_writeup_problem,
    mixture_density,
    random_mixture_2d,
    random_separated_mixture_1d,
)

N_SEEDS_1D = 20
N_SEEDS_2D = 10
N_GRID_1D = 300
N_BINS = 100
N_HISTOGRAM_SAMPLES = 2_000
NOISE_LEVEL = 0.05  # noise sd as a fraction of the peak density
CLEAN_TOLERANCE = 1e-3  # relative L2 error of a successful noise-free fit
REPEATS = 3
REPEAT_BUDGET = 0.2  # seconds
NOISY_FACTOR = 1.2  # a noisy fit succeeds within this factor of the fit started at the truth
N_GM_SAMPLES = 5_000
FWHM_PER_SD = 2 * np.sqrt(2 * np.log(2))


@dataclass
class Case:
    grid: np.ndarray  # as passed to the estimators: (n,) in 1-D, (n, d) otherwise
    density: np.ndarray  # what the methods fit (possibly noisy, or counts)
    truth: np.ndarray  # the noise-free density on the grid, in the same units
    n_components: int
    seed: int
    cell: np.ndarray  # cell widths along each axis, (d,), or of each point, (n, d)
    weights: np.ndarray
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d)
    loss: str = "l2"
    tolerance: float = CLEAN_TOLERANCE  # set from the fit at the truth for noisy cases
    reference_loss: float = np.nan  # DensityGMM's loss started at the truth (noisy cases)
    fitted_loss: float = np.nan  # DensityGMM's loss with default settings, set when it runs

    @property
    def points(self):
        return self.grid.reshape(len(self.grid), -1)

    @property
    def point_cells(self):
        """Cell widths of each point, (n, d)."""
        return np.broadcast_to(self.cell, self.points.shape)


# ----------------------------------------------------------------------
# case families
# ----------------------------------------------------------------------
def overlapping_mixture_1d(rng, n_components, min_weight=0.05):
    """Random 1-D mixture whose adjacent means are 1 to 2.5 sds (the larger one) apart."""
    stds = rng.uniform(0.5, 1.5, n_components)
    gaps = rng.uniform(1.0, 2.5, n_components - 1) * np.maximum(stds[:-1], stds[1:])
    means = np.concatenate([[0.0], np.cumsum(gaps)]) + rng.uniform(-5, 5)
    weights = np.maximum(rng.dirichlet(np.full(n_components, 3.0)), min_weight)
    return weights / weights.sum(), means, stds


def case_1d(seed, n_components, grid, density, truth, params, **kwargs):
    weights, means, stds = params
    return Case(
        grid=grid,
        density=density,
        truth=truth,
        n_components=n_components,
        seed=seed,
        cell=np.array([grid[1] - grid[0]]),
        weights=weights,
        means=means[:, None],
        covariances=(stds**2)[:, None, None],
        **kwargs,
    )


def pdf_1d(x, weights, means, stds):
    return norm.pdf(x[:, None], means, stds) @ weights


def plot_range(means, stds):
    return means.min() - 5 * stds.max(), means.max() + 5 * stds.max()


def writeup_cases():
    grid, density, truth = make_writeup_problem()
    params = truth["weights"], truth["means"], truth["stds"]
    return [case_1d(seed, 2, grid, density, density, params) for seed in range(N_SEEDS_1D)]


def mixture_1d_cases(generator, first_k, n_k, noise=0.0):
    cases = []
    for seed in range(N_SEEDS_1D):
        rng = np.random.default_rng(seed)
        k = first_k + seed % n_k
        params = generator(rng, k)
        grid = np.linspace(*plot_range(params[1], params[2]), N_GRID_1D)
        truth = pdf_1d(grid, *params)
        density = truth + rng.normal(0, noise * truth.max(), len(grid)) if noise else truth
        cases.append(case_1d(seed, k, grid, density, truth, params))
    return cases


def non_uniform_cases(scale=1000.0):
    """Separated mixtures times ``scale`` on a grid dense at one end, sparse at the other."""
    cases = []
    for seed in range(N_SEEDS_1D):
        rng = np.random.default_rng(seed)
        k = 1 + seed % 5
        params = random_separated_mixture_1d(rng, k)
        low, high = plot_range(params[1], params[2])
        grid = low + (high - low) * np.linspace(0, 1, N_GRID_1D) ** 1.5
        truth = scale * pdf_1d(grid, *params)
        edges = np.concatenate([[grid[0]], (grid[1:] + grid[:-1]) / 2, [grid[-1]]])
        case = case_1d(seed, k, grid, truth, truth, params)
        case.cell = np.diff(edges)[:, None]
        cases.append(case)
    return cases


def mixture_2d_noisy_cases(noise=NOISE_LEVEL):
    cases = []
    for case in mixture_2d_cases():
        rng = np.random.default_rng(1000 + case.seed)
        case.density = case.truth + rng.normal(0, noise * case.truth.max(), case.truth.shape)
        cases.append(set_noisy_tolerance(case))
    return cases


def histogram_cases(n_samples=N_HISTOGRAM_SAMPLES):
    cases = []
    for seed in range(N_SEEDS_1D):
        rng = np.random.default_rng(seed)
        k = 1 + seed % 5
        weights, means, stds = params = random_separated_mixture_1d(rng, k)
        labels = rng.choice(k, n_samples, p=weights)
        samples = rng.normal(means[labels], stds[labels])
        counts, edges = np.histogram(samples, N_BINS, range=plot_range(means, stds))
        centres = (edges[:-1] + edges[1:]) / 2
        truth = n_samples * (edges[1] - edges[0]) * pdf_1d(centres, *params)
        cases.append(case_1d(seed, k, centres, counts.astype(float), truth, params, loss="poisson"))
    return cases


def mixture_2d_cases():
    axis = np.linspace(-10, 10, 64)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    cases = []
    for seed in range(N_SEEDS_2D):
        k = 2 + seed % 3
        weights, means, covariances = random_mixture_2d(np.random.default_rng(seed), k)
        density = mixture_density(grid, weights, means, covariances)
        cell = np.full(2, axis[1] - axis[0])
        cases.append(Case(grid, density, density, k, seed, cell, weights, means, covariances))
    return cases


def set_noisy_tolerance(case):
    """Success threshold: NOISY_FACTOR times the error of DensityGMM started at the truth."""
    reference = DensityGMM(
        case.n_components,
        loss=case.loss,
        weights_init=case.weights,
        means_init=case.means,
        precisions_init=np.linalg.inv(case.covariances),
        n_init=1,
        random_state=case.seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.fit(case.grid, case.density)
    case.tolerance = NOISY_FACTOR * relative_error(reference.predict_density(case.grid), case)
    case.reference_loss = reference.loss_
    return case


def relative_error(fitted, case):
    return np.linalg.norm(fitted - case.truth) / np.linalg.norm(case.truth)


# ----------------------------------------------------------------------
# methods: each fits a case and returns a function giving the fitted density on the grid
# ----------------------------------------------------------------------
def fit_density_gmm(case):
    gmm = DensityGMM(case.n_components, loss=case.loss, random_state=case.seed)
    gmm.fit(case.grid, case.density)
    case.fitted_loss = gmm.loss_
    return lambda: gmm.predict_density(case.grid)


def peak_guesses(x, y, n_components):
    """Centres, heights and sds of the K most prominent peaks, then evenly spaced guesses.

    Returns also the number of guesses that are peaks.
    """
    peaks, properties = find_peaks(y, prominence=(None, None))
    peaks = np.sort(peaks[np.argsort(properties["prominences"])[::-1][:n_components]])
    _, _, left, right = peak_widths(y, peaks, rel_height=0.5)
    index = np.arange(len(x))
    centres = x[peaks]
    heights = y[peaks]
    sds = (np.interp(right, index, x) - np.interp(left, index, x)) / FWHM_PER_SD
    n_missing = n_components - len(peaks)
    if n_missing:
        support = x[y > 0.05 * y.max()]
        low, high = support.min(), support.max()
        extra = low + (high - low) * (np.arange(n_missing) + 0.5) / n_missing
        centres = np.concatenate([centres, extra])
        heights = np.concatenate([heights, np.interp(extra, x, y)])
        sds = np.concatenate(
            [sds, np.full(n_missing, max(high - low, x[1] - x[0]) / (4 * n_components))]
        )
    return centres, heights, np.maximum(sds, x[1] - x[0]), len(peaks)


def sum_of_gaussians(x, *params):
    amplitudes, centres, sds = np.reshape(params, (-1, 3)).T
    return np.exp(-0.5 * ((x[:, None] - centres) / sds) ** 2) @ amplitudes


def fit_curve_fit(case):
    x, y = case.grid, case.density
    centres, heights, sds, _ = peak_guesses(x, y, case.n_components)
    p0 = np.column_stack([heights, centres, sds]).ravel()
    params, _ = curve_fit(sum_of_gaussians, x, y, p0=p0, maxfev=10_000)
    return lambda: sum_of_gaussians(x, *params)


def fit_lmfit(case):
    x, y = case.grid, case.density
    centres, heights, sds, n_peaks = peak_guesses(x, y, case.n_components)
    model, params = None, lmfit.Parameters()
    for k, (centre, height, sd) in enumerate(zip(centres, heights, sds, strict=True)):
        gaussian = lmfit.models.GaussianModel(prefix=f"g{k}_")
        window = np.abs(x - centre) <= FWHM_PER_SD * sd
        if k < n_peaks and window.sum() >= 5:
            params.update(gaussian.guess(y[window], x=x[window]))
        else:
            amplitude = height * sd * np.sqrt(2 * np.pi)
            params.update(gaussian.make_params(amplitude=amplitude, center=centre, sigma=sd))
        model = gaussian if model is None else model + gaussian
    result = model.fit(y, params, x=x)
    return lambda: result.eval(x=x)


def log_gaussians(X, means, covariances):
    """log N(X; means[k], covariances[k]) as an (n_points, K) array."""
    out = np.empty((len(X), len(means)))
    for k, (mean, covariance) in enumerate(zip(means, covariances, strict=True)):
        chol = np.linalg.cholesky(covariance)
        z = np.linalg.solve(chol, (X - mean).T)
        log_det = 2 * np.log(np.diag(chol)).sum()
        out[:, k] = -0.5 * (np.sum(z**2, axis=0) + log_det + X.shape[1] * np.log(2 * np.pi))
    return out


def least_squares_scale(pdf, y):
    return (pdf @ y) / (pdf @ pdf)


def fit_grid_em(case, max_iter=200, tol=1e-10, reg_covar=1e-6):
    X, y = case.points, case.density
    w = np.clip(y * np.prod(case.point_cells, axis=1), 0, None)
    w = w / w.sum()
    k, d = case.n_components, X.shape[1]
    means, _ = kmeans_plusplus(X, k, sample_weight=w, random_state=case.seed)
    covariances = np.repeat(np.atleast_2d(np.cov(X.T, aweights=w))[None], k, axis=0)
    weights = np.full(k, 1 / k)
    previous = -np.inf
    for _ in range(max_iter):
        log_joint = log_gaussians(X, means, covariances) + np.log(weights)
        log_total = logsumexp(log_joint, axis=1)
        resp = w[:, None] * np.exp(log_joint - log_total[:, None])
        weights = resp.sum(axis=0)
        means = resp.T @ X / weights[:, None]
        for j in range(k):
            diff = X - means[j]
            covariances[j] = (resp[:, j] * diff.T) @ diff / weights[j] + reg_covar * np.eye(d)
        log_likelihood = w @ log_total
        if log_likelihood - previous < tol:
            break
        previous = log_likelihood
    pdf = np.exp(logsumexp(log_gaussians(X, means, covariances) + np.log(weights), axis=1))
    fitted = least_squares_scale(pdf, y) * pdf
    return lambda: fitted


def fit_gaussian_mixture(case):
    X, y = case.points, case.density
    rng = np.random.default_rng(case.seed)
    cells = case.point_cells
    p = np.clip(y, 0, None) * np.prod(cells, axis=1)
    index = rng.choice(len(X), N_GM_SAMPLES, p=p / p.sum())
    samples = X[index] + rng.uniform(-0.5, 0.5, (N_GM_SAMPLES, X.shape[1])) * cells[index]
    gm = GaussianMixture(case.n_components, random_state=case.seed).fit(samples)
    pdf = np.exp(gm.score_samples(X))
    fitted = least_squares_scale(pdf, y) * pdf
    return lambda: fitted


def writeup_model(params, grid):
    m1, m2, log_s1, log_s2, logit_pi = params
    pi = 1 / (1 + anp.exp(-logit_pi))
    values = []
    for x in grid:
        values.append(
            pi * anorm.pdf(x, m1, anp.exp(log_s1)) + (1 - pi) * anorm.pdf(x, m2, anp.exp(log_s2))
        )
    return anp.array(values)


def fit_writeup(case):
    grid, target = case.grid, case.density

    def loss(params):
        return anp.sum((target - writeup_model(params, grid)) ** 2)

    means = np.random.default_rng(case.seed).integers(0, 25, size=2)
    x0 = np.array([means[0], means[1], 0.0, 0.0, 1.0])
    result = minimize(loss, x0, jac=grad(loss), method="BFGS")
    return lambda: writeup_model(result.x, grid)


METHODS_1D = {
    "DensityGMM": fit_density_gmm,
    "curve_fit": fit_curve_fit,
    "lmfit": fit_lmfit,
    "grid EM": fit_grid_em,
    "GaussianMixture": fit_gaussian_mixture,
}
METHODS_2D = {name: METHODS_1D[name] for name in ("DensityGMM", "grid EM", "GaussianMixture")}


# ----------------------------------------------------------------------
# running and reporting
# ----------------------------------------------------------------------
def run_method(method, case):
    """(relative error, seconds, raised) of one fit; an exception gives an infinite error.

    The time is the fastest of up to REPEATS fits (repeated while they take less than
    REPEAT_BUDGET seconds in all), which damps the noise of a shared machine.
    """
    seconds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while len(seconds) < REPEATS and sum(seconds) < REPEAT_BUDGET:
            start = time.perf_counter()
            try:
                evaluate = method(case)
            except Exception:
                return np.inf, time.perf_counter() - start, True
            seconds.append(time.perf_counter() - start)
        fitted = evaluate()
    error = relative_error(fitted, case) if np.all(np.isfinite(fitted)) else np.inf
    return error, min(seconds), False


def run_family(cases, methods):
    rows = {}
    for name, method in methods.items():
        run_method(method, cases[0])  # untimed: a first call loads compiled code and caches
        results = [run_method(method, case) for case in cases]
        errors, seconds, raised = map(np.array, zip(*results, strict=True))
        tolerances = np.array([case.tolerance for case in cases])
        rows[name] = {
            "success": 100 * np.mean(errors <= tolerances),
            "error": np.median(errors),
            "median_ms": 1e3 * np.median(seconds),
            "p90_ms": 1e3 * np.percentile(seconds, 90),
            "raised": int(raised.sum()),
        }
        if name == "DensityGMM":
            # a noisy miss whose loss is below that of the fit started at the truth:
            # the objective's optimum is not near the truth (the noise was fitted),
            # so no optimiser of this loss could have succeeded
            rows[name]["below_reference"] = sum(
                error > case.tolerance and case.fitted_loss <= case.reference_loss * (1 + 1e-9)
                for error, case in zip(errors, cases, strict=True)
            )
    return rows


def print_family(title, rows, n_cases):
    ours = rows["DensityGMM"]["median_ms"]
    print(f"\n{title} ({n_cases} cases)")
    print(
        f"  {'method':<16} {'success %':>9} {'med rel err':>11} {'med ms':>9} {'p90 ms':>9} "
        f"{'ours/peer':>9} {'raised':>6}"
    )
    for name, row in rows.items():
        print(
            f"  {name:<16} {row['success']:>9.0f} {row['error']:>11.2e} {row['median_ms']:>9.1f} "
            f"{row['p90_ms']:>9.1f} {ours / row['median_ms']:>9.2f} {row['raised']:>6}"
        )
    below = rows["DensityGMM"]["below_reference"]
    if below:
        print(
            f"  DensityGMM misses with a loss below the fit started at the truth "
            f"(noise fitted, not an optimiser miss): {below}"
        )


def scaling_cases(quick):
    """1-D K=3 at 1e3..1e6 points and 2-D K=4 at 256x256 and 512x512 (noise-free)."""
    cases = []
    for n_points in (1_000, 10_000, 100_000) if quick else (1_000, 10_000, 100_000, 1_000_000):
        X, y, k = one_d(n_points)
        x = X[:, 0]
        cell = np.array([x[1] - x[0]])
        cases.append(("1-D K=3", Case(x, y, y, k, 0, cell, None, None, None)))
    for side in (256,) if quick else (256, 512):
        X, y, k = two_d(side, 4)
        cell = np.full(2, X[1, 0] - X[0, 0])
        cases.append((f"2-D K=4 {side}x{side}", Case(X, y, y, k, 0, cell, None, None, None)))
    return cases


SCALING_METHODS = {
    "1-D K=3": {
        "DensityGMM": fit_density_gmm,
        "curve_fit": fit_curve_fit,
        "lmfit": fit_lmfit,
        "grid EM": fit_grid_em,
    },
    "2-D": {"DensityGMM": fit_density_gmm, "grid EM": fit_grid_em},
}
LMFIT_MAX_POINTS = 100_000  # lmfit's per-call overhead and memory grow past this


def run_scaling(quick):
    print("\nscaling (noise-free; time and tracemalloc peak of the fit; one run each)")
    print(
        f"  {'case':<20} {'points':>9} {'method':<12} {'seconds':>8} {'peak MiB':>9} "
        f"{'rel err':>9} {'ours/peer':>9}"
    )
    timings = {}
    for title, case in scaling_cases(quick):
        methods = SCALING_METHODS["1-D K=3" if title.startswith("1-D") else "2-D"]
        ours = None
        for name, method in methods.items():
            if name == "lmfit" and len(case.density) > LMFIT_MAX_POINTS:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tracemalloc.start()
                start = time.perf_counter()
                evaluate = method(case)
                seconds = time.perf_counter() - start
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                error = relative_error(evaluate(), case)
            ours = seconds if name == "DensityGMM" else ours
            timings.setdefault((title[:3], name), []).append((len(case.density), seconds))
            print(
                f"  {title:<20} {len(case.density):>9} {name:<12} {seconds:>8.3f} "
                f"{peak / 2**20:>9.1f} {error:>9.1e} {ours / seconds:>9.2f}"
            )
    for (kind, name), points in timings.items():
        if len(points) > 1:
            n, t = np.log(np.array(points)).T
            print(f"  {kind} {name}: time ~ n^{np.polyfit(n, t, 1)[0]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds, smaller scaling cases")
    args = parser.parse_args()
    global N_SEEDS_1D, N_SEEDS_2D
    if args.quick:
        N_SEEDS_1D, N_SEEDS_2D = 6, 3
    families = [
        ("writeup", writeup_cases(), {**METHODS_1D, "write-up": fit_writeup}),
        (
            "separated 1-D, K = 1..5",
            mixture_1d_cases(random_separated_mixture_1d, 1, 5),
            METHODS_1D,
        ),
        ("overlapping 1-D, K = 2..4", mixture_1d_cases(overlapping_mixture_1d, 2, 3), METHODS_1D),
        (
            "noisy 1-D 1%, K = 1..5",
            [
                set_noisy_tolerance(case)
                for case in mixture_1d_cases(random_separated_mixture_1d, 1, 5, 0.01)
            ],
            METHODS_1D,
        ),
        (
            "noisy 1-D 5%, K = 1..5",
            [
                set_noisy_tolerance(case)
                for case in mixture_1d_cases(random_separated_mixture_1d, 1, 5, NOISE_LEVEL)
            ],
            METHODS_1D,
        ),
        (
            "overlapping noisy 1-D 5%, K = 2..4",
            [
                set_noisy_tolerance(case)
                for case in mixture_1d_cases(overlapping_mixture_1d, 2, 3, NOISE_LEVEL)
            ],
            METHODS_1D,
        ),
        (
            f"histogram {N_HISTOGRAM_SAMPLES:,}, K = 1..5 (DensityGMM loss='poisson')",
            [set_noisy_tolerance(case) for case in histogram_cases()],
            METHODS_1D,
        ),
        (
            "histogram 20,000, K = 1..5 (DensityGMM loss='poisson')",
            [set_noisy_tolerance(case) for case in histogram_cases(20_000)],
            METHODS_1D,
        ),
        ("unnormalised (x1000), non-uniform grid, K = 1..5", non_uniform_cases(), METHODS_1D),
        ("2-D 64x64 clean, K = 2..4", mixture_2d_cases(), METHODS_2D),
        ("2-D 64x64 noisy 5%, K = 2..4", mixture_2d_noisy_cases(), METHODS_2D),
    ]
    print("DensityGMM against peers: fits of a Gaussian mixture to a density on a grid")
    print(
        f"{datetime.date.today()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS=1; "
        f"DensityGMM with default settings and the true K"
    )
    print(
        f"success: relative L2 error <= {CLEAN_TOLERANCE:g} without noise; with noise or "
        f"counts, <= {NOISY_FACTOR:g} x that of DensityGMM started at the truth"
    )
    print(
        "errors against the noise-free truth; times of the fit alone, the fastest of up to "
        f"{REPEATS} (while under {REPEAT_BUDGET} s in all); 'raised': exceptions"
    )
    start = time.perf_counter()
    for title, cases, methods in families:
        print_family(title, run_family(cases, methods), len(cases))
    run_scaling(args.quick)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
