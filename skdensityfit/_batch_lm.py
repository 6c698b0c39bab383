"""Levenberg-Marquardt across many densities at once, on one shared grid.

Every density of a block is advanced together: parameters are a ``(B, p)``
array in the unconstrained layout of :class:`~._mixture_math.ParameterLayout`
(log scale, ``K - 1`` softmax logits with the last pinned to 0, means,
log-Cholesky precision factors), in the standardised coordinates of the shared
grid (one standardisation for the grid; each density divided by its own
largest ``|y|``). The model and its Jacobian come from the grid's quadratic
features (``maha = Phi @ coef.T``), ``J^T W J`` is one batched product, and each
iteration makes one batched solve with per-density damping; densities leave
the active set as they converge. Python loops run over iterations and
components only, never over densities or grid points. The starts, the gate
and the fit of a block are in :mod:`skdensityfit._batch_fit`.

The Gauss-Newton matrix is that of the single fit: ``J^T diag(c) J`` with ``J``
the Jacobian of ``log f`` and ``c = 2 q f^2 / N`` for the l2 loss, ``c = q f / N``
(the Fisher information) for the Poisson loss.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._covariance import LOG_2PI, n_cholesky_values, quadratic_features
from ._parameters import ParameterLayout, grid_standardisation
from ._problem import parameter_bounds, width_limits
from ._validation import quadrature_weights

INITIAL_DAMPING = 1e-3
MAX_DAMPING = 1e16
NO_GAIN = 1e-15
# Block of densities advanced together: large enough that numpy's per-call
# overhead is shared by many densities, small enough that the (B, p, n)
# Jacobian stays in cache (chunks of 256 densities of 200 points measured best).
MAX_BLOCK = 256
# levenberg_marquardt asks its give_up hook about rows at these iteration counts
# (rarely reached: noise-free rows converge in about 4, noisy ones in about 12).
GIVE_UP_AT = 40 * 2 ** np.arange(10)
BLOCK_ELEMENTS = 2**19
# The residual search of the batched moves: Gaussian bumps of PEAK_WIDTHS
# widths, geometric from 1.5 grid spacings to an eighth of the grid's extent,
# centred on at most PEAK_CENTRES grid points (every point of a grid that small,
# else an evenly spaced subset).
PEAK_WIDTHS = 5
PEAK_CENTRES = 256


# ----------------------------------------------------------------------
# the shared problem
# ----------------------------------------------------------------------
@dataclass
class BatchProblem:
    """The shared grid of a batch in standardised coordinates, and the fit settings."""

    X: np.ndarray  # (n, d) grid in user units
    n_components: int
    covariance_type: str
    loss: str

    def __post_init__(self):
        cov = self.covariance_type
        self.center, self.spread = grid_standardisation(self.X, cov)
        self.grid = (self.X - self.center) / self.spread
        self.features = quadratic_features(self.grid, cov)  # (n, m)
        self.features_t = np.ascontiguousarray(self.features.T)
        self.layout = ParameterLayout(self.n_components, self.X.shape[1], cov, True)
        self.limits = width_limits(self.grid)
        self.bounds = parameter_bounds(self.grid, self.layout, self.limits)
        self.lower = self.bounds[:, 0].copy()
        self.upper = self.bounds[:, 1].copy()
        d = self.X.shape[1]
        self.rows, self.cols = np.triu_indices(d)
        on_edge = np.any((self.X == self.X.min(axis=0)) | (self.X == self.X.max(axis=0)), axis=1)
        self.on_edge = on_edge

    @property
    def n_features(self):
        return self.X.shape[1]

    @cached_property
    def n_raw(self):
        """Raw Cholesky values per component (for 'tied': of the shared factor)."""
        return n_cholesky_values(self.covariance_type, 1, self.n_features)

    @property
    def peak_kernels(self):
        """``(centres (c,), widths (w,), kernels (w * c, n), squares (w * c, n))``:
        isotropic Gaussian bumps ``exp(-|x - x_c|^2 / (2 s^2))`` of height one for
        the residual search, and their squares, in single precision (the search
        only ranks bumps and takes a start's height from the best; ``exp`` in
        single precision is several times faster; values below ``exp(-40)`` are
        set to zero, so that neither they nor their squares underflow). Computed
        once per grid: shared with :meth:`with_components`'s problems."""
        shared = self.__dict__.setdefault("_grid_cache", {})
        if "peak_kernels" not in shared:
            shared["peak_kernels"] = self._peak_kernels()
        return shared["peak_kernels"]

    def _peak_kernels(self):
        n = self.grid.shape[0]
        centres = np.unique(np.linspace(0, n - 1, min(n, PEAK_CENTRES)).astype(int))
        spacing = 2.0 * self.limits[0]
        extent = np.max(np.ptp(self.grid, axis=0))
        widths = np.geomspace(1.5 * spacing, max(extent / 8.0, 3.0 * spacing), PEAK_WIDTHS)
        distance = np.sum((self.grid[centres][:, None, :] - self.grid[None]) ** 2, axis=2)
        exponent = (-0.5 * distance[None] / widths[:, None, None] ** 2).astype(np.float32)
        negligible = exponent < -40.0  # squares above exp(-80): normal in single precision
        np.maximum(exponent, -40.0, out=exponent)
        kernels = np.exp(exponent, out=exponent)
        kernels[negligible] = 0.0
        kernels = kernels.reshape(len(widths) * len(centres), n)
        return centres, widths, kernels, kernels**2

    def with_components(self, n_components):
        """The same grid and settings with ``n_components`` components (cached)."""
        if n_components == self.n_components:
            return self
        cache = self.__dict__.setdefault("_sizes", {})
        if n_components not in cache:
            sized = BatchProblem(self.X, n_components, self.covariance_type, self.loss)
            sized.__dict__["_grid_cache"] = self.__dict__.setdefault("_grid_cache", {})
            cache[n_components] = sized
        return cache[n_components]

    @property
    def block_size(self):
        n, p = self.features.shape[0], self.layout.n_parameters
        work = n * max(p, self.n_components * (self.n_features + self.n_raw))
        return int(np.clip(BLOCK_ELEMENTS // max(work, 1), 8, MAX_BLOCK))


@dataclass
class BatchData:
    """Per-density data of a block: standardised targets and quadrature weights."""

    target: np.ndarray  # (B, n), each row divided by its largest |value|
    weights: np.ndarray  # (B, n) or (n,): quadrature weights summing to one
    normaliser: np.ndarray  # (B,)
    constant: np.ndarray  # (B,) the Poisson loss's constant (0 for l2)

    def take(self, index):
        weights = self.weights if self.weights.ndim == 1 else self.weights[index]
        return BatchData(self.target[index], weights, self.normaliser[index], self.constant[index])


def batch_data(problem, Y, sample_weight=None):
    """Standardised targets of the rows of ``Y`` and the log of each row's unit."""
    Y = np.asarray(Y, dtype=float)
    unit = np.max(np.abs(Y), axis=1)
    target = Y / unit[:, None]
    if sample_weight is None:
        q = quadrature_weights(problem.X)
    else:
        q = np.asarray(sample_weight, dtype=float)
        q = q / q.sum(axis=-1, keepdims=True)
    if problem.loss == "l2":
        normaliser = (target**2) @ q if q.ndim == 1 else np.sum(q * target**2, axis=1)
        constant = np.zeros(len(Y))
    else:
        normaliser = target @ q if q.ndim == 1 else np.sum(q * target, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            tlogt = np.where(target > 0, target * np.log(np.where(target > 0, target, 1.0)), 0.0)
        constant = np.sum(q * (tlogt - target), axis=1)
    log_unit = np.log(unit) + np.sum(np.log(problem.spread))
    return BatchData(target, q, normaliser, constant), log_unit


# ----------------------------------------------------------------------
# parameters -> precision matrices, coefficients and their derivatives
# ----------------------------------------------------------------------
def split(problem, theta):
    """``(log_scale (B,), logits (B, K-1), means (B, K, d), raw)`` of a ``(B, p)`` array."""
    k, d = problem.n_components, problem.n_features
    means = theta[:, k : k + k * d].reshape(-1, k, d)
    raw = theta[:, k + k * d :]
    if problem.covariance_type == "tied":
        raw = raw.reshape(-1, 1, problem.n_raw)
    else:
        raw = raw.reshape(-1, k, problem.n_raw)
    return theta[:, 0], theta[:, 1:k], means, raw


def precision_terms(problem, raw, derivatives=True):
    """Precisions ``(B, K', d, d)``, log-determinants ``(B, K')`` of their Cholesky
    factors and, with ``derivatives``, their derivatives ``(B, K', r, d, d)`` with
    respect to the raw values and the log-determinants' ``(r,)``.

    ``K'`` is 1 for 'tied' (one shared factor), K otherwise.
    """
    cov, d = problem.covariance_type, problem.n_features
    eye = np.eye(d)
    if cov in ("full", "tied"):
        rows, cols = problem.rows, problem.cols
        diagonal = rows == cols
        values = np.where(diagonal, np.exp(np.where(diagonal, raw, 0.0)), raw)
        upper = np.zeros((*raw.shape[:-1], d, d))
        upper[..., rows, cols] = values
        precision = upper @ np.swapaxes(upper, -1, -2)
        log_det = np.sum(raw[..., diagonal], axis=-1)
        if not derivatives:
            return precision, log_det, None, None
        r = rows.size
        # dU_t = s_t E_(row_t, col_t), s_t = U_tt on the diagonal (raw is its log), else 1;
        # dP_t = dU_t U^T + U dU_t^T, and dU_t U^T has row row_t equal to s_t U[:, col_t]
        s = np.where(diagonal, values, 1.0)
        half = np.zeros((*raw.shape[:-1], r, d, d))
        half[..., np.arange(r), rows, :] = s[..., None] * np.swapaxes(upper[..., :, cols], -1, -2)
        d_precision = half + np.swapaxes(half, -1, -2)
        return precision, log_det, d_precision, diagonal.astype(float)
    p = np.exp(2.0 * raw)  # (B, K, d) for diag, (B, K, 1) for spherical
    if cov == "diag":
        precision = p[..., None] * eye
        log_det = np.sum(raw, axis=-1)
        if not derivatives:
            return precision, log_det, None, None
        d_precision = 2.0 * p[..., None, None] * (eye[:, :, None] * eye[:, None, :])
        return precision, log_det, d_precision, np.ones(d)
    precision = p[..., None] * eye
    log_det = d * raw[..., 0]
    if not derivatives:
        return precision, log_det, None, None
    return precision, log_det, 2.0 * p[..., None, None] * eye, np.full(1, float(d))


def _quadratic_part(problem, matrices):
    """The quadratic-feature coefficients of symmetric matrices ``(..., d, d)``."""
    cov = problem.covariance_type
    if cov in ("full", "tied"):
        factor = np.where(problem.rows == problem.cols, 1.0, 2.0)
        return matrices[..., problem.rows, problem.cols] * factor
    if cov == "diag":
        return np.diagonal(matrices, axis1=-2, axis2=-1)
    return matrices[..., 0, :1]


def mixture_terms(problem, theta, derivatives=True):
    """Everything the model and its Jacobian need, for a ``(B, p)`` array."""
    if problem.n_features == 1:
        return _mixture_terms_1d(problem, theta, derivatives)
    return _mixture_terms_general(problem, theta, derivatives)


def _mixture_terms_general(problem, theta, derivatives):
    k, d = problem.n_components, problem.n_features
    log_scale, logits, means, raw = split(problem, theta)
    precision, log_det, d_precision, d_log_det = precision_terms(problem, raw, derivatives)
    if problem.covariance_type == "tied":
        precision = np.broadcast_to(precision, (len(theta), k, d, d))
        log_det = np.broadcast_to(log_det, (len(theta), k))
    all_logits = np.concatenate([logits, np.zeros((len(theta), 1))], axis=1)
    top = all_logits.max(axis=1, keepdims=True)
    log_weights = all_logits - top - np.log(np.sum(np.exp(all_logits - top), axis=1))[:, None]
    prec_means = np.einsum("bkij,bkj->bki", precision, means)
    const = np.einsum("bki,bki->bk", means, prec_means)
    # log w_k N_k(x) = Phi(x) @ A_k + offset_k, A_k = -coef_k / 2
    A = -0.5 * np.concatenate(
        [_quadratic_part(problem, precision), -2.0 * prec_means, const[..., None]], axis=-1
    )
    offset = log_det + log_weights - 0.5 * d * LOG_2PI
    terms = dict(log_scale=log_scale, log_weights=log_weights, A=A, offset=offset)
    if not derivatives:
        return terms
    # derivatives of A_k (plus the log-determinant on the constant feature):
    # by the means, dA/dmu_j = [0, P e_j, -(P mu)_j]; by the raw values,
    # dA/draw_t = [-quad(dP_t) / 2, dP_t mu, -mu^T dP_t mu / 2 + dlogdet_t]
    m_quad = A.shape[-1] - d - 1
    B = len(theta)
    by_mean = np.concatenate(
        [np.zeros((B, k, d, m_quad)), precision, -prec_means[..., None]], axis=-1
    )
    # dP_t mu for every component (the shared factor's dP broadcast for 'tied')
    dp_mu = np.einsum(
        "bkrij,bkj->bkri", np.broadcast_to(d_precision, (B, k, *d_precision.shape[2:])), means
    )
    by_raw = np.concatenate(
        [
            -0.5 * _quadratic_part(problem, d_precision) * np.ones((1, k, 1, 1)),
            dp_mu,
            (-0.5 * np.einsum("bkri,bki->bkr", dp_mu, means) + d_log_det)[..., None],
        ],
        axis=-1,
    )
    terms["derivatives"] = np.concatenate([by_mean, by_raw], axis=2)  # (B, K, d + r, m)
    terms["weights"] = np.exp(log_weights)
    return terms


def _mixture_terms_1d(problem, theta, derivatives):
    """:func:`mixture_terms` on a line, with every precision a number.

    In one dimension every covariance type has one raw value per component
    (one shared for 'tied'): the Cholesky factor of the precision is
    ``exp(raw)``, the precision ``P = exp(2 raw)``, its derivative ``2 P`` and
    the log-determinant's 1. The general code's matrices of shape ``(1, 1)``
    cost a numpy call each for nothing; a block of a few densities (the
    cross-validation of one density, a block's last rows) spends most of an
    evaluation on them. Tested equal to the general code.
    """
    k = problem.n_components
    B = len(theta)
    log_scale, logits = theta[:, 0], theta[:, 1:k]
    mu = theta[:, k : 2 * k]  # (B, K)
    raw = theta[:, 2 * k :]  # (B, K), or (B, 1) for 'tied'
    precision = np.exp(2.0 * raw)
    all_logits = np.concatenate([logits, np.zeros((B, 1))], axis=1)
    top = all_logits.max(axis=1, keepdims=True)
    log_weights = all_logits - top - np.log(np.sum(np.exp(all_logits - top), axis=1))[:, None]
    prec_mu = precision * mu
    A = np.empty((B, k, 3))
    A[..., 0] = -0.5 * precision
    A[..., 1] = prec_mu
    A[..., 2] = -0.5 * prec_mu * mu
    offset = raw + log_weights - 0.5 * LOG_2PI
    terms = dict(log_scale=log_scale, log_weights=log_weights, A=A, offset=offset)
    if not derivatives:
        return terms
    # by the mean: [0, P, -P mu]; by the raw value: [-P, 2 P mu, -P mu^2 + 1]
    derivative = np.empty((B, k, 2, 3))
    derivative[:, :, 0, 0] = 0.0
    derivative[:, :, 0, 1] = precision
    derivative[:, :, 0, 2] = -prec_mu
    derivative[:, :, 1, 0] = -precision
    derivative[:, :, 1, 1] = 2.0 * prec_mu
    derivative[:, :, 1, 2] = 1.0 - prec_mu * mu
    terms["derivatives"] = derivative
    terms["weights"] = np.exp(log_weights)
    return terms


# ----------------------------------------------------------------------
# model, loss, gradient and Gauss-Newton matrix of a block
# ----------------------------------------------------------------------
def _log_joint(problem, terms):
    """``log w_k N_k(x_i)``, shape ``(B, K, n)`` (one matrix product for the block)."""
    A = terms["A"]
    log_joint = (A.reshape(-1, A.shape[-1]) @ problem.features_t).reshape(*A.shape[:2], -1)
    log_joint += terms["offset"][..., None]
    return log_joint


def _model(problem, terms):
    """``(log f or None, f, responsibilities)`` of a block.

    For the l2 loss the components' terms are exponentiated directly (they are
    bounded above: the log-determinants are bounded by the width floor), which
    saves a pass of ``exp`` and one of ``log`` over the grid; a point where every
    component underflows has ``f = 0`` and no responsibilities, which is what
    its contribution to the l2 loss and its derivatives is. The Poisson loss
    needs ``log f`` everywhere, so it keeps the log-sum-exp form.
    """
    log_joint = _log_joint(problem, terms)
    if problem.loss == "l2":
        resp = np.exp(log_joint, out=log_joint)
        total = resp.sum(axis=1)
        model = np.exp(terms["log_scale"])[:, None] * total
        resp /= np.maximum(total, np.finfo(float).tiny)[:, None, :]
        return None, model, resp
    peak = log_joint.max(axis=1)
    log_joint -= peak[:, None, :]
    resp = np.exp(log_joint, out=log_joint)
    total = resp.sum(axis=1)
    resp /= total[:, None, :]
    log_model = terms["log_scale"][:, None] + np.log(total) + peak
    return log_model, np.exp(log_model), resp


def _losses(problem, data, log_model, model):
    q = data.weights
    if problem.loss == "l2":
        residual = data.target - model
        values = np.sum(q * residual**2, axis=1)
    else:
        values = np.sum(q * (model - data.target * log_model), axis=1) + data.constant
    return values / data.normaliser


@np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore")
def values_only(problem, theta, data):
    """The loss of each row, ``(B,)`` (inf where not finite)."""
    log_model, model, _ = _model(problem, mixture_terms(problem, theta, derivatives=False))
    values = _losses(problem, data, log_model, model)
    return np.where(np.isfinite(values), values, np.inf)


def jacobian_t(problem, terms, resp, scale=None):
    """The transposed Jacobian of ``log f``, shape ``(B, p, n)``, each point's
    column multiplied by ``scale`` ``(B, n)`` if given.

    Written into one array block by block (no concatenation): the rows of the
    log scale, of the logits (``r_k - w_k``) and of each component's means and
    raw Cholesky values (``r_k Phi @ dA_k``).
    """
    B, k, n = resp.shape
    d = problem.n_features
    p = problem.layout.n_parameters
    jt = np.empty((B, p, n))
    if scale is None:
        jt[:, 0] = 1.0
        scaled_resp = resp
        weights = terms["weights"][:, :-1, None]
    else:
        jt[:, 0] = scale
        scaled_resp = resp * scale[:, None, :]
        weights = terms["weights"][:, :-1, None] * scale[:, None, :]
    np.subtract(scaled_resp[:, :-1], weights, out=jt[:, 1:k])
    derivatives = terms["derivatives"]  # (B, K, d + r, m)
    m = derivatives.shape[-1]
    per_point = (derivatives.reshape(-1, m) @ problem.features_t).reshape(B, k, -1, n)
    means_rows = jt[:, k : k + k * d].reshape(B, k, d, n)
    np.multiply(per_point[:, :, :d], scaled_resp[:, :, None, :], out=means_rows)
    if problem.covariance_type == "tied":
        raw = per_point[:, :, d:]
        raw *= scaled_resp[:, :, None, :]
        jt[:, k + k * d :] = raw.sum(axis=1)
    else:
        raw_rows = jt[:, k + k * d :].reshape(B, k, -1, n)
        np.multiply(per_point[:, :, d:], scaled_resp[:, :, None, :], out=raw_rows)
    return jt


@np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore")
def evaluate(problem, theta, data):
    """Loss ``(B,)``, gradient ``(B, p)`` and Gauss-Newton matrix ``(B, p, p)``.

    The Jacobian is formed once, its columns scaled by ``s = sqrt(c)`` (``c``
    the loss's curvature in ``log f`` at each point): then ``J^T diag(c) J`` is
    ``Js^T Js`` and the gradient ``Js^T (g / s)``, with no second ``(B, p, n)``
    temporary. Rows whose loss or derivatives are not finite get an infinite
    loss and zero derivatives.
    """
    terms = mixture_terms(problem, theta)
    log_model, model, resp = _model(problem, terms)
    values = _losses(problem, data, log_model, model)
    q = data.weights
    inverse = (1.0 / data.normaliser)[:, None]
    if problem.loss == "l2":
        g = -2.0 * inverse * q * (data.target - model) * model
        c = 2.0 * inverse * q * model**2
    else:
        g = inverse * q * (model - data.target)
        c = inverse * q * model
    s = np.sqrt(np.maximum(c, np.finfo(float).tiny))
    jt = jacobian_t(problem, terms, resp, s)
    gradient = np.matmul(jt, (g / s)[:, :, None])[..., 0]
    matrix = np.matmul(jt, np.swapaxes(jt, 1, 2))
    finite = (
        np.isfinite(values)
        & np.all(np.isfinite(gradient), axis=1)
        & np.all(np.isfinite(matrix), axis=(1, 2))
    )
    if not np.all(finite):
        values = np.where(finite, values, np.inf)
        gradient[~finite] = 0.0
        matrix[~finite] = 0.0
    return values, gradient, matrix


# ----------------------------------------------------------------------
# Levenberg-Marquardt, all rows at once
# ----------------------------------------------------------------------
@dataclass
class BatchResult:
    theta: np.ndarray  # (B, p)
    loss: np.ndarray  # (B,)
    n_iter: np.ndarray  # (B,)
    converged: np.ndarray  # (B,) bool


def _solve(matrices, rhs):
    try:
        return np.linalg.solve(matrices, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        # a singular row (rare): the pseudo-inverse gives every row a step
        return np.matmul(np.linalg.pinv(matrices), rhs[..., None])[..., 0]


@np.errstate(under="ignore", over="ignore", invalid="ignore", divide="ignore")
def levenberg_marquardt(
    problem, theta0, data, *, tol, max_iter, ftol=NO_GAIN, min_iter=0, give_up=None
):
    """Minimise the loss of every row of ``theta0`` ``(B, p)`` within the box bounds.

    The rules of the single fit's Levenberg-Marquardt, per row: damping
    ``lambda D`` with ``D`` the largest Gauss-Newton diagonal seen, adapted to
    how well the quadratic model predicted the decrease (fourfold after a
    rejected step), variables held at a bound by an outward gradient left out
    of the solve, convergence at a projected gradient of ``tol``. A rejected
    step costs one batched evaluation, like an accepted one; rows leave the
    active set once converged, stalled or at ``max_iter`` iterations. The
    gradient test is skipped for the first ``min_iter`` iterations of a row (a
    fold's refit from the fit on all points takes at least one step, like the
    single fit's cross-validation). ``give_up(theta, data)``, if given, is
    asked about the rows still running after ``GIVE_UP_AT`` iterations (40,
    80, 160, ...): the rows it marks stop there, not converged (a component
    leaving the grid creeps on for hundreds of iterations, each gaining a
    little, while the rest of the block waits).
    """
    lower, upper = problem.lower, problem.upper
    theta = np.clip(theta0, lower, upper)
    B, p = theta.shape
    value, gradient, matrix = evaluate(problem, theta, data)
    scaling = np.maximum(np.diagonal(matrix, axis1=1, axis2=2), np.finfo(float).tiny)
    damping = np.full(B, INITIAL_DAMPING)
    n_iter = np.zeros(B, dtype=int)
    converged = np.zeros(B, dtype=bool)
    active = np.isfinite(value)
    eye = np.eye(p, dtype=bool)
    while True:
        index = np.flatnonzero(active)
        if index.size == 0:
            break
        th, gr = theta[index], gradient[index]
        projected = np.max(np.abs(np.clip(th - gr, lower, upper) - th), axis=1)
        done = (projected <= tol) & (n_iter[index] >= min_iter)
        converged[index[done]] = True
        stop = done | (n_iter[index] >= max_iter)
        if give_up is not None:
            ask = np.flatnonzero(~stop & np.isin(n_iter[index], GIVE_UP_AT))
            if ask.size:
                stop[ask] = give_up(th[ask], data.take(index[ask]))
        if np.any(stop):
            active[index[stop]] = False
            keep = ~stop
            index, th, gr = index[keep], th[keep], gr[keep]
            if index.size == 0:
                break
        H = matrix[index]
        free = ~(((th <= lower) & (gr > 0)) | ((th >= upper) & (gr < 0)))
        both = free[:, :, None] & free[:, None, :]
        system = np.where(both, H, 0.0)
        system += np.where(eye, (damping[index, None] * scaling[index])[:, :, None], 0.0) * both
        system += eye * ~free[:, :, None]
        step = _solve(system, np.where(free, -gr, 0.0))
        candidate = np.clip(th + step, lower, upper)
        step = candidate - th
        predicted = -(
            np.einsum("bp,bp->b", gr, step) + 0.5 * np.einsum("bp,bpq,bq->b", step, H, step)
        )
        new_value, new_gradient, new_matrix = evaluate(problem, candidate, data.take(index))
        actual = value[index] - new_value
        no_gain = NO_GAIN * np.maximum(value[index], 1.0)
        accept = (predicted > 0) & (actual > 0)
        nothing = ~accept & (predicted <= no_gain) & (np.abs(actual) <= no_gain)
        reject = ~accept & ~nothing

        rows = index[accept]
        ratio = actual[accept] / predicted[accept]
        damping[rows] *= np.maximum(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
        theta[rows] = candidate[accept]
        value[rows] = new_value[accept]
        gradient[rows] = new_gradient[accept]
        matrix[rows] = new_matrix[accept]
        scaling[rows] = np.maximum(scaling[rows], np.diagonal(new_matrix[accept], axis1=1, axis2=2))
        n_iter[rows] += 1
        small = (actual[accept] <= no_gain[accept]) & (
            np.max(np.abs(step[accept]), axis=1) <= NO_GAIN
        )
        small |= actual[accept] <= ftol * new_value[accept]
        converged[rows[small]] = True
        active[rows[small]] = False

        rows = index[nothing]
        n_iter[rows] += 1
        converged[rows] = True
        active[rows] = False

        rows = index[reject]
        damping[rows] *= 4.0
        lost = rows[damping[rows] >= MAX_DAMPING]
        n_iter[lost] += 1
        active[lost] = False
    return BatchResult(theta, value, n_iter, converged)


def grid_unit_parameters(problem, theta, log_unit):
    """Weights, means, covariances, precision Cholesky factors and scale in grid
    units, components in the single fit's order (by first mean coordinate, then
    by decreasing weight)."""
    k, d = problem.n_components, problem.n_features
    cov, spread, B = problem.covariance_type, problem.spread, len(theta)
    log_scale, logits, means, raw = split(problem, theta)
    all_logits = np.concatenate([logits, np.zeros((B, 1))], axis=1)
    weights = np.exp(all_logits - all_logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    means = problem.center + spread * means
    if cov in ("full", "tied"):
        diagonal = problem.rows == problem.cols
        values = np.where(diagonal, np.exp(np.where(diagonal, raw, 0.0)), raw)
        upper = np.zeros((*raw.shape[:-1], d, d))
        upper[..., problem.rows, problem.cols] = values
        prec_chol = upper / spread[:, None]
        inverse = np.linalg.inv(prec_chol)
        covariances = np.swapaxes(inverse, -1, -2) @ inverse
        if cov == "tied":
            prec_chol, covariances = prec_chol[:, 0], covariances[:, 0]
    else:
        prec_chol = np.exp(raw) / (spread[0] if cov == "spherical" else spread)
        if cov == "spherical":
            prec_chol = prec_chol[..., 0]
        covariances = 1.0 / prec_chol**2
    scale = np.exp(log_scale + log_unit)
    row = np.repeat(np.arange(B), k)
    order = np.lexsort((-weights.ravel(), means[:, :, 0].ravel(), row)).reshape(B, k) % k
    take = np.arange(B)[:, None], order
    weights, means = weights[take], means[take]
    if cov != "tied":
        prec_chol, covariances = prec_chol[take], covariances[take]
    return weights, means, covariances, prec_chol, scale
