"""A selector for bench_choose_k: DensityGMMCV on its path of single fits alone.

Run: python benchmarks/bench_choose_k.py --selector cv --selector benchmarks/select_path.py:path

DensityGMMCV runs the batched search of ``fit_many`` where it covers the settings (l2 loss,
grids of at most 1,000 points, default starts: see its Notes) and its path of single fits
elsewhere. This selector always takes the path, to compare the two engines on the same cases.
"""

from skdensityfit import DensityGMMCV, _batch_cv


def path(grid, y, *, loss, max_components, random_state):
    original = _batch_cv.covers
    _batch_cv.covers = lambda cv, grid: False  # this process only: one case at a time
    try:
        search = DensityGMMCV(n_components=max_components, loss=loss, random_state=random_state)
        return search.fit(grid, y).n_components_
    finally:
        _batch_cv.covers = original
