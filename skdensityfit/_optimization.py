"""Minimisation of the fit objective with scipy.

A bounded quasi-Newton run (L-BFGS-B, with the exact gradient) does the
descent. If it stops before its gradient tolerance is met (a failed line
search near a zero-residual optimum, where the loss is at rounding level), a
few damped Newton steps finish the job on small problems, with a Hessian
from central differences of the exact gradient.
"""

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ._analytic_gradient import value_and_gradient

# The Newton polish forms a dense Hessian from 2 * n_parameters gradients:
# only worth it while n_parameters * n_points stays small.
MAX_NEWTON_WORK = 5_000_000
MAX_NEWTON_STEPS = 10


@dataclass
class OptimizationResult:
    theta: np.ndarray
    loss: float
    n_iter: int
    converged: bool
    message: str


def _finite_value_and_gradient(theta, data):
    value, gradient = value_and_gradient(theta, data)
    if not (np.isfinite(value) and np.all(np.isfinite(gradient))):
        return np.inf, np.zeros_like(theta)
    return float(value), gradient


def _projected_gradient_norm(theta, gradient, bounds):
    lower, upper = bounds[:, 0], bounds[:, 1]
    step = np.clip(theta - gradient, lower, upper) - theta
    return float(np.max(np.abs(step))) if step.size else 0.0


def hessian_by_differences(theta, data):
    """Symmetrised central-difference Jacobian of the exact gradient."""
    steps = 1e-5 * np.maximum(1.0, np.abs(theta))
    columns = []
    for j, step in enumerate(steps):
        shift = np.zeros_like(theta)
        shift[j] = step
        forward = value_and_gradient(theta + shift, data)[1]
        backward = value_and_gradient(theta - shift, data)[1]
        columns.append((forward - backward) / (2.0 * step))
    H = np.column_stack(columns)
    return 0.5 * (H + H.T)


def _newton_polish(theta, value, data, bounds, gtol):
    """Damped Newton steps (Levenberg style) inside the bounds."""
    n_steps = 0
    for n_steps in range(1, MAX_NEWTON_STEPS + 1):
        _, gradient = _finite_value_and_gradient(theta, data)
        if _projected_gradient_norm(theta, gradient, bounds) <= gtol:
            return theta, value, n_steps - 1
        H = hessian_by_differences(theta, data)
        if not np.all(np.isfinite(H)):
            break
        eigvals, eigvecs = np.linalg.eigh(H)
        damping = max(0.0, -eigvals.min()) + 1e-12 * max(1.0, abs(eigvals).max())
        accepted = False
        for _ in range(30):
            step = -eigvecs @ ((eigvecs.T @ gradient) / (eigvals + damping))
            candidate = np.clip(theta + step, bounds[:, 0], bounds[:, 1])
            candidate_value, _ = _finite_value_and_gradient(candidate, data)
            if candidate_value <= value:
                accepted = True
                break
            damping = 10.0 * damping + 1e-8 * max(1.0, abs(eigvals).max())
        if not accepted:
            break
        improvement = value - candidate_value
        theta, value = candidate, candidate_value
        if improvement <= 1e-16 * max(value, 1e-300) and np.max(np.abs(step)) < 1e-12:
            break
    return theta, value, n_steps


@np.errstate(under="ignore")  # densities far from a component underflow to 0 by design
def minimize_objective(theta0, data, bounds, *, tol, max_iter):
    """Minimise :func:`objective` from ``theta0`` within ``bounds``.

    Convergence means the projected gradient is at most ``tol`` (the objective
    is a relative loss of order one, so ``tol`` is scale-free).
    """
    bounds = np.asarray(bounds, dtype=float)
    theta0 = np.clip(theta0, bounds[:, 0], bounds[:, 1])
    result = minimize(
        _finite_value_and_gradient,
        theta0,
        args=(data,),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter, "ftol": 1e-15, "gtol": tol, "maxcor": 30},
    )
    theta, value, n_iter = result.x, float(result.fun), int(result.nit)
    if not np.isfinite(value):
        return OptimizationResult(theta0, np.inf, n_iter, False, "non-finite objective")
    _, gradient = _finite_value_and_gradient(theta, data)
    gradient_met = _projected_gradient_norm(theta, gradient, bounds) <= tol
    work = theta.size * data.target.size
    if not gradient_met and n_iter < max_iter and work <= MAX_NEWTON_WORK:
        theta, value, n_newton = _newton_polish(theta, value, data, bounds, tol)
        n_iter += n_newton
        _, gradient = _finite_value_and_gradient(theta, data)
        gradient_met = _projected_gradient_norm(theta, gradient, bounds) <= tol
    # L-BFGS-B's own success is a relative loss change below 1e-15: no digit
    # left to gain, which counts as converged too.
    converged = gradient_met or (result.success and n_iter < max_iter)
    return OptimizationResult(theta, value, n_iter, bool(converged), str(result.message))
