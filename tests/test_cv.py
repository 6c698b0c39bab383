"""Choosing the number of components: DensityGMMCV, GridSearchCV and Pipeline."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from joblib import Parallel, delayed
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from scipy.stats import norm
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skdensityfit import DensityGMM, DensityGMMCV, fit_many
from skdensityfit._data.noise import Grid, initial_noise, initial_noises, noise_variance
from skdensityfit._examples import (
    mixture_densities_1d,
    mixture_density,
    random_separated_mixture_1d,
)
from skdensityfit._selection.rules import has_peaked, least_components, select

KINDS = ["noise1", "noise5", "hist2000", "hist20000"]
CV_RESULT_KEYS = {
    "param_n_components",
    "params",
    "mean_test_score",
    "std_test_score",
    "rank_test_score",
    "mean_fit_time",
    "std_fit_time",
}


def _case(kind, seed):
    """A 1-D mixture with K = 1..4 separated components, as noisy density or histogram."""
    rng = np.random.default_rng(1000 + seed)
    n_components = 1 + seed % 4
    weights, means, stds = random_separated_mixture_1d(rng, n_components)
    low, high = means.min() - 5 * stds.max(), means.max() + 5 * stds.max()
    if kind.startswith("hist"):
        n_samples = int(kind[4:])
        labels = rng.choice(n_components, size=n_samples, p=weights)
        counts, edges = np.histogram(
            rng.normal(means[labels], stds[labels]), bins=100, range=(low, high)
        )
        return n_components, 0.5 * (edges[1:] + edges[:-1]), counts, "poisson"
    grid = np.linspace(low, high, 300)
    density = mixture_density(grid, weights, means[:, None], stds[:, None, None] ** 2)
    if kind != "clean":
        level = float(kind[5:]) / 100
        density = density + rng.normal(0, level * density.max(), density.shape)
    return n_components, grid, density, "l2"


def _chosen(kind, seed):
    n_components, grid, y, loss = _case(kind, seed)
    search = DensityGMMCV(n_components=6, loss=loss, random_state=seed).fit(grid, y)
    return n_components, search.n_components_


@pytest.mark.slow
def test_chosen_number_of_components_is_right_in_90_percent():
    """40 seeded cases: 1% and 5% noise, histograms of 2,000 and 20,000 samples."""
    cases = [(kind, seed) for kind in KINDS for seed in range(10)]
    results = np.array(Parallel(n_jobs=2)(delayed(_chosen)(*case) for case in cases))
    off = results[:, 1] - results[:, 0]
    assert np.mean(off == 0) >= 0.9, [c for c, o in zip(cases, off, strict=True) if o]
    assert np.all(np.abs(off) <= 1), results[off != 0]


@pytest.mark.parametrize("seed", range(8))
def test_noise_free_density_never_gets_fewer_components(seed):
    n_components, chosen = _chosen("clean", seed)
    assert chosen >= n_components


def test_cv_results_have_grid_search_shape():
    _, grid, y, _ = _case("noise1", 1)
    search = DensityGMMCV(
        n_components=[1, 2, 3], cv=4, selection="standard_error", random_state=0
    ).fit(grid, y)
    results = search.cv_results_
    assert CV_RESULT_KEYS | {f"split{i}_test_score" for i in range(4)} <= set(results)
    assert "split4_test_score" not in results
    assert list(results["param_n_components"]) == [1, 2, 3]
    assert results["params"] == [{"n_components": k} for k in (1, 2, 3)]
    assert sorted(results["rank_test_score"]) == [1, 2, 3]
    assert search.best_score_ == results["mean_test_score"][search.best_index_]
    assert search.best_estimator_.n_components == search.n_components_ == 2
    np.testing.assert_allclose(search.predict(grid), search.best_estimator_.predict(grid))
    assert search.score(grid, y) == search.best_estimator_.score(grid, y)


def _split_scores(results):
    n_splits = sum(key.startswith("split") for key in results)
    return np.array([results[f"split{i}_test_score"] for i in range(n_splits)])


@pytest.mark.parametrize("n_standard_errors", [1.0, 2.0])
def test_standard_error_rule_uses_paired_differences(n_standard_errors):
    _, grid, y, _ = _case("noise5", 2)
    best = DensityGMMCV(n_components=5, selection="best", random_state=0).fit(grid, y)
    rule = DensityGMMCV(
        n_components=5,
        selection="standard_error",
        n_standard_errors=n_standard_errors,
        random_state=0,
    )
    rule.fit(grid, y)
    assert rule.n_components_ <= best.n_components_
    # recomputed from the per-fold scores: the smallest candidate within
    # n_standard_errors standard errors of the paired differences to the best mean
    folds = _split_scores(rule.cv_results_)
    means = folds.mean(axis=0)
    evaluated = np.isfinite(means)
    top = np.nanargmax(np.where(evaluated, means, np.nan))
    differences = folds[:, [top]] - folds
    errors = differences.std(axis=0, ddof=1) / np.sqrt(len(folds))
    within = evaluated & (means >= means[top] - n_standard_errors * np.nan_to_num(errors))
    assert rule.best_index_ == np.flatnonzero(within)[0]
    # pooled: the mean of the split scores is the pooled score
    np.testing.assert_allclose(rule.cv_results_["mean_test_score"], means)
    best_means = best.cv_results_["mean_test_score"]
    assert best.best_index_ == np.nanargmax(np.where(np.isfinite(best_means), best_means, np.nan))


def test_grid_search_over_n_components_with_shuffled_folds():
    n_components, grid, y, _ = _case("noise1", 3)
    search = GridSearchCV(
        DensityGMM(random_state=0),
        {"n_components": [1, 2, 3, 4]},
        cv=KFold(5, shuffle=True, random_state=0),
    ).fit(grid[:, None], y)
    assert search.best_params_["n_components"] == n_components == 4


def test_pipeline_ending_in_density_gmm():
    _, grid, y, _ = _case("clean", 2)
    pipeline = make_pipeline(StandardScaler(), DensityGMM(n_components=3, random_state=0))
    pipeline.fit(grid[:, None], y)
    assert pipeline.score(grid[:, None], y) > 1 - 1e-8
    direct = DensityGMM(n_components=3, random_state=0).fit(grid, y)
    # the density in scaled coordinates is y itself, so the means map back exactly
    scaler = pipeline[0]
    np.testing.assert_allclose(
        scaler.inverse_transform(pipeline[-1].means_), direct.means_, rtol=1e-6
    )


def test_parallel_starts_give_the_same_choice():
    _, grid, y, _ = _case("noise1", 5)
    serial = DensityGMMCV(n_components=4, random_state=0).fit(grid, y)
    parallel = DensityGMMCV(n_components=4, random_state=0, n_jobs=2).fit(grid, y)
    assert serial.n_components_ == parallel.n_components_ == 2
    # Up to the choice the fits are well conditioned and agree to rounding. Past it
    # they fit noise spikes, which depends on floating-point details that differ
    # between the main process and joblib's workers (their BLAS thread counts).
    chosen = serial.best_index_ + 1
    np.testing.assert_allclose(
        serial.cv_results_["mean_test_score"][:chosen],
        parallel.cv_results_["mean_test_score"][:chosen],
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "candidates", [[0, 1], [1, 1.9], [], [[1, 2]], ["1", "2"], [1, np.inf], [1, 1e20]]
)
def test_bad_candidates_are_refused(candidates):
    with pytest.raises(ValueError, match="n_components should be"):
        DensityGMMCV(n_components=candidates).fit(np.arange(10.0), np.ones(10))


def test_a_candidate_that_cannot_be_fitted_scores_minus_infinity_without_warnings():
    # 12 points in 4 folds: 9 training points cannot hold 10 components
    grid = np.linspace(-3, 3, 12)
    y = np.exp(-0.5 * grid**2) * (1 + 0.01 * np.sin(7 * grid))  # not exact: no early end
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        search = DensityGMMCV(
            n_components=[1, 10],
            cv=4,
            selection="standard_error",
            early_stopping=False,
            random_state=0,
        ).fit(grid, y)
    assert search.n_components_ == 1
    assert search.cv_results_["mean_test_score"][1] == -np.inf


def test_bic_of_histograms_picks_the_true_number():
    chosen = []
    for kind in ("hist2000", "hist20000"):
        for seed in range(8):
            n_components, grid, counts, _ = _case(kind, seed)
            fits = [
                DensityGMM(k, loss="poisson", random_state=0).fit(grid, counts) for k in range(1, 7)
            ]
            bic = [fit.bic(grid, counts) for fit in fits]
            aic = [fit.aic(grid, counts) for fit in fits]
            chosen.append((n_components, np.argmin(bic) + 1, np.argmin(aic) + 1))
    chosen = np.array(chosen)
    assert np.mean(chosen[:, 1] == chosen[:, 0]) >= 14 / 16, chosen
    # AIC's lighter penalty never chooses fewer components than BIC
    assert np.all(chosen[:, 2] >= chosen[:, 1]), chosen


def test_bic_of_a_density_with_bin_sizes_equals_bic_of_counts():
    _, grid, counts, _ = _case("hist2000", 2)
    width = grid[1] - grid[0]
    from_counts = DensityGMM(3, loss="poisson", random_state=0).fit(grid, counts)
    from_density = DensityGMM(3, loss="poisson", random_state=0).fit(grid, counts / width)
    np.testing.assert_allclose(
        from_density.bic(grid, counts / width, sample_weight=np.full(len(grid), width)),
        from_counts.bic(grid, counts),
        rtol=1e-6,
    )


def test_information_criteria_need_the_poisson_loss():
    _, grid, y, _ = _case("clean", 1)
    fit = DensityGMM(2, random_state=0).fit(grid, y)
    with pytest.raises(ValueError, match="only loss='poisson'"):
        fit.bic(grid, y)


def test_fold_with_zero_sample_weight_is_a_clear_error():
    _, grid, y, _ = _case("noise1", 1)
    weights = np.zeros_like(y)
    weights[:3] = 1.0
    with pytest.raises(ValueError, match="zero total sample_weight"):
        DensityGMMCV(n_components=2, selection="standard_error", random_state=0).fit(
            grid, y, sample_weight=weights
        )


def test_candidates_with_gaps_still_grow_along_the_path(monkeypatch):
    import skdensityfit._selection.search as search_module

    grown = []
    original = search_module.grown_rows

    def counting(problem, inputs, thetas, density, **options):
        grown.append(problem.layout.n_components)
        return original(problem, inputs, thetas, density, **options)

    monkeypatch.setattr(search_module, "grown_rows", counting)
    _, grid, y, _ = _case("noise1", 2)  # three components
    search = DensityGMMCV(n_components=[1, 3], random_state=0).fit(grid, y)
    assert sorted(set(grown)) == [1, 2]  # K = 2 is fitted on the way to K = 3
    assert list(search.cv_results_["param_n_components"]) == [1, 3]
    assert search.n_components_ == 3


@pytest.mark.parametrize(
    ("selection", "expected"),
    # K = 2 also starts from K = 1 grown (and, for the criterion, from K = 1 with its
    # worst-fitted component split), which count as n_init starts; one from the data always
    [("standard_error", {1: 1, 2: 1, 4: 3}), ("bic", {1: 1, 2: 1, 4: 2})],
)
def test_n_init_sets_the_number_of_starts_on_the_path(monkeypatch, selection, expected):
    import skdensityfit._selection.search as search_module

    calls = []
    peaks, drawn = search_module.peak_starts, search_module.Paths._drawn_starts

    def counting_peaks(problem, *args, **kwargs):
        calls.append(problem.layout.n_components)
        return peaks(problem, *args, **kwargs)

    def counting_drawn(self, problem, *args, **kwargs):
        calls.append(problem.layout.n_components)
        return drawn(self, problem, *args, **kwargs)

    monkeypatch.setattr(search_module, "peak_starts", counting_peaks)
    monkeypatch.setattr(search_module.Paths, "_drawn_starts", counting_drawn)
    _, grid, y, _ = _case("noise1", 1)  # two components
    counts = {}
    for n_init in (1, 2, 4):
        calls.clear()
        DensityGMMCV(
            n_components=[1, 2], n_init=n_init, early_stopping=False, selection=selection
        ).fit(grid, y)
        counts[n_init] = calls.count(2)
    assert counts == expected


@pytest.mark.parametrize("early_stopping", [True, 1, 3])
def test_early_stopping_evaluates_that_many_candidates_past_the_choice(early_stopping):
    _, grid, y, _ = _case("noise1", 1)  # two components, 1% noise
    search = DensityGMMCV(
        n_components=8, selection="standard_error", early_stopping=early_stopping, random_state=0
    )
    search.fit(grid, y)
    results = search.cv_results_
    means = results["mean_test_score"]
    evaluated = np.flatnonzero(np.isfinite(means))
    patience = 2 if early_stopping is True else early_stopping
    # the default waits one candidate only past a choice whose fit leaves only
    # noise: here the fits with two or more components (1% noise), not one
    quiet = np.arange(len(means)) >= 1 if early_stopping is True else None
    scores = np.array([results[f"split{i}_test_score"] for i in range(10)])
    # the path stops at the first candidate where the rule holds, never later than
    # patience candidates past the best
    stops = [
        has_peaked(
            scores[:, : i + 1],
            patience,
            "standard_error",
            search.n_standard_errors,
            None if quiet is None else quiet[: i + 1],
        )
        for i in evaluated
    ]
    assert stops[-1] and not any(stops[:-1])
    assert evaluated[-1] == search.best_index_ + (1 if early_stopping is True else patience)
    assert evaluated[-1] <= int(np.nanargmax(means)) + patience
    np.testing.assert_array_equal(evaluated, np.arange(len(evaluated)))
    assert search.n_components_ == 2
    # the candidates not evaluated rank last
    ranks = search.cv_results_["rank_test_score"]
    assert ranks[len(evaluated) :].min() > ranks[: len(evaluated)].max()


def test_a_quiet_choice_is_settled_one_candidate_later():
    """has_peaked's quiet: a choice whose fit leaves only noise needs patience 1;
    one that does not, and the rule on the best mean, keep the full patience."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.01, (10, 1))
    # candidate 1 is clearly best, 2 and 3 within noise of it
    scores = np.hstack([base + 0.5, base + 0.9, base + 0.9, base + 0.9])
    scores[:, 2:] += rng.normal(0, 1e-5, (10, 2))
    two = scores[:, :3]
    assert not has_peaked(two, 2, "standard_error", 2.0)
    assert not has_peaked(two, 2, "standard_error", 2.0, quiet=[False, False, True])
    assert has_peaked(two, 2, "standard_error", 2.0, quiet=[False, True, True])
    assert has_peaked(scores, 2, "standard_error", 2.0)
    # never more than the patience asked for (1 stays 1)
    assert has_peaked(two, 1, "standard_error", 2.0, quiet=[False, False, False])
    # one answer a density
    many = np.stack([two, two])
    quiet = np.array([[False, True, True], [False, False, True]])
    np.testing.assert_array_equal(has_peaked(many, 2, "standard_error", 2.0, quiet), [True, False])


def _white_noise_about_a_peak(shape, n_draws=400):
    """The grid of ``shape`` (in grid steps), a Gaussian peak on it, and
    ``n_draws`` draws of white noise (sd 0.02)."""
    axes = [np.arange(size, dtype=float) for size in shape]
    X = np.column_stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")])
    spread = np.array(shape) / 8
    truth = np.exp(-0.5 * np.sum(((X - np.array(shape) / 2) / spread) ** 2, axis=1))
    noise = np.random.default_rng(0).normal(0, 0.02, (n_draws, len(X)))
    return X, truth, noise


def _bump(X, shape, width, height=5 * 0.02):
    """A component ``height`` high (5 noise sd) and ``width`` grid steps wide,
    away from the peak."""
    return height * np.exp(-0.5 * np.sum(((X - 0.8 * np.array(shape)) / width) ** 2, axis=1))


@pytest.mark.parametrize("shape", [(100,), (400,), (2000,), (32, 32), (64, 64)])
def test_leaves_noise_tells_white_noise_from_a_missing_component(shape):
    """leaves_noise's two tests against the second-difference noise estimate.
    The mean square: the ratio of white noise's mean square to the estimate
    spreads by at most QUIET_SPREAD / sqrt(n) on these grids. The matched
    filter: white noise's largest bump stays below the limit in at least 98% of
    draws. White noise alone passes both in at least 90% of draws (each test is
    at about two standard deviations; benchmarks/bench_noise_tests.py measures
    more grids); a missing component 5 noise standard deviations high is caught
    whether broad (by the mean square) or 2 grid steps wide (by the matched
    filter: on 2,000 points the mean square alone lets it through in most
    draws)."""
    from skdensityfit._selection.rules import (
        QUIET_SPREAD,
        largest_bump,
        leaves_noise,
        residual_is_noise_level,
    )

    X, truth, noise = _white_noise_about_a_peak(shape)
    n = len(X)
    normaliser = np.mean(truth**2)
    variance = noise_variance(X, truth + noise)
    noise_loss = variance / normaliser
    loss = np.mean(noise**2, axis=1) / normaliser
    assert np.std(loss / noise_loss) * np.sqrt(n) <= QUIET_SPREAD
    bumps = largest_bump(X, noise, variance)
    assert np.mean(bumps > 2 * np.log(n) + 7.0) <= 0.02
    assert leaves_noise(loss, noise_loss, bumps, n).mean() >= 0.9
    for width in (np.array(shape) / 8, 2.0):
        residual = noise + _bump(X, shape, width)
        missed = np.mean(residual**2, axis=1) / normaliser
        bumps = largest_bump(X, residual, variance)
        assert leaves_noise(missed, noise_loss, bumps, n).mean() <= 0.01
    narrow = noise + _bump(X, shape, 2.0)
    if len(shape) == 2:  # 4 noise sd, 1.5 steps wide: only the matched filter sees it
        faint = noise + _bump(X, shape, 1.5, height=4 * 0.02)
        faint_loss = np.mean(faint**2, axis=1) / normaliser
        assert residual_is_noise_level(faint_loss, noise_loss, n).mean() >= 0.5
        bumps = largest_bump(X, faint, variance)
        assert leaves_noise(faint_loss, noise_loss, bumps, n).mean() <= 0.01
    if shape == (2000,):  # the mean square alone mostly does not see it
        ratio_only = residual_is_noise_level(np.mean(narrow**2, axis=1) / normaliser, noise_loss, n)
        assert ratio_only.mean() >= 0.5
    assert not leaves_noise(np.nan, 1.0, 0.0, n)
    assert not residual_is_noise_level(np.nan, 1.0, n)
    assert not leaves_noise(1.0, 1.0, np.nan, n)


def test_largest_bump_is_none_off_a_rectilinear_grid_and_scores_a_bump_where_it_is():
    from skdensityfit._selection.rules import largest_bump

    x = np.arange(300.0)
    residual = 0.5 * np.exp(-0.5 * ((x - 200) / 3.0) ** 2)
    # a bump of height h and sd s grid steps: the matched filter's score is about
    # h^2 sqrt(pi) s / noise variance (h = 0.5, s = 3: 1.33 at unit variance)
    score = largest_bump(x[:, None], residual, 1.0)
    assert score == pytest.approx(0.25 * np.sqrt(np.pi) * 3.0, rel=0.1)
    # the grid's order does not matter; rows of a batch are scored each
    order = np.random.default_rng(0).permutation(300)
    rows = np.vstack([residual[order], 2 * residual[order]])
    np.testing.assert_allclose(largest_bump(x[order, None], rows, np.array([1.0, 4.0])), score)
    scattered = np.random.default_rng(0).uniform(size=(50, 2))
    assert largest_bump(scattered, np.zeros(50), 1.0) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning: a huge or infinite score
        assert largest_bump(x[:, None], residual, 0.0) > 1e300


def _faint_narrow_case(seed):
    """An independent review's generator: K - 1 Gaussians on [0, 1] (possibly
    overlapping) plus a component 3 to 6 noise standard deviations high and 2 to 5
    grid steps wide, 5% white noise, on 50 to 2,000 points. Returns x, y, K and the
    faint component's centre and width."""
    rng = np.random.default_rng(1000 + seed)
    k = int(rng.integers(1, 6))
    x = np.linspace(0, 1, int(rng.choice([50, 100, 200, 500, 1000, 2000])))
    means, sds = np.sort(rng.uniform(0.1, 0.9, k)), rng.uniform(0.02, 0.08, k)
    weights = rng.uniform(0.5, 1.5, k)
    y = sum(
        w * np.exp(-0.5 * ((x - m) / s) ** 2) / (np.sqrt(2 * np.pi) * s)
        for w, m, s in zip(weights[:-1], means[:-1], sds[:-1], strict=True)
    )
    sigma = 0.05 * y.max()
    width, centre = rng.uniform(2, 5) * (x[1] - x[0]), rng.uniform(0.05, 0.95)
    y = y + rng.uniform(3, 6) * sigma * np.exp(-0.5 * ((x - centre) / width) ** 2)
    return x, y + rng.normal(0, sigma, x.size), k, (centre, width)


@pytest.mark.parametrize("seed", [41, 93])  # 2,000 and 1,000 points
def test_a_narrow_faint_component_keeps_the_full_patience(seed):
    """Cases an independent review found: the fit without the faint narrow
    component passes the mean-square test (on 2,000 points by 1.055 against a limit
    of 1.124), the next candidate scores no better, and with patience 1 the search
    stopped at K = 2 (seed 41) and 3 (seed 93) before the faint component was fitted.
    Now the default waits as long as early_stopping=2 and chooses the same, a fit
    that holds the faint component: seed 41 through the matched filter, which sees
    the component in the residual (without it this test fails), seed 93 through the
    mean square test at two standard deviations. Both truths hold two nearly
    coincident components: seed 41 chooses 5, seed 93 4 (its four-component fit has
    the faint line and one component for the pair: held-out score 0.9679, the
    five-component fit's 0.9682 within one standard error). (With the k-means starts
    the held-out rule was tuned with. BIC chooses 3 and 4: on seed 41 the fit with
    five components lowers chi^2 by 19 against a penalty of 46.)"""
    x, y, k, (centre, width) = _faint_narrow_case(seed)
    assert k == 5
    settings = dict(n_components=8, selection="standard_error", init_params="kmeans")
    default = DensityGMMCV(**settings, random_state=seed).fit(x, y)
    patient = DensityGMMCV(**settings, early_stopping=2, random_state=seed).fit(x, y)
    assert default.n_components_ == patient.n_components_ == {41: 5, 93: 4}[seed]
    fit = default.best_estimator_
    widths = np.sqrt(fit.covariances_.ravel())
    faint = np.abs(fit.means_.ravel() - centre) < width
    assert np.any(faint & (widths < 2 * width)), (fit.means_.ravel(), widths)


def test_sample_weights_keep_the_full_patience():
    """The noise estimate weighs every point alike, so with sample weights no fit
    counts as leaving only noise: the search waits two candidates past its choice."""
    _, grid, y, _ = _case("noise1", 1)  # two components, 1% noise
    weights = np.full(grid.size, grid[1] - grid[0])
    search = DensityGMMCV(n_components=8, selection="standard_error", random_state=0).fit(
        grid, y, sample_weight=weights
    )
    evaluated = np.flatnonzero(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.n_components_ == 2
    assert evaluated[-1] == search.best_index_ + 2


def test_the_noise_estimate_takes_the_longest_axis_in_any_column_order():
    """A 4 x 400 grid has too few points along its first axis to difference, but its
    second has plenty: the estimate (and so the search's noise tests) does not
    depend on which column comes first."""
    rng = np.random.default_rng(0)
    short, long_axis = np.arange(4.0), np.linspace(0, 1, 400)
    noise = rng.normal(0, 0.01, 1600)
    estimates = []
    for columns in ((short, long_axis), (long_axis, short)):
        X = np.column_stack([g.ravel() for g in np.meshgrid(*columns, indexing="ij")])
        along = X[:, 1] if columns[0] is short else X[:, 0]
        y = np.exp(-0.5 * ((along - 0.5) / 0.1) ** 2) + noise
        estimates.append(noise_variance(X, y))
    assert estimates[0] == pytest.approx(1e-4, rel=0.15)
    assert estimates[1] == pytest.approx(1e-4, rel=0.15)
    assert noise_variance(np.column_stack([short, short]), np.zeros(4)) is None


def test_bins_keep_the_full_patience():
    """Integrated bins: the residual of cell averages is not tested against the
    noise, so the search waits two candidates past its choice (with the tests on
    it would stop after one here)."""
    x = np.linspace(-5, 5, 300)
    y = np.exp(-0.5 * ((x + 1.5) / 0.7) ** 2) + 0.6 * np.exp(-0.5 * ((x - 2) / 0.5) ** 2)
    y = y + np.random.default_rng(0).normal(0, 0.01, x.size)
    search = DensityGMMCV(
        n_components=8, selection="standard_error", random_state=0, bins="infer"
    ).fit(x, y)
    evaluated = np.flatnonzero(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.n_components_ == 2
    assert evaluated[-1] == search.best_index_ + 2


def test_a_leading_candidate_is_scored_by_real_fold_refits(monkeypatch):
    """On large grids one step is optimistic for surplus components: a candidate
    whose one-step score would lead is scored again after real refits; the
    others are not."""
    import skdensityfit._selection.cv as cv
    from skdensityfit._selection.rules import PointFolds

    monkeypatch.setattr(cv, "SMALL_GRID", 0)  # as on a large grid
    refitted = []
    original = PointFolds.refit

    def counting(self, fits, problem, seconds):
        refitted.append(problem.layout.n_components)
        return original(self, fits, problem, seconds)

    monkeypatch.setattr(PointFolds, "refit", counting)
    one_step_means = {}
    original_score = PointFolds.scores

    def recording(self, fits, problem):
        scores = original_score(self, fits, problem)
        one_step_means.setdefault(problem.layout.n_components, scores.mean())
        return scores

    monkeypatch.setattr(PointFolds, "scores", recording)
    n_components, grid, y, _ = _case("noise5", 1)
    search = DensityGMMCV(
        n_components=5, selection="standard_error", early_stopping=False, random_state=0
    ).fit(grid, y)
    leading = [
        k
        for k in range(2, 6)
        if one_step_means[k] > max(search.cv_results_["mean_test_score"][: k - 1])
    ]
    assert refitted == leading and 1 not in refitted
    means = search.cv_results_["mean_test_score"]
    surplus = [k for k in refitted if k > n_components]
    assert surplus
    for k in surplus:  # refits lower a surplus candidate's optimistic one-step score
        assert means[k - 1] < one_step_means[k]


def test_more_components_than_training_points_score_minus_infinity_without_a_path(monkeypatch):
    import skdensityfit._selection.search as search_module

    grown = []
    original = search_module.Paths._path_fit

    def recording(self, problem, *args, **kwargs):
        grown.append(problem.layout.n_components)
        return original(self, problem, *args, **kwargs)

    monkeypatch.setattr(search_module.Paths, "_path_fit", recording)
    grid = np.linspace(-3, 3, 20)
    y = np.exp(-0.5 * grid**2) * (1 + 0.01 * np.sin(7 * grid))  # not exact: no early end
    search = DensityGMMCV(n_components=[1, 30], selection="standard_error", random_state=0).fit(
        grid, y
    )
    assert search.n_components_ == 1
    assert search.cv_results_["mean_test_score"][1] == -np.inf
    assert grown == [1]  # no path through K = 2..30


def test_search_delegates_reports_to_the_chosen_fit():
    _, grid, y, _ = _case("noise1", 1)
    search = DensityGMMCV(n_components=4, random_state=0).fit(grid, y)
    best = search.best_estimator_
    assert search.summary() == best.summary()
    assert search.fit_report() == best.fit_report()
    errors = search.standard_errors(grid, y)
    np.testing.assert_array_equal(errors["means"], best.standard_errors(grid, y)["means"])
    counts = np.round(1000 * np.abs(y) / np.abs(y).max())
    poisson = DensityGMMCV(n_components=3, loss="poisson", random_state=0).fit(grid, counts)
    assert poisson.aic(grid, counts) == poisson.best_estimator_.aic(grid, counts)
    assert poisson.bic(grid, counts) == poisson.best_estimator_.bic(grid, counts)


def test_grid_search_with_contiguous_folds_is_loud_and_with_shuffled_folds_quiet():
    _, grid, y, _ = _case("noise1", 3)
    params = {"n_components": [1, 2]}
    with pytest.warns(UserWarning, match="never saw"):
        GridSearchCV(DensityGMM(random_state=0), params).fit(grid[:, None], y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        shuffled = KFold(5, shuffle=True, random_state=0)
        GridSearchCV(DensityGMM(random_state=0), params, cv=shuffled).fit(grid[:, None], y)


# ----------------------------------------------------------------------
# data nobody here generated, combs, coarse grids (issue: choosing K that a user can trust)
# ----------------------------------------------------------------------
FAITHFUL = np.loadtxt(
    __import__("pathlib").Path(__file__).parent / "data" / "faithful.csv", delimiter=",", skiprows=1
)


@pytest.mark.parametrize("column", [0, 1], ids=["eruptions", "waiting"])
@pytest.mark.parametrize("bins", [20, 40])
@pytest.mark.parametrize("as_counts", [True, False], ids=["counts-poisson", "density-l2"])
def test_old_faithful_has_two_components(column, bins, as_counts):
    """As GaussianMixture + BIC on the 272 raw samples says (tests/data/README.md)."""
    values, edges = np.histogram(FAITHFUL[:, column], bins=bins, density=not as_counts)
    centres = 0.5 * (edges[1:] + edges[:-1])
    loss = "poisson" if as_counts else "l2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the histograms touch their edges
        search = DensityGMMCV(n_components=6, loss=loss, random_state=0)
        search.fit(centres, values.astype(float))
    assert search.n_components_ == 2


def test_old_faithful_in_two_dimensions_has_two_components():
    counts, xedges, yedges = np.histogram2d(FAITHFUL[:, 0], FAITHFUL[:, 1], bins=15)
    xc, yc = 0.5 * (xedges[1:] + xedges[:-1]), 0.5 * (yedges[1:] + yedges[:-1])
    grid = np.column_stack([a.ravel() for a in np.meshgrid(xc, yc, indexing="ij")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search = DensityGMMCV(n_components=5, loss="poisson", random_state=0)
        search.fit(grid, counts.ravel())
    assert search.n_components_ == 2 and search.held_out_ == "none"


def test_count_splitting_chooses_two_for_old_faithful():
    counts, edges = np.histogram(FAITHFUL[:, 1], bins=20)
    centres = 0.5 * (edges[1:] + edges[:-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search = DensityGMMCV(
            n_components=5, loss="poisson", selection="standard_error", random_state=0
        ).fit(centres, counts.astype(float))
    assert search.held_out_ == "counts" and search.n_components_ == 2
    # every fold keeps every bin: five splits of all the counts
    assert sum(key.startswith("split") for key in search.cv_results_) == 5


def test_a_comb_of_nine_peaks_has_nine_components():
    x = np.linspace(0, 100, 600)
    y = sum(
        np.exp(-0.5 * ((x - c) / 1.5) ** 2) / (1.5 * np.sqrt(2 * np.pi)) for c in range(10, 91, 10)
    )
    search = DensityGMMCV(n_components=12, random_state=0).fit(x, y)
    assert search.n_components_ == 9
    assert search.best_estimator_.score(x, y) > 1 - 1e-8
    # nine clear peaks: fewer components are never scored, and nine fit exactly at once
    means = search.cv_results_["mean_test_score"]
    assert np.all(np.isnan(means[:8])) and np.isfinite(means[8]) and np.all(np.isnan(means[9:]))
    held_out = DensityGMMCV(n_components=12, selection="standard_error", random_state=0)
    means = held_out.fit(x, y).cv_results_["mean_test_score"]
    assert held_out.n_components_ == 9
    assert np.all(np.isnan(means[:8])) and means[8] > 1 - 1e-8 and np.all(np.isnan(means[9:]))


def test_an_exact_fit_at_the_count_of_clear_peaks_skips_the_path_below(monkeypatch):
    """No fit with fewer components than the comb's nine peaks is made."""
    import skdensityfit._selection.search as search_module

    sizes = []
    original = search_module.Paths._path_fit

    def recording(self, problem, *args, **kwargs):
        sizes.append(problem.layout.n_components)
        return original(self, problem, *args, **kwargs)

    monkeypatch.setattr(search_module.Paths, "_path_fit", recording)
    x = np.linspace(0, 100, 600)
    y = sum(np.exp(-0.5 * ((x - c) / 1.5) ** 2) for c in range(10, 91, 10))
    for selection in ("bic", "standard_error"):
        sizes.clear()
        search = DensityGMMCV(n_components=12, selection=selection, random_state=0)
        assert search.fit(x, y).n_components_ == 9
        assert sizes and min(sizes) == 9


def _histogram_of_four(n_samples=200_000, bins=800):
    rng = np.random.default_rng(11)
    weights, means, stds = random_separated_mixture_1d(rng, 4)
    labels = rng.choice(4, n_samples, p=weights)
    y, edges = np.histogram(
        rng.normal(means[labels], stds[labels]),
        bins=bins,
        range=(means.min() - 5 * stds.max(), means.max() + 5 * stds.max()),
        density=True,
    )
    return 0.5 * (edges[1:] + edges[:-1]), y


def test_noise_that_is_not_white_can_fake_clear_peaks_but_hides_no_candidate():
    """A histogram's noise is larger at its peaks than the average the threshold uses:
    here two bumps on one peak count as clear (five peaks, four components). Not
    being an exact fit, that count decides nothing: every candidate up to one past
    the choice is scored (the choice's fit leaves only noise: one surplus
    candidate), and the choice is four."""
    x, y = _histogram_of_four()
    X = x[:, None]
    assert least_components(X, y, noise_variance(X, y))[0] == 5
    search = DensityGMMCV(n_components=8, random_state=0).fit(x, y)
    assert search.n_components_ == 4
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"][:5]))


@pytest.mark.parametrize("masked", [False, True])
def test_a_spike_counts_as_a_peak_only_where_it_has_weight(masked):
    """One outlier on a single noisy peak: a second clear peak, unless its sample
    weight is zero; either way K = 1 is scored, and held-out points choose it. The
    criterion leaves out the points of zero weight (K = 1), and takes the spike, 750
    noise standard deviations high, for a component at the width floor, which the
    chosen fit warns of."""
    rng = np.random.default_rng(0)
    x = np.linspace(-10, 10, 1000)
    y = np.exp(-0.5 * x**2 / 4) + 0.002 * rng.normal(size=x.size)
    weights = np.full(x.size, x[1] - x[0])
    spike = np.searchsorted(x, 6.0)
    y[spike] = 1.5
    if masked:
        weights[spike] = 0.0
    X = x[:, None]
    count = least_components(X, y, noise_variance(X, y), weights)[0]
    assert count == (1 if masked else 2)
    search = DensityGMMCV(n_components=4, selection="standard_error", random_state=0)
    search.fit(x, y, sample_weight=weights)
    assert search.n_components_ == 1
    assert np.isfinite(search.cv_results_["mean_test_score"][0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = DensityGMMCV(n_components=4, random_state=0).fit(x, y, sample_weight=weights)
    assert search.n_components_ == (1 if masked else 2)
    assert np.isfinite(search.cv_results_["mean_test_score"][0])
    floor = [w for w in caught if "width floor" in str(w.message)]
    assert len(floor) == (0 if masked else 1)
    if not masked:
        spike_component = np.argmin(np.abs(search.best_estimator_.means_[:, 0] - x[spike]))
        assert abs(search.best_estimator_.means_[spike_component, 0] - x[spike]) < x[1] - x[0]


def _mixture_on_a_line(rng, n_components, n_points=400):
    weights = rng.dirichlet(np.ones(n_components))
    means = rng.uniform(0, 100, n_components)
    stds = rng.uniform(0.5, 10, n_components)
    x = np.linspace(-30, 130, n_points)
    return x[:, None], mixture_density(x, weights, means[:, None], stds[:, None, None] ** 2)


@pytest.mark.parametrize("seed", range(40))
def test_clear_peaks_never_outnumber_the_components(seed):
    """A 1-D mixture of K Gaussians has at most K modes: with or without white noise
    (1% and 5% of the maximum, the noise estimated from the values), the count of
    clear peaks is a lower bound on K."""
    rng = np.random.default_rng(seed)
    n_components = 1 + seed % 6
    X, clean = _mixture_on_a_line(rng, n_components)
    modes = len(find_peaks(clean)[0])  # every local maximum of the sampled density
    assert 1 <= least_components(X, clean, noise_variance(X, clean))[0] <= max(1, modes)
    assert modes <= n_components
    for level in (0.01, 0.05):
        noisy = clean + level * clean.max() * rng.normal(size=clean.shape)
        assert 1 <= least_components(X, noisy, noise_variance(X, noisy))[0] <= n_components


def test_clear_peaks_of_a_comb_under_noise_rows_and_dimensions():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 100, 600)
    comb = sum(np.exp(-0.5 * ((x - c) / 1.5) ** 2) for c in range(10, 91, 10))
    rows = np.stack([comb, comb + 0.01 * rng.normal(size=x.size), 0.2 * comb + 0.05])
    X = x[:, None]
    counts = least_components(X, rows, noise_variance(X, rows))
    np.testing.assert_array_equal(counts, [9, 9, 9])  # noise 1% of the peaks: still clear
    # a row's count is the same alone as in a block, and whatever the order of the grid
    order = rng.permutation(x.size)
    assert least_components(X[order], rows[1, order], noise_variance(X, rows[1]))[0] == 9
    # unknown noise, or more than one dimension: no bound
    assert least_components(X, comb, None)[0] == 1
    square = np.stack(np.meshgrid(x[:20], x[:20], indexing="ij"), -1).reshape(-1, 2)
    assert least_components(square, rng.random(400), 0.0)[0] == 1


@pytest.mark.parametrize("seed", range(4))
def test_clean_mixtures_on_coarse_grids_get_at_least_their_components(seed):
    """100 points, the narrowest component a few points wide: an exact fit ends the search."""
    rng = np.random.default_rng(seed)
    n_components = 3 + seed % 3
    means = 10.0 * np.arange(n_components) + rng.uniform(-1, 1, n_components)
    stds = rng.uniform(1.0, 3.0, n_components)
    weights = rng.dirichlet(np.ones(n_components)) * 0.8 + 0.2 / n_components
    x = np.linspace(means.min() - 4 * stds.max(), means.max() + 4 * stds.max(), 100)
    y = mixture_density(x, weights, means[:, None], stds[:, None, None] ** 2)
    search = DensityGMMCV(n_components=8, random_state=seed).fit(x, y)
    assert search.n_components_ == n_components


def test_the_search_warns_when_it_chooses_the_largest_candidate():
    _, grid, y, _ = _case("noise1", 3)  # four components
    with pytest.warns(UserWarning, match="largest candidate"):
        DensityGMMCV(n_components=2, random_state=0).fit(grid, y)


def test_the_search_warns_of_contiguous_folds():
    _, grid, y, _ = _case("noise1", 1)
    with pytest.warns(UserWarning, match="contiguous block"):
        DensityGMMCV(n_components=3, cv=KFold(5), selection="standard_error", random_state=0).fit(
            grid, y
        )


def test_best_params_and_the_users_random_state():
    _, grid, y, _ = _case("noise1", 1)
    search = DensityGMMCV(n_components=3, random_state=7).fit(grid, y)
    assert search.best_params_ == {"n_components": search.n_components_}
    assert search.best_estimator_.random_state == 7


def test_counts_held_out_needs_counts():
    _, grid, y, _ = _case("noise1", 1)
    with pytest.raises(ValueError, match="held_out='counts'"):
        DensityGMMCV(n_components=3, selection="standard_error", held_out="counts").fit(grid, y)


@pytest.mark.parametrize("as_counts", [True, False], ids=["counts-poisson", "density-l2"])
def test_the_search_fits_integrated_bins(as_counts):
    values, edges = np.histogram(FAITHFUL[:, 1], bins=20, density=not as_counts)
    centres = 0.5 * (edges[1:] + edges[:-1])
    loss = "poisson" if as_counts else "l2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search = DensityGMMCV(n_components=5, loss=loss, bins=[edges], random_state=0)
        search.fit(centres, values.astype(float))
    assert search.n_components_ == 2
    assert search.best_estimator_.bins is not None
    np.testing.assert_allclose(search.best_estimator_.means_.ravel(), [54.5, 80.2], atol=1.0)


def test_noise_variance_of_many_rows_is_that_of_each():
    rng = np.random.default_rng(0)
    line = np.linspace(0, 1, 40)[:, None]
    square = np.stack(np.meshgrid(np.arange(7.0), np.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    for grid in (line, square):
        Y = rng.normal(size=(3, len(grid)))
        np.testing.assert_allclose(noise_variance(grid, Y), [noise_variance(grid, y) for y in Y])
    assert noise_variance(rng.uniform(size=(30, 2)), rng.normal(size=(2, 30))) is None


def test_the_batched_search_fills_cv_results_and_prints_its_scores(capsys):
    _, grid, y, _ = _case("noise1", 2)  # three components
    search = DensityGMMCV(
        n_components=6, selection="standard_error", random_state=0, verbose=1
    ).fit(grid, y)
    results = search.cv_results_
    evaluated = np.isfinite(results["mean_test_score"])
    printed = capsys.readouterr().out.splitlines()
    # the choice leaves only noise (1% noise): one candidate past it
    assert len(printed) == evaluated.sum() == search.n_components_ + 1
    assert printed[0].startswith("DensityGMMCV: n_components=1, mean score")
    assert np.all(results["mean_fit_time"][evaluated] > 0)
    assert np.all(np.isnan(results["mean_fit_time"][~evaluated]))
    assert search.best_score_ == results["mean_test_score"][search.best_index_]
    assert search.held_out_ == "points" and search.n_components_ == 3
    assert search.best_estimator_.score(grid, y) > 0.99


@pytest.mark.parametrize("factor", [1e-300, 1e-200, 1e200, 1e300])
def test_the_search_does_not_depend_on_the_unit_of_the_density(factor):
    grid = np.linspace(-5, 5, 200)
    y = mixture_density(grid, [0.6, 0.4], np.array([[-1.5], [2.0]]), np.array([[[0.5]], [[1.0]]]))
    y = y + np.random.default_rng(0).normal(0, 0.01 * y.max(), y.shape)
    reference = DensityGMMCV(n_components=4, random_state=0).fit(grid, y)
    scaled = DensityGMMCV(n_components=4, random_state=0).fit(grid, factor * y)
    assert scaled.n_components_ == reference.n_components_ == 2
    np.testing.assert_allclose(
        scaled.cv_results_["mean_test_score"], reference.cv_results_["mean_test_score"], rtol=1e-6
    )
    np.testing.assert_allclose(
        scaled.best_estimator_.scale_, factor * reference.best_estimator_.scale_, rtol=1e-6
    )


def test_a_constant_density_scores_zero_with_a_warning_not_minus_infinity():
    grid = np.linspace(-5, 5, 200)
    with pytest.warns(UserWarning, match="no candidate explains the density well"):
        search = DensityGMMCV(n_components=4, selection="standard_error", random_state=0)
        search.fit(grid, np.full(200, 0.1))
    assert search.n_components_ == 1
    scores = search.cv_results_["mean_test_score"]
    assert np.all(scores[np.isfinite(scores)] == 0.0)


def test_default_folds_are_at_most_the_grid_points_and_too_many_is_a_clear_error():
    grid = np.linspace(-5, 5, 8)
    y = np.exp(-0.5 * grid**2 / 4)
    search = DensityGMMCV(n_components=2, selection="standard_error", random_state=0).fit(grid, y)
    assert len(search.cv_results_["split0_test_score"]) == 2
    assert (
        "split7_test_score" in search.cv_results_ and "split8_test_score" not in search.cv_results_
    )
    with pytest.raises(ValueError, match="cv=9 folds of grid points need at least 9 points"):
        DensityGMMCV(n_components=2, cv=9, selection="standard_error").fit(grid, y)


def test_the_path_stops_when_the_choice_has_not_moved_for_patience_candidates():
    # K = 2 leads clearly; K = 3 and 4 are within noise of it, 4 the best by a hair
    rng = np.random.default_rng(0)
    scores = np.array([0.2, 0.93, 0.9299, 0.9301]) + rng.normal(0, 1e-3, (10, 4))
    assert select(scores, "standard_error") == 1 and select(scores, "best") == 3
    # the choice (K = 2) is two candidates behind the last: stop; the best mean is not
    assert has_peaked(scores, 2, "standard_error")
    assert not has_peaked(scores, 2, "best") and not has_peaked(scores, 2)
    assert not has_peaked(scores[:, :3], 2, "standard_error")
    # many densities at once: the same answers
    many = np.stack([scores, scores[:, [0, 1, 3, 2]], np.where(np.arange(4) == 2, -np.inf, scores)])
    assert has_peaked(many, 2, "standard_error").tolist() == [True, True, False]


# --------------------------------------------------------------------------
# the default: BIC along the path under the density's noise model
# --------------------------------------------------------------------------
def _spectrum(seed, amplitudes, means, sds, n=424, noise=1.0, rho=0.0):
    """A spectrum of ``n`` channels: Gaussian lines on noise of sd ``noise``, AR(1) ``rho``."""
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float)
    lines = sum(
        a * np.exp(-0.5 * ((x - m) / s) ** 2)
        for a, m, s in zip(amplitudes, means, sds, strict=True)
    )
    white = rng.normal(size=n)
    correlated = np.empty(n)
    correlated[0] = white[0]
    for i in range(1, n):  # set-up of a test signal
        correlated[i] = rho * correlated[i - 1] + np.sqrt(1 - rho**2) * white[i]
    return x, lines + noise * correlated


def test_bic_results_have_grid_search_shape_and_the_noise_model():
    _, grid, y, _ = _case("noise1", 1)  # two components, 1% white noise
    search = DensityGMMCV(n_components=[1, 2, 3, 4, 5], random_state=0).fit(grid, y)
    results = search.cv_results_
    assert CV_RESULT_KEYS | {"split0_test_score"} <= set(results)
    assert "split1_test_score" not in results
    assert search.n_components_ == 2 and search.held_out_ == "none"
    scores = results["mean_test_score"]
    assert search.best_index_ == np.nanargmax(scores) and search.best_score_ == scores[1]
    # the path stops once the best is two candidates behind: K = 5 is not evaluated
    assert np.all(np.isfinite(scores[:4])) and np.isnan(scores[4])
    assert results["rank_test_score"][4] == 5
    # the criterion is -2 log L + p log n under the reported white noise
    assert search.noise_["kind"] == "white"
    model = search.best_estimator_
    chi2 = np.sum((y - model.predict_density(grid)) ** 2) / search.noise_["sd"] ** 2
    bic = chi2 + 6 * np.log(len(y))
    assert -2 * search.best_score_ == pytest.approx(bic, rel=1e-3)


@pytest.mark.parametrize("width", [0.7, 1.0, 1.5, 2.5])
def test_a_narrow_line_on_a_coarse_grid_is_not_left_in_the_residual(width):
    """A line 0.7 to 2.5 channels wide (sd), 8 noise sd high, beside a broad one: the
    held-out points of a narrow line sit in one fold or two, but the criterion sees it."""
    x, y = _spectrum(0, [10.0, 8.0], [150.0, 300.0], [20.0, width], n=424)
    search = DensityGMMCV(n_components=6, random_state=0).fit(x, y)
    assert search.n_components_ == 2
    means = np.sort(search.best_estimator_.means_[:, 0])
    np.testing.assert_allclose(means, [150.0, 300.0], atol=1.0)


@pytest.mark.parametrize(
    ("means", "noise"), [((0.65, 1.14, 3.68), 0.0), ((0.5, 5.0), 0.0), ((0.65, 1.14, 3.68), 0.01)]
)
def test_components_on_a_log_spaced_grid_are_all_found(means, noise):
    """Particle sizes on np.geomspace(0.1, 100, 160), each sd a tenth of its mean (2 to 20
    local spacings): the width floor, half the typical spacing, held the fine end's
    components 5 times too wide, and these noise-free mixtures got K = 1 (an independent
    review); the floor is now half the finest spacing."""
    grid = np.geomspace(0.1, 100, 160)
    weights = np.full(len(means), 1 / len(means))
    y = sum(
        w * np.exp(-0.5 * ((grid - m) / (0.1 * m)) ** 2) / (0.1 * m)
        for w, m in zip(weights, means, strict=True)
    )
    y = y + np.random.default_rng(0).normal(0, noise * y.max(), grid.size)
    search = DensityGMMCV(n_components=6, random_state=0).fit(grid, y)
    assert search.n_components_ == len(means)
    found = np.sort(search.best_estimator_.means_[:, 0])
    np.testing.assert_allclose(found, means, rtol=1e-6 if noise == 0 else 0.02)


@pytest.mark.parametrize(("means", "sds"), [((30.0,), (3.0,)), ((3.0, 30.0), (0.4, 3.0))])
def test_a_density_histogram_on_geometric_bins_is_read_as_counts(means, sds):
    """np.histogram(..., density=True) on geometric bins passed with bins=edges but no
    sample_weight: white noise was assumed (the values of narrow bins scatter far more),
    and an independent review's histograms got K right in 55 of 100, 35 off by more than
    one. The bins' widths now stand in for sample_weight, and the values times them are
    counts over the total: Poisson noise."""
    edges = np.geomspace(1, 100, 121)
    centres = 0.5 * (edges[1:] + edges[:-1])
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(m, s, 10000) for m, s in zip(means, sds, strict=True)])
    density, _ = np.histogram(samples, bins=edges, density=True)
    search = DensityGMMCV(n_components=6, bins=edges, random_state=0).fit(centres, density)
    assert search.noise_["kind"] == "poisson"
    assert search.n_components_ == len(means)
    np.testing.assert_allclose(np.sort(search.best_estimator_.means_[:, 0]), means, rtol=0.02)


def test_only_histograms_on_unequal_bins_are_read_as_counts():
    """The bins' widths stand in for sample_weight only where the values times them are
    counts or sum to one: on random-width bins (whose widths the first version did not
    read), density=True and counts / width are histograms; a spectrum rounded to three
    decimals on edges rounded to two (its values times the widths multiples of one
    quantum: read as counts and over-fitted, an independent review) and values of 1e7
    (integers to any tolerance) are not."""
    from skdensityfit._data.noise import histogram_rows

    rng = np.random.default_rng(0)
    edges = np.cumsum(np.r_[0.0, rng.gamma(1.5, 1.0, 60)])
    widths = np.diff(edges)
    counts = np.histogram(rng.normal(edges[-1] / 2, edges[-1] / 8, 3000), bins=edges)[0]
    spectrum = np.round(np.exp(-0.5 * ((edges[:-1] - 30) / 5) ** 2), 3)
    rows = np.vstack([counts / counts.sum() / widths, counts / widths, spectrum, 1e7 + 0 * widths])
    assert histogram_rows(rows, widths).tolist() == [True, True, False, False]
    rounded = np.unique(np.round(np.geomspace(1, 100, 91), 2))
    centres = 0.5 * (rounded[1:] + rounded[:-1])
    flux = np.round(2.0 * np.exp(-0.5 * ((centres - 12) / 1.2) ** 2) + 0.01, 3)
    assert not histogram_rows(flux[None], np.diff(rounded))[0]
    centres = 0.5 * (edges[1:] + edges[:-1])
    density = np.histogram(
        rng.normal(edges[-1] / 2, edges[-1] / 8, 3000), bins=edges, density=True
    )[0]
    search = DensityGMMCV(n_components=6, bins=edges, random_state=0).fit(centres, density)
    assert search.noise_["kind"] == "poisson" and search.n_components_ == 1


def test_a_faint_component_of_a_noise_free_image_does_not_add_one():
    """A noise-free 64 x 64 image of three components, one of weight 0.005: the path's fit
    at K = 3 stopped in a poor optimum, the exact fit at K = 4 (a component of no weight)
    ended the walk and won (an independent review). The candidate before an exact fit is
    now improved from it, and exact there the walk stops there: K = 3."""
    axis = np.arange(64.0)
    grid = np.column_stack([g.ravel() for g in np.meshgrid(axis, axis, indexing="ij")])
    parts = [
        (0.595, (20.0, 20.0), (3.0, 3.0)),
        (0.4, (44.0, 44.0), (6.0, 4.0)),
        (0.005, (20.0, 46.0), (3.0, 3.0)),
    ]
    y = sum(
        w
        * np.exp(-0.5 * np.sum(((grid - m) / np.array(s)) ** 2, axis=1))
        / (2 * np.pi * s[0] * s[1])
        for w, m, s in parts
    )
    search = DensityGMMCV(n_components=6, random_state=0).fit(grid, y / y.max())
    assert search.n_components_ == 3
    np.testing.assert_allclose(
        np.sort(search.best_estimator_.weights_), [0.005, 0.4, 0.595], atol=1e-4
    )


@pytest.mark.parametrize("seed", range(3))
def test_correlated_noise_is_recognised_and_does_not_add_components(seed):
    """Real spectra share noise between neighbouring channels: white-noise BIC would
    take its bumps for lines; the residual's autocorrelation switches the model."""
    x, y = _spectrum(seed, [6.0, 4.0], [150.0, 260.0], [5.0, 3.0], rho=0.45)
    search = DensityGMMCV(n_components=8, random_state=0).fit(x, y)
    assert search.noise_["kind"] == "correlated"
    assert search.n_components_ == 2
    # the noise of this draw: the residual of the fit at the true K. The correlation is
    # read off the best fit under white noise, which over-fits a little and absorbs some
    # of it: a few hundredths low
    residual = y - DensityGMM(2, random_state=0).fit(x, y).predict_density(x)
    lag1 = np.sum(residual[1:] * residual[:-1]) / np.sum(residual**2)
    assert lag1 - 0.06 < search.noise_["correlation"][0] <= lag1 + 0.01
    assert search.noise_["sd"] == pytest.approx(residual.std(), rel=0.05)
    white = DensityGMMCV(n_components=8, noise="white", random_state=0).fit(x, y)
    assert white.noise_["kind"] == "white" and white.n_components_ >= search.n_components_


def _smoothed_spectrum(seed, kind):
    """Three lines on 400 channels; noise smoothed over channels (a Gaussian kernel of sd 2,
    Hanning's [1, 2, 1] / 4 or a 4-channel boxcar), 1/12 of the strongest line's peak."""
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(seed)
    x = np.arange(400.0)
    lines = sum(
        a * np.exp(-0.5 * ((x - m) / s) ** 2)
        for a, m, s in [(6.0, 120.0, 6.0), (4.0, 250.0, 3.0), (3.0, 320.0, 8.0)]
    )
    noise = rng.normal(size=440)
    if kind == "gaussian":
        noise = gaussian_filter1d(noise, 2.0)
    else:
        kernel = [0.25, 0.5, 0.25] if kind == "hanning" else np.ones(4)
        noise = np.convolve(noise, kernel, mode="same")
    noise = noise[20:-20]
    return x, lines + 0.5 * noise / noise.std()


@pytest.mark.parametrize(
    "kind, seed", [("gaussian", 0), ("gaussian", 6), ("gaussian", 1), ("hanning", 0), ("boxcar", 0)]
)
def test_noise_smoothed_over_channels_does_not_add_components(kind, seed):
    """Noise smoothed over several channels (lag-1 autocorrelation 0.67 to 0.94): with the
    first lags' autocorrelations alone and zero beyond, no process had them; shrunk until one
    did, they whitened too little and the Gaussian kernel's seeds 0 and 6 chose 4 components.
    Continued as an autoregression, they whiten it."""
    x, y = _smoothed_spectrum(seed, kind)
    search = DensityGMMCV(n_components=8, random_state=0).fit(x, y)
    assert search.noise_["kind"] == "correlated"
    assert search.n_components_ == 3
    if kind == "gaussian":
        assert search.noise_["autoregressive"] and search.noise_["correlation"][0] > 0.85


def test_whitening_is_the_inverse_cholesky_factor_of_the_noise_correlation():
    """Both continuations of the first lags' autocorrelations: zero beyond them (banded) and
    the autoregression's (each value less its prediction from those before), along each axis
    of a 2-D grid, against the dense Cholesky factor of the Kronecker product."""
    from scipy.linalg import cholesky, toeplitz

    from skdensityfit._data.noise import Grid, implied_correlation, partial_autocorrelation, whiten

    rng = np.random.default_rng(0)
    shape = (7, 9)
    axes = np.meshgrid(np.arange(7.0), np.arange(9.0), indexing="ij")
    grid = Grid.of(np.column_stack([a.ravel() for a in axes]))
    residuals = rng.normal(size=(3, 63))

    def factor(correlation, autoregressive, size):
        if autoregressive:
            acf = [1.0] + [implied_correlation(correlation, lag) for lag in range(1, size)]
        else:
            acf = np.r_[1.0, correlation, np.zeros(size - 1 - len(correlation))]
        return cholesky(toeplitz(acf), lower=True)

    models = [((0.4, 0.1), False), ((0.9, 0.7, 0.45), True)]
    for correlation, autoregressive in models:
        factors = [factor(correlation, autoregressive, size) for size in shape]
        expected = np.linalg.solve(np.kron(*factors), residuals.T).T
        got = whiten(grid, residuals, np.asarray(correlation), autoregressive)
        np.testing.assert_allclose(got, expected, atol=1e-12)
    # one model an axis (noise smoothed along one axis more than the other, or not at all)
    for axis_models in [models, [((), False), models[1]]]:
        factors = [
            factor(*model, size) if model[0] else np.eye(size)
            for model, size in zip(axis_models, shape, strict=True)
        ]
        expected = np.linalg.solve(np.kron(*factors), residuals.T).T
        got = whiten(grid, residuals, np.zeros(0), axis_models=tuple(axis_models))
        np.testing.assert_allclose(got, expected, atol=1e-12)
    # an autoregression of order 2: partial autocorrelations its second coefficient at lag 2,
    # zero beyond
    phi = (0.6, 0.3)
    rho1 = phi[0] / (1 - phi[1])
    acf = [rho1, phi[0] * rho1 + phi[1]]
    acf += [phi[0] * acf[-1] + phi[1] * acf[-2]]
    np.testing.assert_allclose(partial_autocorrelation(acf)[1:], [phi[1], 0.0], atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_smoothed_along_one_axis_of_an_image_gets_a_model_per_axis(seed):
    """Noise smoothed along the second axis only (a detector's read-out direction): pooled
    over both axes its autocorrelation whitened neither axis right, and these chose 2 to 5
    components for 1 to 3. The axes' lag-1 autocorrelations differ: each axis gets its own."""
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(seed)
    g = np.arange(48.0)
    xx, yy = np.meshgrid(g, g, indexing="ij")
    k = 1 + seed % 3
    image = sum(
        np.exp(-0.5 * (((xx - cx) / 3.0) ** 2 + ((yy - cy) / 4.0) ** 2))
        for cx, cy in [(14, 14), (32, 30), (16, 34)][:k]
    )
    noise = gaussian_filter1d(rng.normal(size=(48, 60)), 2.5, axis=1)[:, 6:54]
    y = (image + 0.06 * noise / noise.std()).ravel()
    search = DensityGMMCV(n_components=6, random_state=0).fit(
        np.column_stack([xx.ravel(), yy.ravel()]), y
    )
    assert search.n_components_ == k
    per_axis = search.noise_["correlation_per_axis"]
    assert (not per_axis[0] or per_axis[0][0] < 0.2) and per_axis[1][0] > 0.9


def test_white_noise_is_not_taken_for_correlated():
    hits = 0
    for seed in range(10):
        x, y = _spectrum(seed, [6.0, 4.0], [150.0, 260.0], [5.0, 3.0], rho=0.0)
        search = DensityGMMCV(n_components=6, random_state=0).fit(x, y)
        hits += search.noise_["kind"] == "correlated"
        assert search.n_components_ == 2
    assert hits <= 1


def test_a_known_noise_level_is_used_as_given():
    x, y = _spectrum(1, [6.0, 4.0], [150.0, 260.0], [5.0, 3.0])
    search = DensityGMMCV(n_components=6, noise=1.0, random_state=0).fit(x, y)
    assert search.noise_ == {"kind": "given", "sd": 1.0} and search.n_components_ == 2
    per_point = DensityGMMCV(n_components=6, noise=np.ones(len(x)), random_state=0).fit(x, y)
    np.testing.assert_allclose(
        per_point.cv_results_["mean_test_score"], search.cv_results_["mean_test_score"]
    )
    with pytest.raises(ValueError, match="one per grid point"):
        DensityGMMCV(noise=np.ones(3)).fit(x, y)
    with pytest.raises(ValueError, match="positive and finite"):
        DensityGMMCV(noise=np.zeros(len(x))).fit(x, y)


def test_a_density_histogram_is_read_as_scaled_counts():
    """np.histogram(density=True) values are counts times one quantum: Poisson noise,
    the binned likelihood of the counts, and the path fitted with the Poisson loss."""
    x, y = _histogram_of_four(n_samples=20_000, bins=200)
    search = DensityGMMCV(n_components=8, random_state=0).fit(x, y)
    assert search.noise_["kind"] == "poisson"
    assert search.noise_["n_counts"] == pytest.approx(20_000)
    assert search.n_components_ == 4
    assert search.best_estimator_.loss == "l2"  # the user's loss for the chosen fit


def test_unequal_bins_given_as_counts_per_width_get_the_binned_poisson_criterion():
    """docs/histograms.md's recipe for unequal bins: y = counts / width,
    sample_weight = width, loss='poisson', bins=edges."""
    rng = np.random.default_rng(3)
    samples = np.concatenate([rng.normal(0, 1, 3000), rng.normal(5, 0.7, 2000)])
    samples = np.concatenate([samples, rng.normal(9, 1.5, 1500)])
    edges = np.quantile(samples, np.linspace(0, 1, 41))
    counts, _ = np.histogram(samples, edges)
    width = np.diff(edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    search = DensityGMMCV(n_components=6, loss="poisson", bins=[edges], random_state=0)
    search.fit(centres, counts / width, sample_weight=width)
    assert search.noise_["kind"] == "poisson"
    assert search.noise_["n_counts"] == pytest.approx(6500)
    assert search.n_components_ == 3


@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("density", [False, True])
def test_unequal_bins_are_read_as_counts_under_either_loss(loss, density):
    """Counts per width (or np.histogram's density=True) with the widths as sample_weight:
    the counts are y * sample_weight (or its quantum's multiples) under the l2 loss too."""
    edges = np.concatenate([np.linspace(-4, 2, 61), np.linspace(3, 9, 7)])  # widths 0.1, 1
    width, centres = np.diff(edges), 0.5 * (edges[1:] + edges[:-1])
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(0, 1, 3000), rng.normal(5, 1.0, 2000)])
    y, _ = np.histogram(samples, edges, density=density)
    if not density:
        y = y / width
    search = DensityGMMCV(n_components=6, loss=loss, bins=[edges], random_state=0)
    search.fit(centres, y, sample_weight=width)
    assert search.noise_["kind"] == "poisson"
    assert search.noise_["n_counts"] == pytest.approx(5000)
    assert search.n_components_ == 2


def test_lines_beyond_the_candidates_read_as_smooth_noise_are_warned_of():
    """Four equal lines and candidates 1..2: the residual of the fits holds lines, which the
    refined noise model reads as smooth noise 45 times the point-to-point noise, and K = 1
    explains 1% of the density: warned, in fit_many's rows too; with enough candidates, not."""
    x = np.linspace(0, 30, 200)
    lines = sum(np.exp(-0.5 * ((x - c) / 0.8) ** 2) for c in np.linspace(4, 26, 4)) / 2
    y = lines + np.random.default_rng(0).normal(0, 0.003, x.size)
    with pytest.warns(UserWarning, match="read as smooth noise"):
        DensityGMMCV(2, random_state=0).fit(x, y)
    with pytest.warns(UserWarning, match="structure read as smooth noise"):
        result = fit_many(x, np.vstack([y, y]), DensityGMMCV(2, random_state=0))
    assert all("read as smooth noise" in m for m in result.messages)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = DensityGMMCV(6, random_state=0).fit(x, y)
    assert search.n_components_ == 4
    assert not any("smooth noise" in str(w.message) for w in caught)
    # a weak line under noise smoothed over 4 channels: the same ratio, but its fit explains
    # a third of the density: no warning
    from scipy.ndimage import gaussian_filter1d

    channels = np.arange(256.0)
    rng = np.random.default_rng(1004)
    noise = gaussian_filter1d(rng.normal(size=296), 4.0)[20:-20]
    weak = noise / noise.std()
    weak += rng.uniform(3, 8) * np.exp(
        -0.5 * ((channels - rng.uniform(40, 216)) / rng.uniform(3, 8)) ** 2
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = DensityGMMCV(random_state=0).fit(channels, weak)
    assert search.n_components_ == 1 and search.noise_["kind"] == "correlated"
    assert not any("smooth noise" in str(w.message) for w in caught)


def test_flat_counts_on_a_background_leak_no_numpy_warning_and_say_what_may_be_wrong():
    """Counts with no line on a constant background: the moves' Pearson weights of a model
    that has underflowed stay finite (no overflow warning), and the warning of a choice no
    better than the background alone names noise alone and dips (absorption lines)."""
    grid = np.linspace(0, 50, 200)
    rng = np.random.default_rng(1)
    lam = 100 * np.exp(-0.5 * ((grid - 20) / 1.5) ** 2) / (1.5 * np.sqrt(2 * np.pi))
    rng.poisson(lam + 3 * np.exp(-grid / 15))  # draws before (a reviewer's third density)
    rng.normal(0, 0.1, grid.size)
    counts = rng.poisson(5, grid.size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DensityGMMCV(3, loss="poisson", background="constant", random_state=0).fit(grid, counts)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    texts = [str(w.message) for w in caught]
    assert any("No component is significant" in t and "absorption" in t for t in texts)


@pytest.mark.parametrize("kind", ["constant", "linear"])
def test_a_baseline_is_fitted_under_every_candidate(kind):
    x, y = _spectrum(2, [6.0, 4.0, 5.0], [120.0, 250.0, 300.0], [5.0, 3.0, 8.0])
    baseline = 0.6 if kind == "constant" else 0.2 + 0.004 * x
    search = DensityGMMCV(n_components=8, background="linear", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no component stands in for the baseline
        search.fit(x, y + baseline)
    assert search.n_components_ == 3
    fitted = search.best_estimator_.predict_background(x)
    np.testing.assert_allclose(fitted, baseline, atol=0.3)
    # without the background, the baseline takes components of its own, and is warned of
    with pytest.warns(UserWarning, match="hold no line"):
        plain = DensityGMMCV(n_components=8, random_state=0).fit(x, y + baseline)
    assert plain.n_components_ > 3


def test_the_residual_line_warning_names_where_the_bump_is(monkeypatch):
    """A choice whose fit leaves a bump white noise would not make is warned of (here
    forced: the candidates stop at K = 1 for a two-line spectrum)."""
    x, y = _spectrum(4, [8.0, 6.0], [150.0, 300.0], [4.0, 2.0])
    with pytest.warns(UserWarning) as record:
        DensityGMMCV(n_components=[1], random_state=0).fit(x, y)
    messages = [str(w.message) for w in record if "still holds a Gaussian bump" in str(w.message)]
    assert len(messages) == 1
    where = float(messages[0].split("near x = (")[1].split(")")[0])
    assert abs(where - 300.0) <= 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DensityGMMCV(n_components=4, random_state=0).fit(x, y)


def test_the_low_score_warning_reports_the_best_held_out_score():
    """Noise dominates: the warning quotes the best mean held-out score, whichever
    candidate the rule chose."""
    rng = np.random.default_rng(5)
    x = np.linspace(0, 10, 120)
    y = 0.3 * np.exp(-0.5 * (x - 5) ** 2) + rng.normal(0, 1.0, x.size)
    search = DensityGMMCV(n_components=4, selection="standard_error", random_state=0)
    with pytest.warns(UserWarning, match="The best held-out score is") as record:
        search.fit(x, y)
    means = search.cv_results_["mean_test_score"]
    best = np.nanmax(np.where(np.isfinite(means), means, np.nan))
    quoted = next(str(w.message) for w in record if "best held-out score" in str(w.message))
    assert f"The best held-out score is {best:.3g}:" in quoted


# --------------------------------------------------------------------------
# what an independent review found (each failed before its fix)
# --------------------------------------------------------------------------
def test_smoothed_noise_on_a_long_axis_is_whitened_without_error():
    """The correlation was made positive definite on 256 points only; 400 failed."""
    from scipy.ndimage import gaussian_filter1d
    from scipy.stats import norm

    rng = np.random.default_rng(35)
    x = np.arange(400.0)
    line = norm.pdf(x, 180, 12)
    noise = gaussian_filter1d(rng.normal(size=400), 1.7)
    y = line + 0.02 * line.max() * noise / noise.std()
    search = DensityGMMCV(random_state=0).fit(x, y)
    assert search.noise_["kind"] == "correlated" and search.n_components_ == 1


def test_held_out_scores_with_a_background_take_the_path_that_fits_it():
    """The batched held-out search knew no background (a broadcasting error)."""
    x, y = _spectrum(2, [6.0, 4.0], [150.0, 260.0], [5.0, 3.0], n=300)
    search = DensityGMMCV(
        n_components=4, selection="standard_error", background="constant", random_state=0
    )
    search.fit(x, y + 2.0)
    assert search.n_components_ == 2
    assert search.best_estimator_.background_[0] == pytest.approx(2.0, abs=0.2)


def test_a_density_histogram_whose_emptiest_bin_holds_several_counts_is_still_counts():
    rng = np.random.default_rng(1)
    samples = np.concatenate([rng.normal(-9, 0.6, 27000), rng.normal(9, 0.65, 23000)])
    samples = samples[(samples > -10.5) & (samples < 10.5)]
    y, edges = np.histogram(samples, bins=100, density=True)
    counts, _ = np.histogram(samples, bins=edges)
    assert counts[counts > 0].min() > 1
    x = 0.5 * (edges[1:] + edges[:-1])
    search = DensityGMMCV(random_state=0).fit(x, y)
    assert search.noise_["kind"] == "poisson"
    assert search.noise_["n_counts"] == pytest.approx(len(samples))
    assert search.n_components_ == 2


def test_values_rounded_to_a_few_decimals_are_not_taken_for_counts():
    """Multiples of 0.001 scatter nothing like Poisson counts of quantum 0.001."""
    x = np.arange(300.0)
    clean = sum(
        a * np.exp(-0.5 * ((x - m) / s) ** 2)
        for a, m, s in [(1, 70, 5), (0.6, 150, 8), (0.8, 230, 4)]
    )
    for seed in range(3):
        noisy = clean + np.random.default_rng(seed).normal(0, 0.01, x.size)
        y = np.round(np.clip(noisy, 0.0, None), 3)  # a text export of non-negative values
        search = DensityGMMCV(random_state=0, background="constant").fit(x, y)
        assert search.noise_["kind"] != "poisson" and search.n_components_ == 3


def test_tails_that_reach_subnormal_values_raise_no_warning():
    from scipy.stats import norm

    x = np.linspace(-60, 60, 300)
    y = 0.6 * norm.pdf(x, -5, 1.0) + 0.4 * norm.pdf(x, 6, 1.5)
    assert y[y > 0].min() < 1e-300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert DensityGMMCV(random_state=0).fit(x, y).n_components_ == 2


@pytest.mark.parametrize("unit", [1e-120, 1e120])
def test_grids_in_extreme_units_choose_as_in_ordinary_ones(unit):
    x, y = _spectrum(3, [6.0, 4.0, 5.0], [60.0, 110.0, 150.0], [4.0, 6.0, 3.0], n=200)
    reference = DensityGMMCV(random_state=0).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        scaled = DensityGMMCV(random_state=0).fit(x * unit, y / unit)
    assert scaled.n_components_ == reference.n_components_ == 3


def test_a_dip_in_the_residual_is_no_line_left():
    """The residual warning is of an excess a larger K could take, not of a dip."""
    x, y = _spectrum(4, [8.0], [150.0], [6.0], n=300)
    y = y - 6.0 * np.exp(-0.5 * ((x - 240.0) / 3.0) ** 2)  # an absorption dip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DensityGMMCV(n_components=4, random_state=0).fit(x, y)
    assert not any("still holds a Gaussian bump" in str(w.message) for w in caught)


def test_noise_that_grows_with_the_signal_does_not_add_components():
    """Photon noise with a small floor: white noise from the quiet wings would take the
    peaks' noise for lines; the residual's variance grows with the model."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    x = np.arange(300.0)
    clean = 0.4 * norm.pdf(x, 70, 5) + 0.35 * norm.pdf(x, 150, 8) + 0.25 * norm.pdf(x, 230, 4)
    peak_sd = 0.03 * clean.max()
    sd = np.sqrt(peak_sd**2 * clean / clean.max() + (0.1 * peak_sd) ** 2)
    y = clean + rng.normal(0, 1, x.size) * sd
    search = DensityGMMCV(random_state=0).fit(x, y)
    assert search.noise_["kind"] == "heteroscedastic" and search.n_components_ == 3
    assert DensityGMMCV(random_state=0, noise=sd).fit(x, y).n_components_ == 3
    # values clipped at zero are quieter where the model is low: never a floor below the
    # white noise's
    clipped = np.clip(clean / clean.max() + rng.normal(0, 0.01, x.size), 0.0, None)
    search = DensityGMMCV(random_state=0, background="constant").fit(x, clipped)
    assert search.n_components_ == 3


@pytest.mark.parametrize(
    ("n_lines", "width", "seed"), [(1, 3.0, 0), (1, 3.0, 1), (1, 5.0, 0), (2, 3.0, 1)]
)
def test_noise_proportional_to_the_signal_is_seen_before_any_fit(n_lines, width, seed):
    """A standard deviation proportional to the signal (a gain's noise) over a floor a
    fifteenth of its peak: read as white noise, an over-fit takes the peaks' noise, and
    its residual then hides that the noise grows with the values (these cases chose 4 to
    6 components so). Second differences of the data show it before any fit."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    x = np.arange(320.0)
    centres, widths = [110.0, 220.0][:n_lines], [width, 2.0 * width][:n_lines]
    clean = sum(norm.pdf(x, c, s) for c, s in zip(centres, widths, strict=True)) / n_lines
    sd = 0.006 * clean.max() * (0.2 + 3.0 * clean / clean.max())
    y = clean + rng.normal(0, 1, x.size) * sd
    search = DensityGMMCV(n_components=6, random_state=0).fit(x, y)
    assert search.noise_["kind"] == "heteroscedastic"
    assert search.n_components_ == n_lines


def test_a_density_without_noise_is_not_read_as_heteroscedastic():
    """Narrow spikes beside broad components, no noise: the second differences grow with
    the values, but the quiet tails' differences vary smoothly, not as noise."""
    from scipy.stats import norm

    from skdensityfit._data.noise import initial_noise

    x = np.arange(250.0)
    y = 0.5 * norm.pdf(x, 80, 0.6) + 0.3 * norm.pdf(x, 140, 20) + 0.2 * norm.pdf(x, 190, 1.2)
    model, _ = initial_noise(x[:, None], y, loss="l2")
    assert model.kind == "white"
    assert DensityGMMCV(random_state=0).fit(x, y).n_components_ == 3


def test_poisson_noise_on_negative_values_is_a_clear_error():
    x, y = _spectrum(1, [6.0], [150.0], [5.0], n=200)
    with pytest.raises(ValueError, match="noise='poisson' needs non-negative values"):
        DensityGMMCV(noise="poisson").fit(x, y)


GRS_SPECTRA = [21, 30, 33, 40, 43, 50, 53, 63]


def _largest_line(residual, sigma):
    """The largest least-squares height of a Gaussian bump (sd 1.5 to 6 channels) in the
    residual, in units of sigma."""
    best = 0.0
    for width in (1.5, 2.0, 3.0, 4.0, 6.0):
        half = int(4 * width)
        profile = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
        heights = np.convolve(residual, profile, mode="same") / np.sum(profile**2)
        best = max(best, float(heights.max()))
    return best / sigma


@pytest.mark.parametrize("spectrum", GRS_SPECTRA)
def test_real_radio_spectra_keep_no_line_in_the_residual(spectrum):
    """Real 13CO spectra (tests/data, GRS via GaussPy+) where held-out grid points chose
    K = 1 and left a line of 5.7 to 9.6 noise sd in the residual (issue #25): the default
    criterion leaves none above 3.5 sd and chooses within one of GaussPy+'s K."""
    import json

    data = Path(__file__).parent / "data"
    y = np.load(data / "grs_13co_10x10.npz")["spectra"][spectrum].astype(float)
    reference = json.loads((data / "grs_13co_gausspyplus.json").read_text())
    channels = np.flatnonzero(np.isfinite(y)).astype(float)
    y = y[np.isfinite(y)]
    sigma = reference["noise"][spectrum]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held_out = DensityGMMCV(n_components=8, selection="standard_error", random_state=0)
        held_out.fit(channels, y)
        search = DensityGMMCV(n_components=8, random_state=0).fit(channels, y)
    assert held_out.n_components_ == 1
    assert _largest_line(y - held_out.predict_density(channels), sigma) > 5
    assert _largest_line(y - search.predict_density(channels), sigma) < 3.5
    assert abs(search.n_components_ - reference["n_components"][spectrum]) <= 1
    assert search.noise_["kind"] == "correlated"


@pytest.mark.parametrize("kind", ["constant", "linear", "exponential"])
def test_counts_on_a_baseline_keep_every_line(kind):
    """An independent review: Poisson counts of two lines on a baseline, with the baseline
    in every candidate, got K = 3 with a component parked at the box's edge and a line
    left unfitted (the path's fit at K = 2 ended where its background had taken a line).
    Each step now also starts under the rim's background, under none and from the last
    joint fit grown by a component."""
    x = np.linspace(200, 800, 400)
    t = (x - 200) / 600
    lines = 0.9 * np.exp(-0.5 * ((x - 398) / 11.7) ** 2)
    lines = lines + 1.2 * np.exp(-0.5 * ((x - 707) / 13.5) ** 2)
    baseline = {"constant": 0.4 + 0 * t, "linear": 0.2 + 0.5 * t, "exponential": np.exp(-2.5 * t)}
    y = np.random.default_rng(7).poisson(50 * (lines + baseline[kind])).astype(float)
    search = DensityGMMCV(n_components=6, background=kind, loss="poisson", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(x, y)
    assert search.n_components_ == 2
    np.testing.assert_allclose(search.best_estimator_.means_.ravel(), [398, 707], atol=3)


@pytest.mark.parametrize("level", [0.005, 0.02, 0.04])
def test_rounded_noise_of_many_quanta_is_not_taken_for_counts(level):
    """An independent reviewer's rounded family: Gaussian noise of 5 to 40 quanta, clipped
    at 0 and rounded to 1e-3, was read as Poisson counts of that quantum (a noise far too
    small) and over-fitted. Below 10 quanta the square roots of Poisson counts scatter
    less than at higher counts; these values scatter more."""
    x = np.arange(400.0)
    clean = sum(
        a * np.exp(-0.5 * ((x - m) / s) ** 2)
        for a, m, s in [(1, 60, 6), (0.5, 150, 10), (0.7, 260, 5), (0.4, 330, 8)]
    )
    chosen = []
    for seed in range(3):
        noisy = clean + np.random.default_rng(seed).normal(0, level, x.size)
        y = np.round(np.clip(noisy, 0.0, None), 3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search = DensityGMMCV(random_state=0, background="constant").fit(x, y)
        assert search.noise_["kind"] != "poisson"
        chosen.append(search.n_components_)
    assert chosen.count(4) >= 2


def _rounded_lines(seed, noise):
    """1 to 3 lines on 300 points, peak 1, white noise ``noise``, clipped at 0 and rounded
    to 1e-3 (values written with three decimals)."""
    rng = np.random.default_rng(seed)
    x = np.arange(300.0)
    k = 1 + seed % 3
    means = np.linspace(80, 220, k) + rng.uniform(-10, 10, k)
    sds, heights = rng.uniform(4, 12, k), rng.uniform(0.4, 1.0, k)
    clean = sum(
        h * np.exp(-0.5 * ((x - m) / s) ** 2) for h, m, s in zip(heights, means, sds, strict=True)
    )
    clean = clean / clean.max()
    return x, np.round(np.clip(clean + noise * rng.normal(size=x.size), 0, None), 3), k


@pytest.mark.parametrize("noise, seed", [(0.02, 0), (0.02, 5), (0.04, 2), (0.04, 6), (0.01, 1)])
def test_rounded_noise_that_scatters_as_counts_where_high_is_not_taken_for_counts(noise, seed):
    """White noise of 20 or 40 quanta: at the peak's 1,000 quanta its square roots scatter
    as Poisson counts' do, and the scatter where the counts are lower, judged only between
    neighbours of one level, had too few differences to speak (these chose 5 to 8
    components as Poisson). Judged by the level two steps away, the lower counts scatter
    more than the higher: white noise."""
    x, y, k = _rounded_lines(seed, noise)
    search = DensityGMMCV(n_components=8, random_state=0, background="constant").fit(x, y)
    assert search.noise_["kind"] == "white"
    assert search.n_components_ == k


def test_histograms_are_read_as_counts():
    """800 density=True histograms of a narrow and a broad component (3,000 to 30,000
    samples, 60 or 150 bins): 13 were not read as counts when the scatter was judged only
    between neighbours of one level; the narrow peak's flanks count now."""
    from skdensityfit._data.noise import Grid, counting_quantum

    missed = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(3000, 30000))
        samples = np.r_[rng.normal(0, 0.3, n // 2), rng.normal(2, 1.0, n - n // 2)]
        for bins in (60, 150):
            y, edges = np.histogram(samples, bins=bins, density=True)
            centres = 0.5 * (edges[1:] + edges[:-1])
            missed += counting_quantum(y, Grid.of(centres[:, None])) is None
    assert missed <= 3


def _detector_counts(seed, gain):
    """1 to 3 lines on 300 pixels as a detector reads them: Poisson electrons (400 at the
    peak over 5 of background) times ``gain``, plus read noise of 2, rounded, clipped at 0."""
    rng = np.random.default_rng(seed)
    x = np.arange(300.0)
    k = 1 + seed % 3
    means = np.linspace(90, 210, k) + rng.uniform(-8, 8, k)
    lines = zip(rng.uniform(0.5, 1, k), means, rng.uniform(4, 10, k), strict=True)
    shape = sum(h * np.exp(-0.5 * ((x - m) / s) ** 2) for h, m, s in lines)
    electrons = rng.poisson(400 * shape + 5)
    return x, np.round(gain * electrons + rng.normal(0, 2, x.size)).clip(0), k


@pytest.mark.parametrize("gain, seed", [(9.0, 0), (9.0, 2), (9.0, 5), (4.0, 4), (1.0, 1)])
def test_counts_times_a_gain_are_over_dispersed_counts(gain, seed):
    """Integers that are counts times a gain of 4 or 9 pass for counts of quantum 1 whose
    deviance is the gain times too large: these chose 3 to 8 components. The fit's Pearson
    residuals measure the dispersion, and the criterion divides the deviance by it
    (quasi-Poisson); true counts (gain 1) keep dispersion 1."""
    x, y, k = _detector_counts(seed, gain)
    search = DensityGMMCV(n_components=8, random_state=0, background="constant").fit(x, y)
    assert search.noise_["kind"] == "poisson"
    assert search.n_components_ == k
    if gain == 1.0:
        assert search.noise_["dispersion"] == 1.0
    else:
        assert search.noise_["dispersion"] == pytest.approx(gain, rel=0.25)


@pytest.mark.parametrize("seed", [0, 7, 3])
def test_over_dispersed_low_counts_are_measured_where_few_counts_are_expected(seed):
    """Negative-binomial counts (variance 4 times the mean) of one line over 4 counts a
    channel: the dispersion was measured where the fit expects 10 counts or more, the line's
    few channels, where surplus components absorb it (these chose 2 and 5 components with
    dispersion 1); it is measured where the fit expects at least one count."""
    rng = np.random.default_rng(seed)
    x = np.arange(250.0)
    expected = 40.0 * np.exp(-0.5 * ((x - 125) / 6.0) ** 2) + 4.0
    y = rng.negative_binomial(expected / 3.0, 0.25).astype(float)  # variance 4 x expected
    search = DensityGMMCV(n_components=6, random_state=0, background="constant").fit(x, y)
    assert search.n_components_ == 1
    assert 2.0 < search.noise_["dispersion"] < 6.0


def test_the_candidate_before_the_best_starts_from_the_best_less_a_component():
    """bench_choose_k's unequal-bin histogram 33 (four components): the path's K = 4 fit
    ended in a poor optimum (binned BIC 699 against 597 for DensityGMM(4, n_init=10)), so
    K = 5 won; the K = 5 fit less its weakest component, refitted, finds K = 4's better
    optimum and the right K."""
    data = np.load(Path(__file__).parent / "data" / "unequal_bins_4_components.npz")
    edges, counts = data["edges"], data["counts"]
    width = np.diff(edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    search = DensityGMMCV(n_components=6, loss="poisson", bins=edges, random_state=33)
    search.fit(centres, counts / width, sample_weight=width)
    assert search.n_components_ == 4
    alone = DensityGMM(4, loss="poisson", bins=edges, n_init=10, random_state=33)
    alone.fit(centres, counts / width, sample_weight=width)
    assert search.best_estimator_.loss_ <= alone.loss_ * (1 + 1e-6)


@pytest.mark.parametrize("dimensions", [1, 2])
def test_initial_noise_of_many_rows_is_that_of_each(dimensions):
    """The rows' noise models made together (white, heteroscedastic, counts, correlated,
    clipped at zero) are those of each row alone, to the last bit."""
    from scipy.ndimage import uniform_filter1d
    from scipy.stats import norm

    from skdensityfit._data.noise import Grid, initial_noise, initial_noises

    rng = np.random.default_rng(3)
    if dimensions == 1:
        X = np.linspace(0.0, 30.0, 240)[:, None]
        clean = norm.pdf(X[:, 0], 12.0, 1.5) + 0.6 * norm.pdf(X[:, 0], 20.0, 3.0)
    else:
        axis = np.arange(40.0)
        X = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis, indexing="ij")])
        clean = np.exp(-0.5 * np.sum((X - [15.0, 22.0]) ** 2, axis=1) / 9.0)
    peak = clean.max()
    rows = [
        clean + 0.02 * peak * rng.normal(size=clean.size),
        clean + 0.006 * peak * (0.2 + 3.0 * clean / peak) * rng.normal(size=clean.size),
        rng.poisson(200.0 * clean / peak) / 7.0,
        clean + 0.05 * peak * uniform_filter1d(rng.normal(size=clean.size), 4),
        np.clip(clean + 0.03 * peak * rng.normal(size=clean.size), 0.0, None),
        clean,
    ]
    Y = np.vstack(rows)
    grid = Grid.of(X)
    for noise in ("auto", "white", "correlated"):
        together = initial_noises(X, Y, grid, loss="l2", noise=noise)
        for y, model in zip(Y, together, strict=True):
            alone, _ = initial_noise(X, y, loss="l2", noise=noise)
            assert model.kind == alone.kind
            assert np.array_equal(model.sd, alone.sd)
            assert model.counts_unit == alone.counts_unit
    kinds = [model.kind for model in initial_noises(X, Y, grid, loss="l2", noise="auto")]
    assert kinds[:3] == ["white", "heteroscedastic", "poisson"]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_noise_growing_with_the_signal_is_not_taken_for_correlated(seed):
    """A gain's noise (3% of the signal) over a floor of 3e-4 of the peak: the residual of
    a fit, clipped at spreads of its quiet part, keeps runs where the signal is loud and
    passed for correlated noise (these cases chose 6 components so); the correlation is
    judged on the residual over the heteroscedastic standard deviations."""
    rng = np.random.default_rng(200 + seed)
    x = np.arange(400.0)
    clean = np.exp(-0.5 * ((x - 230.0) / [6.0, 10.0, 14.0][seed % 3]) ** 2)
    y = clean * np.exp(0.03 * rng.normal(size=x.size)) + 3e-4 * rng.normal(size=x.size)
    search = DensityGMMCV(n_components=6, random_state=0).fit(x, y)
    assert search.noise_["kind"] == "heteroscedastic"
    assert search.n_components_ == 1


@pytest.mark.parametrize("seed", [5, 6, 8, 15, 18])
def test_noise_growing_on_a_narrow_line_is_seen(seed):
    """A line 1.8 channels wide on 400 channels, its noise six times the floor at its peak
    (a gain's): its few loud points are diluted in a tenth of the grid, so the points
    above a quarter of the peak are the loud group (seeds 5, 6, 8 chose 2 or 3 components
    before that). Seeds 15 and 18 were read as white noise after a fit and over-fitted
    with a component at the width floor on the line's loud points, which the fit with one
    fewer had not: the data's differences' heteroscedastic model stands (8 of 20 such
    seeds still over-fit, against 10 before that and 17 before the loud group)."""
    rng = np.random.default_rng(300 + seed)
    x = np.arange(400.0)
    clean = np.exp(-0.5 * ((x - 170.0) / 1.8) ** 2)
    y = clean + 0.02 * np.sqrt(1.0 + 35.0 * clean**2) * rng.normal(size=x.size)
    search = DensityGMMCV(n_components=5, random_state=0).fit(x, y)
    assert search.noise_["kind"] == "heteroscedastic"
    assert search.n_components_ == 1


@pytest.mark.parametrize(
    ("height", "separation", "noise"), [(0.25, 1.25, 0.001), (0.12, 1.5, 0.004)]
)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_shoulder_on_a_narrow_line_under_white_noise_is_found(height, separation, noise, seed):
    """A shoulder ``separation`` sds from a line 1.6 channels wide, white noise: the line's
    curvature and the one-component fit's misfit read as noise growing with the signal,
    and the shoulder was missed (0 of 20 seeds and 2 of 20 in these two cells); the fit
    with one component more leaves white noise, and white noise is likelier."""
    x = np.arange(300.0)
    clean = np.exp(-0.5 * ((x - 150.0) / 1.6) ** 2)
    clean += height * np.exp(-0.5 * ((x - 150.0 - separation * 1.6) / 1.6) ** 2)
    y = clean + noise * np.random.default_rng(seed).normal(size=x.size)
    search = DensityGMMCV(random_state=0).fit(x, y)
    assert search.noise_["kind"] == "white"
    assert search.n_components_ == 2


def test_variance_profile_recovers_a_quadratic_variance():
    """The maximum-likelihood profile of squared normal noise whose variance is
    ``1 + 4 level + 20 level**2``: within 10% at every level."""
    from skdensityfit._data.noise import variance_profile

    level = np.tile(np.linspace(0.0, 1.0, 200), 50)
    truth = 1.0 + 4.0 * level + 20.0 * level**2
    residual = np.sqrt(truth) * np.random.default_rng(0).normal(size=level.size)
    profile, n_parameters = variance_profile(residual, 3.0 * level)
    assert n_parameters == 3
    assert np.max(np.abs(profile / truth - 1.0)) < 0.1


@pytest.mark.parametrize("seed", [4, 6])
def test_a_spike_beside_a_narrow_line_under_white_noise_is_kept(seed):
    """A real line half a channel wide, 140 noise sds high, 6 channels from a narrow line,
    white noise (an independent reviewer's case): its fit sits at the width floor, but
    beside the line, not on its loud points, so the white noise model stands (the first
    form of the rule took it for a spike on loud noise: K = 1 with seed 4, and the noise
    called heteroscedastic with seed 6)."""
    x = np.arange(100.0)
    clean = 0.743 * np.exp(-0.5 * ((x - 50.46) / 0.519) ** 2)
    clean += 1.294 * np.exp(-0.5 * ((x - 56.62) / 1.066) ** 2)
    y = clean + np.random.default_rng(seed).normal(0.0, 1.294 / 242.35, x.size)
    search = DensityGMMCV(random_state=0).fit(x, y)
    assert search.n_components_ == 2
    assert search.noise_["kind"] == "white"


@pytest.mark.parametrize("seed", [5, 6])
def test_a_variance_growing_far_above_its_floor_is_recovered(seed):
    """Photon noise over a floor 70 times smaller (variance 0.0006**2 + 0.043**2 * f):
    the regression of the residual's squares on the model weighted its quiet points by
    1 / variance**2 without a floor, and the profile found grew 2-fold instead of 25-fold
    (these cases chose 8 components)."""
    rng = np.random.default_rng(400 + seed)
    x = np.arange(330.0)
    lines = [(0.98, 66.0, 7.7), (0.84, 169.0, 14.1), (1.0, 251.0, 8.1)]
    clean = sum(a * np.exp(-0.5 * ((x - m) / s) ** 2) for a, m, s in lines)
    y = clean + np.sqrt(0.0006**2 + 0.043**2 * clean) * rng.normal(size=x.size)
    search = DensityGMMCV(n_components=8, random_state=0).fit(x, y)
    assert search.noise_["kind"] == "heteroscedastic"
    assert search.n_components_ == 3


@pytest.mark.parametrize("noise", ["auto", "poisson"])
def test_a_coarse_histogram_of_many_counts_is_not_stopped_far_from_its_optimum(noise):
    """A tenth independent reviewer: numpy's default 10 bins of 100,000 samples of three
    Gaussians got K = 1 (noise='poisson': 8). The path's fits stopped at a step that
    gained less than ftol after heavy damping, far from their optimum, and the
    dispersion was read from that misfit (10,295)."""
    counts = np.array([18979, 20896, 360, 8555, 10089, 603, 4221, 24022, 11810, 465], float)
    edges = np.linspace(-1.7480389, 28.45335919, 11)
    centres = 0.5 * (edges[1:] + edges[:-1])
    search = DensityGMMCV(loss="poisson", bins=edges, noise=noise, random_state=0)
    search.fit(centres, counts)
    # the path's K = 3 fit is still a poor optimum (a component far left of the grid,
    # left from K = 1): K = 4, which fits the ten counts exactly, is chosen
    assert search.n_components_ in (3, 4)
    assert search.noise_["dispersion"] == 1.0  # the counts are Poisson


def test_a_lorentzian_line_fitted_by_a_stack_of_gaussians_is_warned_of():
    """A tenth independent reviewer: one Lorentzian line got K = 4 (concentric Gaussians)
    with no warning; the stack's signature is components sharing a centre."""
    x = np.linspace(0.0, 100.0, 500)
    rng = np.random.default_rng(1)
    lorentzian = 1 / (1 + ((x - 50) / 2.0) ** 2) + rng.normal(0, 0.01, x.size)
    gaussian = np.exp(-0.5 * ((x - 50) / 1.7) ** 2) + rng.normal(0, 0.01, x.size)
    with pytest.warns(UserWarning, match="share a centre"):
        search = DensityGMMCV(random_state=0).fit(x, lorentzian)
    assert search.n_components_ > 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DensityGMMCV(random_state=0).fit(x, gaussian)
    assert not [w for w in caught if "share a centre" in str(w.message)]
    with pytest.warns(UserWarning, match="components sharing a centre"):
        result = fit_many(x, np.vstack([lorentzian, gaussian]), DensityGMMCV(random_state=0))
    assert ["share a centre" in m for m in result.messages] == [True, False]


def test_values_in_physical_units_with_unequal_weights_are_not_read_as_counts():
    """A spectrum in flux units (1e-17) on a log-lambda grid with the pixel widths as
    sample_weight: y * sample_weight is 'within 1e-6 of an integer' (0) but holds no count;
    it is read as white noise, as without the weights (K = 3). A fourteenth reviewer's case:
    read as Poisson counts totalling 1e-14, K = 1."""
    rng = np.random.default_rng(0)
    lam = 4000.0 * 10 ** (1e-4 * np.arange(600))
    u = np.linspace(0, 10, lam.size)
    lines = sum(
        a * np.exp(-0.5 * ((u - m) / 0.25) ** 2) for a, m in [(0.6, 2.5), (0.4, 5.0), (0.8, 7.5)]
    )
    flux = 1e-17 * (2.0 + 3.0 * lines + rng.normal(0, 0.1, lam.size))
    search = DensityGMMCV(n_components=6, background="constant", random_state=0)
    search.fit(lam, flux, sample_weight=np.gradient(lam))
    assert search.noise_["kind"] == "white" and search.n_components_ == 3


@pytest.mark.parametrize("seed", [0, 1])
def test_smoothed_noise_alone_is_not_warned_of_as_lines_beyond_the_candidates(seed):
    """Noise alone smoothed over 2 channels: 'no component is significant', but not
    'structure read as smooth noise' (a fourteenth reviewer: 13 of 15 such spectra)."""
    rng = np.random.default_rng(seed)
    z = gaussian_filter1d(rng.normal(size=800), 2.0)[100:-100]
    x = np.arange(z.size, dtype=float)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DensityGMMCV(n_components=6, random_state=0).fit(x, z / z.std())
    assert not any("smooth noise" in str(w.message) for w in caught)


def test_integer_values_with_unit_weights_are_read_as_without_weights():
    """Integer detector units (1,000 plus lines, read noise sd 10: far below Poisson's 32)
    with sample_weight=np.ones: the same noise model and K as without it (equal weights say
    nothing of bins; a fourteenth reviewer's case read them as Poisson counts and chose K = 1)."""
    rng = np.random.default_rng(5)
    x = np.linspace(0, 10, 400)
    lines = np.exp(-0.5 * ((x - 3) / 0.3) ** 2) + 0.6 * np.exp(-0.5 * ((x - 6.5) / 0.4) ** 2)
    y = np.round(1000 + 120 * lines + rng.normal(0, 10, x.size))
    weighted = DensityGMMCV(n_components=5, background="constant", random_state=0)
    weighted.fit(x, y, sample_weight=np.ones(x.size))
    plain = DensityGMMCV(n_components=5, background="constant", random_state=0).fit(x, y)
    assert weighted.noise_["kind"] == plain.noise_["kind"] != "poisson"
    assert weighted.n_components_ == plain.n_components_ == 2


@pytest.mark.parametrize("selection", ["auto", "best"])
def test_criteria_of_an_l2_search_say_what_it_chose_by(selection):
    """DensityGMMCV.bic under 'l2' said "Use DensityGMMCV to choose n_components": it now
    says what this search chose by (the criterion under its noise model, or held-out
    scores); DensityGMM's own message names the noise model DensityGMMCV measures."""
    x = np.linspace(-5, 5, 120)
    y = np.exp(-0.5 * (x - 1) ** 2) + 0.5 * np.exp(-0.5 * ((x + 2) / 0.5) ** 2)
    y = y + np.random.default_rng(0).normal(0, 0.01, x.size)
    search = DensityGMMCV(n_components=3, selection=selection, random_state=0).fit(x, y)
    expected = "BIC under the noise model" if selection == "auto" else "held-out scores"
    for criterion in (search.aic, search.bic):
        with pytest.raises(ValueError, match=expected):
            criterion(x, y)
    with pytest.raises(ValueError, match="DensityGMMCV measures one"):
        search.best_estimator_.bic(x, y)


def test_a_comb_whose_fit_explains_a_fifth_below_the_top_candidate_is_warned_of():
    """The fourteenth reviewer's silent case (its attack3 comb_hisnr, seed 4): six equal
    lines, candidates 1..2, K = 1 explaining 20% of the density under a correlated noise
    model 42 times the point-to-point noise, and no warning at all (a tenth was the limit).
    With the candidates stopping one above the choice, under half explained warns."""
    rng = np.random.default_rng([4, sum(map(ord, "comb_hisnrwhite"))])
    rng.normal(size=600)  # the reviewer's generator draws its noise family first
    k, sd, gap = int(rng.integers(4, 7)), rng.uniform(3, 6), rng.uniform(35, 60)
    x = np.arange(int(60 + gap * k + 60), dtype=float)
    y = sum(np.exp(-0.5 * ((x - (60 + gap * (j + 0.5))) / sd) ** 2) for j in range(k))
    y = y + rng.uniform(0.002, 0.01) * rng.normal(size=x.size)
    n_components = int(rng.integers(2, 4))
    assert (k, n_components) == (6, 2)
    with pytest.warns(UserWarning, match="read as smooth noise") as caught:
        search = DensityGMMCV(n_components=n_components, random_state=0).fit(x, y)
    assert search.n_components_ == 1
    assert "explains 20%" in " ".join(str(w.message) for w in caught)


@pytest.mark.parametrize("seed", [6, 42, 78])
def test_one_line_on_a_high_poisson_continuum_is_not_given_a_second(seed):
    """A line 9-10 noise sd high on 1e5 counts a channel, loss='poisson' with
    background='constant': the path's fits stopped at a projected gradient of 1e-5, larger
    than the normalised loss at the noise level (n / (2 counts), 5e-6), so its K = 1 fit
    sat 90 deviance units above its optimum and K = 2 won (before: K = 2 on these three
    seeds). The criterion's fits now stop at a gradient scaled to that loss."""
    x = np.arange(120.0)
    rng = np.random.default_rng([78, seed])
    mean, sd = rng.uniform(15, 105), rng.uniform(1.5, 4.0)
    height = rng.uniform(5, 12) * np.sqrt(1e5) / np.sqrt(np.sqrt(np.pi) * sd)
    y = rng.poisson(1e5 + height * np.exp(-0.5 * ((x - mean) / sd) ** 2)).astype(float)
    search = DensityGMMCV(n_components=4, loss="poisson", background="constant", random_state=0)
    assert search.fit(x, y).n_components_ == 1
    np.testing.assert_allclose(search.best_estimator_.means_.ravel(), [mean], atol=1.5)


@pytest.mark.parametrize("seed", [1, 10, 16, 17])
def test_noise_rising_along_the_grid_is_modelled(seed):
    """The twentieth reviewer: white noise whose level rises tenfold along the grid (a
    detector's falling sensitivity), lines 8-20 local noise sd high, was read as white or as
    growing with the values: K several too many (8 of its 40 right; seeds 16 and 17 chose
    5 and 7 here). Its standard deviation log-linear in the position is found from the
    data's differences before any fit; fit_many gives the same."""
    x = np.arange(300.0)
    rng = np.random.default_rng([20, 4, 3, seed])
    k = 1 + seed % 4
    while True:
        means = np.sort(rng.uniform(20, 280, k))
        if k == 1 or np.min(np.diff(means)) > 30:
            break
    sds = rng.uniform(1.5, 6, k)
    level = 10 ** (x / 299)
    heights = np.array([rng.uniform(8, 20) * level[int(m)] for m in means])
    y = np.sum(heights[:, None] * np.exp(-0.5 * ((x - means[:, None]) / sds[:, None]) ** 2), 0)
    y += rng.normal(0, 1, x.size) * level
    search = DensityGMMCV(n_components=8, random_state=0).fit(x, y)
    assert search.n_components_ == k
    assert search.noise_["kind"] == "varying"
    low, high = search.noise_["sd_range"]
    assert 5 < high / low < 20
    result = fit_many(x, np.vstack([y, y]), DensityGMMCV(n_components=8, random_state=0))
    assert result.n_components.tolist() == [k, k]
    # the batch's noise models are the single density's, to the last bit, whatever the rows
    # beside it (a row with a negative value takes the batch's vectorised tests)
    X = x[:, None]
    alone, _ = initial_noise(X, y - y.min() - 1.0, loss="l2")
    stacked = initial_noises(X, np.vstack([y[::-1], y - y.min() - 1.0]), Grid.of(X), loss="l2")
    assert alone.kind == stacked[1].kind == "varying"
    assert np.array_equal(alone.sd, stacked[1].sd)


def test_white_noise_with_lines_at_one_end_is_not_read_as_varying():
    """Lines crowded at one end of the grid raise its second differences there: white noise
    under them stays white (the runs must lie on a line in position, within their scatter)."""
    x = np.arange(300.0)
    rng = np.random.default_rng(5)
    lines = ((200, 1.0), (230, 0.7), (260, 1.3))
    y = sum(h * np.exp(-0.5 * ((x - m) / 2.0) ** 2) for m, h in lines)
    y = y + 0.02 * rng.normal(size=x.size)
    search = DensityGMMCV(n_components=6, random_state=0).fit(x, y)
    assert search.noise_["kind"] == "white"
    assert search.n_components_ == 3


def test_a_pdf_with_a_tiny_tail_value_is_not_read_as_counts():
    """A new user's review: ten points of a noise-free pdf, one of them in a tail (1e-20),
    were read as Poisson counts with a dispersion of 1e19: every value over so small a
    quantum passes for an integer. Counts are read only where most are below the largest
    count the integer test can tell."""
    from skdensityfit._data.noise import counting_quantum

    grid = np.linspace(0, 25, 100)[::10]
    y = 0.8 * norm.pdf(grid, 10, 1) + 0.2 * norm.pdf(grid, 16, 1.5)
    assert counting_quantum(y) is None
    assert counting_quantum(np.array([3.0, 1.0, 7.0, 12.0]) / 40.0) == pytest.approx(1 / 40)
    search = DensityGMMCV(n_components=4, random_state=0).fit(grid, y)
    assert search.noise_["kind"] == "white"


@pytest.mark.parametrize("seed", [0, 4])
def test_counts_on_a_continuum_are_read_as_counts_under_the_l2_loss(seed):
    """The twenty-seventh reviewer's XPS spectrum (counts of 78 and more in every channel)
    was not read as counts: the quantum was sought only as the smallest value over 1 to
    64. Integers all above that are counts of one when they scatter as counts do; under
    the heteroscedastic model this seed chose 4 for 3 lines, silently."""
    from skdensityfit._data.noise import Grid, counting_quantum

    rng = np.random.default_rng(seed)
    channels = np.arange(300.0)
    clean = 120.0 + sum(
        h * norm.pdf(channels, m, s) * s * np.sqrt(2 * np.pi)
        for h, m, s in ((1500.0, 90.0, 4.0), (900.0, 150.0, 6.0), (600.0, 200.0, 3.0))
    )
    counts = rng.poisson(clean).astype(float)
    assert counts.min() > 64
    grid = Grid.of(channels[:, None])
    assert counting_quantum(counts, grid) == 1.0
    # integers that scatter far less than counts (an ADC's read-out) are not counts
    read_out = np.round(clean + 0.2 * np.sqrt(clean) * rng.normal(size=clean.size))
    assert counting_quantum(read_out, grid) is None
    search = DensityGMMCV(n_components=6, background="constant", random_state=0)
    search.fit(channels, counts)
    assert search.noise_["kind"] == "poisson"
    assert search.n_components_ == 3


def test_a_faint_line_the_criterion_keeps_is_said_apart_not_as_a_component_too_many():
    # a line of weight 5e-5 far above the noise: the choice keeps it over the candidate
    # without it, and its warning does not say the data does not support the chosen K (a
    # reviewer's Raman spectrum: 7 of 13)
    grid = np.linspace(0.0, 100.0, 801)
    y = mixture_densities_1d(
        grid, np.array([[0.6, 0.39995, 0.00005]]), np.array([[30.0, 60.0, 80.0]]),
        np.array([[5.0, 8.0, 0.6]]),
    )[0]  # fmt: skip
    y = y + 1e-8 * np.random.default_rng(0).normal(size=y.size)
    search = DensityGMMCV(n_components=5, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(grid, y)
    texts = [str(w.message) for w in caught]
    assert search.n_components_ == 3
    assert any("of the chosen fit have weight" in text for text in texts)
    assert not any("does not support" in text for text in texts)
    messages = fit_many(grid, y[None], DensityGMMCV(n_components=5, random_state=0)).messages[0]
    assert "of the chosen fit have weight" in messages and "does not support" not in messages


def test_a_light_component_of_a_choice_made_over_nothing_is_a_component_too_many():
    # one candidate: no fit with a component fewer was scored (the twenty-sixth reviewer)
    grid = np.linspace(0.0, 30.0, 300)
    search = DensityGMMCV(n_components=[3], random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(grid, _two_lines(grid))
    texts = [str(w.message) for w in caught]
    assert any("does not support 3 components" in text for text in texts)
    assert not any("of the chosen fit have weight" in text for text in texts)
    messages = fit_many(grid, _two_lines(grid)[None], search).messages[0]
    assert "does not support 3 components" in messages
    assert "of the chosen fit have weight" not in messages


def _two_lines(grid):
    """A noise-free density of two Gaussians (0.8 N(12, 1.2) + 0.2 N(18, 1.5))."""
    return mixture_densities_1d(
        grid, np.array([[0.8, 0.2]]), np.array([[12.0, 18.0]]), np.array([[1.2, 1.5]])
    )[0]
