"""Selectors for bench_choose_k: DensityGMMCV whose path always moves parked components.

Run: python benchmarks/bench_choose_k.py --selector cv \\
         --selector benchmarks/select_moves.py:moves --selector benchmarks/select_path.py:path \\
         --selector benchmarks/select_moves.py:path_moves

Since the commit that added this file, the path of single fits (``_cv._Path``) leaves the
parked components of a candidate where they are once the previous candidate's fit explains all
but the white noise (``SURPLUS_NOISE``): the new component is surplus, and moving it would fit
noise. These
selectors restore the moves (in this process only, one case at a time): ``moves`` as
DensityGMMCV runs, ``path_moves`` on the path of single fits alone (``select_path.path``).
"""

from select_path import path

from skdensityfit import DensityGMMCV, _cv


def _always_moving(run):
    def selector(grid, y, *, loss, max_components, random_state):
        original = _cv._Path._explains_all_but_noise
        _cv._Path._explains_all_but_noise = lambda self, n_components: False
        try:
            return run(grid, y, loss=loss, max_components=max_components, random_state=random_state)
        finally:
            _cv._Path._explains_all_but_noise = original

    return selector


def _cv_search(grid, y, *, loss, max_components, random_state):
    search = DensityGMMCV(n_components=max_components, loss=loss, random_state=random_state)
    return search.fit(grid, y).n_components_


moves = _always_moving(_cv_search)
path_moves = _always_moving(path)
