"""Time one value-and-gradient call: autograd's reverse mode against the compiled kernel.

Run: python benchmarks/bench_gradient.py
Both compute the same objective (tests/test_kernel.py checks they agree to rounding); the
kernel's call also gives the Gauss-Newton matrix. The first kernel call compiles (not timed).
"""

import time

import numpy as np
from autograd import value_and_grad

from skdensityfit._engine.problem import build_problem
from skdensityfit._engine.rows import derivatives_of
from skdensityfit._model.reference import objective

CASES = [  # (n_points, n_features, n_components, covariance_type)
    (75, 1, 2, "full"),
    (400, 1, 3, "full"),
    (4096, 2, 4, "full"),
    (100_000, 1, 3, "full"),
]


def best_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    autograd_value_and_grad = value_and_grad(objective)
    rng = np.random.default_rng(0)
    print(f"{'points':>8} {'d':>2} {'K':>2} {'autograd ms':>12} {'kernel ms':>10} {'ratio':>7}")
    for n_points, n_features, n_components, covariance_type in CASES:
        X = rng.normal(size=(n_points, n_features))
        problem = build_problem(
            X,
            np.abs(rng.normal(size=n_points)),
            np.full(n_points, 1.0 / n_points),
            n_components=n_components,
            covariance_type=covariance_type,
            loss="l2",
            scale=None,
        )
        theta = np.clip(0.1 * rng.normal(size=len(problem.bounds)), *problem.bounds.T)
        inputs = problem.kernel
        derivatives_of(inputs, theta)  # compile
        repeats = 20 if n_points < 10_000 else 5
        slow = best_time(lambda: autograd_value_and_grad(theta, problem.data), repeats)  # noqa: B023
        fast = best_time(lambda: derivatives_of(inputs, theta), repeats)  # noqa: B023
        print(
            f"{n_points:>8} {n_features:>2} {n_components:>2} {1e3 * slow:>12.3f} "
            f"{1e3 * fast:>10.3f} {slow / fast:>7.1f}"
        )


if __name__ == "__main__":
    main()
