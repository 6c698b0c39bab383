"""The engine's structure and its exact derivatives.

- imports run downwards through the layers, and private scikit-learn names are
  imported in one module only;
- autograd's Hessian agrees with central differences of the exact gradient;
- the delta method's Jacobian agrees with central differences;
- standard errors and reports work for every covariance type in 1-D and 2-D;
- predictions agree with scikit-learn's GaussianMixture;
- the hand-written weighted Lloyd iterations agree with scikit-learn's KMeans.
"""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from autograd import grad
from scipy.stats import norm
from sklearn.cluster import KMeans

from skdensityfit import DensityGMM
from skdensityfit._engine.problem import FitData, problem_of
from skdensityfit._engine.starts import _weighted_lloyd
from skdensityfit._engine.uncertainty import reported_errors, reported_vector
from skdensityfit._examples import mixture_density
from skdensityfit._model.covariance import quadratic_features
from skdensityfit._model.parameters import ParameterLayout
from skdensityfit._model.reference import objective, objective_hessian

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
PACKAGE = Path(__file__).parents[1] / "skdensityfit"
# Each module may import only from modules listed before it: the subpackages in this
# order (the mixture, the data, the engine, reports, the estimator, selection, batches).
LAYERS = [
    "_compat",
    "_model.covariance",
    "_model.parameters",
    "_model.cells",
    "_model.reference",
    "_data.rowwise",
    "_data.validation",
    "_data.noise",
    "_engine.processes",
    "_engine.kernel",
    "_engine.rows",
    "_engine.problem",
    "_engine.compile",
    "_engine.starts",
    "_engine.fitting",
    "_engine.uncertainty",
    "_engine.prediction",
    "_reports.reports",
    "_reports.plotting",
    "_examples",
    "_estimator",
    "_selection.rules",
    "_selection.search",
    "_selection.cv",
    "_batch",
    "_cli",
]


def _package_imports(module):
    """``(imported module, names)`` of ``module``'s imports from the package (as LAYERS
    names them) and from scikit-learn."""
    path = PACKAGE.joinpath(*module.split(".")).with_suffix(".py")
    package = module.split(".")[:-1]  # [] for a top-level module
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        names = [alias.name for alias in node.names]
        if node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                yield ".".join([*base, node.module]), names
            else:  # from . import kernel
                for name in names:
                    yield ".".join([*base, name]), [name]
        elif node.module and node.module.startswith("sklearn"):
            yield node.module, names


def test_every_module_has_a_layer():
    modules = {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for path in PACKAGE.rglob("*.py")
        if path.stem not in ("__init__", "__main__")
    }
    assert modules == set(LAYERS)


@pytest.mark.parametrize("module", LAYERS)
def test_imports_run_downwards(module):
    below = set(LAYERS[: LAYERS.index(module)])
    for source, names in _package_imports(module):
        if source.startswith("sklearn"):
            private = [n for n in names if n.startswith("_")] + (
                [source] if any(part.startswith("_") for part in source.split(".")) else []
            )
            assert module == "_compat" or not private, f"{module} imports {private} from {source}"
        else:
            assert source in below, f"{module} imports from {source}, a layer above it"
            if module in ("_selection.cv", "_batch") and source == "_estimator":
                assert all(not name.startswith("_") for name in names)


def _random_data(covariance_type, loss, n_features, seed=0):
    rng = np.random.default_rng(seed)
    layout = ParameterLayout(2, n_features, covariance_type)
    X = rng.normal(size=(80, n_features))
    data = FitData(
        features=quadratic_features(X, covariance_type),
        target=np.abs(rng.normal(size=80)),
        quadrature=rng.dirichlet(np.ones(80)),
        layout=layout,
        loss=loss,
    )
    return data, 0.3 * rng.normal(size=layout.n_parameters)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("n_features", [1, 2])
def test_autograd_hessian_matches_central_differences(covariance_type, loss, n_features):
    """Once, against the finite differences the engine used before: to their accuracy."""
    data, theta = _random_data(covariance_type, loss, n_features)
    exact = objective_hessian(theta, data)
    gradient = grad(objective)
    steps = 1e-5 * np.maximum(1.0, np.abs(theta))
    columns = []
    for j, step in enumerate(steps):
        shift = np.zeros_like(theta)
        shift[j] = step
        forward = gradient(theta + shift, data)
        backward = gradient(theta - shift, data)
        columns.append((forward - backward) / (2 * step))
    differences = np.column_stack(columns)
    scale = np.abs(exact).max()
    np.testing.assert_allclose(exact, 0.5 * (differences + differences.T), atol=1e-7 * scale)
    np.testing.assert_array_equal(exact, exact.T)


def _noisy_2d(covariance_type, seed=0):
    axis = np.linspace(-8, 8, 40)
    grid = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
    covariances = {
        "full": np.array([[[2.0, 0.6], [0.6, 1.0]], [[1.0, -0.3], [-0.3, 1.5]]]),
        "tied": np.array([[[1.5, 0.4], [0.4, 1.0]]] * 2),
        "diag": np.array([np.diag([2.0, 1.0]), np.diag([1.0, 1.5])]),
        "spherical": np.array([np.eye(2) * 1.5, np.eye(2)]),
    }[covariance_type]
    means = np.array([[-2.5, 0.5], [2.5, -1.0]])
    density = mixture_density(grid, [0.6, 0.4], means, covariances)
    rng = np.random.default_rng(seed)
    return grid, density + rng.normal(0, 0.01 * density.max(), density.shape)


def _noisy_1d(seed=0):
    grid = np.linspace(0, 25, 200)
    density = 0.6 * norm.pdf(grid, 10, 1.2) + 0.4 * norm.pdf(grid, 14, 1.5)
    return grid, density + np.random.default_rng(seed).normal(0, 0.01 * density.max(), 200)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_features", [1, 2])
def test_standard_errors_and_report_for_every_covariance_type(covariance_type, n_features):
    grid, y = _noisy_1d() if n_features == 1 else _noisy_2d(covariance_type)
    model = DensityGMM(2, covariance_type=covariance_type, random_state=0).fit(grid, y)
    errors = model.standard_errors(grid, y)
    for name in ("weights", "means", "covariances"):
        assert errors[name].shape == getattr(model, name + "_").shape
    reported = np.concatenate([errors[n].ravel() for n in ("weights", "means", "covariances")])
    assert np.all(np.isfinite(reported)) and np.isfinite(errors["scale"])
    # a 1% noise: every error is small next to its value, and none is zero but
    # the weights' last, which is one minus the others (it has the same error)
    assert np.all(errors["means"] > 0) and np.all(errors["means"] < 0.05)
    np.testing.assert_allclose(errors["weights"][0], errors["weights"][1], rtol=1e-6)
    report = model.fit_report(grid, y)
    n_errors = 1 + 2 * (1 + 2 * n_features)  # scale; per component weight, means, stds
    assert report.count("+/-") == n_errors
    assert report.count("corr") == (2 if n_features == 2 else 0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_delta_method_jacobian_matches_central_differences(covariance_type):
    grid, y = _noisy_2d(covariance_type)
    model = DensityGMM(2, covariance_type=covariance_type, random_state=0).fit(grid, y)
    problem = problem_of(model, grid, y)
    theta = problem.to_fit(model.weights_, model.means_, model.precisions_cholesky_, model.scale_)
    np.testing.assert_allclose(
        reported_vector(problem, theta),
        np.concatenate(
            [model.weights_, model.means_.ravel(), model.covariances_.ravel(), [model.scale_]]
        ),
        rtol=1e-10,
    )
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(theta.size, theta.size))
    covariance = 1e-4 * factor @ factor.T
    steps = 1e-6 * np.maximum(1.0, np.abs(theta))
    jacobian = np.column_stack(
        [
            (reported_vector(problem, theta + s * e) - reported_vector(problem, theta - s * e))
            / (2 * s)
            for s, e in zip(steps, np.eye(theta.size), strict=True)
        ]
    )
    by_differences = np.sqrt(np.einsum("ij,jk,ik->i", jacobian, covariance, jacobian))
    np.testing.assert_allclose(
        reported_errors(problem, theta, covariance), by_differences, rtol=1e-5
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_predictions_agree_with_gaussian_mixture(covariance_type, offset):
    grid, y = _noisy_2d(covariance_type)
    model = DensityGMM(2, covariance_type=covariance_type, random_state=0).fit(grid + offset, y)
    gmm = model.to_gaussian_mixture()
    points = grid[::7] + offset
    np.testing.assert_allclose(model.score_samples(points), gmm.score_samples(points), rtol=1e-9)
    np.testing.assert_allclose(model.predict_proba(points), gmm.predict_proba(points), atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_weighted_lloyd_agrees_with_kmeans(seed):
    """The hand-written Lloyd steps (kept: KMeans costs ~2 ms a call in input checks,
    see benchmarks/bench_starts.py) converge to what KMeans finds from the same centres."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(c, 0.7, size=(120, 2)) for c in ([-3, 0], [2, 2], [3, -2])])
    mass = rng.random(len(X))
    centres = X[rng.choice(len(X), 3, replace=False)]
    ours = _weighted_lloyd(X, mass, centres, n_steps=300)
    theirs = KMeans(3, init=centres, n_init=1, max_iter=300, tol=0.0).fit(X, sample_weight=mass)
    np.testing.assert_allclose(ours, theirs.cluster_centers_, rtol=1e-10)


def test_verbose_reports_every_stage_of_a_fit(capsys):
    """verbose=1 prints a line a stage (starts, placed or moved components, polish) with
    its rows, iterations, the best loss and the time, not only at the end (issue #27)."""
    x = np.linspace(0, 30, 300)
    centres = [(5, 1), (9, 2), (15, 0.7), (20, 1.5), (25, 1)]
    y = sum(np.exp(-0.5 * ((x - m) / s) ** 2) for m, s in centres)
    y = y + 0.02 * np.random.default_rng(0).normal(size=x.size)
    DensityGMM(5, verbose=1, random_state=0).fit(x, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("DensityGMM: K = 5, 1 density of 300 points, 15 parameters")
    stages = [line.split(":")[1].strip() for line in lines[1:-1]]
    assert stages[0] == "first start" and "start 2 of 2" in stages and stages[-1] == "polished"
    assert all(
        re.search(r"\d+ iterations, loss [0-9.e-]+, [0-9.]+ s$", line) for line in lines[1:-1]
    )
    assert lines[-1].startswith("DensityGMM: loss")
    DensityGMM(5, random_state=0).fit(x, y)
    assert capsys.readouterr().out == ""


# Two cases of benchmarks/bench_peers.py (seed 14 of its overlapping 1-D and 2,000-sample
# histogram families) where the greedy peaks, the greedy path and the weakest
# component's move all ended in one local optimum.
PEERS_HISTOGRAM = np.array(
    [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 6, 10, 19, 19, 39, 49, 61, 69, 88, 97, 94, 107, 94, 97, 70]
    + [56, 28, 23, 17, 19, 18, 22, 43, 36, 43, 58, 46, 35, 27, 12, 5, 9, 4, 6, 13, 27, 25, 32]
    + [35, 28, 35, 19, 19, 13, 10, 6, 5, 5, 4, 6, 13, 13, 12, 27, 21, 16, 22, 17, 11, 17, 12]
    + [8, 6, 4, 4, 6, 4, 10, 7, 12, 12, 7, 8, 5, 5, 6, 2, 1, 0, 1]
    + [0] * 10,
    dtype=float,
)


def test_a_fit_above_the_noise_gets_another_start():
    """Noise-free, four overlapping components: the peaks, the greedy path and the move
    ended at a relative loss of 1.2e-5, far above the density's noise (none); a k-means
    start for such fits finds the exact one."""
    x = np.linspace(-4.637450106862569, 16.682515662764168, 300)
    weights = [0.2322296872516206, 0.48141982642194364, 0.16387867414753435, 0.12247181217890155]
    means = [2.163143826400404, 4.774501448851068, 6.966547731895432, 9.881921729501196]
    sds = [1.3309833188891114, 0.8609466668342566, 1.202739305582055, 1.3601187866525946]
    y = sum(w * norm.pdf(x, m, s) for w, m, s in zip(weights, means, sds, strict=True))
    gmm = DensityGMM(4, random_state=14).fit(x, y)
    assert gmm.loss_ < 1e-12
    np.testing.assert_allclose(gmm.means_.ravel(), means, rtol=1e-5)


def test_a_small_peak_of_counts_is_found_by_pearson_residuals():
    """A histogram of 2,000 samples whose fifth component (98 expected counts at 20.4)
    was covered by a broad fourth one while two sat on the first peak: the move weighs
    the residual by the model's inverse, where the small peak stands out."""
    x = np.linspace(-5.909760067153833, 27.006647820814628, 100)
    gmm = DensityGMM(5, loss="poisson", random_state=14).fit(x, PEERS_HISTOGRAM)
    np.testing.assert_allclose(gmm.means_.ravel(), [0.72, 5.51, 10.35, 15.70, 20.37], atol=0.35)
    assert gmm.weights_.min() > 0.035
