"""The vectorised batch path: the single fit's engine on many rows, agreement with single
fits, per-density K."""

import warnings

import numpy as np
import pytest

from skdensityfit import DensityGMM, DensityGMMCV, fit_many
from skdensityfit._data.rowwise import combined_columns, row_products
from skdensityfit._engine import fitting as engine
from skdensityfit._engine.problem import problem_of
from skdensityfit._engine.rows import (
    background_fits,
    greedy_peaks,
    losses_of,
    matched_filter,
    uniform_spacing,
)
from skdensityfit._examples import (
    mixture_densities_1d,
    mixture_density,
    random_mixture_2d,
    random_separated_mixture_1d,
)

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
GRID_1D = np.linspace(-5.0, 25.0, 120)
_AXIS = np.linspace(-10.0, 10.0, 24)
GRID_2D = np.stack(np.meshgrid(_AXIS, _AXIS), axis=-1).reshape(-1, 2)


def _grid(n_features):
    return GRID_1D[:, None] if n_features == 1 else GRID_2D


def _inputs(grid, Y, n_components, covariance_type="full", loss="l2"):
    """``(problem, inputs)`` of the densities ``Y`` on ``grid`` (standardised as fit_many's)."""
    estimator = DensityGMM(n_components, covariance_type=covariance_type, loss=loss)
    problem = problem_of(estimator, grid, Y[0], None)
    units = np.max(np.abs(Y), axis=1)
    return problem, problem.kernel.with_densities(Y / units[:, None])


def test_a_non_finite_row_is_isolated_in_the_evaluation():
    Y = np.abs(np.random.default_rng(1).normal(size=(3, 120))) + 0.1
    problem, inputs = _inputs(GRID_1D[:, None], Y, 2)
    theta = np.zeros((3, problem.bounds.shape[0]))
    theta[1, 0] = 800.0  # exp overflows
    losses = losses_of(inputs, theta)
    assert np.isinf(losses[1]) and np.all(np.isfinite(losses[[0, 2]]))


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
        serial = fit_many(grid, Y, estimator, chunk_size=5, n_jobs=1)
        # three chunks on two threads at once, sharing the kernel's two threads
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


def test_a_row_whose_first_start_is_poor_is_rescued_by_the_other_starts_and_moves(monkeypatch):
    # every row's greedy peaks put both components far left and narrow for row 3:
    # the second start (the greedy path) and the moves still find its exact fit
    means = np.array([[6.0, 12.0]]) + np.linspace(0.0, 0.3, 16)[:, None]
    Y = mixture_densities_1d(GRID_1D, np.full((16, 2), 0.5), means, np.ones((16, 2)))
    original = engine.peak_starts

    def poor_start_for_row_3(problem, inputs):
        theta = original(problem, inputs)
        if len(theta) == 16 and problem.layout.n_components == 2:
            layout = problem.layout
            theta[3, layout.offsets[2] : layout.offsets[3]] = problem.bounds[
                layout.offsets[2] : layout.offsets[3], 0
            ]
            theta[3, layout.offsets[3] : layout.offsets[4]] = problem.bounds[
                layout.offsets[3] : layout.offsets[4], 1
            ]
        return theta

    monkeypatch.setattr(engine, "peak_starts", poor_start_for_row_3)
    result = fit_many(GRID_1D, Y, DensityGMM(2, random_state=0))
    assert np.all(result.loss < 1e-12) and result.converged.all()
    np.testing.assert_allclose(np.sort(result.means[3, :, 0]), means[3], atol=1e-5)
    # with one start (n_init=1) the moves alone re-place its components parked off the grid
    single = fit_many(GRID_1D, Y, DensityGMM(2, n_init=1, random_state=0))
    assert np.all(single.loss < 1e-12)


def test_vectorized_messages_carry_the_single_fits_warnings():
    grid = np.linspace(0.0, 10.0, 150)
    Y = mixture_densities_1d(
        grid, np.array([[0.5, 0.5]] * 2), np.array([[0.5, 6.0]] * 2), np.ones((2, 2))
    )
    result = fit_many(grid, Y, DensityGMM(2, random_state=0))
    single = _single_fits(grid, Y[:1], DensityGMM(2, random_state=0))[0]
    assert "The fitted mixture at the edge of the grid reaches" in result.messages[0]
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


def test_a_large_choice_of_k_runs_on_processes_with_the_same_results(monkeypatch):
    # from _CV_PROCESS_MIN_DENSITIES densities on, n_jobs > 1 sends DensityGMMCV's
    # vectorised chunks to processes: every array and message as in this process
    from skdensityfit import _batch

    rng = np.random.default_rng(8)
    rows = []
    for k in (1, 2, 3) * 6:
        weights, means, stds = random_separated_mixture_1d(rng, k, min_separation=4.0)
        means = means - means.mean() + 10.0
        rows.append(mixture_densities_1d(GRID_1D, weights[None], means[None], stds[None])[0])
    Y = np.array(rows) + rng.normal(0, 0.01, (len(rows), GRID_1D.size))
    Y[5] = np.nan  # refused: its message travels back too
    search = DensityGMMCV(n_components=4, random_state=0)
    modes = []
    run_tasks = _batch._run_tasks
    monkeypatch.setattr(
        _batch,
        "_run_tasks",
        lambda tasks, n_jobs, threads, **kw: (
            modes.append(threads) or run_tasks(tasks, n_jobs, threads, **kw)
        ),
    )
    monkeypatch.setattr(_batch, "_CV_PROCESS_MIN_DENSITIES", 10)
    monkeypatch.setattr(_batch, "_CV_CHUNK_VALUES", 5 * GRID_1D.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        here = fit_many(GRID_1D, Y, search)
        spread = fit_many(GRID_1D, Y, search, n_jobs=2)
    assert modes == [True, False]
    assert here.n_components.tolist()[:3] == [1, 2, 3] and here.failed.tolist().count(True) == 1
    for name in ("n_components", "weights", "means", "covariances", "scale", "loss", "failed"):
        np.testing.assert_array_equal(getattr(here, name), getattr(spread, name))
    assert here.messages == spread.messages


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


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_the_starts_and_moves_of_noisy_rows_are_finite_and_within_bounds(covariance_type, loss):
    grid, Y = _seeded_batch(2, 6, 3, covariance_type)
    rng = np.random.default_rng(4)
    Y = np.abs(Y + 0.02 * Y.max(axis=1, keepdims=True) * rng.normal(size=Y.shape))
    problem, inputs = _inputs(grid, Y, 3, covariance_type, loss)
    settings = engine.FitSettings(max_iter=100)
    rows = np.arange(6)
    fits = engine.fit_densities(problem, inputs, settings, np.random.RandomState(0))
    assert np.all(np.isfinite(fits.loss))
    smaller, small_inputs = engine._inputs_with_components(problem, inputs, 2)
    two = engine.peak_starts(smaller, small_inputs)
    bigger = problem.with_components(3)
    for start, bounds in (
        (engine.peak_starts(problem, inputs), problem.bounds),
        (engine.greedy_path_rows(problem, inputs, settings, rows), problem.bounds),
        (engine.grown_rows(smaller, small_inputs, two, rows), bigger.bounds),
        (engine.grown_rows(smaller, small_inputs, two, rows, placement="filter"), bigger.bounds),
        (engine.split_rows(smaller, small_inputs, two, rows), bigger.bounds),
    ):
        assert start.shape == fits.theta.shape and np.all(np.isfinite(start))
        assert np.all((start >= bounds[:, 0]) & (start <= bounds[:, 1]))
        assert np.all(np.isfinite(losses_of(inputs, start)))


def _noisy_spectra(seed, n, max_k, noise):
    rng = np.random.default_rng(seed)
    rows, ks = [], rng.integers(1, max_k + 1, n)
    for k in ks:
        weights, means, stds = random_separated_mixture_1d(rng, k, min_separation=4.0)
        means = means - means.mean() + 10.0
        rows.append(mixture_densities_1d(GRID_1D, weights[None], means[None], stds[None])[0])
    Y = np.array(rows)
    return Y + noise * Y.max(axis=1, keepdims=True) * rng.normal(size=Y.shape), ks


@pytest.mark.parametrize("selection", ["auto", "aic"])
def test_batched_search_chooses_the_k_of_density_gmm_cv_alone(selection):
    Y, ks = _noisy_spectra(8, 16, 4, 0.02)
    search = DensityGMMCV(n_components=6, selection=selection, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(GRID_1D, Y, search)
        alone = [DensityGMMCV(**search.get_params()).fit(GRID_1D, y) for y in Y]
    assert not result.failed.any()
    np.testing.assert_array_equal(result.n_components, [a.n_components_ for a in alone])
    if selection == "auto":
        np.testing.assert_array_equal(result.n_components, ks)
    np.testing.assert_allclose(
        result.predict_density(GRID_1D),
        np.array([a.predict_density(GRID_1D) for a in alone]),
        rtol=1e-6,
        atol=1e-9 * Y.max(),
    )
    for i in range(len(Y)):  # the same warnings, in the same order
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            DensityGMMCV(**search.get_params()).fit(GRID_1D, Y[i])
        expected = [f"{w.category.__name__}: {w.message}" for w in caught]
        assert result.messages[i] == "\n".join(dict.fromkeys(expected)), i


def test_batched_search_isolates_bad_rows_and_sends_held_out_scores_to_the_loop():
    Y, _ = _noisy_spectra(9, 4, 2, 0.01)
    Y[1, 5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(GRID_1D, Y, DensityGMMCV(n_components=3, random_state=0))
        held_out = fit_many(
            GRID_1D,
            Y,
            DensityGMMCV(n_components=3, selection="standard_error", random_state=0),
        )
    for fitted in (result, held_out):
        assert fitted.failed.tolist() == [False, True, False, False]
        assert "NaN" in fitted.messages[1] or "nan" in fitted.messages[1].lower()
        assert np.all(fitted.n_components[[0, 2, 3]] >= 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = DensityGMMCV(n_components=3, selection="standard_error", random_state=0)
        alone.fit(GRID_1D, Y[2])
    np.testing.assert_array_equal(
        held_out.means[2, : alone.n_components_], alone.best_estimator_.means_
    )


def test_batched_search_answers_what_density_gmm_cv_answers():
    grid = np.linspace(0, 30, 200)
    two = np.exp(-((grid - 12.0) ** 2) / 4.0) + np.exp(-((grid - 20.0) ** 2) / 2.0)
    Y = np.vstack([two, 0.5 * two, np.ones(200)])  # the last row: constant
    search = DensityGMMCV(n_components=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing numerical leaks out
        warnings.simplefilter("ignore", UserWarning)
        result = fit_many(grid, Y, search)
        alone = [DensityGMMCV(n_components=3, random_state=0).fit(grid, y) for y in Y]
    assert result.n_components.tolist() == [a.n_components_ for a in alone]
    assert result.n_components[:2].tolist() == [2, 2]
    # folds without weight are no matter for a criterion; zero total weight is an error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(grid, Y[:2], search, sample_weight=np.zeros(200))
    assert result.failed.all()
    # a fit that did not converge at the chosen K (2 iterations on noisy data) says so
    noisy = Y[:2] + 0.02 * np.random.default_rng(0).normal(size=Y[:2].shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(grid, noisy, search.set_params(max_iter=2))
    assert not result.converged.any()
    assert all(
        m.startswith("ConvergenceWarning: DensityGMM did not converge") for m in result.messages
    )


def test_the_greedy_peaks_and_the_matched_filter_ignore_a_gap_of_zero_weights():
    """Bumps whose squares would underflow inside a gap of zero quadrature weights
    must not get an infinite gain or height."""
    x = np.linspace(0, 100, 400)
    y = np.exp(-0.5 * ((x - 50) / 8) ** 2)
    weights = np.ones(x.size)
    weights[(x > 46) & (x < 54)] = 0.0
    problem = problem_of(DensityGMM(1), x[:, None], y, weights)
    inputs = problem.kernel
    means, widths, heights = greedy_peaks(inputs, engine.peak_widths(problem), 1)
    assert np.all(np.isfinite(heights)) and 0.5 < heights[0, 0] < 1.5
    assert (
        abs(
            problem.standardisation.center[0]
            + problem.standardisation.spread[0] * means[0, 0, 0]
            - 50
        )
        < 5
    )
    centres = np.arange(0, 400, 7)[None]
    upper = np.array([[[1.0 / widths[0, 0]]]])
    gains, found = matched_filter(inputs, inputs.Y, centres, upper)
    assert np.all(np.isfinite(gains)) and np.all(np.isfinite(found))


@pytest.mark.parametrize("shuffled", [False, True])
def test_the_matched_filter_on_an_equally_spaced_grid_equals_the_general_one(shuffled):
    """On an equally spaced 1-D grid the filter takes the shape's values once a row; on
    the same points out of order it takes the general loop; both give the same gains."""
    rng = np.random.default_rng(3)
    x = np.linspace(-4.0, 11.0, 150)
    y = np.exp(-0.5 * ((x - 3.0) / 1.5) ** 2) + 0.05 * rng.normal(size=x.size)
    weights = np.where(rng.random(x.size) < 0.1, 0.0, 1.0)  # some points without weight
    order = rng.permutation(x.size) if shuffled else np.arange(x.size)
    problem = problem_of(DensityGMM(1), x[order, None], y[order], weights[order])
    inputs = problem.kernel
    assert (uniform_spacing(inputs.X) is None) == shuffled
    centres = rng.integers(0, x.size, (3, 20))
    upper = np.array([[[0.7]], [[2.0]], [[9.0]]])
    residuals = np.repeat(inputs.Y, 3, axis=0)
    gains, heights = matched_filter(inputs, residuals, centres, upper)
    q = inputs.Q[0]
    for r in range(3):
        for c, centre in enumerate(centres[r]):
            shape = np.exp(-0.5 * (upper[r, 0, 0] * (inputs.X[:, 0] - inputs.X[centre, 0])) ** 2)
            overlap, norm = q @ (residuals[r] * shape), q @ shape**2
            expected = overlap**2 / norm if overlap > 0 else 0.0
            assert gains[r, c] == pytest.approx(expected, rel=1e-9, abs=1e-14)
            assert heights[r, c] == pytest.approx(overlap / norm if overlap > 0 else 0.0, rel=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_two_dimensional_bins_of_full_components_run_vectorised(covariance_type):
    """The kernel integrates full and tied components over 2-D cells, so fit_many fits such
    histograms together, as the loop of single fits does."""
    rng = np.random.default_rng(0)
    edges = [np.linspace(-4, 4, 13), np.linspace(-4, 4, 11)]
    rows = []
    for _ in range(3):
        a = rng.multivariate_normal([-1, 0.5], [[1, 0.5], [0.5, 1]], 3000)
        b = rng.multivariate_normal([1.5, -1], [[0.5, -0.2], [-0.2, 0.8]], 2000)
        counts, _, _ = np.histogram2d(*np.vstack([a, b]).T, bins=edges)
        rows.append(counts.ravel())
    centres = [(e[1:] + e[:-1]) / 2 for e in edges]
    X = np.stack(np.meshgrid(*centres, indexing="ij"), -1).reshape(-1, 2)
    estimator = DensityGMM(
        2, covariance_type=covariance_type, loss="poisson", bins=edges, random_state=0
    )
    together = fit_many(X, np.array(rows), estimator)
    alone = fit_many(X, np.array(rows), estimator, method="loop")
    np.testing.assert_allclose(together.means, alone.means, atol=1e-6)
    np.testing.assert_allclose(together.loss, alone.loss, rtol=1e-9)


def test_a_choice_of_k_under_joblibs_threading_backend_stays_in_this_process(monkeypatch):
    # the chunks go to processes only under loky: run side by side on joblib's threads,
    # the search's warnings.catch_warnings left its filters behind and lost the summary
    from joblib import parallel_config

    from skdensityfit import _batch

    monkeypatch.setattr(_batch, "_CV_PROCESS_MIN_DENSITIES", 4)
    monkeypatch.setattr(_batch, "_CV_CHUNK_VALUES", 2 * GRID_1D.size)
    rng = np.random.default_rng(3)
    Y = mixture_densities_1d(
        GRID_1D, np.full((6, 1), 1.0), rng.uniform(5, 15, (6, 1)), np.ones((6, 1))
    )
    Y[2] = np.nan
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with parallel_config(backend="threading"):
            fit_many(GRID_1D, Y, DensityGMMCV(n_components=2, random_state=0), n_jobs=2)
        with parallel_config(backend="multiprocessing"):  # refused return_as="generator_unordered"
            fit_many(GRID_1D, Y, DensityGMMCV(n_components=2, random_state=0), n_jobs=2)
    assert sum("could not be fitted" in str(w.message) for w in caught) == 2
    assert warnings.filters == filters


def test_per_density_weights_beside_a_failed_row_in_a_choice_of_k():
    X = np.linspace(0, 20, 60)
    Y = np.array([np.exp(-0.5 * (X - m) ** 2) for m in np.linspace(6, 14, 8)])
    Y[0] = np.nan
    W = np.ones_like(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted = fit_many(X, Y, DensityGMMCV(n_components=2, random_state=0), sample_weight=W)
        shared = fit_many(X, Y, DensityGMMCV(n_components=2, random_state=0), sample_weight=W[0])
    assert weighted.failed.tolist() == [True] + [False] * 7
    np.testing.assert_array_equal(weighted.n_components, shared.n_components)
    np.testing.assert_array_equal(weighted.means, shared.means)


def test_noise_poisson_on_a_negative_row_fails_that_row_alone():
    rng = np.random.default_rng(2)
    Y = rng.poisson(50.0 * np.exp(-0.5 * (GRID_1D - 10.0) ** 2), (3, GRID_1D.size)).astype(float)
    Y[1, 5] = -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(GRID_1D, Y, DensityGMMCV(n_components=2, noise="poisson", random_state=0))
    assert result.failed.tolist() == [False, True, False]
    assert "negative" in result.messages[1]


def test_a_count_where_nothing_is_expected_raises_no_numpy_warning():
    rng = np.random.default_rng(7)
    Y = rng.poisson(40.0 * np.exp(-0.5 * (GRID_1D - 10.0) ** 2), (4, GRID_1D.size)).astype(float)
    Y[0, 10] = 1e12
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_many(GRID_1D, Y, DensityGMMCV(n_components=3, loss="poisson", random_state=0))
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_the_row_products_of_a_row_are_the_same_bits_in_any_stack():
    # BLAS's matrix products are not: a matrix times one row and times several differ in
    # the last bits, which a search of K amplified into another choice (fit_many's K = 8
    # against DensityGMMCV's 7 on a real chromatogram with background='linear')
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(5, 601)), rng.normal(size=(601, 3))
    basis, coefficients = rng.normal(size=(601, 3)), rng.normal(size=(5, 3))
    Q = rng.uniform(0.5, 1.5, (1, 601))
    for row in range(5):
        for stack in ([row], [row, row], list(range(5))):
            at = stack.index(row)
            assert np.array_equal(row_products(A[stack], B)[at], row_products(A[[row]], B)[0])
            alone = combined_columns(coefficients[[row]], basis)[0]
            assert np.array_equal(combined_columns(coefficients[stack], basis)[at], alone)
            fits = background_fits(A[stack], Q, basis, False)[at]
            assert np.array_equal(fits, background_fits(A[[row]], Q, basis, False)[0])
    assert np.allclose(row_products(A, B), A @ B, rtol=1e-12, atol=1e-12)
    assert np.allclose(combined_columns(coefficients, basis), coefficients @ basis.T, atol=1e-12)


@pytest.mark.parametrize("background", ["linear", "quadratic", "exponential"])
def test_a_row_with_a_background_fits_alike_alone_and_in_a_stack(background):
    rng = np.random.default_rng(4)
    grid = np.linspace(0.0, 30.0, 301)
    Y = mixture_densities_1d(grid, np.array([[0.5, 0.3, 0.2]]), np.array([[8.0, 14.0, 21.0]]),
                             np.array([[1.0, 2.5, 0.8]]))  # fmt: skip
    Y = Y + 0.004 + 0.0003 * grid + 0.002 * Y.max() * rng.normal(size=(3, grid.size))
    estimator = DensityGMM(n_components=4, background=background, random_state=0)
    alone = fit_many(grid, Y[[1]], estimator)
    stacked = fit_many(grid, Y[[0, 1, 2, 1]], estimator)
    assert np.array_equal(stacked.loss[[1, 3]], np.repeat(alone.loss, 2))
    assert np.array_equal(stacked.means[1], alone.means[0])


@pytest.mark.parametrize("background", ["linear", "quadratic", "exponential"])
def test_the_rim_baseline_of_a_row_is_the_same_bits_in_any_stack(background):
    rng = np.random.default_rng(1)
    grid = np.linspace(0.0, 40.0, 257)
    Y = 0.05 * np.exp(-grid / rng.uniform(5.0, 20.0, (6, 1))) + rng.normal(0.0, 0.003, (6, 257))
    Y = Y + np.exp(-0.5 * (grid - 20.0) ** 2)
    problem = problem_of(DensityGMM(n_components=1, background=background), grid[:, None], Y[0])
    baseline = problem.data.background
    stacked = baseline.fitted_to(Y, problem.grid)
    for row in range(6):
        assert np.array_equal(baseline.fitted_to(Y[[row]], problem.grid)[0], stacked[row])
        values = baseline.values_rows(stacked[[row]])[0]
        assert np.array_equal(values, baseline.values_rows(stacked)[row])


def _three_lines(n_rows, seed, noise=0.0):
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 40.0, 161)
    weights = rng.dirichlet(np.full(3, 4.0), n_rows)
    means = np.sort(rng.uniform(6.0, 34.0, (n_rows, 3)), axis=1)
    Y = mixture_densities_1d(grid, weights, means, rng.uniform(0.8, 2.5, (n_rows, 3)))
    return grid, Y + noise * Y.max() * rng.normal(size=Y.shape)


def _same_fit(result, row, fitted):
    return (
        result.loss[row] == fitted.loss_
        and np.array_equal(result.weights[row], fitted.weights_)
        and np.array_equal(result.means[row], fitted.means_)
        and np.array_equal(result.covariances[row], fitted.covariances_)
    )


@pytest.mark.parametrize("init_params", ["peaks", "random", "kmeans"])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_a_row_is_its_single_fit_whatever_the_rows_before_it(init_params, covariance_type):
    # each row draws its starts from its own random state, polishes with its own budget and
    # reports weights and covariances as the single fit computes them (the twenty-fifth
    # reviewer: a row drawn after another differed, up to 0.7 in the means for 'random')
    grid, Y = _three_lines(3, 7, noise=0.01)
    estimator = DensityGMM(
        n_components=3, init_params=init_params, covariance_type=covariance_type, random_state=0
    )
    stacked = fit_many(grid, Y, estimator)
    reversed_ = fit_many(grid, Y[::-1], estimator)
    for row in range(3):
        single = DensityGMM(**estimator.get_params()).fit(grid, Y[row])
        assert _same_fit(stacked, row, single)
        assert _same_fit(reversed_, 2 - row, single)


@pytest.mark.parametrize("loss", ["poisson", "l2"])
def test_a_histogram_row_on_unequal_bins_is_its_single_fit(loss):
    # fit_many searched the binned model directly; the single fit searches the centre model
    # first and polishes on the bins: other optima (weights 1 apart)
    rng = np.random.default_rng(3)
    edges = np.concatenate([np.linspace(0.0, 20.0, 31), np.geomspace(20.5, 50.0, 30)])
    samples = [np.concatenate([rng.normal(15, 2, 1500), rng.normal(30, 3, 900)]) for _ in range(2)]
    counts = np.array([np.histogram(s, edges)[0] for s in samples], dtype=float)
    centres = 0.5 * (edges[1:] + edges[:-1])
    widths = np.diff(edges)
    Y, weight = (counts, None) if loss == "poisson" else (counts / widths, widths)
    estimator = DensityGMM(n_components=2, loss=loss, bins=edges, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked = fit_many(centres, Y, estimator, sample_weight=weight)
        for row in range(2):
            single = DensityGMM(**estimator.get_params()).fit(centres, Y[row], sample_weight=weight)
            assert _same_fit(stacked, row, single)


def test_a_poisson_choice_does_not_depend_on_another_rows_counts():
    # the search's gradient test is each density's (it took the chunk's largest count)
    grid = np.linspace(0.0, 50.0, 200)
    rng = np.random.default_rng(0)
    y = rng.poisson(100 * np.exp(-0.5 * ((grid - 22) / 3) ** 2)).astype(float)
    big = np.round(1e7 * np.exp(-0.5 * ((grid - 25) / 3) ** 2))
    search = DensityGMMCV(n_components=2, loss="poisson", random_state=0)
    alone = DensityGMMCV(**search.get_params()).fit(grid, y).best_estimator_
    beside = fit_many(grid, np.vstack([y, big]), search)
    k = alone.n_components
    assert beside.n_components[0] == k and beside.loss[0] == alone.loss_
    assert np.array_equal(beside.means[0, :k], alone.means_)


def test_a_density_the_noise_model_refuses_fails_alone_in_a_batch():
    grid = np.linspace(0.0, 50.0, 200)
    good = np.exp(-0.5 * ((grid - 20.0) / 3.0) ** 2) + 0.02
    spike = np.zeros(grid.size)
    spike[66] = 1e6
    search = DensityGMMCV(n_components=3, noise="poisson", random_state=0)
    with pytest.raises(ValueError, match="noise='poisson'"):
        DensityGMMCV(**search.get_params()).fit(grid, spike)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_many(grid, np.vstack([good, spike]), search)
    assert result.failed.tolist() == [False, True]
    assert "noise='poisson'" in result.messages[1]


def test_fit_many_messages_are_the_single_fits_warnings_in_their_order():
    rng = np.random.default_rng(0)
    edges = np.concatenate([np.linspace(0, 20, 31), np.geomspace(20.5, 50, 40)])
    samples = np.concatenate([rng.normal(15, 2, 2000), rng.normal(30, 3, 1000)])
    counts = np.histogram(samples, edges)[0].astype(float)
    centres = 0.5 * (edges[1:] + edges[:-1])
    grid, Y = _three_lines(1, 2, noise=0.01)
    for estimator, X, y in (
        (DensityGMM(n_components=2, random_state=0), centres, counts),  # integers, cells differ
        (DensityGMM(n_components=3, tol=1e-12, max_iter=3, random_state=0), grid, Y[0]),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            DensityGMM(**estimator.get_params()).fit(X, y)
        alone = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit_many(X, y[None], estimator)
        assert alone and result.messages[0].split("\n") == alone
