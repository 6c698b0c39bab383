"""Time one value-and-gradient call: autograd's reverse mode against the hand-derived numpy pass.

Run: python benchmarks/bench_gradient.py
Both compute the same objective (tests/test_mixture_math.py checks they agree to rounding).
"""

import time

import numpy as np
from autograd import value_and_grad

from skdensityfit._covariance import quadratic_features
from skdensityfit._model import objective
from skdensityfit._objective import value_and_gradient
from skdensityfit._parameters import ParameterLayout
from skdensityfit._problem import FitData

CASES = [  # (n_points, n_features, n_components, covariance_type)
    (75, 1, 2, "full"),
    (400, 1, 3, "full"),
    (4096, 2, 4, "full"),
    (100_000, 1, 3, "full"),
]


def best_time(function, theta, data, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(theta, data)
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    autograd_value_and_grad = value_and_grad(objective)
    rng = np.random.default_rng(0)
    print(f"{'points':>8} {'d':>2} {'K':>2} {'autograd ms':>12} {'numpy ms':>10} {'ratio':>7}")
    for n_points, n_features, n_components, covariance_type in CASES:
        layout = ParameterLayout(n_components, n_features, covariance_type)
        X = rng.normal(size=(n_points, n_features))
        data = FitData(
            quadratic_features(X, covariance_type),
            np.abs(rng.normal(size=n_points)),
            np.full(n_points, 1.0 / n_points),
            layout,
            "l2",
        )
        theta = 0.1 * rng.normal(size=layout.n_parameters)
        repeats = 20 if n_points < 10_000 else 5
        slow = best_time(autograd_value_and_grad, theta, data, repeats)
        fast = best_time(value_and_gradient, theta, data, repeats)
        print(
            f"{n_points:>8} {n_features:>2} {n_components:>2} {1e3 * slow:>12.3f} "
            f"{1e3 * fast:>10.3f} {slow / fast:>7.1f}"
        )


if __name__ == "__main__":
    main()
