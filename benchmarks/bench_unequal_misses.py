"""Why bench_choose_k's unequal-bin histograms miss: BIC of the binned data at each K, and
GaussianMixture's BIC on the raw samples behind them.

Run: python benchmarks/bench_unequal_misses.py [SEED ...]   (default: the family's misses)

For each case of ``bench_choose_k``'s ``unequal`` family (histograms of 1,000-20,000 samples in
unequal bins, passed as y = counts / width with the widths as sample_weight), prints the K
``DensityGMMCV`` chooses (as ``bench_choose_k`` asks), the binned Poisson BIC of
``DensityGMM(K, bins=edges, n_init=10)`` at each K from 1 to 7 (relative to the lowest), and
``GaussianMixture(K, n_init=5)``'s BIC on the raw samples that made the histogram (relative to
the lowest). Where the histogram's own BIC prefers the chosen K to the true one, the binning
lost what the raw samples had; where it prefers the true K, the search missed a better fit.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.mixture import GaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_choose_k as choose_k

from skdensityfit import DensityGMM, DensityGMMCV

MISSES = (19, 33, 39)  # bench_choose_k --family unequal: 19: 5 -> 4, 33: 4 -> 5, 39: 5 -> 4
CANDIDATES = range(1, 8)


def case_and_samples(seed):
    """The case, and the samples its histogram counts (captured as the generator draws them)."""
    drawn = []
    original = choose_k._mixture_samples

    def capture(rng, weights, means, sds, n):
        samples = original(rng, weights, means, sds, n)
        drawn.append(samples)
        return samples

    choose_k._mixture_samples = capture
    try:
        case = choose_k.make_case("unequal", seed)
    finally:
        choose_k._mixture_samples = original
    return case, drawn[0][:, None]  # the first draw is the histogram's, the second a pilot


def main():
    warnings.simplefilter("ignore")
    seeds = [int(s) for s in sys.argv[1:]] or MISSES
    print("K:" + "".join(f"{k:>9d}" for k in CANDIDATES))
    for seed in seeds:
        case, samples = case_and_samples(seed)
        weights = {"sample_weight": case.sample_weight}
        chosen = (  # as bench_choose_k asks
            DensityGMMCV(
                n_components=case.max_components,
                loss="poisson",
                bins=case.bins,
                random_state=case.seed,
            )
            .fit(case.grid, case.y, **weights)
            .n_components_
        )
        binned = np.array(
            [
                DensityGMM(k, loss="poisson", bins=case.bins, n_init=10, random_state=0)
                .fit(case.grid, case.y, **weights)
                .bic(case.grid, case.y, **weights)
                for k in CANDIDATES
            ]
        )
        raw = np.array(
            [
                GaussianMixture(k, n_init=5, random_state=0).fit(samples).bic(samples)
                for k in CANDIDATES
            ]
        )
        print(f"seed {seed}: true K {case.true_k}, chosen {chosen}, {len(samples)} samples")
        print("  histogram BIC" + "".join(f"{v:9.1f}" for v in binned - binned.min()))
        print("  samples BIC  " + "".join(f"{v:9.1f}" for v in raw - raw.min()))


if __name__ == "__main__":
    main()
