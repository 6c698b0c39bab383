"""Input checks: grids, densities, sample weights and user starts; quadrature weights of grids."""

import numpy as np
from sklearn.utils.validation import validate_data

from .._model.covariance import MATRIX_TYPES, cholesky_from_precisions, parameter_shape


def _as_2d_grid(X, n_features=1):
    """Read a 1-D grid ``(n_points,)`` as one column when one feature is expected."""
    is_1d = np.ndim(X) == 1 if isinstance(X, (list, tuple)) else getattr(X, "ndim", None) == 1
    if not is_1d:
        return X
    if n_features != 1:
        raise ValueError(
            f"Expected a 2-D grid of shape (n_points, {n_features}), got a 1-D array "
            "instead. Reshape your data either using array.reshape(-1, 1) if your data "
            "has a single feature or array.reshape(1, -1) if it contains a single sample."
        )
    return X.to_frame() if hasattr(X, "to_frame") else np.asarray(X).reshape(-1, 1)


def check_grid(estimator, X, *, reset):
    """Validate a grid at predict time (``reset=False``) or fit time."""
    return validate_data(
        estimator,
        _as_2d_grid(X, 1 if reset else estimator.n_features_in_),
        reset=reset,
        dtype=np.float64,
        ensure_min_samples=1,
    )


def check_grid_density(estimator, X, y, *, reset=True):
    """Validate a grid and the density on it.

    Returns float64 arrays ``X`` of shape ``(n_points, n_features)`` and ``y`` of
    shape ``(n_points,)``. Errors follow scikit-learn's wording.
    """
    check_no_gaps(y, "y")
    X, y = validate_data(
        estimator,
        _as_2d_grid(X, 1 if reset else estimator.n_features_in_),
        y,
        reset=reset,
        dtype=np.float64,
        y_numeric=True,
        ensure_min_samples=2 if reset else 1,
    )
    return X, np.asarray(y, dtype=np.float64)


def check_no_gaps(Y, name):
    """Refuse a masked array (its mask would be dropped silently), NaN and infinite values
    and booleans, saying how to pass points without a value."""
    how = (
        "set it to 0 there with sample_weight 0 at those points (in fit_many, a "
        "per-row sample_weight), or drop those points from the grid and the density "
        "(in fit_many, per_density_grids=True)."
    )
    if Y is None:
        return  # validate_data says y is required
    if np.asarray(Y).dtype == bool:
        raise ValueError(
            f"{name} is boolean (a mask?): a density holds numbers. Pass the density's "
            "values, or y.astype(float) if 0 and 1 are what you mean."
        )
    if np.ma.isMaskedArray(Y) and np.ma.getmaskarray(Y).any():
        raise ValueError(
            f"{name} is a masked array with {int(np.ma.getmaskarray(Y).sum())} masked "
            f"values, and a mask is not read as missing data: {how}"
        )
    values = np.asarray(Y)
    if values.dtype.kind != "f":
        return  # integers have no NaN; complex values or strings: validate_data says so
    missing = np.isnan(values)
    if missing.any():
        raise ValueError(
            f"Input {name} contains NaN ({int(missing.sum())} of {missing.size} values). "
            f"A density has a value at every grid point: {how}"
        )
    infinite = np.isinf(values)
    if infinite.any():
        raise ValueError(
            f"Input {name} contains infinity ({int(infinite.sum())} of {infinite.size} "
            "values), e.g. from a division by zero or the log of 0. A density is finite: "
            f"fix those values, or if they are not measured, {how}"
        )


def check_density_values(y, loss):
    """Refuse densities the chosen loss cannot fit, saying what to do."""
    if not np.any(y > 0):
        raise ValueError(
            "The density has no positive value: a Gaussian mixture cannot fit it. "
            "Check that y holds the density values (not e.g. its logarithm)."
        )
    if loss == "poisson" and np.any(y < 0):
        raise ValueError(
            "loss='poisson' needs a non-negative density, but y has "
            f"{np.sum(y < 0)} negative values (min {y.min():.3g}). Use loss='l2', "
            "which accepts negative values (noise, background subtraction), or clip "
            "y at zero yourself."
        )


def check_sample_weight(sample_weight, n_points):
    """Validate user quadrature weights: finite, non-negative, not all zero."""
    sample_weight = np.asarray(sample_weight, dtype=np.float64)
    if sample_weight.ndim != 1 or sample_weight.shape[0] != n_points:
        raise ValueError(f"sample_weight.shape == {sample_weight.shape}, expected ({n_points},)!")
    if not np.all(np.isfinite(sample_weight)):
        raise ValueError("sample_weight contains NaN or infinity.")
    if np.any(sample_weight < 0):
        raise ValueError("Negative values in data passed to sample_weight.")
    if not np.any(sample_weight > 0):
        raise ValueError("sample_weight is zero everywhere: no point would count.")
    return sample_weight


def unique_values(values, *, return_index=False, return_inverse=False, return_counts=False):
    """:func:`numpy.unique` of a 1-D array, in one pass when it is already sorted (a grid's
    axis usually is: sorting a million points again costs more than the fit's kernel)."""
    values = np.asarray(values)
    if values.size < 2 or not np.all(values[1:] >= values[:-1]):  # unsorted, or NaN
        return np.unique(
            values,
            return_index=return_index,
            return_inverse=return_inverse,
            return_counts=return_counts,
        )
    new = np.concatenate([[True], values[1:] != values[:-1]])
    first = np.flatnonzero(new)
    out = [values[first]]
    if return_index:
        out.append(first)
    if return_inverse:
        out.append(np.cumsum(new) - 1)
    if return_counts:
        out.append(np.diff(np.append(first, values.size)))
    return out[0] if len(out) == 1 else tuple(out)


def _cell_sizes_1d(values):
    """Voronoi cell length of each distinct sorted value (ends mirrored)."""
    if values.size == 1:
        return np.ones(1)
    gaps = np.diff(values)
    left = np.concatenate([gaps[:1], gaps])
    right = np.concatenate([gaps, gaps[-1:]])
    return 0.5 * (left + right)


def quadrature_weights(X):
    """Cell sizes of the grid points, normalised to sum to one.

    On a 1-D grid or a tensor-product N-D grid (in any order, with any spacing
    per axis) each point gets the size of its cell, so a non-uniform grid does
    not bias the fit towards where points are dense. Duplicated points share
    their cell. A scattered N-D point cloud gets equal weights.
    """
    n_points, n_features = X.shape
    axis_weights = []
    axis_codes = []
    for j in range(n_features):
        column = X[:, j]
        extent = np.ptp(column)
        # round off float noise (1e-15 jitter) so that a product grid is still seen as one
        key = np.round((column - column.min()) / extent, 9) if extent > 0 else column
        _, first, codes = unique_values(key, return_index=True, return_inverse=True)
        values = column[first]
        axis_weights.append(_cell_sizes_1d(values))
        axis_codes.append(codes.ravel())
    sizes = [w.size for w in axis_weights]
    n_cells = np.prod(sizes, dtype=float)
    if n_features == 1:  # the cells are the axis's distinct values
        point_codes = axis_codes[0]
        multiplicity = np.bincount(point_codes, minlength=sizes[0])
    elif n_cells < 2.0**62:  # one integer per cell: unique of rows sorts slowly
        cell = np.zeros(n_points, dtype=np.int64)
        for size, codes in zip(sizes, axis_codes, strict=True):
            cell = cell * size + codes
        _, point_codes, multiplicity = unique_values(cell, return_inverse=True, return_counts=True)
    else:
        _, point_codes, multiplicity = np.unique(
            np.column_stack(axis_codes), axis=0, return_inverse=True, return_counts=True
        )
    point_codes = point_codes.ravel()
    if n_features > 1 and n_cells != multiplicity.size:
        weights = np.ones(n_points)
    else:
        weights = np.ones(n_points)
        for w, codes in zip(axis_weights, axis_codes, strict=True):
            weights = weights * w[codes]
    weights = weights / multiplicity[point_codes]
    return weights / weights.sum()


def _check_user_array(value, shape, name):
    value = np.asarray(value, dtype=float)
    if value.shape != shape:
        raise ValueError(f"{name} should have the shape {shape}, but got {value.shape}.")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} contains NaN or infinity.")
    return value


def check_user_weights(weights, n_components):
    """``weights_init``: positive, summing to one."""
    weights = _check_user_array(weights, (n_components,), "weights_init")
    if np.any(weights <= 0) or not np.isclose(weights.sum(), 1.0):
        raise ValueError(
            "weights_init should be positive and sum to 1, but got "
            f"{weights} (sum {weights.sum():.6g})."
        )
    return weights


def check_user_means(means, n_components, n_features):
    """``means_init``: finite, one row per component."""
    return _check_user_array(means, (n_components, n_features), "means_init")


def check_user_precision_cholesky(precisions, covariance_type, n_components, n_features):
    """The precision Cholesky factors of ``precisions_init`` (symmetric positive definite)."""
    shape = parameter_shape(covariance_type, n_components, n_features)
    precisions = _check_user_array(precisions, shape, "precisions_init")
    if covariance_type in MATRIX_TYPES:
        if not np.allclose(precisions, np.swapaxes(precisions, -1, -2)):
            raise ValueError("precisions_init should be symmetric.")
    elif np.any(precisions <= 0):
        raise ValueError("precisions_init should be positive.")
    try:
        return cholesky_from_precisions(precisions, covariance_type)
    except np.linalg.LinAlgError as exc:
        raise ValueError("precisions_init should be symmetric positive definite.") from exc
