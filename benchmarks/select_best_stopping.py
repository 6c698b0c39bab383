"""A selector for bench_choose_k: DensityGMMCV with the early stopping of 452caf5 and before.

Run: python benchmarks/bench_choose_k.py --selector cv \
         --selector benchmarks/select_best_stopping.py:best

The path of candidates stops once the candidate the rule would choose is ``early_stopping``
candidates behind and no later one scores more than ``SETTLED_GAIN`` above it, or once the best
mean score is that far behind (``_selection.has_peaked``). Before, only the second: a search
whose surplus candidates score within noise of each other kept going while the best moved by a
hair. This selector restores that rule (in this process only, one case at a time), to show the
two give the same choices and what the first saves.
"""

from skdensityfit import DensityGMMCV
from skdensityfit._selection import cv as _cv
from skdensityfit._selection.rules import has_peaked


def _best_only(scores, patience, selection="best", n_standard_errors=1.0, quiet=None):
    return has_peaked(scores, patience)


def best(grid, y, *, loss, max_components, random_state):
    saved = _cv.has_peaked
    _cv.has_peaked = _best_only
    try:
        search = DensityGMMCV(n_components=max_components, loss=loss, random_state=random_state)
        return search.fit(grid, y).n_components_
    finally:
        _cv.has_peaked = saved
