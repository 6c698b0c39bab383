"""How often DensityGMMCV chooses the true number of components.

Run: python benchmarks/bench_cv_selection.py   (about half a minute)
The cases of tests/test_cv.py's generator, seeds 0 to 19 of each kind: 1-D mixtures with K = 1..4
separated components as densities with 1% and 5% additive noise, as histograms of 2,000 and
20,000 samples (loss='poisson'), and noise-free; default settings, candidates 1..6.
"""

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_cv import KINDS, _case

from skdensityfit import DensityGMMCV


def main(n_seeds=20):
    warnings.simplefilter("ignore")
    start = time.process_time()
    for kind in [*KINDS, "clean"]:
        chosen = []
        for seed in range(n_seeds):
            n_components, grid, y, loss = _case(kind, seed)
            search = DensityGMMCV(n_components=6, loss=loss, random_state=seed).fit(grid, y)
            chosen.append((seed, n_components, search.n_components_))
        right = sum(k == c for _, k, c in chosen)
        misses = [f"seed {s}: {k} -> {c}" for s, k, c in chosen if k != c]
        print(f"{kind:<10} right {right}/{n_seeds}  {'; '.join(misses)}")
    print(f"CPU time {time.process_time() - start:.1f} s")


if __name__ == "__main__":
    main()
