"""What a fit reports: scores, standard errors, summaries, information criteria, warnings.

:class:`FitReportsMixin` gives :class:`~._estimator.DensityGMM` its
``standard_errors``, ``summary``, ``fit_report``, ``aic`` and ``bic``; it
reads only the estimator's parameters and fitted attributes. The warnings
here flag fits that are probably not what the user wants.
"""

import numpy as np
from scipy.special import gammaln, xlogy
from sklearn.utils.validation import check_is_fitted

from .._compat import warn_at_caller
from .._data.noise import Grid, counting_quantum
from .._data.rowwise import combined_columns, row_grams, row_products
from .._data.validation import (
    check_density_values,
    check_grid_density,
    check_sample_weight,
    unique_values,
)
from .._engine.fitting import NEGLIGIBLE_WEIGHT
from .._engine.problem import background_term_names, cells_of, problem_of
from .._engine.uncertainty import standard_errors, warn_if_cells_differ
from .._model.covariance import as_matrices
from .._model.parameters import ParameterLayout

EDGE_WARNING_FRACTION = 0.25
# A component centred beyond the grid's edge with a standard deviation above this fraction
# of the grid's extent is a slope, not a line cut by the edge (a baseline's broad
# components, centred 10-25% of the extent outside, have 1/7 to 1/4 of it).
BROAD_OUTSIDE = 0.125
# A component whose standard deviation exceeds this fraction of the grid's extent (the grid
# holds at most +-2 sd of it) is a baseline's dome or a feature the grid cuts, not a line.
BROAD = 0.25
# Two components closer than this Bhattacharyya distance describe one feature.
REDUNDANT_DISTANCE = 0.02


class FitReportsMixin:
    """Reports of a fitted :class:`~._estimator.DensityGMM`."""

    # ------------------------------------------------------------------
    # uncertainties
    # ------------------------------------------------------------------
    def standard_errors(self, X, y, sample_weight=None):
        """Standard errors of the fitted parameters from the curvature of the loss.

        For ``loss='l2'`` the inverse Hessian of the loss is scaled by the
        residual variance, as :func:`scipy.optimize.curve_fit` scales its
        ``pcov``: the noise is taken as independent, with a variance
        proportional to ``1 / quadrature weight`` (equal on a uniform grid).
        For ``loss='poisson'`` it is the inverse of the observed information
        of Poisson counts ``y`` per point: the exact Hessian of the binned
        negative log-likelihood at the fit (pass the bin sizes as
        ``sample_weight`` when ``y`` is a density, as for :meth:`aic`). Both
        Hessians are exact (autograd on the reference model). The errors of
        weights, means, covariances and scale follow by the delta method,
        with the exact Jacobian of the map to them. They describe noise in
        ``y``, not a wrong number of components, and are only meaningful
        when the fit converged.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            The grid the model was fitted on.
        y : array-like of shape (n_points,)
            The density it was fitted to.
        sample_weight : array-like of shape (n_points,), default=None
            As passed to :meth:`fit`.

        Returns
        -------
        errors : dict
            ``weights``, ``means``, ``covariances`` (shaped like the fitted
            attributes) and ``scale`` (and ``background`` with one). All NaN,
            with a warning, when the curvature does not determine them (e.g.
            redundant components, or no more points than parameters).
        """
        check_is_fitted(self)
        problem, theta, X, y = self._problem_of_fit(X, y, sample_weight)
        if self.loss == "poisson" and sample_weight is None:
            warn_if_not_counts(y)
        errors = standard_errors(problem, theta, X, y, sample_weight)
        return _map_parameter_vector(self, errors)

    def _problem_of_fit(self, X, y, sample_weight):
        """The problem of the fitted settings on ``(X, y)`` and the fit's parameter vector."""
        X, y = check_grid_density(self, X, y, reset=False)
        problem = problem_of(self, X, y, sample_weight)
        theta = problem.to_fit(self.weights_, self.means_, self.precisions_cholesky_, self.scale_)
        if problem.data.background is not None:
            theta = np.concatenate([theta, problem.background_to_fit(self.background_)])
        return problem, theta, X, y

    # ------------------------------------------------------------------
    # reports
    # ------------------------------------------------------------------
    def summary(self):
        """The fitted mixture as a plain, JSON-serialisable dict.

        Returns
        -------
        summary : dict
            ``n_components``, ``covariance_type``, ``loss``, ``loss_value``,
            ``converged``, ``n_iter``, ``scale`` and ``components``: one dict
            per component with ``weight``, ``mean`` and ``covariance`` (as
            nested lists, full matrices for every covariance type); with a
            background, ``background``: its coefficients (``background_``).
        """
        check_is_fitted(self)
        covariances = as_matrices(
            self.covariances_, self.covariance_type, self.n_components, self.n_features_in_
        )
        return {
            "n_components": int(self.n_components),
            "n_features": int(self.n_features_in_),
            "covariance_type": self.covariance_type,
            "loss": self.loss,
            "loss_value": float(self.loss_),
            "converged": bool(self.converged_),
            "n_iter": int(self.n_iter_),
            "scale": float(self.scale_),
            "components": [
                {
                    "weight": float(self.weights_[k]),
                    "mean": self.means_[k].tolist(),
                    "covariance": covariances[k].tolist(),
                }
                for k in range(self.n_components)
            ],
            **(
                {
                    "background": self.background_.tolist(),
                    "background_origin": self.background_origin_.tolist(),
                }
                if getattr(self, "background_", None) is not None
                else {}
            ),
        }

    def fit_report(self, X=None, y=None, sample_weight=None):
        """A readable text report of the fit, in the spirit of lmfit's.

        Parameters
        ----------
        X, y, sample_weight : array-like, default=None
            The data of the fit. When given, each value is followed by its
            standard error (see :meth:`standard_errors`).

        Returns
        -------
        report : str
        """
        info = self.summary()
        errors = None if X is None else self.standard_errors(X, y, sample_weight)

        def value(number, error=None):
            return f"{number:.8g}" if error is None else f"{number:.8g} +/- {error:.2g}"

        lines = [
            "[[Fit Statistics]]",
            f"    loss               = {info['loss']}",
            f"    final loss         = {info['loss_value']:.6g}",
            f"    converged          = {info['converged']}",
            f"    iterations         = {info['n_iter']}",
            "    scale (total mass) = "
            + value(info["scale"], None if errors is None else errors["scale"]),
            f"[[Components]] ({info['n_components']}, covariance_type="
            f"'{info['covariance_type']}', ordered by the first coordinate of the mean)",
        ]
        covariance_errors = (
            None
            if errors is None
            else as_matrices(
                errors["covariances"], self.covariance_type, self.n_components, self.n_features_in_
            )
        )
        for k, component in enumerate(info["components"]):
            covariance = np.asarray(component["covariance"])
            stds = np.sqrt(np.diag(covariance))
            # the standard deviation's error from the variance's: d sqrt(v) = dv / (2 sqrt(v))
            std_errors = (
                [None] * len(stds) if errors is None else np.diag(covariance_errors[k]) / (2 * stds)
            )
            mean_errors = [None] * len(stds) if errors is None else errors["means"][k]
            weight_error = None if errors is None else errors["weights"][k]
            lines.append(f"    component {k}:")
            lines.append(f"        weight = {value(component['weight'], weight_error)}")
            lines.append(
                "        mean   = "
                + ", ".join(
                    value(v, e) for v, e in zip(component["mean"], mean_errors, strict=True)
                )
            )
            lines.append(
                "        std    = "
                + ", ".join(value(v, e) for v, e in zip(stds, std_errors, strict=True))
            )
            if len(stds) > 1:
                correlation = covariance / np.outer(stds, stds)
                rows, cols = np.triu_indices(len(stds), 1)
                lines.append(
                    "        corr   = "
                    + ", ".join(
                        f"({i},{j}) {correlation[i, j]:.4f}"
                        for i, j in zip(rows, cols, strict=True)
                    )
                )
        if "background" in info:
            background_errors = [None] * len(info["background"])
            if errors is not None:
                background_errors = errors["background"]
            names = background_term_names(self.background, self.n_features_in_) or [
                f"c{j}" for j in range(len(info["background"]))
            ]
            origin = ", ".join(f"{v:.8g}" for v in info["background_origin"])
            lines.append(f"[[Background]] (coefficients, in the units of y; x from ({origin}))")
            lines.extend(
                f"    {name:8s} = {value(v, e)}"
                for name, v, e in zip(names, info["background"], background_errors, strict=True)
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------
    # information criteria (histograms of counts, Poisson loss)
    # ------------------------------------------------------------------
    def _n_free_parameters(self):
        """Number of free parameters: weights, means, covariances, scale, background."""
        background = getattr(self, "background_", None)
        return ParameterLayout(
            self.n_components, self.n_features_in_, self.covariance_type, self.scale is None
        ).n_parameters + (0 if background is None else background.size)

    def _poisson_log_likelihood(self, X, y, sample_weight):
        if self.loss != "poisson":
            raise ValueError(
                f"{NO_LIKELIHOOD} DensityGMMCV measures one and chooses n_components by the "
                "BIC under it (selection='auto')."
            )
        check_is_fitted(self)
        X, y = check_grid_density(self, X, y, reset=False)
        check_density_values(y, "poisson")
        if sample_weight is None:
            warn_if_not_counts(y)
            warn_if_cells_differ(X)
        cells = (
            np.ones(len(y)) if sample_weight is None else check_sample_weight(sample_weight, len(y))
        )
        counts = cells * y
        expected = np.maximum(cells * self.predict_density(X), np.finfo(float).tiny)
        log_likelihood = np.sum(xlogy(counts, expected) - expected - gammaln(counts + 1))
        return log_likelihood, counts.sum()

    def aic(self, X, y, sample_weight=None):
        """Akaike information criterion of a histogram fit; lower is better.

        Meaningful only for ``loss='poisson'`` fitted to a histogram: ``y``
        the counts per bin (or a density with ``sample_weight`` the bin
        sizes, so that ``y * sample_weight`` are the counts). The counts are
        taken as independent Poisson variables with mean the fitted curve.
        For densities in other units, and for the 'l2' loss, there is no
        likelihood: use :class:`DensityGMMCV`.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Bin centres.
        y : array-like of shape (n_points,)
            Counts per bin, or the density with ``sample_weight``.
        sample_weight : array-like of shape (n_points,), default=None
            Bin sizes when ``y`` is a density; None when ``y`` holds counts.

        Returns
        -------
        aic : float
        """
        log_likelihood, _ = self._poisson_log_likelihood(X, y, sample_weight)
        return float(2 * self._n_free_parameters() - 2 * log_likelihood)

    def bic(self, X, y, sample_weight=None):
        """Bayesian information criterion of a histogram fit; lower is better.

        As :meth:`aic`, with ``log(number of counts)`` per parameter: the
        number of observations of a histogram is the number of samples in it.

        Parameters
        ----------
        X : array-like of shape (n_points,) or (n_points, n_features)
            Bin centres.
        y : array-like of shape (n_points,)
            Counts per bin, or the density with ``sample_weight``.
        sample_weight : array-like of shape (n_points,), default=None
            Bin sizes when ``y`` is a density; None when ``y`` holds counts.

        Returns
        -------
        bic : float
        """
        log_likelihood, n_counts = self._poisson_log_likelihood(X, y, sample_weight)
        return float(self._n_free_parameters() * np.log(n_counts) - 2 * log_likelihood)


def _map_parameter_vector(model, vector):
    """Split ``[weights, means, covariances, scale]`` into arrays shaped like the fit."""
    sizes = np.cumsum([model.weights_.size, model.means_.size, model.covariances_.size])
    mapped = {
        "weights": vector[: sizes[0]],
        "means": vector[sizes[0] : sizes[1]].reshape(model.means_.shape),
        "covariances": vector[sizes[1] : sizes[2]].reshape(model.covariances_.shape),
        "scale": float(vector[sizes[2]]),
    }
    if getattr(model, "background_", None) is not None:
        mapped["background"] = vector[sizes[2] + 1 :]
    return mapped


def score_prediction(loss, y, predicted, weights):
    """R^2 (``loss='l2'``) or D^2 (``loss='poisson'``) of a predicted density.

    The same values as :func:`sklearn.metrics.r2_score` and
    :func:`sklearn.metrics.d2_tweedie_score` with ``power=1`` (the tests
    compare them), computed directly: cross-validation scores many folds,
    and those functions' input checks cost more than the arithmetic. Both
    scores do not change with the density's unit, so they are computed with
    ``y`` and the prediction divided by the largest ``|y|``: densities of
    1e-300 or 1e300 score as they would near 1, without under- or overflow.
    """
    if len(y) < 2:  # as scikit-learn: a score of one point is not defined
        return float("nan")
    weights = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    unit = np.max(np.abs(y))
    if unit > 0:
        y, predicted = y / unit, np.asarray(predicted) / unit
    average = (weights @ y) / weights.sum()
    if loss == "l2":
        residual = weights @ (y - predicted) ** 2
        total = weights @ (y - average) ** 2
    else:
        predicted = np.maximum(predicted, np.finfo(float).tiny)
        if not np.any(y > 0):
            # D^2 is 0/0 on a density that is zero everywhere; like r2_score's
            # force_finite, a perfect prediction scores 1 and any other 0.
            return 1.0 if np.allclose(predicted, 0.0) else 0.0
        residual = weights @ (xlogy(y, y / predicted) - y + predicted)
        total = weights @ (xlogy(y, y / average) - y + average)
    size = weights @ (y**2 if loss == "l2" else np.abs(y))
    if total <= 1e-12 * size:
        # a constant density, up to rounding in its average: as r2_score's
        # force_finite, a perfect prediction scores 1 and any other 0
        return 1.0 if np.allclose(predicted, y, rtol=1e-9, atol=0.0) else 0.0
    return float(1.0 - residual / total)


def warn_if_components_are_redundant(model, fit, chosen=False):
    """Warn when the data does not support all components, or a component sits at the floor.

    Signs of surplus components: two nearly coincide, a weight is
    negligible, or a component holds a negligible share of the fitted mass
    on the grid (``fit.mass_shares``: parked outside it, or narrower than the
    grid spacing between points). A component pressed against the width
    floor (``fit.at_width_floor``, half the grid spacing) describes
    a point or two: a spike on noise, or a feature narrower than the grid
    resolves, whose width and mass are then wrong; that is warned of
    separately, for any number of components. ``chosen``: the fit of a number of
    components :class:`~.cv.DensityGMMCV` chose over a scored candidate with one fewer.
    """
    for message in redundancy_messages(
        model.weights_,
        model.means_,
        as_matrices(
            model.covariances_, model.covariance_type, model.n_components, model.n_features_in_
        ),
        fit.mass_shares,
        fit.at_width_floor,
        chosen,
    ):
        warn_at_caller(message)


def redundancy_messages(weights, means, covariances, shares, at_floor, chosen=False):
    """The texts of :func:`warn_if_components_are_redundant` for one mixture (covariances
    as ``(K, d, d)`` matrices). In a ``chosen`` fit (chosen over a scored candidate with a
    component fewer) a light component is no sign of a component too many: the choice kept
    it over the fit without it; it is said apart."""
    messages = []
    floor = np.flatnonzero(at_floor)
    if len(floor):
        messages.append(
            f"Component(s) {floor.tolist()} are pressed against the width floor (half the "
            "grid spacing where they sit): each describes one or two grid points, a spike on "
            "noise or a feature narrower than the grid resolves, so its width and mass are not "
            "reliable. "
            "Use fewer components (DensityGMMCV chooses their number), or a finer grid (for a "
            "histogram, narrower bins)."
        )
    if len(weights) < 2:
        return messages
    pairs, light = surplus_components(weights, means, covariances)
    absent = np.setdiff1d(np.flatnonzero(shares < NEGLIGIBLE_WEIGHT), light)
    if chosen and len(light):
        messages.append(
            f"Component(s) {light.tolist()} of the chosen fit have weight(s) "
            + ", ".join(f"{weights[i]:.1e}" for i in light)
            + ": the choice kept them over the candidate with a component fewer (a faint "
            "feature the data support). Check that each is not an artefact of the data (a "
            "ripple, a spike) before reading it as a line."
        )
        light = light[:0]
    if len(pairs) or len(light) or len(absent):
        described = [f"components {i} and {j} nearly coincide" for i, j in pairs]
        described += [f"component {i} has weight {weights[i]:.1e}" for i in light]
        described += [
            f"component {i} holds {shares[i]:.1e} of the fitted mass on the grid" for i in absent
        ]
        messages.append(
            f"The data does not support {len(weights)} components ("
            + "; ".join(described)
            + "). Use fewer components; DensityGMMCV chooses their number."
        )
    return messages


def surplus_components(weights, means, covariances):
    """The signs of a component too many in one mixture (covariances as ``(K, d, d)``
    matrices): ``(pairs that nearly coincide (m, 2), components of negligible weight)``."""
    distance = bhattacharyya(means[None], covariances[None])[0]
    pairs = np.argwhere(np.triu(distance < REDUNDANT_DISTANCE, k=1))
    return pairs, np.flatnonzero(weights < NEGLIGIBLE_WEIGHT)


# Why aic and bic are refused under the l2 loss (DensityGMM and DensityGMMCV say what to do).
NO_LIKELIHOOD = (
    "aic and bic need a likelihood, which only loss='poisson' fitted to histogram counts "
    "has; the 'l2' loss has none without a noise model."
)


def bhattacharyya(means, covariances):
    """The Bhattacharyya distance between every two components of each row: means
    ``(R, K, d)``, covariances ``(R, K, d, d)``; ``(R, K, K)``."""
    diff = means[:, :, None, :] - means[:, None, :, :]
    average = 0.5 * (covariances[:, :, None] + covariances[:, None, :])
    maha = np.einsum("rijk,rijk->rij", diff, np.linalg.solve(average, diff[..., None])[..., 0])
    log_dets = np.linalg.slogdet(covariances)[1]
    return 0.125 * maha + 0.5 * (
        np.linalg.slogdet(average)[1] - 0.5 * (log_dets[:, :, None] + log_dets[:, None, :])
    )


def warn_if_components_hold_no_line(model):
    """Warn of components centred outside the grid's box, or broader than a quarter of it.

    Such a component may fit no feature of its own: its tail or its flat top stands in
    for a baseline, a slope or an edge, and it is counted in ``n_components`` all the
    same. Centred outside the box (of the points, or with bins of their outer edges):
    beyond its range along some axis by more than one of its standard deviations (only
    a tail on the grid), or at all with a standard deviation above ``BROAD_OUTSIDE`` of
    the box's extent (a broad slope); a narrower peak just beyond the edge is a line cut
    by it, warned of as such. Broad (:func:`holds_no_line`): a baseline's dome, or a
    broad component that the grid cuts.
    """
    k, d = model.n_components, model.n_features_in_
    for message in no_line_messages(
        model.means_,
        as_matrices(model.covariances_, model.covariance_type, k, d),
        *grid_box(model.grid_axes_, getattr(model, "bin_edges_", None)),
        getattr(model, "background", None),
    ):
        warn_at_caller(message)


def shared_centres(means, covariances):
    """``(..., K, K)``: the pairs of components whose means lie within one standard
    deviation of the narrower (its Mahalanobis distance under that one's covariance),
    diagonal False (``means`` ``(..., K, d)``, ``covariances`` ``(..., K, d, d)``)."""
    log_dets = np.linalg.slogdet(covariances)[1]
    narrower_first = log_dets[..., :, None] <= log_dets[..., None, :]
    narrower = np.where(
        narrower_first[..., None, None],
        covariances[..., :, None, :, :],
        covariances[..., None, :, :, :],
    )
    gap = means[..., :, None, :] - means[..., None, :, :]
    distance = np.einsum("...i,...i->...", gap, np.linalg.solve(narrower, gap[..., None])[..., 0])
    k = means.shape[-2]
    return (distance < 1.0) & ~np.eye(k, dtype=bool)


def concentric_messages(means, covariances):
    """The warning of a chosen mixture with components that share a centre
    (:func:`shared_centres`), as a list of texts (``means`` ``(K, d)``, ``covariances``
    ``(K, d, d)``). A Lorentzian, Voigt or skewed peak is fitted by such a stack."""
    pairs = [f"{i} and {j}" for i, j in np.argwhere(np.triu(shared_centres(means, covariances)))]
    if not pairs:
        return []
    return [
        f"Components {', '.join(pairs)} share a centre (their means within one standard "
        "deviation of the narrower): a peak that is not Gaussian (a Lorentzian, Voigt or "
        "skewed line) is fitted by several Gaussians, and n_components_ counts each. If the "
        "peaks are not Gaussian, count their centres; if they are, this is a narrow "
        "component on a broad one."
    ]


def holds_no_line(means, covariances, low, high):
    """``(outside, broad)``, each ``(..., K)``: components centred outside the box
    ``[low, high]`` (see :func:`warn_if_components_hold_no_line`), and broad ones: a
    standard deviation above ``BROAD`` of the box's extent along some axis, beside other
    components and sharing a centre with none (a single broad component is the density
    itself, cut by the grid; a broad one under a narrower at its centre is a stack that
    :func:`concentric_messages` names)."""
    extent = high - low
    sds = np.sqrt(np.diagonal(covariances, axis1=-2, axis2=-1))
    beyond = np.maximum(low - means, means - high)
    outside = np.any((beyond > sds) | ((beyond > 0) & (sds > BROAD_OUTSIDE * extent)), axis=-1)
    broad = np.any((sds > BROAD * extent) & (extent > 0), axis=-1)
    if means.shape[-2] == 1:
        return outside, np.zeros_like(broad)
    if not broad.any():  # nothing to test (the usual case)
        return outside, broad
    return outside, broad & ~shared_centres(means, covariances).any(axis=-1)


def grid_box(grid_axes, bin_edges=None):
    """``(low, high)``: the box of the grid's points, or of its bins' outer edges."""
    axes = grid_axes if bin_edges is None else bin_edges
    return np.array([axis[0] for axis in axes]), np.array([axis[-1] for axis in axes])


def no_line_messages(means, covariances, low, high, background):
    """The texts of :func:`warn_if_components_hold_no_line` for one mixture on the box
    ``[low, high]`` (:func:`grid_box`)."""
    outside, broad = holds_no_line(means, covariances, low, high)
    messages = []
    if outside.any():
        messages.append(
            f"{outside.sum()} of the {len(means)} components hold no line of their own ("
            + "; ".join(
                f"component {i} is centred outside the grid" for i in np.flatnonzero(outside)
            )
            + "): they stand in for a baseline, a slope or a feature cut by the grid's edge. "
            + (
                "Pass background='constant' or 'linear' (a baseline under the mixture), or "
                "extend the grid."
                if background is None
                else f"The background ({background!r}) does not hold the baseline: a "
                "baseline of another shape (a curve?), or a feature cut by the edge."
            )
        )
    broad &= ~outside
    if broad.any():
        messages.append(
            f"Component(s) {np.flatnonzero(broad).tolist()} are broader than a quarter of the "
            "grid (a standard deviation above a quarter of its extent, so the grid holds less "
            "than +-2 of them): a baseline's dome under the lines, counted in n_components ("
            + (
                "pass background='constant' or 'linear')"
                if background is None
                else f"of another shape than the background {background!r} holds)"
            )
            + ", or a broad component that the grid cuts (extend the grid)."
        )
    return messages


# A point farther than this many grid spacings (along some axis) from every
# coordinate the model was fitted on lies in a region the fit never saw.
FAR_FROM_THE_FIT = 3.0


def warn_if_scoring_outside_the_fit(model, X):
    """Warn when points to score lie far from every grid coordinate of the fit.

    Per feature, a point's distance to the nearest fitted coordinate is
    compared with the median spacing of those coordinates: a held-out block
    of the grid (e.g. ``KFold`` without shuffling, as ``GridSearchCV`` uses
    by default) is a region the fit never saw, whose score says nothing
    about the number of components.
    """
    far = np.zeros(len(X), dtype=bool)
    for axis, column in zip(model.grid_axes_, X.T, strict=True):
        if len(axis) < 2:
            continue
        spacing = np.median(np.diff(axis))
        right = np.clip(np.searchsorted(axis, column), 1, len(axis) - 1)
        distance = np.minimum(np.abs(column - axis[right - 1]), np.abs(axis[right] - column))
        far |= distance > FAR_FROM_THE_FIT * spacing
    if far.any():
        warn_at_caller(
            f"{far.sum()} of the {len(X)} points to score lie more than "
            f"{FAR_FROM_THE_FIT:g} grid spacings from every grid point the model was fitted "
            "on: the score measures extrapolation into a region the fit never saw. In "
            "GridSearchCV or cross_val_score, pass shuffled folds, "
            "cv=KFold(5, shuffle=True, random_state=0), or use DensityGMMCV."
        )


NOT_COUNTS = (
    "loss='poisson' reads y as counts per bin (its standard errors, aic and bic "
    "assume Poisson counts), but y has non-integer values, e.g. a histogram with "
    "density=True or a pdf. Pass the counts themselves (np.histogram(..., "
    "density=False)), or the density with the bin sizes as sample_weight, so that "
    "y * sample_weight are the counts."
)


def warn_if_not_counts(y):
    """Warn when ``loss='poisson'`` reads values that are not counts as counts per bin."""
    if np.any(y != np.round(y)):
        warn_at_caller(NOT_COUNTS)


def warn_if_underdetermined(problem):
    """Warn when the grid has fewer points than the fit has free parameters."""
    n_points, n_parameters = problem.n_points, problem.bounds.shape[0]  # a background's too
    if n_points < n_parameters:
        warn_at_caller(underdetermined_message(n_points, n_parameters))


def underdetermined_message(n_points, n_parameters):
    return (
        f"The grid has {n_points} points for {n_parameters} free parameters, so "
        "the fit is not determined by the data. Use fewer components, a simpler "
        "covariance_type or background, or a finer grid."
    )


def warn_if_density_is_cut_at_the_edge(X, mixture):
    """Warn when the fitted mixture's values ``mixture`` on the grid's rim reach
    ``EDGE_WARNING_FRACTION`` of its peak (the fit's, not the data's: noise on the rim
    says nothing of a cut)."""
    for message in edge_messages(X, mixture):
        warn_at_caller(message)


def edge_fractions(X, Y):
    """For each density of ``Y`` (``(n,)`` or ``(R, n)``): its largest value on the
    grid's rim over its largest value, ``(R,)``."""
    on_edge = np.any((X == X.min(axis=0)) | (X == X.max(axis=0)), axis=1)
    Y = np.atleast_2d(Y)
    return np.max(Y[:, on_edge], axis=1) / np.max(Y, axis=1)


def edge_message(fraction):
    return (
        f"The fitted mixture at the edge of the grid reaches {fraction:.0%} of its peak: the "
        "mixture is extrapolated beyond the grid, so scale_ and the outer components "
        "are poorly determined. Extend the grid if you can."
    )


def edge_messages(X, y):
    """The edge warning's text, if the density on the grid's rim reaches
    ``EDGE_WARNING_FRACTION`` of its peak."""
    fraction = edge_fractions(X, y)[0]
    return [edge_message(fraction)] if fraction >= EDGE_WARNING_FRACTION else []


# A mixture falls to zero away from its lines: where it is below OFFSET_TAIL of its peak
# (OFFSET_MIN_POINTS points at least), data on a plane away from zero by OFFSET_MASS of the
# mixture's mass and standing OFFSET_SIGNIFICANCE standard errors out of their scatter (for
# residuals correlated as an AR(1) with their lag-1 correlation) sit on a baseline.
OFFSET_TAIL = 0.01
OFFSET_MIN_POINTS = 10
OFFSET_MASS = 0.02
OFFSET_SIGNIFICANCE = 5.0
OFFSET_MAX_CORRELATION = 0.97  # of neighbouring residuals (a slope, not noise, beyond it)


def baseline_offsets(X, Y, models, mixtures, weights):
    """For each density of ``Y`` ``(R, n)`` on the points ``X``: a baseline under its fitted
    ``mixtures`` (the models without a background), read from its residual ``Y - models``
    where the mixture is below ``OFFSET_TAIL`` of its peak: the least-squares plane
    (a constant and a slope along each axis) through the residual there, when its mass (its
    absolute values times the ``weights`` of those points, ``(n,)`` or ``(R, n)``) is
    ``OFFSET_MASS`` of the mixture's or more, and it explains ``OFFSET_SIGNIFICANCE``
    squared, plus 4 a slope, times the residual's variance left (counting neighbours'
    correlation, :func:`_correlation_inflation`). Returns, over the mixture's peak, the
    plane's least and largest values there, and its mass over the mixture's; NaN for the
    others. ``((R,), (R,), (R,))``."""
    Y, models, mixtures = np.atleast_2d(Y), np.atleast_2d(models), np.atleast_2d(mixtures)
    weights = np.broadcast_to(weights, Y.shape)
    peak = np.max(mixtures, axis=1, keepdims=True)
    tail = (mixtures <= OFFSET_TAIL * peak) & (weights > 0)
    n_tail = np.sum(tail, axis=1)
    residual = np.where(tail, Y - models, 0.0)
    nothing = np.full(len(Y), np.nan)
    mixture_mass = np.sum(weights * np.maximum(mixtures, 0.0), axis=1)
    # the plane's mass is at most |weights| |residual| there (Cauchy-Schwarz; a projection
    # shortens): most fits end here
    with np.errstate(invalid="ignore"):
        largest_mass = np.sqrt(
            np.sum(np.where(tail, weights**2, 0.0), axis=1) * np.sum(residual**2, axis=1)
        )
    if not np.any((n_tail >= OFFSET_MIN_POINTS) & (largest_mass >= OFFSET_MASS * mixture_mass)):
        return nothing, nothing, nothing
    low, high = X.min(axis=0), X.max(axis=0)
    middle, half = 0.5 * (low + high), np.where(high > low, 0.5 * (high - low), 1.0)
    design = np.hstack([np.ones((len(X), 1)), (X - middle) / half])  # (n, p)
    n_terms = design.shape[1]
    gram = row_grams(tail.astype(float), design)  # (R, p, p), a row's alike in any stack
    moments = row_products(residual, design)
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = n_tail >= max(OFFSET_MIN_POINTS, 2 * n_terms)
        gram[~valid] = np.eye(n_terms)
        coefficients = np.linalg.solve(gram, moments[..., None])[..., 0]
        plane = np.where(tail, combined_columns(coefficients, design), 0.0)
        mass = np.sum(np.abs(plane) * weights, axis=1)
        share = mass / mixture_mass
    found = valid & (share >= OFFSET_MASS)
    if not found.any():  # most fits: the rest is not needed
        return nothing, nothing, nothing
    with np.errstate(divide="ignore", invalid="ignore"):
        centred = np.where(tail, residual - plane, 0.0)
        spread = np.sum(centred**2, axis=1)
        variance = spread / (n_tail - n_terms)
        explained = np.sum(plane**2, axis=1)
    bound = OFFSET_SIGNIFICANCE**2 + 4.0 * (n_terms - 1)
    found &= explained >= bound * variance
    if found.any():  # only then the grid's neighbours (a large grid's take time)
        rows = np.flatnonzero(found)
        inflation = _correlation_inflation(X, centred[rows], spread[rows])
        found[rows] = explained[rows] >= bound * variance[rows] * inflation
    with np.errstate(divide="ignore", invalid="ignore"):
        least = np.min(np.where(tail, plane, np.inf), axis=1) / peak[:, 0]
        most = np.max(np.where(tail, plane, -np.inf), axis=1) / peak[:, 0]
    return tuple(np.where(found, value, np.nan) for value in (least, most, share))


def _correlation_inflation(X, centred, spread):
    """How much neighbours' correlation (smoothed noise) enlarges the variance of a mean of
    ``centred`` ``(R, n)``: AR(1)'s ``(1 + r) / (1 - r)`` for the lag-1 correlation ``r``
    along each axis of a rectilinear grid (their product), or with each point's nearest
    neighbour on scattered points; ``r`` clipped to [0, ``OFFSET_MAX_CORRELATION``]."""
    grid = Grid.of(X)
    if grid.axes is None:
        pairs = [np.sum(centred * centred[:, grid.neighbour], axis=1)]
    else:
        array = grid.as_array(centred)
        pairs = []
        for axis in range(1, array.ndim):
            along = np.moveaxis(array, axis, -1)
            products = along[..., 1:] * along[..., :-1]
            pairs.append(np.sum(products.reshape(len(centred), -1), axis=1))
    inflation = np.ones(len(centred))
    for pair in pairs:
        with np.errstate(divide="ignore", invalid="ignore"):
            lag_one = np.clip(np.nan_to_num(pair / spread), 0.0, OFFSET_MAX_CORRELATION)
        inflation *= (1.0 + lag_one) / (1.0 - lag_one)
    return inflation


def offset_message(least, most, share, background):
    """The warning of a baseline under the mixture (:func:`baseline_offsets`)."""
    side = "below" if most < 0 else "above" if least > 0 else "on both sides of"
    what = (
        "Pass background='constant' (or 'linear', ...): the baseline is then fitted with "
        "the mixture"
        if background is None
        else f"The background {background!r} does not take it: try one with more terms"
    )
    return (
        f"Where the fitted mixture is below {OFFSET_TAIL:.0%} of its peak, the density "
        f"runs from {least:.2%} to {most:.2%} of the mixture's peak, {side} zero by "
        f"{share:.0%} of its mass: a baseline (or tails that are not Gaussian) that a "
        f"mixture of Gaussians cannot take, so its weights, widths and scale_ are biased. "
        f"{what}."
    )


def warn_if_on_a_baseline(X, y, model, mixture, weights, background):
    """Warn of :func:`baseline_offsets`'s baseline under one fit."""
    least, most, share = baseline_offsets(X, y, model, mixture, weights)
    if np.isfinite(share[0]):
        warn_at_caller(offset_message(least[0], most[0], share[0], background))


# Bins left out beside bins of this many counts at most, for the most part, are a histogram's
# empty bins (the counts run out there).
FEW_COUNTS = 3


def zeros_left_out(X, Y, bins):
    """Whether each density of ``Y`` ``(R, n)`` on the points ``X`` of the ``bins`` (edges)
    is a histogram with its zeros left out: counts (times a quantum,
    :func:`~.noise.counting_quantum`) with no zero, and the bins left out beside bins of
    ``FEW_COUNTS`` at most, for the most part (empty bins lie where the counts run out; the
    training points of a cross-validation fold leave bins out beside many counts)."""
    Y = np.atleast_2d(Y)
    found = np.all(Y > 0, axis=1)
    if not found.any():
        return found
    cells = cells_of(X, bins)
    shape = tuple(len(e) - 1 for e in cells.edges)
    index = tuple(cells.index.T)  # each point's bin along each axis
    for row in np.flatnonzero(found):  # only densities with no zero: rarely many
        quantum = counting_quantum(Y[row])
        if quantum is None:
            found[row] = False
            continue
        counts = np.full(shape, np.nan)
        counts[index] = Y[row] / quantum
        beside = np.full(shape, -np.inf)  # the most counts next to each bin, along any axis
        for axis in range(len(shape)):
            for step in (1, -1):
                shifted = np.roll(counts, step, axis=axis)
                edge = [slice(None)] * len(shape)
                edge[axis] = 0 if step == 1 else -1
                shifted[tuple(edge)] = np.nan
                beside = np.fmax(beside, shifted)
        missing = np.isnan(counts) & np.isfinite(beside)
        found[row] = missing.any() and np.median(beside[missing]) <= FEW_COUNTS * (1 + 1e-9)
    return found


# A gap between 1-D bin centres this many times both neighbouring gaps is a missing bin.
MISSING_BIN_GAP = 1.8


def empty_bins_message(X, bins):
    """The warning of bins of ``bins`` (edges) that hold no point of ``X`` (to give when
    :func:`zeros_left_out` of the density); with ``bins='infer'`` on a 1-D grid, of a
    missing centre (:data:`MISSING_BIN_GAP`), whose neighbours' inferred bins are widened
    over it; None otherwise."""
    if isinstance(bins, str) and X.shape[1] == 1:
        return _missing_centres_message(X[:, 0])
    if bins is None or isinstance(bins, str):
        return None
    edges = cells_of(X, bins).edges
    n_bins = int(np.prod([len(e) - 1 for e in edges]))
    if n_bins <= len(X):
        return None
    return (
        f"{n_bins - len(X)} of the {n_bins} bins of bins= hold no grid point, and the "
        "density is counts down to a few, with no zero: if they are a histogram's empty "
        "bins, pass them with the value 0 (left out, they are read as not measured, and "
        "the fit is free to put mass there: its widths and scale_ are biased); if they "
        "were not measured, pass them with sample_weight 0 (and any value)."
    )


def _missing_centres_message(centres):
    """:func:`empty_bins_message` of inferred bins on the 1-D ``centres``."""
    values = unique_values(centres)
    gaps = np.diff(values)
    if gaps.size < 3:
        return None
    # each inner gap against the larger of its neighbours (an end gap has one: geometric
    # bins' last gap is its ratio times the one before)
    neighbours = np.maximum(gaps[:-2], gaps[2:])
    missing = 1 + np.flatnonzero(gaps[1:-1] >= MISSING_BIN_GAP * neighbours)
    if missing.size == 0:
        return None
    middles = 0.5 * (values[missing] + values[missing + 1])
    where = ", ".join(f"{x:.6g}" for x in middles[:5]) + (", ..." if missing.size > 5 else "")
    return (
        f"bins='infer': the grid's centres leave {missing.size} gap(s) of about twice their "
        f"neighbours' spacing or more (near x = {where}): missing bins? The bins inferred "
        "beside a gap are widened over it, which biases the fit. Pass the full grid of "
        "centres (a histogram's empty bins with the value 0, bins not measured with "
        "sample_weight 0), or the bins' edges as bins= (which may leave bins out)."
    )
