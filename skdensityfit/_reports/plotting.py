"""Pictures of a fit: :func:`plot_fit` (needs the optional matplotlib)."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._engine.prediction import background_at
from .._model.covariance import as_matrices, log_gaussian_density

INSTALL_HINT = 'pip install "skdensityfit[plot]"'
# 1-D targets with more points than this are drawn as a line instead of markers.
_MAX_MARKERS = 300
# Points of the smooth curves drawn in 1-D (the grid's own points are added).
_CURVE_POINTS = 1000


def _require_matplotlib():
    """Import matplotlib, or raise an ImportError that says how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"Plotting needs matplotlib, an optional dependency of skdensityfit: {INSTALL_HINT}"
        ) from exc


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def plot_fit(
    model,
    X,
    y,
    ax=None,
    *,
    components=True,
    residuals=None,
    n_sigma=(1, 2),
    legend=True,
    colorbar=True,
):
    """Draw a fitted mixture over the density it was fitted to.

    In 1-D: the target density (markers, or a line above 300 points), the
    fitted density, each weighted component ``scale_ * weights_[k] *
    N(x; means_[k], covariances_[k])`` (dashed) and, in a panel below, the
    residuals ``y - fit`` at the grid points. The curves are drawn on a fine
    grid that includes the points of ``X``.

    In 2-D: filled contours of the target (as an image when ``X`` is a
    product grid, a triangulation of scattered points otherwise), the fit as
    contour lines at the same levels, and for each component its mean and
    its ``n_sigma`` ellipses (from the eigen-decomposition of its covariance;
    the 1-sigma ellipse of a 2-D Gaussian holds 39% of its mass, the 2-sigma
    one 86%). With ``residuals=True``, the residuals as a second image on the
    right.

    The grid axes are labelled with the model's ``feature_names_in_`` (set
    when it was fitted on a DataFrame; for :class:`DensityGMMCV`, its own),
    the density with the name of ``y`` (a named Series); otherwise ``x`` (or
    ``x[0]``, ``x[1]``) and ``density``.

    Every artist drawn carries a ``gid`` (``'target'``, ``'fit'``,
    ``'component-k'``, ``'mean-k'``, ``'ellipse-k-n'``, ``'residuals'``), so
    it can be found and restyled afterwards.

    Parameters
    ----------
    model : DensityGMM or DensityGMMCV
        A fitted model with 1 or 2 grid dimensions (for
        :class:`DensityGMMCV`, its ``best_estimator_`` is drawn).

    X : array-like of shape (n_points,) or (n_points, n_features)
        The grid the model was fitted on (or any grid of the same dimension).
        A DataFrame must have the columns of the fit.

    y : array-like of shape (n_points,)
        The target density on ``X``.

    ax : matplotlib.axes.Axes or pair of Axes, default=None
        Where to draw. None makes a new figure. A single Axes receives the
        fit, and the residuals, when drawn, get a panel split off it (below
        in 1-D, to the right in 2-D). A pair ``(ax, ax_residuals)`` receives
        the fit and the residuals.

    components : bool, default=True
        Draw the weighted components (1-D), or the component means and
        ellipses (2-D).

    residuals : bool, default=None
        Draw the residuals ``y - fit``. None draws them in 1-D, or when
        ``ax`` is a pair.

    n_sigma : sequence of float, default=(1, 2)
        2-D only: the ellipses drawn for each component, in standard
        deviations (Mahalanobis radii).

    legend : bool, default=True
        Draw a legend (target, fit, components with their parameters). In
        1-D the top of the y axis is raised to make room for it above the
        data.

    colorbar : bool, default=True
        2-D only: draw a colour bar for the target (and the residuals).

    Returns
    -------
    ax : matplotlib.axes.Axes
        The axes of the fit; ``ax.figure`` is its figure.

    ax_residuals : matplotlib.axes.Axes or None
        The axes of the residuals, None when they are not drawn.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the model is not fitted.
    TypeError
        If the model is not a DensityGMM or DensityGMMCV (e.g. a Pipeline).
    ValueError
        If the model has more than 2 grid dimensions, or ``X`` and ``y`` do
        not match it.
    ImportError
        If matplotlib is not installed (``pip install "skdensityfit[plot]"``).

    See Also
    --------
    DensityGMM.predict_density : The fitted density drawn here.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")  # no window: draw into files only
    >>> from skdensityfit import DensityGMM, make_writeup_problem, plot_fit
    >>> grid, density, _ = make_writeup_problem()
    >>> model = DensityGMM(n_components=2, random_state=0).fit(grid, density)
    >>> ax, ax_residuals = plot_fit(model, grid, density)
    >>> len([line for line in ax.lines if line.get_gid().startswith("component")])
    2
    >>> ax.figure.savefig("writeup_fit.png")  # doctest: +SKIP
    """
    names = getattr(model, "feature_names_in_", None)  # a DensityGMMCV's, not its best's
    model = _fitted_mixture(model)
    labels = _axis_labels(model, names, X, y)
    X, y = _check_data(model, X, y)
    _require_matplotlib()
    dimension = X.shape[1]
    pair = isinstance(ax, tuple | list | np.ndarray)
    if pair and len(ax) != 2:
        raise ValueError(f"ax should be one Axes or a pair (ax, ax_residuals), got {len(ax)}.")
    if residuals is None:
        residuals = dimension == 1 or pair
    if pair:
        ax, ax_residuals = ax[0], ax[1] if residuals else None
    import warnings

    # X is drawn as an array: a model fitted with feature names would warn at each call.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _NO_FEATURE_NAMES, UserWarning)
        if dimension == 1:
            if not pair:
                ax, ax_residuals = _axes_1d(ax, residuals)
            _draw_1d(model, X[:, 0], y, ax, ax_residuals, components, legend, labels)
        else:
            if not pair:
                ax, ax_residuals = _axes_2d(ax, residuals)
            _draw_2d(model, X, y, ax, ax_residuals, components, n_sigma, legend, colorbar, labels)
    return ax, ax_residuals


# ----------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------
def _fitted_mixture(model):
    """The fitted :class:`DensityGMM` to draw (a CV search's best estimator)."""
    check_is_fitted(model)
    model = getattr(model, "best_estimator_", model)
    check_is_fitted(model)
    if not hasattr(model, "means_"):
        raise TypeError(
            f"plot_fit draws a fitted DensityGMM or DensityGMMCV, got {type(model).__name__}. "
            "For a Pipeline ending in a DensityGMM, draw its last step on the transformed "
            "grid: plot_fit(pipe[-1], pipe[:-1].transform(X), y)."
        )
    if model.n_features_in_ > 2:
        raise ValueError(
            f"plot_fit draws 1-D and 2-D fits; this model has {model.n_features_in_} grid "
            "dimensions. Plot a slice or a marginal instead: evaluate "
            "model.predict_density on grid points that fix the other coordinates, or fit a "
            "1-D or 2-D model to the density summed over the other axes and plot that."
        )
    return model


# The start of scikit-learn's warning for an array passed to a model fitted on a DataFrame.
_NO_FEATURE_NAMES = "X does not have valid feature names"


def _axis_labels(model, names, X, y):
    """Labels of the grid axes and of the density: the feature names of the fit if any.

    A DataFrame ``X`` must have the columns the model was fitted with; a named
    Series ``y`` names the density.
    """
    columns = getattr(X, "columns", None)
    if names is not None and columns is not None and list(map(str, columns)) != list(names):
        raise ValueError(
            f"X has the columns {list(columns)}, but the model was fitted on {list(names)}: "
            "pass the grid with the columns of the fit."
        )
    if names is None:
        grid = ["x"] if model.n_features_in_ == 1 else ["x[0]", "x[1]"]
    else:
        grid = [str(name) for name in names]
    density = getattr(y, "name", None)
    return grid, density if isinstance(density, str) and density else "density"


def _check_data(model, X, y):
    d = model.n_features_in_
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(
            f"X has shape {X.shape}, but the model was fitted on a grid of {d} feature(s): "
            f"pass the grid as (n_points,) or (n_points, {d})."
        )
    y = np.asarray(y, dtype=float)
    if y.shape not in ((len(X),), (len(X), 1)):
        raise ValueError(
            f"y has shape {y.shape}, but X has {len(X)} points: pass the density at each "
            "point of X as a 1-D array."
        )
    return X, y.reshape(-1)


def _score_label(model, X, y):
    name = "R²" if model.loss == "l2" else "D²"
    return f"{name} = {model.score(X, y):.6f}"


# ----------------------------------------------------------------------
# 1-D
# ----------------------------------------------------------------------
def _axes_1d(ax, residuals):
    if ax is None:
        plt = _pyplot()
        if residuals:
            _, (ax, ax_residuals) = plt.subplots(
                2, 1, sharex=True, figsize=(7.5, 5.5), height_ratios=[3, 1], layout="constrained"
            )
            return ax, ax_residuals
        _, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
        return ax, None
    if not residuals:
        return ax, None
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    ax_residuals = make_axes_locatable(ax).append_axes("bottom", size="33%", pad=0.1, sharex=ax)
    return ax, ax_residuals


def _component_densities_1d(model, x):
    """``scale_ * weights_[k] * N(x; means_[k], variance_k)``, shape (len(x), n_components)."""
    with np.errstate(under="ignore"):
        log_pdf = log_gaussian_density(
            x[:, None], model.means_, model.precisions_cholesky_, model.covariance_type
        )
    return model.scale_ * model.weights_ * np.exp(log_pdf)


def _curve(model, X):
    """The fitted density at points: with bins, the pdf (not the bins' averages) plus background."""
    if getattr(model, "bin_edges_", None) is None:
        return model.predict_density(X)
    curve = model.scale_ * np.exp(model.score_samples(X))
    if getattr(model, "background_", None) is not None:
        curve = curve + background_at(model, X)
    return curve


def _covariance_matrices(model):
    k, d = model.n_components, model.n_features_in_
    return as_matrices(model.covariances_, model.covariance_type, k, d)


def _make_room_at_the_top(ax, y, n_rows):
    """Raise the top of the y axis so a legend of ``n_rows`` rows does not hide the data."""
    low, high = min(np.min(y), 0.0), np.max(y)
    span = (high - low) or 1.0
    fraction = min(0.5, 0.05 + 0.06 * n_rows)  # of the axes height, for the legend
    ax.set_ylim(low - 0.03 * span, high + span * fraction / (1 - fraction))


def _draw_1d(model, x, y, ax, ax_residuals, components, legend, labels):
    order = np.argsort(x, kind="stable")
    # Open markers (above the fit line when they are few, so both stay visible where
    # they agree; smaller and under it when they crowd), or a broad light line under it.
    if len(x) <= _MAX_MARKERS:
        few = len(x) <= 120
        style = {
            "marker": "o",
            "ms": 5 if few else 3.5,
            "mfc": "none",
            "mew": 1 if few else 0.8,
            "ls": "none",
            "zorder": 5 if few else 3,
        }
        color = "0.4" if few else "0.5"
    else:
        style, color = {"lw": 4, "zorder": 2}, "0.7"
    ax.plot(x[order], y[order], color=color, label="target", gid="target", **style)
    curve_x = np.union1d(x, np.linspace(x.min(), x.max(), _CURVE_POINTS))
    fit_label = f"fit, K = {model.n_components} ({_score_label(model, x[:, None], y)})"
    ax.plot(
        curve_x,
        _curve(model, curve_x[:, None]),
        color="black",
        lw=1.5,
        label=fit_label,
        gid="fit",
        zorder=4,
    )
    if components:
        parts = _component_densities_1d(model, curve_x)
        stds = np.sqrt(_covariance_matrices(model)[:, 0, 0])
        for k in range(model.n_components):
            label = (
                f"component {k}: weight {model.weights_[k]:.3g}, mean "
                f"{model.means_[k, 0]:.4g}, sd {stds[k]:.3g}"
            )
            color = f"C{k % 10}"
            ax.plot(
                curve_x, parts[:, k], "--", color=color, lw=1.3, label=label, gid=f"component-{k}"
            )
            ax.fill_between(curve_x, parts[:, k], color=color, alpha=0.12, lw=0, zorder=1)
    ax.set_ylabel(labels[1])
    if legend:
        entries = 2 + (model.n_components if components else 0)
        n_columns = 1 if entries <= 6 else 2
        _make_room_at_the_top(ax, y, -(-entries // n_columns))
        ax.legend(fontsize="small", loc="upper right", ncols=n_columns)
    if ax_residuals is None:
        ax.set_xlabel(labels[0][0])
        return
    ax.tick_params(labelbottom=False)
    residual = y - model.predict_density(x[:, None])
    ax_residuals.axhline(0.0, color="black", lw=0.8)
    ax_residuals.plot(x[order], residual[order], color="0.3", gid="residuals", **{**style, "lw": 1})
    limit = np.max(np.abs(residual))
    if limit > 0:
        ax_residuals.set_ylim(-1.15 * limit, 1.15 * limit)
    ax_residuals.set_ylabel("target \N{MINUS SIGN} fit")
    ax_residuals.set_xlabel(labels[0][0])


# ----------------------------------------------------------------------
# 2-D
# ----------------------------------------------------------------------
def _axes_2d(ax, residuals):
    if ax is None:
        plt = _pyplot()
        if residuals:
            _, (ax, ax_residuals) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
            return ax, ax_residuals
        _, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
        return ax, None
    if not residuals:
        return ax, None
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    ax_residuals = make_axes_locatable(ax).append_axes("right", size="100%", pad=0.9)
    return ax, ax_residuals


def _product_grid(X):
    """``(axis_0, axis_1, flat_index)`` when X is a full product grid, else None.

    ``flat_index[i]`` is the position of point ``i`` in an image of shape
    ``(len(axis_1), len(axis_0))``.
    """
    axis_0, index_0 = np.unique(X[:, 0], return_inverse=True)
    axis_1, index_1 = np.unique(X[:, 1], return_inverse=True)
    if len(axis_0) < 2 or len(axis_1) < 2 or len(axis_0) * len(axis_1) != len(X):
        return None
    flat = index_1.ravel() * len(axis_0) + index_0.ravel()
    if np.bincount(flat, minlength=len(X)).max() > 1:
        return None
    return axis_0, axis_1, flat


def _image(values, grid):
    axis_0, axis_1, flat = grid
    image = np.empty(len(axis_0) * len(axis_1))
    image[flat] = values
    return image.reshape(len(axis_1), len(axis_0))


def _filled(ax, X, values, grid, **kwargs):
    if grid is None:
        return ax.tricontourf(X[:, 0], X[:, 1], values, **kwargs)
    return ax.contourf(grid[0], grid[1], _image(values, grid), **kwargs)


def _draw_2d(model, X, y, ax, ax_residuals, components, n_sigma, legend, colorbar, labels):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    grid = _product_grid(X)
    fitted = model.predict_density(X)
    filled = _filled(ax, X, y, grid, levels=12, cmap="Blues")
    filled.set_gid("target")
    # The fit at every other level of the target: where they agree, lines follow colour steps.
    line_levels = [level for level in filled.levels if level > 0][1:-1:2] or [0.5 * y.max()]
    if grid is None:
        lines = ax.tricontour(X[:, 0], X[:, 1], fitted, levels=line_levels, colors="black")
    else:
        lines = ax.contour(
            grid[0], grid[1], _image(fitted, grid), levels=line_levels, colors="black"
        )
    lines.set(linewidths=1.0, gid="fit")
    handles = [
        Line2D([], [], color="black", lw=1.0, label=f"fit ({_score_label(model, X, y)})"),
    ]
    if colorbar:
        ax.figure.colorbar(filled, ax=ax, label=f"target {labels[1]}")
    if components:
        covariances = _covariance_matrices(model)
        eigenvalues, eigenvectors = np.linalg.eigh(covariances)
        # eigh sorts ascending: the last eigenvector is the major axis.
        angles = np.degrees(np.arctan2(eigenvectors[:, 1, 1], eigenvectors[:, 0, 1]))
        for k in range(model.n_components):
            color = f"C{(k + 1) % 10}"  # C0 is close to the target's blues
            for n, style in zip(n_sigma, ["-", "--", ":", "-."] * len(n_sigma), strict=False):
                ellipse = Ellipse(
                    model.means_[k],
                    width=2 * n * np.sqrt(eigenvalues[k, 1]),
                    height=2 * n * np.sqrt(eigenvalues[k, 0]),
                    angle=angles[k],
                    fill=False,
                    edgecolor=color,
                    linestyle=style,
                    lw=2,
                    zorder=3,
                    gid=f"ellipse-{k}-{n:g}",
                )
                ax.add_patch(ellipse)
            ax.plot(
                *model.means_[k], "X", color=color, ms=10, mec="white", zorder=4, gid=f"mean-{k}"
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    color=color,
                    marker="X",
                    mec="white",
                    ms=10,
                    lw=2,
                    label=f"component {k}: weight {model.weights_[k]:.3g}",
                )
            )
        for n, style in zip(n_sigma, ["-", "--", ":", "-."] * len(n_sigma), strict=False):
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.4",
                    lw=2,
                    ls=style,
                    label=f"{n:g}\N{GREEK SMALL LETTER SIGMA} ellipses",
                )
            )
    ax.set_xlim(X[:, 0].min(), X[:, 0].max())
    ax.set_ylim(X[:, 1].min(), X[:, 1].max())
    ax.set_xlabel(labels[0][0])
    ax.set_ylabel(labels[0][1])
    if legend:
        ax.legend(handles=handles, fontsize="small", loc="best", framealpha=0.85)
    if ax_residuals is None:
        return
    residual = y - fitted
    from matplotlib.ticker import MaxNLocator

    limit = np.max(np.abs(residual)) or 1.0
    levels = MaxNLocator(12, symmetric=True).tick_values(-limit, limit)
    image = _filled(ax_residuals, X, residual, grid, levels=levels, cmap="RdBu_r")
    image.set_gid("residuals")
    ax_residuals.set_xlim(X[:, 0].min(), X[:, 0].max())
    ax_residuals.set_ylim(X[:, 1].min(), X[:, 1].max())
    ax_residuals.set_xlabel(labels[0][0])
    ax_residuals.set_title("target \N{MINUS SIGN} fit", fontsize="medium")
    if colorbar:
        ax.figure.colorbar(image, ax=ax_residuals, label="residual")
