"""The vectorised batch path: batched derivatives, agreement with single fits, the gate."""

import warnings
from functools import partial

import autograd
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import KFold

from skdensityfit import DensityGMM, DensityGMMCV, fit_many
from skdensityfit import _batch_fit as bf
from skdensityfit import _batch_lm as bl
from skdensityfit._examples import (
    drifting_mixture_series_1d,
    mixture_densities_1d,
    mixture_density,
    random_mixture_2d,
    random_separated_mixture_1d,
)
from skdensityfit._model import log_model_density, objective
from skdensityfit._problem import FitData

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
GRID_1D = np.linspace(-5.0, 25.0, 120)
_AXIS = np.linspace(-10.0, 10.0, 24)
GRID_2D = np.stack(np.meshgrid(_AXIS, _AXIS), axis=-1).reshape(-1, 2)


def _grid(n_features):
    return GRID_1D[:, None] if n_features == 1 else GRID_2D


# ----------------------------------------------------------------------
# batched loss, gradient, Jacobian and Gauss-Newton matrix against autograd
# ----------------------------------------------------------------------
@pytest.mark.parametrize("n_features", [1, 2])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_batched_derivatives_match_autograd(n_features, covariance_type, loss):
    rng = np.random.default_rng(0)
    X = _grid(n_features)[::3] if n_features == 2 else _grid(n_features)[::2]
    problem = bl.BatchProblem(X, 3, covariance_type, loss)
    Y = np.abs(rng.normal(size=(4, len(X)))) + 0.1
    data, _ = bl.batch_data(problem, Y)
    theta = rng.normal(scale=0.3, size=(4, problem.layout.n_parameters))
    values, gradients, matrices = bl.evaluate(problem, theta, data)
    terms = bl.mixture_terms(problem, theta)
    _, model, resp = bl._model(problem, terms)
    jacobians = bl.jacobian_t(problem, terms, resp)
    for b in range(4):
        fit_data = FitData(problem.features, data.target[b], data.weights, problem.layout, loss)
        np.testing.assert_allclose(values[b], objective(theta[b], fit_data), rtol=1e-12)
        np.testing.assert_allclose(
            gradients[b], autograd.grad(objective)(theta[b], fit_data), rtol=1e-9, atol=1e-13
        )
        jacobian = autograd.jacobian(
            lambda t: log_model_density(t, problem.features, problem.layout)
        )(theta[b])
        np.testing.assert_allclose(jacobians[b].T, jacobian, rtol=1e-9, atol=1e-12)
        curvature = (2.0 * model[b] ** 2 if loss == "l2" else model[b]) * data.weights
        expected = (jacobian.T * curvature) @ jacobian / data.normaliser[b]
        np.testing.assert_allclose(matrices[b], expected, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_components", [1, 2, 4])
def test_the_one_dimensional_terms_equal_the_general_ones(covariance_type, n_components):
    problem = bl.BatchProblem(GRID_1D[:, None], n_components, covariance_type, "l2")
    theta = np.random.default_rng(3).normal(size=(5, problem.layout.n_parameters))
    for derivatives in (True, False):
        fast = bl._mixture_terms_1d(problem, theta, derivatives)
        general = bl._mixture_terms_general(problem, theta, derivatives)
        assert fast.keys() == general.keys()
        for name, value in general.items():
            assert np.shape(fast[name]) == np.shape(value), name
            np.testing.assert_allclose(fast[name], value, rtol=1e-14, atol=1e-15)


def test_a_non_finite_row_is_isolated_in_the_evaluation():
    problem = bl.BatchProblem(GRID_1D[:, None], 2, "full", "l2")
    data, _ = bl.batch_data(problem, np.abs(np.random.default_rng(1).normal(size=(3, 120))))
    theta = np.zeros((3, problem.layout.n_parameters))
    theta[1, 0] = 800.0  # exp overflows
    values, gradients, matrices = bl.evaluate(problem, theta, data)
    assert np.isinf(values[1]) and np.all(gradients[1] == 0) and np.all(matrices[1] == 0)
    assert np.all(np.isfinite(values[[0, 2]]))


# ----------------------------------------------------------------------
# the same parameters as single fits
# ----------------------------------------------------------------------
def _seeded_batch(n_features, n_densities, seed, covariance_type="full"):
    rng = np.random.default_rng(seed)
    if n_features == 1:
        params = [random_separated_mixture_1d(rng, 2) for _ in range(n_densities)]
        weights, means, stds = (np.array(p) for p in zip(*params, strict=True))
        means = means - means.mean(axis=1, keepdims=True) + 10.0
        return GRID_1D, mixture_densities_1d(GRID_1D, weights, means, stds)
    rows = []
    for _ in range(n_densities):
        weights, means, covariances = random_mixture_2d(rng, 2, box=(-8.0, 8.0))
        covariances = _of_type(covariance_type, covariances)
        rows.append(mixture_density(GRID_2D, weights, means, covariances))
    return GRID_2D, np.array(rows)


def _single_fits(grid, Y, estimator):
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for y in Y:
            fits.append(DensityGMM(**estimator.get_params()).fit(grid, y))
    return fits


def _of_type(covariance_type, covariances):
    """Covariances of the type's form, so that the mixture is exactly one of its kind."""
    if covariance_type == "tied":
        return np.broadcast_to(covariances[0], covariances.shape)
    if covariance_type == "diag":
        return covariances * np.eye(covariances.shape[-1])
    if covariance_type == "spherical":
        variances = np.mean(np.diagonal(covariances, axis1=1, axis2=2), axis=1)
        return variances[:, None, None] * np.eye(covariances.shape[-1])
    return covariances


@pytest.mark.parametrize("n_features", [1, 2])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_vectorized_rows_are_the_single_fits(n_features, covariance_type, loss):
    grid, Y = _seeded_batch(n_features, 5, seed=10 + n_features, covariance_type=covariance_type)
    estimator = DensityGMM(2, covariance_type=covariance_type, loss=loss, random_state=0)
    result = fit_many(grid, Y, estimator)
    assert not result.failed.any()
    fits = _single_fits(grid, Y, estimator)
    single_loss = np.array([f.loss_ for f in fits])
    # never worse than a single fit
    assert np.all(result.loss <= single_loss + 1e-9)
    for i, single in enumerate(fits):
        # the same optimum: parameters to the optimiser's tolerance
        np.testing.assert_allclose(result.weights[i], single.weights_, rtol=2e-5, atol=1e-7)
        np.testing.assert_allclose(result.means[i], single.means_, rtol=2e-5, atol=1e-5)
        np.testing.assert_allclose(result.covariances[i], single.covariances_, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.scale[i], single.scale_, rtol=1e-5)
        assert result.converged[i]


def test_vectorized_result_does_not_depend_on_n_jobs():
    grid, Y = _seeded_batch(1, 12, seed=3)
    Y[4] = np.nan
    estimator = DensityGMM(2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        serial = fit_many(grid, Y, estimator, chunk_size=5)
        parallel = fit_many(grid, Y, estimator, chunk_size=5, n_jobs=2)
        rechunked = fit_many(grid, Y, estimator, chunk_size=3)
    for name in ("weights", "means", "covariances", "scale", "loss", "failed", "fallback"):
        np.testing.assert_array_equal(getattr(serial, name), getattr(parallel, name))
    assert serial.messages == parallel.messages
    # other chunks: other blocks, the same optimum up to rounding
    np.testing.assert_allclose(rechunked.means, serial.means, rtol=1e-7)


# ----------------------------------------------------------------------
# failed rows, messages and the gate
# ----------------------------------------------------------------------
def test_vectorized_failed_rows_are_isolated():
    grid, Y = _seeded_batch(1, 6, seed=5)
    Y[1] = 0.0
    Y[3, 10] = np.nan
    Y[4, 20] = -1.0  # negative: refused by the poisson loss only
    good = [0, 2, 5]
    with pytest.warns(UserWarning, match="3 of 6 densities could not be fitted"):
        result = fit_many(grid, Y, DensityGMM(2, loss="poisson", random_state=0))
    assert result.failed.tolist() == [False, True, False, True, True, False]
    assert result.messages[1].startswith("ValueError: The density has no positive value")
    assert "NaN" in result.messages[3]
    assert "loss='poisson' needs a non-negative density" in result.messages[4]
    assert np.all(np.isnan(result.means[[1, 3, 4]])) and np.all(result.n_iter[[1, 3, 4]] == 0)
    alone = fit_many(grid, Y[good], DensityGMM(2, loss="poisson", random_state=0))
    np.testing.assert_allclose(result.means[good], alone.means, rtol=1e-7)


def test_rows_with_a_component_too_many_carry_the_single_fits_warning():
    # three components for two peaks: a component without a feature of its own; the
    # rows go through the single fit's search (no gate, no fallback) and say so
    grid, Y = _seeded_batch(1, 4, seed=7)
    estimator = DensityGMM(3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = fit_many(grid, Y, estimator)
    assert not result.fallback.any()
    fits = _single_fits(grid, Y, estimator)
    for i, single in enumerate(fits):
        assert result.loss[i] <= single.loss_ * (1 + 1e-9) + 1e-15
        assert "The data does not support 3 components" in result.messages[i]


@pytest.mark.parametrize(
    "neighbour_passes, greedy", [(0, False), (bf.NEIGHBOUR_PASSES, False), (0, True)]
)
def test_a_row_stuck_far_off_is_rescued_by_its_neighbour_or_greedy_path_or_flagged(
    monkeypatch, neighbour_passes, greedy
):
    grid = GRID_1D
    means = np.array([[6.0, 12.0]]) + np.linspace(0.0, 0.3, 16)[:, None]  # alike neighbours
    Y = mixture_densities_1d(grid, np.full((16, 2), 0.5), means, np.ones((16, 2)))
    target_3 = Y[3] / Y[3].max()
    problem = bl.BatchProblem(grid[:, None], 2, "full", "l2")
    block = bf.fit_block(problem, Y, tol=1e-8, max_iter=500)
    assert not block.suspect.any() and np.all(block.loss < 1e-12)
    original = bf.em_start

    def poor_start_for_row_3(problem, data, n_steps=bf.EM_STEPS, seeding="peaks"):
        theta = original(problem, data, n_steps, seeding)
        for row in np.flatnonzero(np.all(data.target == target_3, axis=1)):
            # every start of row 3: both means far left, both narrow
            theta[row, 2:4] = problem.lower[2:4] + 0.1
            theta[row, 4:6] = problem.upper[4:6] - 0.1
        return theta

    monkeypatch.setattr(bf, "em_start", poor_start_for_row_3)
    monkeypatch.setattr(bf, "NEIGHBOUR_PASSES", neighbour_passes)
    if not greedy:  # the greedy path's start as poor as the others
        monkeypatch.setattr(
            bf, "greedy_start", lambda problem, data, **_: bf.em_start(problem, data)
        )
    block = bf.fit_block(problem, Y, tol=1e-8, max_iter=20)
    others = np.delete(np.arange(16), 3)
    assert not block.suspect[others].any() and np.all(block.loss[others] < 1e-12)
    if neighbour_passes or greedy:
        assert block.loss[3] < 1e-12 and not block.suspect[3]
    else:
        assert block.loss[3] > 1e-6 and block.suspect[3]


def test_vectorized_messages_carry_the_single_fits_warnings():
    grid = np.linspace(0.0, 10.0, 150)
    Y = mixture_densities_1d(
        grid, np.array([[0.5, 0.5]] * 2), np.array([[0.5, 6.0]] * 2), np.ones((2, 2))
    )
    result = fit_many(grid, Y, DensityGMM(2, random_state=0))
    single = _single_fits(grid, Y[:1], DensityGMM(2, random_state=0))[0]
    assert "The density at the edge of the grid reaches" in result.messages[0]
    np.testing.assert_allclose(result.means[0], single.means_, rtol=1e-5)


# ----------------------------------------------------------------------
# per-density K
# ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["loop", "vectorized"])
def test_density_gmm_cv_chooses_k_per_density_and_pads_with_nan(method):
    rng = np.random.default_rng(21)
    rows, true_k = [], [1, 3, 2]
    for k in true_k:
        weights, means, stds = random_separated_mixture_1d(rng, k, min_separation=4.0)
        means = means - means.mean() + 10.0
        rows.append(mixture_densities_1d(GRID_1D, weights[None], means[None], stds[None])[0])
    Y = np.array(rows) + rng.normal(0, 0.002, (3, GRID_1D.size))
    search = DensityGMMCV(n_components=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(GRID_1D, Y, search, method=method)
        alone = [DensityGMMCV(n_components=4, random_state=0).fit(GRID_1D, y) for y in Y]
    assert not result.fallback.any()
    chosen = [a.n_components_ for a in alone]
    assert result.n_components.tolist() == chosen == true_k
    assert result.weights.shape == (3, 4) and result.means.shape == (3, 4, 1)
    for i, a in enumerate(alone):
        k = result.n_components[i]
        assert np.all(np.isnan(result.weights[i, k:]))
        if k != a.n_components_:
            continue
        if method == "loop":  # the same fits
            np.testing.assert_array_equal(result.means[i, :k], a.best_estimator_.means_)
        else:  # the same search; DensityGMMCV polishes its fit with the single fit's engine
            np.testing.assert_allclose(result.means[i, :k], a.best_estimator_.means_, rtol=1e-6)
        np.testing.assert_allclose(
            result.predict_density(GRID_1D)[i],
            a.predict_density(GRID_1D),
            rtol=1e-7 if method == "loop" else 1e-5,
        )
    assert "n_components=1..3" in repr(result)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_small_peak_beside_a_large_one_under_noise_is_found(seed):
    # a large peak and one of a twentieth of its weight on its shoulder, 2% noise:
    # from the batch's peak starts the second component often joins the first
    # (the failure of the noisy bench_batch rows); the greedy start finds the small one
    rng = np.random.default_rng(seed)
    grid = np.linspace(-5.0, 25.0, 200)
    n = 24
    big = rng.uniform(7.5, 9.0, n)
    means = np.column_stack([big, big + rng.uniform(3.0, 3.8, n)])
    stds = np.column_stack([rng.uniform(1.2, 1.4, n), rng.uniform(0.6, 0.9, n)])
    weights = np.column_stack([np.full(n, 0.95), np.full(n, 0.05)])
    truth = mixture_densities_1d(grid, weights, means, stds)
    Y = truth + 0.02 * truth.max(axis=1, keepdims=True) * rng.normal(size=truth.shape)
    estimator = DensityGMM(2, random_state=0)
    result = fit_many(grid, Y, estimator)
    singles = np.array([fit.loss_ for fit in _single_fits(grid, Y, estimator)])
    assert np.all(result.loss <= singles + 1e-6)
    small = np.min(result.weights, axis=1)
    assert np.all(np.abs(small - 0.05) < 0.03)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_the_extra_starts_of_noisy_rows_are_finite_and_within_bounds(covariance_type, loss):
    grid, Y = _seeded_batch(2, 6, 3, covariance_type)
    rng = np.random.default_rng(4)
    Y = np.abs(Y + 0.02 * Y.max(axis=1, keepdims=True) * rng.normal(size=Y.shape))
    problem = bl.BatchProblem(grid, 3, covariance_type, loss)
    data, _ = bl.batch_data(problem, Y)
    fit = bf.fit_block(problem, Y, tol=1e-8, max_iter=100)
    for start in (
        bf.moved_weakest(problem, fit.theta, data),
        bf.greedy_start(problem, data, tol=1e-8, max_iter=100),
    ):
        assert start.shape == fit.theta.shape and np.all(np.isfinite(start))
        assert np.all((start >= problem.lower) & (start <= problem.upper))
        assert np.all(np.isfinite(bl.values_only(problem, start, data)))
    assert np.all(np.isfinite(fit.loss))


def _noisy_spectra(seed, n, max_k, noise):
    rng = np.random.default_rng(seed)
    rows, ks = [], rng.integers(1, max_k + 1, n)
    for k in ks:
        weights, means, stds = random_separated_mixture_1d(rng, k, min_separation=4.0)
        means = means - means.mean() + 10.0
        rows.append(mixture_densities_1d(GRID_1D, weights[None], means[None], stds[None])[0])
    Y = np.array(rows)
    return Y + noise * Y.max(axis=1, keepdims=True) * rng.normal(size=Y.shape), ks


def test_batched_search_scores_one_component_like_density_gmm_cv_s_path(path_engine):
    # the same folds (the density's seed draws them) and the same pooled scores as the
    # path of single fits: with one component the optimum is unique, so the per-fold
    # scores agree to rounding
    from skdensityfit._batch_cv import choose_block

    Y, _ = _noisy_spectra(5, 4, 1, 0.02)
    search = DensityGMMCV(n_components=[1], selection="standard_error", random_state=3)
    choice = choose_block(search, GRID_1D[:, None], Y)
    for row, y in enumerate(Y):
        alone = clone(search).fit(GRID_1D, y).cv_results_
        expected = [alone[f"split{f}_test_score"][0] for f in range(10)]
        np.testing.assert_allclose(choice.scores[row, :, 0], expected, rtol=1e-6, atol=1e-8)
    seeds = np.array([11, 12, 13, 14])
    choice = choose_block(search, GRID_1D[:, None], Y, seeds=seeds)
    for row, y in enumerate(Y):  # per-density seeds (a RandomState passed to fit_many)
        alone = clone(search).set_params(random_state=int(seeds[row])).fit(GRID_1D, y)
        expected = [alone.cv_results_[f"split{f}_test_score"][0] for f in range(10)]
        np.testing.assert_allclose(choice.scores[row, :, 0], expected, rtol=1e-6, atol=1e-8)


def test_batched_search_chooses_the_k_of_density_gmm_cv_alone_and_of_its_path(monkeypatch):
    import skdensityfit._batch_cv as batch_cv

    Y, ks = _noisy_spectra(8, 16, 4, 0.02)
    search = DensityGMMCV(n_components=6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(GRID_1D, Y, search)
        alone = [DensityGMMCV(n_components=6, random_state=0).fit(GRID_1D, y) for y in Y]
        with monkeypatch.context() as patch:  # DensityGMMCV's path of single fits
            patch.setattr(batch_cv, "covers", lambda cv, grid: False)
            path = [DensityGMMCV(n_components=6, random_state=0).fit(GRID_1D, y) for y in Y]
    assert not result.fallback.any() and not result.failed.any()
    np.testing.assert_array_equal(result.n_components, [a.n_components_ for a in alone])
    np.testing.assert_array_equal(result.n_components, ks)
    np.testing.assert_array_equal([p.n_components_ for p in path], ks)
    for fits in (alone, path):
        np.testing.assert_allclose(
            result.predict_density(GRID_1D),
            np.array([a.predict_density(GRID_1D) for a in fits]),
            rtol=1e-4,
            atol=1e-6 * Y.max(),
        )


def test_batched_search_isolates_bad_rows_and_leaves_other_settings_to_the_loop():
    Y, _ = _noisy_spectra(9, 4, 2, 0.01)
    Y[1, 5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(
            GRID_1D,
            Y,
            DensityGMMCV(n_components=3, selection="standard_error", random_state=0),
        )
    assert result.failed.tolist() == [False, True, False, False]
    assert "NaN" in result.messages[1] or "nan" in result.messages[1].lower()
    assert np.all(result.n_components[[0, 2, 3]] >= 1)
    # the Poisson loss (counts, BIC) is DensityGMMCV's own search, row by row
    from skdensityfit._batch_cv import covers

    held_out = DensityGMMCV(selection="standard_error")
    assert covers(held_out, GRID_1D[:, None])
    assert not covers(DensityGMMCV(), GRID_1D[:, None])  # the criterion: DensityGMMCV.fit
    assert not covers(clone(held_out).set_params(loss="poisson"), GRID_1D[:, None])
    assert not covers(clone(held_out).set_params(cv=KFold(5)), GRID_1D[:, None])
    assert not covers(held_out, np.linspace(0, 1, 2000)[:, None])  # refits only leaders


def test_batched_search_leaves_what_it_cannot_do_to_density_gmm_cv():
    grid = np.linspace(0, 30, 200)
    Y = np.exp(-((grid - 12.0) ** 2) / 4.0)[None] + np.exp(-((grid - 20.0) ** 2) / 2.0)[None]
    Y = np.vstack([Y, Y * 0.5, np.ones((1, 200))])  # the last row: constant
    search = DensityGMMCV(n_components=3, selection="standard_error", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing numerical leaks out
        warnings.simplefilter("ignore", UserWarning)
        result = fit_many(grid, Y, search)
    assert result.n_components[:2].tolist() == [2, 2] and not result.fallback[:2].any()
    assert result.fallback[2]  # no held-out score for a constant: DensityGMMCV.fit's answer
    # folds without weight: DensityGMMCV.fit's error, on every row
    sparse = np.zeros(200)
    sparse[::25] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(grid, Y[:2], search, sample_weight=sparse)
    assert result.failed.all() and all("zero total sample_weight" in m for m in result.messages)
    # fewer points than the batched search's folds need: the loop, on as many
    # folds as points; more folds than points asked for: every row fails, saying why
    coarse = np.linspace(0, 30, 9)
    bump = np.exp(-((coarse - 15) ** 2) / 20)[None].repeat(2, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(coarse, bump, search)
    assert not result.failed.any() and result.n_components.tolist() == [1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(coarse, bump, clone(search).set_params(cv=10))
    assert result.failed.all() and all("cv=10 folds of grid points" in m for m in result.messages)
    # a fit that did not converge at the chosen K (2 iterations on noisy data):
    # DensityGMMCV.fit, with its warning
    noisy = Y[:2] + 0.02 * np.random.default_rng(0).normal(size=Y[:2].shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(grid, noisy, clone(search).set_params(max_iter=2))
    assert result.fallback.all() and not result.converged.any()
    assert all(
        m.startswith("ConvergenceWarning: DensityGMM did not converge") for m in result.messages
    )


def test_rows_the_gate_would_reject_stop_early_and_the_others_are_unchanged():
    """levenberg_marquardt's give_up hook: rows whose fit creeps on with a
    component leaving the grid or two components on one peak (the gate would
    reject them) stop at a check, not converged; every other row ends exactly
    where it ends without the hook. Data: 2% noise on a drifting K = 2 series
    (bench_batch's generator), one block in which such rows occur."""
    rng = np.random.default_rng(0)
    grid = np.linspace(-5.0, 25.0, 200)
    parts = [drifting_mixture_series_1d(rng, 250, 2) for _ in range(8)]
    weights, means, stds = (np.vstack(p) for p in zip(*parts, strict=True))
    truth = mixture_densities_1d(grid, weights, means, stds)
    Y = truth + 0.02 * truth.max(axis=1, keepdims=True) * rng.normal(size=truth.shape)
    Y = Y[512:768]
    problem = bl.BatchProblem(grid[:, None], 2, "full", "l2")
    data, _ = bl.batch_data(problem, Y)
    start = bf.em_start(problem, data, seeding="peaks")
    plain = bl.levenberg_marquardt(problem, start, data, tol=1e-8, max_iter=500)
    hooked = bl.levenberg_marquardt(
        problem, start, data, tol=1e-8, max_iter=500, give_up=partial(bf.hopeless, problem)
    )
    stopped = hooked.n_iter < plain.n_iter
    assert 1 <= stopped.sum() <= 5
    assert plain.n_iter.max() > 200 and hooked.n_iter.max() < 100
    assert (
        np.all(np.isin(hooked.n_iter[stopped], bl.GIVE_UP_AT))
        and not hooked.converged[stopped].any()
    )
    assert np.all(bf.hopeless(problem, hooked.theta[stopped], data.take(np.flatnonzero(stopped))))
    np.testing.assert_array_equal(hooked.theta[~stopped], plain.theta[~stopped])
    np.testing.assert_array_equal(hooked.converged[~stopped], plain.converged[~stopped])


def test_the_matched_filter_ignores_bumps_inside_a_gap_of_zero_weights():
    """Single-precision bumps whose squares would underflow inside a gap of zero
    quadrature weights must not get an infinite gain or height."""
    x = np.linspace(0, 100, 400)
    problem = bl.BatchProblem(x[:, None], 2, "full", "l2")
    centres = problem.peak_kernels[0]
    centre = centres[len(centres) // 2]
    weights = np.ones(x.size)
    weights[centre - 16 : centre + 17] = 0.0
    y = np.exp(-0.5 * ((x - 50) / 8) ** 2)
    data, _ = bl.batch_data(problem, y[None], weights[None])
    at, _, height = bf.residual_peak(problem, data.target.copy(), data)
    assert np.all(np.isfinite(height)) and 0.5 < height[0] < 1.0
    assert abs(x[at[0]] - 50) < 1.0
