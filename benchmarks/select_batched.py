"""A selector for bench_choose_k: fit_many's batched DensityGMMCV search on one density.

Run: python benchmarks/bench_choose_k.py --selector benchmarks/select_batched.py:batched \
         --output /tmp/choose_k_batched.txt

Measures whether the batched search (skdensityfit._batch_cv) would do as DensityGMMCV's engine
on single densities: where its settings are not covered (Poisson counts, large grids), or it
cannot score a density, DensityGMMCV itself answers.
"""

import numpy as np

from skdensityfit import DensityGMMCV
from skdensityfit._batch_cv import choose_block, covers


def batched(grid, y, *, loss, max_components, random_state):
    search = DensityGMMCV(n_components=max_components, loss=loss, random_state=random_state)
    X = np.asarray(grid, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    if covers(search, X):
        k = int(choose_block(search, X, np.asarray(y, dtype=float)[None]).n_components[0])
        if k > 0:
            return k
    return search.fit(grid, y).n_components_
