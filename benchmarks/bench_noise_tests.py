"""The white-noise tests of DensityGMMCV's quiet-choice stop, measured on white noise.

Run: python benchmarks/bench_noise_tests.py      (about half a minute, one process)

``_selection.leaves_noise`` calls a fit's residual white noise when (1) the ratio of its mean
square to the second-difference noise estimate (``noise_variance``) is at most QUIET_Z standard
deviations, QUIET_SPREAD / sqrt(n), above 1, and (2) its largest matched-filter bump
(``largest_bump``) is at most 2 ln(n) + QUIET_BUMP. This measures, on pure white noise about a
Gaussian peak on 1-D and 2-D grids of 50 to 10,000 points (``--draws`` draws each, seeded):
the ratio's standard deviation times sqrt(n) (QUIET_SPREAD should bound it), the 99% and 99.9%
quantiles of the largest bump minus 2 ln(n) (QUIET_BUMP should sit near the first), and how
often white noise passes both tests; then how often a missing component 5 noise standard
deviations high and 2 grid steps wide passes the mean-square test alone and both.
"""

import argparse

import numpy as np

from skdensityfit._data.noise import noise_variance
from skdensityfit._selection.rules import (
    QUIET_BUMP,
    QUIET_SPREAD,
    largest_bump,
    leaves_noise,
    residual_is_noise_level,
)

SHAPES = ((50,), (100,), (200,), (400,), (1000,), (2000,), (20, 20), (32, 32), (64, 64), (100, 100))


def grid_and_peak(shape):
    axes = [np.arange(size, dtype=float) for size in shape]
    X = np.column_stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")])
    centre, spread = np.array(shape) / 2, np.array(shape) / 8
    return X, np.exp(-0.5 * np.sum(((X - centre) / spread) ** 2, axis=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"QUIET_SPREAD = {QUIET_SPREAD}, QUIET_BUMP = {QUIET_BUMP}, {args.draws} draws a grid")
    print(
        f"{'grid':>10} {'n':>6} {'sd*sqrt(n)':>10} {'bump 99%':>9} {'bump 99.9%':>10} "
        f"{'noise passes':>12} {'narrow: mean sq.':>16} {'narrow: both':>12}"
    )
    for shape in SHAPES:
        X, truth = grid_and_peak(shape)
        n = len(X)
        noise = rng.normal(0, 0.02, (args.draws, n))
        variance = noise_variance(X, truth + noise)
        normaliser = np.mean(truth**2)
        noise_loss = variance / normaliser
        loss = np.mean(noise**2, axis=1) / normaliser
        bumps = largest_bump(X, noise, variance)
        q99, q999 = np.quantile(bumps, [0.99, 0.999]) - 2 * np.log(n)
        passes = leaves_noise(loss, noise_loss, bumps, n).mean()
        corner = np.exp(-0.5 * np.sum(((X - 0.8 * np.array(shape)) / 2.0) ** 2, axis=1))
        narrow = noise + 5 * 0.02 * corner
        narrow_loss = np.mean(narrow**2, axis=1) / normaliser
        mean_square = residual_is_noise_level(narrow_loss, noise_loss, n).mean()
        both = leaves_noise(narrow_loss, noise_loss, largest_bump(X, narrow, variance), n).mean()
        print(
            f"{'x'.join(map(str, shape)):>10} {n:>6} "
            f"{np.std(loss / noise_loss) * np.sqrt(n):>10.2f} {q99:>9.2f} {q999:>10.2f} "
            f"{passes:>12.1%} {mean_square:>16.1%} {both:>12.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
