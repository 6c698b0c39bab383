"""The compiled kernel: the mixture's model, its derivatives and Levenberg-Marquardt, per row.

A *row* is one density fitted from one start. :func:`fit_rows` runs Levenberg-Marquardt
on a range of rows, each to its own convergence; :func:`evaluate_rows` gives the loss
(and, on request, the model and the Gauss-Newton matrix) of many parameter vectors. The
row functions release the GIL, and :mod:`.rows` runs ranges of rows on threads (numba's
own parallel loops recompile every callee for each parallel function: a minute of
compiling at the first call, against about 15 s for the one compilation this way). Every
evaluation makes one pass over the grid points, accumulating the loss, its gradient and
the Gauss-Newton matrix (for the Poisson loss, the Fisher information) point by point:
no temporary grows with the grid.

The problem is data (:class:`~.rows.KernelInputs` holds it):

- ``layout``: ``[K, d, fit_scale, n_parameters, n_background, loss, binned,
  exponential]`` (loss 0 is 'l2', 1 is 'poisson'; binned 1 for products of cdf
  differences, 2 for the cubature; exponential 1 for a background ``c exp(r v)``, its two
  parameters last and ``v`` the basis's one column);
- ``chol_index`` ``(K, d, d)``: the parameter that entry ``(i, j)`` of
  component ``k``'s precision Cholesky factor ``U`` comes from (-1: zero),
  and ``chol_log`` whether the parameter is the entry's logarithm. This is
  how the four covariance types differ (see :mod:`.covariance`);
- per point: the standardised coordinates ``X``, the background's basis
  values ``basis`` (``(n, J)``; the background is ``basis @ c``), and with
  bins the cell bounds ``lo``, ``hi`` (the model is then the mixture's mass
  in the cell over its volume; only for one dimension or axis-aligned
  components, whose masses are products of normal cdf differences).

The parameter vector: ``[log scale (when fitted), K - 1 logits (the last
pinned at 0), means (K d), Cholesky parameters, background coefficients]``,
as :mod:`.parameters` lays it out. Every function here takes its work
arrays from the caller and allocates nothing per point or per iteration, so
that the per-row functions can later be compiled for a GPU unchanged.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

LOG_2PI = math.log(2.0 * math.pi)
# The Poisson loss's Gauss-Newton curvature w / value takes value at least this (the
# target is scaled to a largest value of 1): a model that underflows beside a background
# at its bound 0 made it overflow, and no start could be fitted. Loss and gradient are exact.
MIN_POISSON_CURVATURE_VALUE = 1e-12
SQRT_HALF = math.sqrt(0.5)
TINY = 2.2250738585072014e-308
# Floating-point liberties that keep infinities and NaNs (the loss is infinite where
# a Poisson model is not positive): contraction into fused multiply-adds,
# reassociation of sums, reciprocals, approximate transcendental functions.
FASTMATH = {"contract", "reassoc", "arcp", "afn", "nsz"}

# Points a block of the l2 sums over points (their Jacobian held in a (p + 3 + 2 d, BLOCK) array).
BLOCK = 256


def _inner(**options):
    """numba's ``njit`` for a function only the kernel calls: no Python or C wrapper to
    compile (``benchmarks/results/compile.txt``: 1.5 s of the first call)."""
    return njit(cache=True, no_cpython_wrapper=True, no_cfunc_wrapper=True, **options)


# layout slots
_K, _D, _FIT_SCALE, _P, _J, _LOSS, _BINNED, _EXPONENTIAL = range(8)
# Levenberg-Marquardt
INITIAL_DAMPING = 1e-3
MAX_DAMPING = 1e16
NO_GAIN = 1e-15
# A step that gains less than ftol stops a Poisson run unless the Gauss-Newton step
# predicts a decrease of more than this fraction of the loss (far from the optimum).
FAR_FROM_OPTIMUM = 0.1
# statuses of a row
CONVERGED, FTOL, NO_DECREASE, MAX_ITER, LOST, NOT_FINITE = range(6)
STATUS_MESSAGES = (
    "projected gradient below tol",
    "relative decrease below ftol",
    "no decrease left to gain",
    "maximum number of iterations reached",
    "line of descent lost",
    "non-finite objective at the start",
)


# --------------------------------------------------------------------------
# exp
# --------------------------------------------------------------------------
# ln 2 in two parts (the first with 21 trailing zero bits: n ln2_hi is exact), after Cody
# and Waite; the reduction must stay in that order, so _exp allows contraction only.
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
INV_LN2 = 1.0 / math.log(2.0)
EXP_UNDERFLOW = -708.39  # below: 0 (libm gives subnormals down to -745)
EXP_OVERFLOW = 709.0  # above: inf (libm at 709.78; a model that large squares to inf)


@intrinsic
def _bits_as_float(typingctx, bits):
    """The float64 whose bits are the int64 ``bits``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


if numba.config.DISABLE_JIT:  # the kernel runs as Python (for debugging): no intrinsics

    def _bits_as_float(bits):
        return float(np.int64(bits).view(np.float64))


@_inner(fastmath={"contract"})
def _exp(x):
    """``exp(x)`` within 1.5 ulp (``tests/test_kernel.py``), in arithmetic the compiler
    vectorises over the points: libm's ``exp`` is a call that stops it, several times as
    slow per value (``benchmarks/bench_kernel_cost.py``). ``x = n ln 2 + r``,
    ``|r| <= ln 2 / 2``; ``exp(r)`` by its Taylor polynomial of degree 12 (the next term
    is below 2e-16); ``2^n`` built from its exponent bits."""
    n = math.floor(x * INV_LN2 + 0.5)
    if not (EXP_UNDERFLOW <= x <= EXP_OVERFLOW):
        n = 0.0  # keeps the bits below in range; the value is chosen at the end
    r = (x - n * LN2_HI) - n * LN2_LO
    poly = 1.0 + r * (1.0 + r * (1.0 / 2.0 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (
        1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0 + r * (
            1.0 / 362880.0 + r * (1.0 / 3628800.0 + r * (1.0 / 39916800.0 + r * (
                1.0 / 479001600.0))))))))))))  # fmt: skip
    value = poly * _bits_as_float(np.int64(n + 1023.0) << 52)
    if x < EXP_UNDERFLOW:
        return 0.0
    if x > EXP_OVERFLOW:
        return math.inf
    return value  # NaN stays NaN


# --------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------
@_inner()
def _unpack(theta, layout, chol_index, chol_log, fixed_log_scale, logw, means, U, logdet):
    """Fill the log weights, means, Cholesky factors and their log-determinants; return
    the log scale."""
    K, d = layout[_K], layout[_D]
    fit_scale = layout[_FIT_SCALE]
    log_scale = theta[0] if fit_scale else fixed_log_scale
    off = fit_scale
    peak = 0.0
    for k in range(K - 1):
        peak = max(peak, theta[off + k])
    total = math.exp(-peak)  # the pinned logit 0
    for k in range(K - 1):
        total += math.exp(theta[off + k] - peak)
    log_total = peak + math.log(total)
    for k in range(K - 1):
        logw[k] = theta[off + k] - log_total
    logw[K - 1] = -log_total
    off += K - 1
    for k in range(K):
        for i in range(d):
            means[k, i] = theta[off + k * d + i]
        logdet[k] = 0.0
        for i in range(d):
            for j in range(d):
                index = chol_index[k, i, j]
                if index < 0:
                    U[k, i, j] = 0.0
                elif chol_log[k, i, j]:
                    U[k, i, j] = math.exp(theta[index])
                else:
                    U[k, i, j] = theta[index]
            logdet[k] += math.log(U[k, i, i])
    return log_scale


# --------------------------------------------------------------------------
# one point
# --------------------------------------------------------------------------
@_inner()
def _log_ndtr(x):
    """log Phi(x), accurate in both tails."""
    if x > -30.0:
        return math.log(0.5 * math.erfc(-x * SQRT_HALF))
    # asymptotic series of the Mills ratio (relative error below 2e-12 from -30 down)
    z = x * x
    series = 1.0 - 1.0 / z + 3.0 / (z * z) - 15.0 / (z * z * z) + 105.0 / (z * z * z * z)
    return -0.5 * z - math.log(-x) - 0.5 * LOG_2PI + math.log(series)


@_inner()
def _log_interval(a, b):
    """``log(Phi(b) - Phi(a))`` for ``a < b``, without cancellation in either tail."""
    if a > 0.0:  # both in the upper tail: use the symmetry
        a, b = -b, -a
    log_b = _log_ndtr(b)
    log_a = _log_ndtr(a)
    if log_a >= log_b:
        # a and b so close that the difference is lost: the density times the width
        mid = 0.5 * (a + b)
        return -0.5 * mid * mid - 0.5 * LOG_2PI + math.log(max(b - a, TINY))
    return log_b + math.log1p(-math.exp(log_a - log_b))


# Gauss-Legendre nodes and weights on [0, 1] of the cubature of full and tied components
# over cells in several dimensions (the rule of _cells' "hybrid" reference).
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(6)
_GL_NODES = 0.5 * (_GL_NODES + 1.0)
_GL_WEIGHTS = 0.5 * _GL_WEIGHTS
CUBATURE = 2  # the layout's binned slot for the cubature (1: products of cdf differences)


@_inner(fastmath=FASTMATH)
def _cell_cubature(point, lo, hi, k, d, means, U, g_mean, g_upper, y, delta):
    """``log P_k``, the mass of component ``k`` in cell ``point``, by the hybrid rule: the
    last coordinate integrated exactly (``Phi(b) - Phi(a)`` of the whitened bounds at
    fixed others), the first ``d - 1`` by a tensor Gauss-Legendre rule. Fills
    ``g_mean[i] = d log P / d mu_i`` and ``g_upper[i, j] = d log P / d U_ij`` (work:
    ``y``, ``delta`` of length d)."""
    m = d - 1
    n_gl = _GL_NODES.shape[0]
    n_nodes = n_gl**m
    log_volume = 0.0
    log_det = 0.0
    for i in range(m):
        log_volume += math.log(hi[point, i] - lo[point, i])
        log_det += math.log(U[k, i, i])
    last = d - 1
    u_dd = U[k, last, last]
    low = u_dd * (lo[point, last] - means[k, last])
    high = u_dd * (hi[point, last] - means[k, last])
    # pass 1: the log-sum-exp of the nodes' terms
    peak = -math.inf
    total = 0.0
    for n in range(n_nodes):
        index = n
        log_w = 0.0
        for i in range(m):
            j = index % n_gl
            index //= n_gl
            log_w += math.log(_GL_WEIGHTS[j])
            delta[i] = lo[point, i] + (hi[point, i] - lo[point, i]) * _GL_NODES[j] - means[k, i]
        q = 0.0
        shift = 0.0
        for j in range(m):
            s = 0.0
            for i in range(j + 1):
                s += U[k, i, j] * delta[i]
            q += s * s
        for i in range(m):
            shift += U[k, i, last] * delta[i]
        term = log_w - 0.5 * q + _log_interval(low + shift, high + shift)
        if term > peak:
            total = total * math.exp(peak - term) + 1.0
            peak = term
        else:
            total += math.exp(term - peak)
    log_sum = peak + math.log(total)
    # pass 2: the derivatives, each node weighted by its share of the mass
    for i in range(d):
        g_mean[i] = 0.0
        for j in range(d):
            g_upper[i, j] = 0.0
    for n in range(n_nodes):
        index = n
        log_w = 0.0
        for i in range(m):
            j = index % n_gl
            index //= n_gl
            log_w += math.log(_GL_WEIGHTS[j])
            delta[i] = lo[point, i] + (hi[point, i] - lo[point, i]) * _GL_NODES[j] - means[k, i]
        q = 0.0
        shift = 0.0
        for j in range(m):
            s = 0.0
            for i in range(j + 1):
                s += U[k, i, j] * delta[i]
            y[j] = s
            q += s * s
        for i in range(m):
            shift += U[k, i, last] * delta[i]
        a_n, b_n = low + shift, high + shift
        log_interval = _log_interval(a_n, b_n)
        share = math.exp(log_w - 0.5 * q + log_interval - log_sum)
        if share == 0.0:
            continue
        g_a = -math.exp(-0.5 * a_n * a_n - 0.5 * LOG_2PI - log_interval)
        g_b = math.exp(-0.5 * b_n * b_n - 0.5 * LOG_2PI - log_interval)
        g = g_a + g_b
        for i in range(m):
            s = 0.0
            for j in range(i, m):
                s += U[k, i, j] * y[j]
            g_mean[i] += share * (s - g * U[k, i, last])
            for j in range(i, m):
                value = -y[j] * delta[i]
                if i == j:
                    value += 1.0 / U[k, i, i]
                g_upper[i, j] += share * value
            g_upper[i, last] += share * g * delta[i]
        g_mean[last] -= share * g * u_dd
        g_upper[last, last] += share * (
            g_a * (lo[point, last] - means[k, last]) + g_b * (hi[point, last] - means[k, last])
        )
    return log_sum + log_volume + log_det - 0.5 * m * LOG_2PI


@_inner(fastmath=FASTMATH)
def _cell_log_densities(point, lo, hi, K, d, const, means, U, a, diff, z, mass, g_upper, binned):
    """Fill ``a[k] = log w_k + log P_k(cell) - log vol`` for the cell of point ``point``,
    ``const[k]`` being ``log w_k``, and the per-component work: the per-axis standardised
    bounds in ``diff`` (lower) and ``z`` (upper), and the log of each axis's mass in
    ``mass``; under the cubature (full and tied components in several dimensions), the
    derivatives of ``log P_k`` in ``diff`` (means) and ``g_upper[i, k, j]`` (``U_ij``)."""
    if binned == CUBATURE:
        for k in range(K):
            log_mass = _cell_cubature(
                point, lo, hi, k, d, means, U, diff[k], g_upper[:, k, :], z[k], mass[k]
            )
            log_volume = 0.0
            for i in range(d):
                log_volume += math.log(hi[point, i] - lo[point, i])
            a[k] = const[k] + log_mass - log_volume
    elif binned:
        for k in range(K):
            value = const[k]
            for i in range(d):
                scale = U[k, i, i]  # axis-aligned: 1 / sd along axis i
                lower = (lo[point, i] - means[k, i]) * scale
                upper = (hi[point, i] - means[k, i]) * scale
                diff[k, i] = lower
                z[k, i] = upper
                mass[k, i] = _log_interval(lower, upper)
                value += mass[k, i] - math.log(hi[point, i] - lo[point, i])
            a[k] = value


# inlined where it is called: a call for every point costs more than its arithmetic
@_inner(fastmath=FASTMATH, inline="always")
def _point_log_densities(point, X, K, d, const, means, U, a, diff, z):
    """Fill ``a[k] = log w_k + log N_k(x)`` at the point ``point``, ``const[k]`` being
    ``log w_k + log det U_k - d log(2 pi) / 2``, and the per-component work ``diff``
    (x - mu) and ``z`` (U^T diff)."""
    for k in range(K):
        q = 0.0
        for i in range(d):
            diff[k, i] = X[point, i] - means[k, i]
        for j in range(d):
            s = 0.0
            for i in range(j + 1):
                s += U[k, i, j] * diff[k, i]
            z[k, j] = s
            q += s * s
        a[k] = const[k] - 0.5 * q


@_inner(fastmath=FASTMATH)
def _background_value(theta, basis, point, p, J, exponential):
    """The background at point ``point``: ``basis @ c``, or ``c exp(r v)``."""
    if exponential:
        return theta[p - 2] * math.exp(theta[p - 1] * basis[point, 0])
    value = 0.0
    for j in range(J):
        value += theta[p - J + j] * basis[point, j]
    return value


@_inner(fastmath=FASTMATH)
def _background_jacobian(theta, basis, point, p, J, exponential, jv):
    """The background's derivatives at point ``point`` into the last ``J`` entries of ``jv``."""
    if exponential:
        e = math.exp(theta[p - 1] * basis[point, 0])
        jv[p - 2] = e
        jv[p - 1] = theta[p - 2] * basis[point, 0] * e
        return
    for j in range(J):
        jv[p - J + j] = basis[point, j]


@_inner(fastmath=FASTMATH)
def _point_jacobian(
    f, rho, w, point, theta, basis, K, d, p, J, exponential, fit_scale, chol_index, chol_log,
    U, diff, z, mass, g_upper, jv, binned,
):  # fmt: skip
    """``jv = d model / d theta`` at the point ``point``, the mixture's value being ``f``,
    its weights ``w`` and responsibilities ``rho``."""
    off = 0
    if fit_scale:
        jv[0] = f
        off = 1
    for k in range(K - 1):
        jv[off + k] = f * (rho[k] - w[k])
    off += K - 1
    for m in range(off, p - J):
        jv[m] = 0.0
    for k in range(K):
        fr = f * rho[k]
        if fr == 0.0:
            continue
        if binned == CUBATURE:
            for i in range(d):
                jv[off + k * d + i] += fr * diff[k, i]
                for j in range(i, d):
                    index = chol_index[k, i, j]
                    if index < 0:
                        continue
                    value = g_upper[i, k, j]
                    if chol_log[k, i, j]:
                        value *= U[k, i, j]
                    jv[index] += fr * value
        elif binned:
            # log P = sum_i log(Phi(b_i) - Phi(a_i)), a_i = (lo_i - mu_i) s_i, s_i = U_ii
            for i in range(d):
                lower, upper = diff[k, i], z[k, i]
                log_mass = mass[k, i]
                pdf_lower = math.exp(-0.5 * lower * lower - 0.5 * LOG_2PI - log_mass)
                pdf_upper = math.exp(-0.5 * upper * upper - 0.5 * LOG_2PI - log_mass)
                scale = U[k, i, i]
                # d log P / d mu_i and d log P / d s_i
                jv[off + k * d + i] += fr * (pdf_lower - pdf_upper) * scale
                dscale = (upper * pdf_upper - lower * pdf_lower) / scale
                index = chol_index[k, i, i]
                jv[index] += fr * dscale * (scale if chol_log[k, i, i] else 1.0)
        elif d == 1:
            t = z[k, 0]
            jv[off + k] += fr * U[k, 0, 0] * t
            index = chol_index[k, 0, 0]
            if chol_log[k, 0, 0]:  # (1 / U - t diff) U
                jv[index] += fr * (1.0 - t * t)
            else:
                jv[index] += fr * (1.0 / U[k, 0, 0] - t * diff[k, 0])
        else:
            for i in range(d):
                s = 0.0
                for j in range(i, d):
                    s += U[k, i, j] * z[k, j]
                jv[off + k * d + i] += fr * s
            for i in range(d):
                for j in range(i, d):
                    index = chol_index[k, i, j]
                    if index < 0:
                        continue
                    value = -z[k, j] * diff[k, i]
                    if i == j:
                        value += 1.0 / U[k, i, i]
                    if chol_log[k, i, j]:
                        value *= U[k, i, j]
                    jv[index] += fr * value
    _background_jacobian(theta, basis, point, p, J, exponential, jv)


# --------------------------------------------------------------------------
# one evaluation of one row
# --------------------------------------------------------------------------
@_inner(fastmath=FASTMATH)
def _loss_term(loss_kind, log_space, weight, y_point, value, log_f):
    """A point's weighted loss: squared error, or the Poisson ``value - y log value``
    (``log_f`` the mixture's log when ``log_space``: it may underflow); infinite for a
    Poisson model below 0, or at 0 where something was counted (nothing expected and
    nothing counted: 0)."""
    if loss_kind == 0:
        residual = y_point - value
        return weight * residual * residual
    if log_space:
        log_value = log_f
    elif value > 0.0:
        log_value = math.log(value)
    elif value == 0.0 and y_point == 0.0:
        log_value = 0.0
    else:
        return math.inf
    return weight * (value - y_point * log_value)


@_inner(fastmath=FASTMATH)
def _add_point(loss_kind, log_space, weight, y_point, value, f, jv, grad, H, p):
    """A point's gradient ``g jv`` and Gauss-Newton matrix ``curvature jv jv^T`` (lower
    triangle) added to ``grad`` and ``H``; in ``log_space`` ``jv`` is ``d log f``."""
    if loss_kind == 0:
        g = -2.0 * weight * (y_point - value)
        curvature = 2.0 * weight
    elif log_space:
        g = weight * (f - y_point)
        curvature = weight * f
    elif value > 0.0:
        g = weight * (1.0 - y_point / value)
        curvature = weight / max(value, MIN_POISSON_CURVATURE_VALUE)
    else:
        g = weight
        curvature = 0.0
    for m in range(p):
        grad[m] += g * jv[m]
        cm = curvature * jv[m]
        for c in range(m + 1):
            H[m, c] += cm * jv[c]


@_inner(fastmath=FASTMATH)
def evaluate(
    theta,
    X,
    lo,
    hi,
    y,
    q,
    basis,
    layout,
    chol_index,
    chol_log,
    fixed_log_scale,
    normaliser,
    constant,
    grad,
    H,
    model,
    work_k,
    work_kd,
    U,
    jv,
    block,
):
    """The loss of ``theta`` (inf if not finite), and (when ``grad`` has length p, not 0)
    its gradient ``grad`` and Gauss-Newton matrix ``H``; ``model`` (length n or 0)
    receives the model of every value. (Whether to differentiate is read from the arrays,
    not passed as a flag: numba would compile the function once for each literal.) Work
    arrays: ``work_k`` (5, K), ``work_kd`` (4 + d, K, d), ``U`` (K, d, d), ``jv`` (p,),
    ``block`` (p + 3 + 2 d, BLOCK)."""
    K, d, p, J = layout[_K], layout[_D], layout[_P], layout[_J]
    loss_kind, binned, fit_scale = layout[_LOSS], layout[_BINNED], layout[_FIT_SCALE]
    derivatives = grad.shape[0] > 0
    exponential = layout[_EXPONENTIAL]
    logw, a, rho, const, w = work_k[0], work_k[1], work_k[2], work_k[3], work_k[4]
    means, diff, z, mass = work_kd[0], work_kd[1], work_kd[2], work_kd[3]
    g_upper = work_kd[4:]
    log_scale = _unpack(theta, layout, chol_index, chol_log, fixed_log_scale, logw, means, U, const)
    for k in range(K):
        w[k] = math.exp(logw[k])
        # const held log det U_k: the per-point terms that do not change
        const[k] = logw[k] if binned else logw[k] + const[k] - 0.5 * d * LOG_2PI
    if derivatives:
        for m in range(p):
            grad[m] = 0.0
            for c in range(p):
                H[m, c] = 0.0
    if not binned and loss_kind == 0:
        total = _l2_points(
            theta, X, y, q, basis, K, d, p, J, exponential, fit_scale, chol_index, chol_log,
            log_scale, const, w, means, U, diff, z, derivatives, grad, H, model, jv, block,
        )  # fmt: skip
        return _finish(total, constant, normaliser, derivatives, grad, H, p)
    if d == 1 and not binned:
        total = _points_1d(
            theta, X, y, q, basis, K, p, J, exponential, fit_scale, loss_kind, chol_index,
            log_scale, const, w, means, U, a, rho, z, derivatives, grad, H, model, jv,
        )  # fmt: skip
        return _finish(total, constant, normaliser, derivatives, grad, H, p)
    n = y.shape[0]
    with_model = model.shape[0] > 0
    # the Poisson loss of a mixture alone in log space (the model may underflow):
    # jv holds d log f / d theta and the loss's factors take f's place
    log_space = loss_kind == 1 and J == 0
    total = 0.0
    for point in range(n):
        if binned:
            _cell_log_densities(
                point, lo, hi, K, d, const, means, U, a, diff, z, mass, g_upper, binned
            )
        else:
            _point_log_densities(point, X, K, d, const, means, U, a, diff, z)
        peak = a[0]
        for k in range(1, K):
            peak = max(peak, a[k])
        s = 0.0
        for k in range(K):
            rho[k] = math.exp(a[k] - peak)
            s += rho[k]
        f = math.exp(log_scale + peak) * s
        log_f = log_scale + peak + math.log(s) if log_space else 0.0
        value = f + _background_value(theta, basis, point, p, J, exponential)
        if with_model:
            model[point] = value
        weight = q[point]
        term = _loss_term(loss_kind, log_space, weight, y[point], value, log_f)
        if term == math.inf:
            return math.inf
        total += term
        if not derivatives or weight == 0.0:
            continue
        for k in range(K):
            rho[k] /= s
        factor = 1.0 if log_space else f
        _point_jacobian(
            factor, rho, w, point, theta, basis, K, d, p, J, exponential, fit_scale,
            chol_index, chol_log, U, diff, z, mass, g_upper, jv, binned,
        )  # fmt: skip
        _add_point(loss_kind, log_space, weight, y[point], value, f, jv, grad, H, p)
    return _finish(total, constant, normaliser, derivatives, grad, H, p)


@_inner(fastmath=FASTMATH)
def _finish(total, constant, normaliser, derivatives, grad, H, p):
    """The sums of the points over the normaliser; the matrix made symmetric."""
    total = (total + constant) / normaliser
    if not math.isfinite(total):
        return math.inf
    if derivatives:
        for m in range(p):
            grad[m] /= normaliser
            if not math.isfinite(grad[m]):
                return math.inf
            for c in range(m + 1):
                H[m, c] /= normaliser
                H[c, m] = H[m, c]
    return total


@_inner(fastmath=FASTMATH)
def _block_terms(X, start, size, k, d, c, means, U, block, X0, Z0, e_row):
    """Component ``k``'s terms ``exp(c - |z|^2 / 2)``, ``z = U_k^T (x - mean_k)``, at the
    block's points ``start .. start + size - 1`` into ``e_row``; ``z`` into the rows
    ``Z0 ..`` of ``block``. The points' coordinates are the rows ``X0 ..``, copied there
    when ``k`` is 0. Rows, not points, are the inner loops: unit strides, which the
    compiler vectorises (the exps included)."""
    if k == 0:
        for a in range(d):
            x_row = block[X0 + a]
            for i in range(size):
                x_row[i] = X[start + i, a]
    for i in range(size):
        e_row[i] = 0.0
    for b in range(d):
        z_row = block[Z0 + b]
        for i in range(size):
            z_row[i] = 0.0
        for a in range(b + 1):
            x_row, u, mean = block[X0 + a], U[k, a, b], means[k, a]
            for i in range(size):
                z_row[i] += u * (x_row[i] - mean)
        for i in range(size):
            e_row[i] += z_row[i] * z_row[i]
    for i in range(size):
        e_row[i] = _exp(c - 0.5 * e_row[i])


@_inner(fastmath=FASTMATH)
def _l2_points(
    theta, X, y, q, basis, K, d, p, J, exponential, fit_scale, chol_index, chol_log,
    log_scale, const, w, means, U, diff, z, derivatives, grad, H, model, jv, block,
):  # fmt: skip
    """:func:`evaluate`'s sums over the points for the l2 loss (no cells), ``BLOCK``
    points at a time. Each component's term ``e_k = scale w_k N_k(x)`` is taken directly
    (l2 needs no log of the model, and where every term underflows no derivative has
    anything to add); the block's Jacobian goes to the rows ``0 .. p - 1`` of ``block``
    (:func:`_l2_block`). Returns the loss's sum; fills the gradient and the matrix's
    lower triangle."""
    n = y.shape[0]
    first_mean = fit_scale + K - 1
    G, C, F, X0, Z0 = p, p + 1, p + 2, p + 3, p + 3 + d
    total = 0.0
    for start in range(0, n, BLOCK):
        size = min(BLOCK, n - start)
        for i in range(size):
            block[F, i] = 0.0
        if derivatives:
            for m in range(first_mean + K * d, p - J):  # the precisions' rows (shared if tied)
                for i in range(size):
                    block[m, i] = 0.0
        for k in range(K):
            c = const[k] + log_scale
            # d f / d logit_k = e_k - f w_k (f w_k taken off in _l2_block); the last
            # component has no logit: its e_k goes to row G, which is written over there
            weight_row = fit_scale + k if k < K - 1 else G
            if d == 1:
                # the Jacobian's rows are written in a loss-only pass too (and not read): one
                # loop for both passes, so that a loss is the same bits in both
                mean, u = means[k, 0], U[k, 0, 0]
                # rows of their own and the points in row C (free until _l2_block): unit
                # strides, which the compiler vectorises
                x, f_row, w_row = block[C], block[F], block[weight_row]
                mean_row, precision_row = block[first_mean + k], block[chol_index[k, 0, 0]]
                if k == 0:
                    for i in range(size):
                        x[i] = X[start + i, 0]
                for i in range(size):
                    t = (x[i] - mean) * u
                    e = _exp(c - 0.5 * t * t)
                    f_row[i] += e
                    w_row[i] = e
                    mean_row[i] = e * u * t
                    precision_row[i] += e * (1.0 - t * t)  # the log of U
                continue
            # d > 1: the terms, then the derivatives, from the rows of _block_terms
            e_row, f_row = block[weight_row], block[F]
            _block_terms(X, start, size, k, d, c, means, U, block, X0, Z0, e_row)
            for i in range(size):
                f_row[i] += e_row[i]
            if not derivatives:
                continue
            for a in range(d):  # d f / d mean = e U z
                mean_row = block[first_mean + k * d + a]
                for i in range(size):
                    mean_row[i] = 0.0
                for b in range(a, d):
                    z_row, u = block[Z0 + b], U[k, a, b]
                    for i in range(size):
                        mean_row[i] += u * z_row[i]
                for i in range(size):
                    mean_row[i] *= e_row[i]
            for a in range(d):  # d f / d U_ab = e (delta_ab / U_aa - z_b (x_a - mean_a))
                x_row, mean = block[X0 + a], means[k, a]
                for b in range(a, d):
                    index = chol_index[k, a, b]
                    if index < 0:
                        continue
                    z_row, target = block[Z0 + b], block[index]
                    diagonal = 1.0 / U[k, a, a] if a == b else 0.0
                    factor = U[k, a, b] if chol_log[k, a, b] else 1.0  # the log of U_ab
                    for i in range(size):
                        target[i] += e_row[i] * factor * (diagonal - z_row[i] * (x_row[i] - mean))
        total += _l2_block(
            theta, y, q, basis, K, p, J, exponential, fit_scale, w, start, size,
            derivatives, grad, H, model, jv, block,
        )  # fmt: skip
    return total


@_inner(fastmath=FASTMATH)
def _l2_block(
    theta, y, q, basis, K, p, J, exponential, fit_scale, w, start, size, derivatives, grad,
    H, model, jv, block,
):  # fmt: skip
    """A block's loss, from the mixture's values in row ``p + 2`` of ``block``; with
    ``derivatives``, its Jacobian completed (the scale, the weights' ``- f w_k``, the
    background), then its gradient and matrix added as sums over the block's points
    (which the compiler vectorises)."""
    G, C, F = p, p + 1, p + 2
    f_row, g_row, c_row = block[F], block[G], block[C]
    if derivatives:  # from the mixture's values alone, before the background joins them
        if fit_scale:
            scale_row = block[0]
            for i in range(size):
                scale_row[i] = f_row[i]
        for k in range(K - 1):
            weight_row, wk = block[fit_scale + k], w[k]
            for i in range(size):
                weight_row[i] -= f_row[i] * wk
    if J > 0:
        for i in range(size):
            f_row[i] += _background_value(theta, basis, start + i, p, J, exponential)
            if derivatives:
                _background_jacobian(theta, basis, start + i, p, J, exponential, jv)
                for m in range(p - J, p):
                    block[m, i] = jv[m]
    residual = block[p + 3]  # free: the points' coordinates are used up
    for i in range(size):  # the factors of the sums are written in a loss-only pass too
        point = start + i
        residual[i] = y[point] - f_row[i]
        g_row[i] = -2.0 * q[point] * residual[i]
        c_row[i] = 2.0 * q[point]
    total = 0.0
    for i in range(size):  # a sum alone in its loop: no stores, so one vectorised path
        total += c_row[i] * residual[i] * residual[i]
    total *= 0.5
    if model.shape[0] > 0:
        for i in range(size):
            model[start + i] = f_row[i]
    if derivatives:
        cm_row = block[p + 4]  # free too: c_row times the row m, once for its sums
        for m in range(p):
            m_row = block[m]
            s = 0.0
            for i in range(size):
                s += g_row[i] * m_row[i]
            grad[m] += s
            for i in range(size):
                cm_row[i] = c_row[i] * m_row[i]
            for c in range(m + 1):
                other = block[c]
                s = 0.0
                for i in range(size):
                    s += cm_row[i] * other[i]
                H[m, c] += s
    return total


@_inner(fastmath=FASTMATH)
def _points_1d(
    theta, X, y, q, basis, K, p, J, exponential, fit_scale, loss_kind, chol_index, log_scale,
    const, w, means, U, a, rho, t, derivatives, grad, H, model, jv,
):  # fmt: skip
    """:func:`evaluate`'s sums over the points of a 1-D grid (every covariance type has
    one precision a component there): the same arithmetic without the loops over axes.
    Returns the loss's sum; fills the gradient's and the matrix's lower triangle."""
    n = y.shape[0]
    with_model = model.shape[0] > 0
    log_space = loss_kind == 1 and J == 0
    first_mean = fit_scale + K - 1
    total = 0.0
    for point in range(n):
        x = X[point, 0]
        peak = -math.inf
        for k in range(K):
            tk = (x - means[k, 0]) * U[k, 0, 0]
            t[k, 0] = tk
            ak = const[k] - 0.5 * tk * tk
            a[k] = ak
            peak = max(peak, ak)
        s = 0.0
        for k in range(K):
            r = math.exp(a[k] - peak)
            rho[k] = r
            s += r
        f = math.exp(log_scale + peak) * s
        value = f + _background_value(theta, basis, point, p, J, exponential)
        if with_model:
            model[point] = value
        weight = q[point]
        log_f = log_scale + peak + math.log(s) if log_space else 0.0
        term = _loss_term(loss_kind, log_space, weight, y[point], value, log_f)
        if term == math.inf:
            return math.inf
        total += term
        if not derivatives or weight == 0.0:
            continue
        factor = (1.0 if log_space else f) / s
        if fit_scale:
            jv[0] = factor * s
        for k in range(K - 1):
            jv[fit_scale + k] = factor * s * (rho[k] / s - w[k])
        for m in range(first_mean + K, p - J):
            jv[m] = 0.0
        for k in range(K):
            fr = factor * rho[k]
            tk = t[k, 0]
            jv[first_mean + k] = fr * U[k, 0, 0] * tk
            jv[chol_index[k, 0, 0]] += fr * (1.0 - tk * tk)  # the log of U
        _background_jacobian(theta, basis, point, p, J, exponential, jv)
        _add_point(loss_kind, log_space, weight, y[point], value, f, jv, grad, H, p)
    return total


# --------------------------------------------------------------------------
# Levenberg-Marquardt on one row
# --------------------------------------------------------------------------
@_inner()
def _projected_gradient(theta, grad, lower, upper):
    largest = 0.0
    for m in range(theta.shape[0]):
        moved = min(max(theta[m] - grad[m], lower[m]), upper[m]) - theta[m]
        largest = max(largest, abs(moved))
    return largest


@_inner()
def _damped_step(theta, grad, H, scaling, damping, lower, upper, free, L, step, candidate):
    """``candidate = clip(theta + step)``, ``(H + damping diag(scaling)) step = -grad``
    on the free variables; False if that system is not positive definite."""
    p = theta.shape[0]
    for m in range(p):
        for c in range(m + 1):
            if free[m] and free[c]:
                L[m, c] = H[m, c] + (damping * scaling[m] if m == c else 0.0)
            else:
                L[m, c] = 1.0 if m == c else 0.0
    # Cholesky, in place in the lower triangle
    for m in range(p):
        s = L[m, m]
        for c in range(m):
            s -= L[m, c] * L[m, c]
        if not s > 0.0:
            return False
        L[m, m] = math.sqrt(s)
        for r in range(m + 1, p):
            t = L[r, m]
            for c in range(m):
                t -= L[r, c] * L[m, c]
            L[r, m] = t / L[m, m]
    for m in range(p):  # forward
        t = -grad[m] if free[m] else 0.0
        for c in range(m):
            t -= L[m, c] * step[c]
        step[m] = t / L[m, m]
    for m in range(p - 1, -1, -1):  # backward
        t = step[m]
        for c in range(m + 1, p):
            t -= L[c, m] * step[c]
        step[m] = t / L[m, m]
    for m in range(p):
        if not free[m]:
            step[m] = 0.0
        candidate[m] = min(max(theta[m] + step[m], lower[m]), upper[m])
        step[m] = candidate[m] - theta[m]
    return True


@_inner()
def _free_variables(theta, grad, lower, upper, free):
    """``free``: the variables no bound holds (at a bound with the gradient pointing out)."""
    for m in range(theta.shape[0]):
        free[m] = not (
            (theta[m] <= lower[m] and grad[m] > 0.0) or (theta[m] >= upper[m] and grad[m] < 0.0)
        )


@_inner()
def _newton_gain(theta, grad, H, scaling, lower, upper, free, L, step, candidate):
    """The decrease the quadratic model predicts for the (barely damped) Gauss-Newton
    step from ``theta`` within the bounds; 0 where its system is not positive definite.
    Writes ``step`` and ``candidate``."""
    if not _damped_step(theta, grad, H, scaling, 1e-12, lower, upper, free, L, step, candidate):
        return 0.0
    gain = 0.0
    for m in range(theta.shape[0]):
        hs = 0.0
        for c in range(theta.shape[0]):
            hs += H[m, c] * step[c]
        gain -= grad[m] * step[m] + 0.5 * step[m] * hs
    return gain


@_inner()
def lm_row(
    theta,
    X,
    lo,
    hi,
    y,
    q,
    basis,
    layout,
    chol_index,
    chol_log,
    fixed_log_scale,
    normaliser,
    constant,
    lower,
    upper,
    tol,
    ftol,
    max_iter,
    grad,
    H,
    candidate,
    grad_new,
    H_new,
    step,
    scaling,
    free,
    L,
    work_k,
    work_kd,
    U,
    jv,
    block,
    no_model,
):
    """Levenberg-Marquardt from ``theta`` (modified in place) within ``[lower, upper]``.

    Each iteration solves ``(H + lambda D) step = -grad`` on the variables no
    bound holds, ``D`` the largest diagonal of ``H`` seen so far (More's
    scaling), and adapts ``lambda`` to how well the quadratic model predicted
    the decrease. Stops at a projected gradient of at most ``tol``, a
    relative decrease below ``ftol``, no decrease left, or ``max_iter``.
    Returns ``(loss, n_iter, status)``.
    """
    p = theta.shape[0]
    for m in range(p):
        candidate[m] = min(max(theta[m], lower[m]), upper[m])
    # one call of evaluate (the compiler inlines each call: one is half the compiling);
    # the first evaluation is the start's, the others a trial step's
    starting = True
    value = math.inf
    damping = INITIAL_DAMPING
    n_iter = 0
    predicted = math.inf
    no_gain = 0.0
    while True:
        new_value = evaluate(
            candidate, X, lo, hi, y, q, basis, layout, chol_index, chol_log,
            fixed_log_scale, normaliser, constant, grad_new, H_new, no_model,
            work_k, work_kd, U, jv, block,
        )  # fmt: skip
        if starting:
            for m in range(p):
                theta[m] = candidate[m]
            if not math.isfinite(new_value):
                return math.inf, 0, NOT_FINITE
            for m in range(p):
                grad[m] = grad_new[m]
                for c in range(p):
                    H[m, c] = H_new[m, c]
                scaling[m] = max(H[m, m], TINY)
            value = new_value
            starting = False
            accepted = True
        else:
            actual = value - new_value
            accepted = predicted > 0.0 and actual > 0.0
            if accepted:
                ratio = actual / predicted
                damping *= max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
                n_iter += 1
                largest_step = 0.0
                for m in range(p):
                    largest_step = max(largest_step, abs(step[m]))
                    theta[m] = candidate[m]
                    grad[m] = grad_new[m]
                    for c in range(p):
                        H[m, c] = H_new[m, c]
                    scaling[m] = max(scaling[m], H[m, m])
                value = new_value
                if actual <= no_gain and largest_step <= NO_GAIN:
                    return value, n_iter, NO_DECREASE
                # a gain below ftol stops the run; with the Poisson loss only where the
                # Gauss-Newton step predicts no large decrease either: after heavy damping
                # a short step gains little far from the optimum (a coarse histogram of 1e5
                # counts stopped there; l2 fits of nearly noise-free lines continued that
                # way over-fitted them)
                if actual <= ftol * value:
                    if layout[_LOSS] == 0:
                        return value, n_iter, FTOL
                    _free_variables(theta, grad, lower, upper, free)
                    gain = _newton_gain(
                        theta, grad, H, scaling, lower, upper, free, L, step, candidate
                    )
                    if gain <= FAR_FROM_OPTIMUM * value:
                        return value, n_iter, FTOL
            elif predicted <= no_gain and abs(actual) <= no_gain:
                return value, n_iter + 1, NO_DECREASE
            else:
                damping *= 4.0
        if accepted:  # a new iteration
            if _projected_gradient(theta, grad, lower, upper) <= tol:
                return value, n_iter, CONVERGED
            if n_iter >= max_iter:
                return value, n_iter, MAX_ITER
            _free_variables(theta, grad, lower, upper, free)
            no_gain = NO_GAIN * max(value, 1.0)
            predicted = math.inf
        # the next trial step, damped until its system is positive definite
        while damping < MAX_DAMPING and not _damped_step(
            theta, grad, H, scaling, damping, lower, upper, free, L, step, candidate
        ):
            damping *= 10.0
        if damping >= MAX_DAMPING:
            return value, n_iter + 1, NO_DECREASE if predicted <= no_gain else LOST
        predicted = 0.0
        for m in range(p):
            hs = 0.0
            for c in range(p):
                hs += H[m, c] * step[c]
            predicted -= grad[m] * step[m] + 0.5 * step[m] * hs


# --------------------------------------------------------------------------
# many rows
# --------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def fit_rows(
    first,
    last,
    thetas,
    density,
    X,
    lo,
    hi,
    Y,
    Q,
    basis,
    layout,
    chol_index,
    chol_log,
    fixed_log_scale,
    normaliser,
    constant,
    tolerance,
    lower,
    upper,
    tol,
    ftol,
    max_iters,
    losses,
    n_iters,
    statuses,
):
    """Levenberg-Marquardt on rows ``first .. last - 1`` of ``thetas`` (modified in
    place): row ``r`` fits density ``density[r]`` (row ``density[r]`` of ``Y``, of ``Q``
    if it has more than one row, and of the per-density ``fixed_log_scale``,
    ``normaliser``, ``constant`` and ``tolerance``, the factor of ``tol`` its gradient
    test takes) in at most ``max_iters[r]`` iterations. Fills ``losses``, ``n_iters`` and
    ``statuses``."""
    p = thetas.shape[1]
    K, d = layout[_K], layout[_D]
    shared_q = Q.shape[0] == 1
    no_model = np.empty(0)
    grad = np.empty(p)
    H = np.empty((p, p))
    candidate = np.empty(p)
    grad_new = np.empty(p)
    H_new = np.empty((p, p))
    step = np.empty(p)
    scaling = np.empty(p)
    free = np.empty(p, dtype=np.bool_)
    L = np.empty((p, p))
    work_k = np.empty((5, K))
    work_kd = np.empty((4 + d, K, d))
    U = np.empty((K, d, d))
    jv = np.empty(p)
    block = np.empty((p + 3 + 2 * d, BLOCK))
    for r in range(first, last):
        i = density[r]
        q = Q[0] if shared_q else Q[i]
        losses[r], n_iters[r], statuses[r] = lm_row(
            thetas[r], X, lo, hi, Y[i], q, basis, layout,
            chol_index, chol_log, fixed_log_scale[i], normaliser[i], constant[i], lower,
            upper, tol * tolerance[i], ftol, max_iters[r], grad, H, candidate, grad_new,
            H_new, step, scaling,
            free, L, work_k, work_kd, U, jv, block, no_model,
        )  # fmt: skip


@njit(cache=True, nogil=True)
def evaluate_rows(
    first,
    last,
    thetas,
    density,
    X,
    lo,
    hi,
    Y,
    Q,
    basis,
    layout,
    chol_index,
    chol_log,
    fixed_log_scale,
    normaliser,
    constant,
    losses,
    models,
    curvatures,
    gradients,
):
    """The loss of rows ``first .. last - 1`` (``losses``); if ``models`` has a row per
    row, the model of every value of its density; if ``curvatures`` ``(R, p, p)`` does,
    the Gauss-Newton matrix, and then if ``gradients`` ``(R, p)`` does, the gradient."""
    R, p = thetas.shape
    K, d = layout[_K], layout[_D]
    shared_q = Q.shape[0] == 1
    want_model = models.shape[0] == R
    want_curvature = curvatures.shape[0] == R
    want_gradient = want_curvature and gradients.shape[0] == R
    grad = np.empty(p if want_curvature else 0)
    no_curvature = np.empty((0, 0))
    no_model = np.empty(0)
    work_k = np.empty((5, K))
    work_kd = np.empty((4 + d, K, d))
    U = np.empty((K, d, d))
    jv = np.empty(p)
    block = np.empty((p + 3 + 2 * d, BLOCK))
    for r in range(first, last):
        i = density[r]
        q = Q[0] if shared_q else Q[i]
        losses[r] = evaluate(
            thetas[r], X, lo, hi, Y[i], q, basis, layout, chol_index, chol_log,
            fixed_log_scale[i], normaliser[i], constant[i], grad,
            curvatures[r] if want_curvature else no_curvature,
            models[r] if want_model else no_model, work_k, work_kd, U, jv, block,
        )  # fmt: skip
        if want_gradient:
            for m in range(p):
                gradients[r, m] = grad[m]


@njit(cache=True, nogil=True)
def jacobian_rows(
    first, last, thetas, density, X, lo, hi, basis, layout, chol_index, chol_log,
    fixed_log_scale, out,
):  # fmt: skip
    """The model's Jacobian (:func:`jacobian`) of rows ``first .. last - 1`` of ``thetas``
    into ``out`` ``(R, n, p)``; row ``r`` is of density ``density[r]``."""
    for r in range(first, last):
        jacobian(
            thetas[r], X, lo, hi, basis, layout, chol_index, chol_log,
            fixed_log_scale[density[r]], out[r],
        )  # fmt: skip


@_inner(fastmath=FASTMATH)
def jacobian(theta, X, lo, hi, basis, layout, chol_index, chol_log, fixed_log_scale, out):
    """``out[i] = d model_i / d theta`` ``(n, p)``: the model's Jacobian at every point
    (for the leverages of a fit)."""
    K, d, p, J = layout[_K], layout[_D], layout[_P], layout[_J]
    binned, fit_scale = layout[_BINNED], layout[_FIT_SCALE]
    exponential = layout[_EXPONENTIAL]
    work_k = np.empty((5, K))
    work_kd = np.empty((4 + d, K, d))
    U = np.empty((K, d, d))
    jv = np.empty(p)
    logw, a, rho, const, w = work_k[0], work_k[1], work_k[2], work_k[3], work_k[4]
    means, diff, z, mass = work_kd[0], work_kd[1], work_kd[2], work_kd[3]
    g_upper = work_kd[4:]
    log_scale = _unpack(theta, layout, chol_index, chol_log, fixed_log_scale, logw, means, U, const)
    for k in range(K):
        w[k] = math.exp(logw[k])
        const[k] = logw[k] if binned else logw[k] + const[k] - 0.5 * d * LOG_2PI
    for point in range(X.shape[0]):
        if binned:
            _cell_log_densities(
                point, lo, hi, K, d, const, means, U, a, diff, z, mass, g_upper, binned
            )
        else:
            _point_log_densities(point, X, K, d, const, means, U, a, diff, z)
        peak = a[0]
        for k in range(1, K):
            peak = max(peak, a[k])
        s = 0.0
        for k in range(K):
            rho[k] = math.exp(a[k] - peak)
            s += rho[k]
        for k in range(K):
            rho[k] /= s
        f = math.exp(log_scale + peak) * s
        _point_jacobian(
            f, rho, w, point, theta, basis, K, d, p, J, exponential, fit_scale, chol_index,
            chol_log, U, diff, z, mass, g_upper, jv, binned,
        )  # fmt: skip
        for m in range(p):
            out[point, m] = jv[m]


# --------------------------------------------------------------------------
# starts: greedy peaks, matched-filter bumps
# --------------------------------------------------------------------------
@_inner(fastmath=FASTMATH)
def _best_bump(residual, q, r2, widths, gains):
    """The isotropic Gaussian bump centred on a point that explains most of ``residual``
    (weighted by ``q``; ``r2`` the squared distances from that point): ``(width,
    height)`` among ``widths``. Points beyond 20 (width squared) of it are left out."""
    n = r2.shape[0]
    best_gain, best_width, best_height = -1.0, widths[0], 0.0
    for w in range(widths.shape[0]):
        inv = 0.5 / (widths[w] * widths[w])
        fit = 0.0
        norm = 0.0
        for point in range(n):  # every point, and a select: the loop vectorises
            inside = r2[point] * inv <= 20.0
            g = _exp(-r2[point] * inv)
            fit += q[point] * residual[point] * g if inside else 0.0
            norm += q[point] * g * g if inside else 0.0
        gain = fit * fit / norm if norm > 0.0 and fit > 0.0 else 0.0
        gains[w] = gain
        if gain > best_gain:
            best_gain, best_width, best_height = gain, widths[w], fit / norm if norm > 0 else 0.0
    return best_width, best_height


@_inner(fastmath=FASTMATH)
def _peaks_row(X, y, q, widths, means, sds, heights, residual, r2, gains):
    """Greedy peaks of one density: the highest point of what is left, the bump there
    that explains most of it, subtracted; ``K = means.shape[0]`` times."""
    n, d = X.shape
    for point in range(n):
        residual[point] = y[point] if q[point] > 0.0 else -math.inf
    for k in range(means.shape[0]):
        centre = 0
        for point in range(1, n):
            if residual[point] > residual[centre]:
                centre = point
        for point in range(n):
            r2[point] = 0.0
        for i in range(d):
            x = X[centre, i]
            for point in range(n):
                delta = X[point, i] - x
                r2[point] += delta * delta
        width, height = _best_bump(residual, q, r2, widths, gains)
        if not height > 0.0:
            height = max(residual[centre], 1e-12)
        for i in range(d):
            means[k, i] = X[centre, i]
        sds[k] = width
        heights[k] = height
        inv = 0.5 / (width * width)
        for point in range(n):
            bump = height * _exp(-r2[point] * inv)
            residual[point] -= bump if q[point] != 0.0 else 0.0


@njit(cache=True, nogil=True)
def greedy_peaks(first, last, X, Y, Q, widths, means, sds, heights):
    """:func:`_peaks_row` for the densities ``first .. last - 1`` (rows of ``Y``; ``Q``
    one row or one each)."""
    n = X.shape[0]
    shared_q = Q.shape[0] == 1
    residual = np.empty(n)
    r2 = np.empty(n)
    gains = np.empty(widths.shape[0])
    for r in range(first, last):
        q = Q[0] if shared_q else Q[r]
        _peaks_row(X, Y[r], q, widths, means[r], sds[r], heights[r], residual, r2, gains)


@_inner(fastmath=FASTMATH)
def _shape_fit(residual, q, g):
    """``(gain, height)`` of the shape whose values at the points are ``g``, fitted to
    ``residual`` weighted by ``q`` (points of weight 0 left out): the squared residual it
    removes and its least-squares height (both 0 where the height is not positive)."""
    overlap = 0.0
    norm = 0.0
    for point in range(g.shape[0]):
        kept = q[point] != 0.0
        overlap += q[point] * residual[point] * g[point] if kept else 0.0
        norm += q[point] * g[point] * g[point] if kept else 0.0
    if overlap > 0.0 and norm > 0.0:
        return overlap * overlap / norm, overlap / norm
    return 0.0, 0.0


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def matched_filter(first, last, X, residuals, Q, centres, U, gains, heights):
    """For each row ``r`` (``first .. last - 1``) and candidate centre ``centres[r, c]``
    (a point's index), the least-squares height of the Gaussian shape of precision
    Cholesky factor ``U[r]`` (peak 1) at that centre fitted to ``residuals[r]`` (weighted
    by ``Q``, one row or one per row) and the squared residual it removes (``gains``, 0
    where the height is not positive)."""
    C = centres.shape[1]
    n, d = X.shape
    shared_q = Q.shape[0] == 1
    g = np.empty(n)
    for r in range(first, last):
        q = Q[0] if shared_q else Q[r]
        for c in range(C):
            centre = centres[r, c]
            for point in range(n):
                q2 = 0.0
                for j in range(d):
                    t = 0.0
                    for i in range(j + 1):
                        t += U[r, i, j] * (X[point, i] - X[centre, i])
                    q2 += t * t
                g[point] = _exp(-0.5 * q2) if q2 <= 80.0 else 0.0
            gains[r, c], heights[r, c] = _shape_fit(residuals[r], q, g)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def matched_filter_uniform(first, last, residuals, Q, centres, U, spacing, gains, heights):
    """:func:`matched_filter` on a 1-D grid of equal ``spacing`` in increasing order: the
    shape's value at a point depends only on how many points lie between it and the
    centre, so each row takes its ``n`` values once."""
    C = centres.shape[1]
    n = residuals.shape[1]
    shape = np.empty(n)
    g = np.empty(n)
    shared_q = Q.shape[0] == 1
    for r in range(first, last):
        q = Q[0] if shared_q else Q[r]
        step = U[r, 0, 0] * spacing
        for m in range(n):
            t = m * step
            shape[m] = _exp(-0.5 * t * t) if t * t <= 80.0 else 0.0
        for c in range(C):
            centre = centres[r, c]
            for point in range(n):
                g[point] = shape[abs(point - centre)]
            gains[r, c], heights[r, c] = _shape_fit(residuals[r], q, g)


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def component_shares(
    first, last, thetas, density, X, lo, hi, Y, Q, basis, layout, chol_index, chol_log,
    fixed_log_scale, shares, burdens,
):  # fmt: skip
    """For rows ``first .. last - 1``: each component's share of the fitted mixture's
    mass on the grid (the quadrature-weighted sum of its part of the model), ``shares``
    ``(R, K)``, and its burden: the squared residual weighted by its responsibility,
    ``burdens`` ``(R, K)``."""
    p = thetas.shape[1]
    n = X.shape[0]
    K, d, J = layout[_K], layout[_D], layout[_J]
    binned, exponential = layout[_BINNED], layout[_EXPONENTIAL]
    shared_q = Q.shape[0] == 1
    work_k = np.empty((5, K))
    work_kd = np.empty((4 + d, K, d))
    U = np.empty((K, d, d))
    block = np.empty((K + 2 * d, BLOCK))  # the terms, the points, z (_block_terms)
    logw, a, const = work_k[0], work_k[1], work_k[3]
    means, diff, z, mass = work_kd[0], work_kd[1], work_kd[2], work_kd[3]
    g_upper = work_kd[4:]
    for r in range(first, last):
        i = density[r]
        q = Q[0] if shared_q else Q[i]
        theta = thetas[r]
        log_scale = _unpack(
            theta, layout, chol_index, chol_log, fixed_log_scale[i], logw, means, U, const
        )
        scale = math.exp(log_scale)
        for k in range(K):
            const[k] = logw[k] if binned else logw[k] + const[k] - 0.5 * d * LOG_2PI
            shares[r, k] = 0.0
            burdens[r, k] = 0.0
        for start in range(0, n, BLOCK):
            size = min(BLOCK, n - start)
            if binned:  # the cells' masses point by point
                for m in range(size):
                    _cell_log_densities(
                        start + m, lo, hi, K, d, const, means, U, a, diff, z, mass, g_upper,
                        binned,
                    )  # fmt: skip
                    for k in range(K):
                        block[k, m] = math.exp(a[k])
            else:
                for k in range(K):
                    _block_terms(
                        X, start, size, k, d, const[k], means, U, block, K, K + d, block[k]
                    )
            for m in range(size):
                point = start + m
                if q[point] == 0.0:
                    continue
                f = 0.0
                for k in range(K):
                    f += block[k, m]
                value = scale * f
                if J > 0:
                    value += _background_value(theta, basis, point, p, J, exponential)
                residual = Y[i, point] - value
                for k in range(K):
                    shares[r, k] += q[point] * block[k, m]
                    if f > 0.0:
                        burdens[r, k] += q[point] * residual * residual * block[k, m] / f
        total = 0.0
        for k in range(K):
            total += shares[r, k]
        for k in range(K):
            shares[r, k] = shares[r, k] / total if total > 0.0 else 0.0
