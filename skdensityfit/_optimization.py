"""Minimisation of the fit objective with scipy.

The main route is Levenberg-Marquardt on the Gauss-Newton matrix of the loss
(exact Jacobian, accumulated chunk by chunk so memory stays bounded). The
fallback is a bounded quasi-Newton run (L-BFGS-B, with the exact gradient);
if that stops before its gradient tolerance is met (a failed line search near
a zero-residual optimum, where the loss is at rounding level), a few damped
Newton steps finish the job on small problems, with the exact Hessian of the
reference model from autograd.
"""

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ._model import objective_hessian
from ._objective import value_and_gradient, value_gradient_and_gauss_newton

# The Newton polish forms a dense Hessian (autograd: one reverse pass per
# parameter): only worth it while n_parameters * n_points stays small.
MAX_NEWTON_WORK = 5_000_000
MAX_NEWTON_STEPS = 10
# Relative loss decrease that counts as "no digit left to gain".
NO_GAIN = 1e-15
FTOL_MESSAGE = "relative decrease below ftol"
# Levenberg-Marquardt's first and largest damping, relative to the Gauss-Newton diagonal.
INITIAL_DAMPING = 1e-3
MAX_DAMPING = 1e16


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


def _newton_polish(theta, value, data, bounds, gtol):
    """Damped Newton steps (Levenberg style) inside the bounds."""
    n_steps = 0
    for n_steps in range(1, MAX_NEWTON_STEPS + 1):
        _, gradient = _finite_value_and_gradient(theta, data)
        if _projected_gradient_norm(theta, gradient, bounds) <= gtol:
            return theta, value, n_steps - 1
        H = objective_hessian(theta, data)
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


def minimize_objective(theta0, data, bounds, *, tol, max_iter, ftol=NO_GAIN):
    """Minimise the objective from ``theta0`` within ``bounds``.

    Levenberg-Marquardt first; should it stop short of convergence (a rare
    case: the Gauss-Newton model is poor far from a zero-residual optimum),
    the quasi-Newton route continues from where it stopped, with the
    iterations left.
    """
    result = levenberg_marquardt(theta0, data, bounds, tol=tol, max_iter=max_iter, ftol=ftol)
    if result.converged or result.n_iter >= max_iter:
        return result
    start = result.theta if np.isfinite(result.loss) else theta0
    fallback = quasi_newton(start, data, bounds, tol=tol, max_iter=max_iter - result.n_iter)
    fallback.n_iter += result.n_iter
    if not np.isfinite(fallback.loss) or fallback.loss > result.loss:
        return result
    return fallback


@np.errstate(under="ignore")  # densities far from a component underflow to 0 by design
def quasi_newton(theta0, data, bounds, *, tol, max_iter):
    """Minimise the objective from ``theta0`` within ``bounds`` with L-BFGS-B.

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


def _finite_gauss_newton(theta, data):
    """Value, gradient and Gauss-Newton matrix; an infinite value if any is not finite."""
    value, gradient, matrix = value_gradient_and_gauss_newton(theta, data)
    if np.isfinite(value) and np.all(np.isfinite(gradient)) and np.all(np.isfinite(matrix)):
        return value, gradient, matrix
    return np.inf, gradient, matrix


def _free_variables(theta, gradient, bounds):
    """Variables not held at a bound by a gradient that pushes outwards."""
    at_lower = (theta <= bounds[:, 0]) & (gradient > 0)
    at_upper = (theta >= bounds[:, 1]) & (gradient < 0)
    return ~(at_lower | at_upper)


def _damped_step(theta, gradient, sub_matrix, free, damping, bounds):
    """``theta + step`` with ``(H + diag(damping)) step = -gradient`` on the free
    variables (``sub_matrix`` is ``H`` restricted to them), clipped to the
    bounds; None if the system is singular."""
    step = np.zeros_like(theta)
    try:
        step[free] = np.linalg.solve(sub_matrix + np.diag(damping[free]), -gradient[free])
    except np.linalg.LinAlgError:
        return None
    return np.clip(theta + step, bounds[:, 0], bounds[:, 1])


def lowering_step(theta, value, gradient, matrix, bounds, objective):
    """One Levenberg-Marquardt step from ``theta`` that lowers ``objective`` below ``value``.

    ``value``, ``gradient`` and ``matrix`` are the objective, its gradient and
    its Gauss-Newton matrix at ``theta``. The damping starts as in
    :func:`levenberg_marquardt` and grows fourfold until the step lowers the
    objective, up to the solver's own limit; ``theta`` itself is returned if
    no step does (it is then a stationary point along every direction tried).
    """
    bounds = np.asarray(bounds, dtype=float)
    free = _free_variables(theta, gradient, bounds)
    sub_matrix = matrix[np.ix_(free, free)]
    scaling = np.maximum(np.diag(matrix), np.finfo(float).tiny)
    damping = INITIAL_DAMPING
    while damping < MAX_DAMPING:
        candidate = _damped_step(theta, gradient, sub_matrix, free, damping * scaling, bounds)
        if candidate is not None and objective(candidate) < value:
            return candidate
        damping *= 4.0
    return theta


@np.errstate(under="ignore", over="ignore", invalid="ignore")
def levenberg_marquardt(theta0, data, bounds, *, tol, max_iter, ftol=NO_GAIN):
    """Minimise the objective by damped Gauss-Newton steps inside box bounds.

    Each iteration solves ``(H + lambda D) step = -gradient`` on the variables
    not pinned at a bound, with ``H`` the Gauss-Newton matrix and ``D`` the
    largest diagonal of ``H`` seen so far (Moré's scaling), and adapts
    ``lambda`` to how well the quadratic model predicted the decrease. Near
    the optimum this is Newton's method for a zero-residual fit, so a handful
    of iterations reaches the gradient tolerance where a quasi-Newton method
    needs tens. ``ftol`` also stops it, as converged, once a step decreases the
    loss by less than that fraction (a looser ``ftol`` suits fits that only
    need the loss to a few digits, as in cross-validation).
    """
    bounds = np.asarray(bounds, dtype=float)
    theta = np.clip(theta0, bounds[:, 0], bounds[:, 1])
    value, gradient, matrix = _finite_gauss_newton(theta, data)
    if not np.isfinite(value):
        return OptimizationResult(theta, np.inf, 0, False, "non-finite objective at the start")
    scaling = np.maximum(np.diag(matrix), np.finfo(float).tiny)
    damping = INITIAL_DAMPING
    n_iter = 0
    message = "maximum number of iterations reached"
    converged = False
    while True:
        if _projected_gradient_norm(theta, gradient, bounds) <= tol:
            converged, message = True, "projected gradient below tol"
            break
        if n_iter >= max_iter:
            break
        free = _free_variables(theta, gradient, bounds)
        sub_matrix = matrix[np.ix_(free, free)]
        no_gain = NO_GAIN * max(value, 1.0)
        accepted = False
        predicted = np.inf
        while damping < MAX_DAMPING:
            candidate = _damped_step(theta, gradient, sub_matrix, free, damping * scaling, bounds)
            if candidate is None:
                damping *= 10.0
                continue
            step = candidate - theta
            predicted = -(gradient @ step + 0.5 * step @ matrix @ step)
            # the full evaluation, not the value alone: most steps are accepted
            new = _finite_gauss_newton(candidate, data)
            actual = value - new[0]
            if predicted > 0 and actual > 0:
                ratio = actual / predicted
                damping *= max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
                accepted = True
                break
            if predicted <= no_gain and abs(actual) <= no_gain:
                break  # the model sees nothing left to gain
            damping *= 4.0
        n_iter += 1
        if not accepted:
            converged = predicted <= no_gain
            message = "no decrease left to gain" if converged else "line of descent lost"
            break
        theta = candidate
        value, gradient, matrix = new
        scaling = np.maximum(scaling, np.diag(matrix))
        if actual <= no_gain and np.max(np.abs(step)) <= NO_GAIN:
            converged, message = True, "no decrease left to gain"
            break
        if actual <= ftol * value:
            converged, message = True, FTOL_MESSAGE
            break
    return OptimizationResult(theta, float(value), n_iter, bool(converged), message)
