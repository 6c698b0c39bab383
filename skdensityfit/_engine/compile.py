"""Compiles the kernel's entry points into numba's cache: run as a child process.

``python -m skdensityfit._engine.compile fit rest`` calls the entry points the parts name
(``fit``: Levenberg-Marquardt and the model's evaluation, the longest to compile;
``rest``: the others, which do not evaluate the loss) on a small
problem, with the argument types every caller uses, so that numba compiles them and writes
its cache. :class:`~.processes.CacheCode` starts the two parts at once (one after the other
with one core) the first time a process finds the kernel missing from the cache, then
loads what they wrote.
"""

import sys

import numpy as np

from . import rows
from .problem import build_problem


def _problem(X):
    y = np.exp(-0.5 * X[:, 0] ** 2) + 0.01
    problem = build_problem(
        X, y, None, n_components=2, covariance_type="full", loss="l2", scale=None
    )
    theta = np.clip(np.zeros(len(problem.bounds)), problem.bounds[:, 0], problem.bounds[:, 1])
    return problem.kernel, theta[None]


def compile_part(*parts):
    """Call the entry points of ``parts`` ('fit', 'rest') once on a small problem."""
    unknown = set(parts) - {"fit", "rest"}
    if unknown:
        raise ValueError(f"parts are 'fit' and 'rest', not {sorted(unknown)}")
    inputs, thetas = _problem(np.linspace(-3.0, 3.0, 16)[:, None])
    if "fit" in parts:  # Levenberg-Marquardt and the other calls of the model's evaluation
        rows.minimize_rows(inputs, thetas, tol=1e-8, max_iter=2)
        rows.models_of(inputs, thetas)
        rows.curvatures_of(inputs, thetas)
        rows.derivatives_of(inputs, thetas[0])  # the same entry point with gradients
    if "rest" in parts:
        rows.greedy_peaks(inputs, np.array([1.0]), 1)
        rows.component_shares_of(inputs, thetas)
        rows.leverages_of(inputs, thetas)
        upper = np.ones((1, 1, 1))
        centres = np.zeros((1, 2), dtype=np.int64)
        rows.matched_filter(inputs, inputs.Y, centres, upper)  # equal spacing
        uneven, _ = _problem(np.geomspace(1.0, 4.0, 16)[:, None] - 2.5)
        rows.matched_filter(uneven, uneven.Y, centres, upper)


if __name__ == "__main__":
    compile_part(*sys.argv[1:])
