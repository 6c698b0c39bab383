"""Moves of components between fits: grow, remove, split and re-place.

A fit that ends with a component parked (no mass on the grid, off the grid,
or pressed against the width floor), or with two components sharing one
peak while another covers two, is in a poor local optimum; these moves take
such a component away and place it again where the residual asks for it.
"""

import numpy as np

from ._covariance import (
    as_matrices,
    cholesky_diagonals,
    log_gaussian_density,
    log_peak_density,
)
from ._model import log_component_densities
from ._objective import component_mass_shares, model_density, point_chunks, value_and_gradient
from ._parameters import pack, unpack

MIN_WEIGHT = 1e-4
TINY = np.finfo(float).tiny
# Candidate centres of a new component (a quarter at the points of largest
# residual, the rest spread over the grid): as many as keep the matched
# filter near FILTER_WORK shape values, within these limits.
FILTER_WORK = 2**20
MIN_FILTER_CENTRES = 8
MAX_FILTER_CENTRES = 64
# A component moved by replace_components must lower the loss by this fraction.
MIN_MOVE_GAIN = 1e-6


@np.errstate(under="ignore")  # shapes far from their centre underflow to 0 by design
def _matched_filter_peak(residual, grid, quadrature, layout, prec_chol):
    """The centre and height of the component shape that best fits the residual.

    The shape has the precision Cholesky factor ``prec_chol`` and peak 1;
    candidate centres are the points of largest residual and a fixed random
    spread of points over the grid. The winner removes the most squared
    residual when scaled by its least-squares height: on a noisy density
    this finds a broad low peak that no single point's residual stands out
    for. Returns ``(index of the centre, height)``, or None if no centre
    gives a positive height.
    """
    n_points = len(residual)
    # every point counts (a sample of them could miss a narrow shape's support);
    # the number of centres keeps the work near FILTER_WORK shape values
    n_centres = int(np.clip(FILTER_WORK // n_points, MIN_FILTER_CENTRES, MAX_FILTER_CENTRES))
    n_largest = min(n_points, max(1, n_centres // 4))
    generator = np.random.default_rng(0)  # a fixed spread: grow_by_one stays deterministic
    spread = generator.choice(n_points, min(n_points, n_centres - n_largest), replace=False)
    largest = np.argpartition(-residual, n_largest - 1)[:n_largest]
    centres = np.unique(np.concatenate([largest, spread]))
    cov = layout.covariance_type
    if cov != "tied":
        prec_chol = np.broadcast_to(prec_chol, (len(centres), *prec_chol.shape))
    log_peak = log_peak_density(prec_chol, cov, len(centres), layout.n_features)
    overlap, norm = np.zeros(len(centres)), np.zeros(len(centres))
    for rows in point_chunks(n_points, len(centres)):  # bounded memory on any grid
        log_shapes = log_gaussian_density(grid[rows], grid[centres], prec_chol, cov)
        shapes = np.exp(log_shapes - log_peak)  # 1 at each centre
        overlap += (quadrature[rows] * residual[rows]) @ shapes
        norm += quadrature[rows] @ shapes**2
    norm = np.maximum(norm, TINY)
    gain = np.where(overlap > 0, overlap**2 / norm, 0.0)
    best = int(np.argmax(gain))
    if gain[best] <= 0:
        return None
    return int(centres[best]), overlap[best] / norm[best]


def grow_by_one(theta, data, grid, placement="peak"):
    """Parameters for ``K + 1`` components from a fit with ``K`` (standardised).

    The new component takes the covariance of the narrowest existing one and
    goes to the point of largest residual ``target - f`` with its height
    (``placement='peak'``), or where that shape fits the residual best, with
    the height that fits it (``placement='filter'``, a matched filter: see
    :func:`_matched_filter_peak`); the old components keep their parameters
    and amplitudes. Returns ``(theta, data)`` for ``K + 1`` components, or
    None when the residual has no positive peak.
    """
    layout = data.layout
    residual = np.where(data.quadrature > 0, data.target - model_density(theta, data), 0.0)
    if residual.max() <= 0:
        return None
    log_scale, weights, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
    log_peaks = log_peak_density(
        prec_chol, layout.covariance_type, layout.n_components, layout.n_features
    )
    narrowest = int(np.argmax(log_peaks))
    tied = layout.covariance_type == "tied"
    shape = prec_chol if tied else prec_chol[narrowest]
    if placement == "filter":
        found = _matched_filter_peak(residual, grid, data.quadrature, layout, shape)
        if found is None:
            return None
        peak, height = found
    else:
        peak = int(np.argmax(residual))
        height = residual[peak]
    if not tied:
        prec_chol = np.concatenate([prec_chol, shape[None]])
    amplitudes = np.append(np.exp(log_scale) * weights, height / np.exp(log_peaks.max()))
    grown = data.with_components(layout.n_components + 1)
    total = amplitudes.sum()
    theta = pack(
        grown.layout,
        np.maximum(amplitudes / total, MIN_WEIGHT),
        np.vstack([means, grid[peak]]),
        prec_chol,
        log_scale=np.log(total),
    )
    return theta, grown


def without_component(theta, data, index):
    """Parameters and data for the mixture with component ``index`` removed (standardised)."""
    layout = data.layout
    log_scale, weights, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
    keep = np.arange(layout.n_components) != index
    if layout.covariance_type != "tied":
        prec_chol = prec_chol[keep]
    smaller = data.with_components(layout.n_components - 1)
    kept = weights[keep]
    theta = pack(
        smaller.layout, kept / kept.sum(), means[keep], prec_chol, log_scale + np.log(kept.sum())
    )
    return theta, smaller


def split_component(theta, data, index):
    """Parameters for ``K + 1`` components: component ``index`` split in two (standardised).

    The halves sit half a standard deviation either side of the old mean along
    its widest axis, each with half its weight; a full covariance is narrowed
    along that axis so that the pair keeps about the old spread.
    """
    layout = data.layout
    d, cov = layout.n_features, layout.covariance_type
    log_scale, weights, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
    factor = as_matrices(prec_chol, cov, layout.n_components, d)[index]
    covariance = np.linalg.inv(factor @ factor.T)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    step = 0.5 * np.sqrt(eigenvalues[-1]) * eigenvectors[:, -1]
    means = np.vstack([means, means[index] + step])
    means[index] = means[index] - step
    weights = np.append(weights, 0.5 * weights[index])
    weights[index] *= 0.5
    if cov == "full":
        narrowed = covariance - 0.25 * eigenvalues[-1] * np.outer(step, step) / step.dot(step)
        new_factor = np.linalg.inv(np.linalg.cholesky(narrowed)).T
        prec_chol = np.concatenate([prec_chol, new_factor[None]])
        prec_chol[index] = new_factor
    elif cov != "tied":
        prec_chol = np.concatenate([prec_chol, prec_chol[index : index + 1]])
    bigger = data.with_components(layout.n_components + 1)
    return pack(bigger.layout, weights, means, prec_chol, log_scale), bigger


def worst_fitted_component(theta, data):
    """The component with the largest responsibility-weighted squared residual."""
    layout = data.layout
    _, weights, _, _ = unpack(theta, layout, data.fixed_log_scale)
    joint = np.exp(log_component_densities(theta, data.features, layout)) * weights
    total = joint.sum(axis=1)
    resp = joint / np.maximum(total, TINY)[:, None]
    scale = np.exp(theta[0]) if layout.fit_scale else np.exp(data.fixed_log_scale)
    residual = data.target - scale * total
    return int(np.argmax((data.quadrature * residual**2) @ resp))


@np.errstate(under="ignore")
def parked_components(theta, data, grid, min_share, min_width):
    """Components that fit nothing of their own on the grid.

    Those holding less than ``min_share`` of the fitted mass on the grid,
    those whose mean lies outside the grid's bounding box (a component parked
    off the grid, whose tail stands in for a slope or for noise), and those
    pressed against the smallest width ``min_width`` (a spike on a point or
    two, often a fit of noise; 0 leaves them alone).
    """
    layout = data.layout
    shares = component_mass_shares(theta, data)
    _, _, means, prec_chol = unpack(theta, layout, data.fixed_log_scale)
    outside = np.any((means < grid.min(axis=0)) | (means > grid.max(axis=0)), axis=1)
    return np.flatnonzero(
        (shares < min_share) | outside | at_width_floor(layout, prec_chol, min_width)
    )


def at_width_floor(layout, prec_chol, min_width):
    """Components with a precision Cholesky diagonal at ``1 / min_width`` (within 1%)."""
    diagonal = cholesky_diagonals(
        prec_chol, layout.covariance_type, layout.n_components, layout.n_features
    )
    return np.any(diagonal * min_width >= 0.99, axis=1)


def weakest_component(theta, data, grid):
    """The component whose removal raises the loss least, as a one-element array.

    In a poor local optimum two components often share one peak while
    another covers two: the weakest one is then better placed elsewhere.
    """
    losses = [
        value_and_gradient(*without_component(theta, data, k))[0]
        for k in range(data.layout.n_components)
    ]
    return np.array([int(np.argmin(losses))])


def replace_components(result, grid, data, solve, choose):
    """Re-place components chosen by ``choose``, as long as that lowers the loss.

    ``choose(theta, data, grid)`` names the components worth moving: parked
    ones (a component parked outside the grid, or holding no mass on it, is a
    sign of a poor local optimum, where the other components share more
    structure than they should; see :func:`parked_components`) or the
    weakest one (:func:`weakest_component`). Each in turn is removed and
    placed again two ways, where the residual is best fitted by a component
    shape (:func:`grow_by_one` with a matched filter) and by splitting the
    component that fits worst; ``solve(theta)`` re-minimises each, and the
    best is kept if it lowers the loss by more than ``MIN_MOVE_GAIN`` of it.
    It stops once no chosen component's re-placing does (an exact fit that
    carries an invisible component, for one, or a peak cut off by the grid's
    edge); a component whose re-placing failed (recognised by its mean and
    precision factor) is not tried again.
    """
    failed = []  # components whose re-placing did not pay (see _component_vectors)
    for _ in range(data.layout.n_components):
        if data.layout.n_components < 2 or not np.isfinite(result.loss):
            return result
        improved = None
        components = _component_vectors(result.theta, data.layout, data.fixed_log_scale)
        for component in choose(result.theta, data, grid):
            if any(np.allclose(components[component], other) for other in failed):
                continue
            theta, smaller = without_component(result.theta, data, component)
            starts = [split_component(theta, smaller, worst_fitted_component(theta, smaller))[0]]
            # a matched filter: the replacement may be a broad low peak under noise
            grown = grow_by_one(theta, smaller, grid, placement="filter")
            if grown is not None:
                starts.append(grown[0])
            candidate = min((solve(start) for start in starts), key=lambda r: r.loss)
            if candidate.loss < (1 - MIN_MOVE_GAIN) * result.loss:
                improved = candidate
                break
            failed.append(components[component])
        if improved is None:
            return result
        improved.n_iter += result.n_iter
        result = improved
    return result


def _component_vectors(theta, layout, fixed_log_scale):
    """Each component's mean and precision factor as one row, to recognise it.

    (Not its weight: the weights of all components change when one moves.)
    """
    _, _, means, prec_chol = unpack(theta, layout, fixed_log_scale)
    k = layout.n_components
    if layout.covariance_type == "tied":
        prec_chol = np.broadcast_to(prec_chol, (k, *prec_chol.shape))
    return np.column_stack([means, np.reshape(prec_chol, (k, -1))])
