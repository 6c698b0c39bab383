"""How often the clear-peaks bound of DensityGMMCV equals, undershoots or exceeds the true K.

Run: python benchmarks/bench_clear_peaks.py     (seconds: no fits, only the count)

``least_components`` (skdensityfit/_selection.py) counts the peaks of a 1-D density whose
prominence is at least 20 standard deviations of the white noise estimated from the values;
DensityGMMCV first tries an exact fit with that many components. On noise-free densities it
cannot exceed the true number of components (a 1-D mixture of K Gaussians has at most K modes);
under noise that is not white it can (a histogram's noise is larger at its peaks). This counts,
on both draws of bench_choose_k's 1-D families of densities (seed offsets 0 and 10000), the
cases where the count equals the true K, is below it, or is above it, and how often it is
above 1.
"""

import collections

import numpy as np
from bench_choose_k import FAMILIES, make_case

from skdensityfit._data.noise import noise_variance
from skdensityfit._selection.rules import least_components

FAMILIES_1D = ("clean100", "clean400", "comb", "noisy1", "noisy5", "histl2")


def main():
    print(f"{'family':<10} {'cases':>6} {'equal':>6} {'below':>6} {'above':>6} {'bound > 1':>10}")
    for family in FAMILIES_1D:
        counts = collections.Counter()
        for offset in (0, 10000):
            for seed in range(FAMILIES[family][1]):
                case = make_case(family, seed, offset)
                X = case.grid.reshape(len(case.y), -1)
                bound = least_components(X, case.y, noise_variance(X, case.y))[0]
                counts["cases"] += 1
                counts[np.sign(bound - case.true_k)] += 1
                counts["bound > 1"] += bool(bound > 1)
        print(
            f"{family:<10} {counts['cases']:>6} {counts[0]:>6} {counts[-1]:>6} {counts[1]:>6} "
            f"{counts['bound > 1']:>10}"
        )


if __name__ == "__main__":
    main()
