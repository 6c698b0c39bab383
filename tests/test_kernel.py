"""The compiled kernel against the reference model: every derivative against autograd's.

The kernel (``_kernel``, through ``_rows``) accumulates the loss, its gradient and the
Gauss-Newton matrix point by point; the reference is ``_model.objective``, pure
functions of ``autograd.numpy``. For every covariance type in one to three dimensions,
both losses, a fitted or a fixed scale, bins (1-D and axis-aligned components) and a
linear background, at random parameters:

- the loss equals the reference's;
- the gradient equals autograd's gradient of the reference;
- the Gauss-Newton matrix equals ``J^T diag(c) J`` with ``J`` autograd's Jacobian of the
  reference model and ``c`` the loss's curvature (for the Poisson loss, the Fisher
  information);
- the model's Jacobian (for the leverages) equals autograd's.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import autograd
import autograd.numpy as anp
import numba
import numpy as np
import pytest
from numba import njit

from skdensityfit._engine import kernel as _kernel
from skdensityfit._engine import processes as _processes
from skdensityfit._engine.problem import build_problem
from skdensityfit._engine.rows import (
    derivatives_of,
    jacobian_of,
    leverages_of,
    losses_of,
    models_of,
)
from skdensityfit._model.reference import log_model_of, model_with_background, objective

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _grid(n_features, n_per_axis):
    axes = [np.linspace(-3.0, 3.0, n_per_axis)] * n_features
    return np.column_stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")])


def _density(X):
    return (
        np.exp(-0.5 * np.sum((X - 0.3) ** 2, axis=1))
        + 0.5 * np.exp(-0.5 * np.sum((X + 1.0) ** 2 / 0.5, axis=1))
        + 0.01
    )


def _reference_model(theta, data):
    if data.background is not None:
        return model_with_background(theta, data)
    return anp.exp(log_model_of(theta, data))


def _check(problem, seed):
    rng = np.random.default_rng(seed)
    data = problem.data
    theta = np.clip(
        rng.normal(0.0, 0.3, problem.bounds.shape[0]), problem.bounds[:, 0], problem.bounds[:, 1]
    )
    if data.background is not None:  # a positive baseline (the Poisson loss), sloped
        theta[problem.n_mixture_parameters :] = 0.05
        theta[problem.n_mixture_parameters] = 0.5
        if data.background.exponential:
            theta[-1] = -0.7  # a decaying exponential
    inputs = problem.kernel
    loss, gradient, matrix = derivatives_of(inputs, theta)
    np.testing.assert_allclose(loss, objective(theta, data), rtol=1e-11)
    np.testing.assert_allclose(losses_of(inputs, theta[None])[0], loss, rtol=1e-13)
    reference = autograd.grad(objective)(theta, data)
    np.testing.assert_allclose(gradient, reference, rtol=1e-8, atol=1e-11 * np.abs(reference).max())
    jacobian = autograd.jacobian(lambda t: _reference_model(t, data))(theta)
    model = _reference_model(theta, data)
    np.testing.assert_allclose(models_of(inputs, theta[None])[0], model, rtol=1e-11)
    if data.loss == "l2":
        curvature = 2.0 * data.quadrature / data.normaliser
    else:
        curvature = data.quadrature / data.normaliser / model
    expected = jacobian.T @ (curvature[:, None] * jacobian)
    # the kernel fills the lower triangle and mirrors it
    np.testing.assert_allclose(matrix, expected, rtol=1e-8, atol=1e-11 * np.abs(expected).max())
    np.testing.assert_allclose(
        jacobian_of(inputs, theta), jacobian, rtol=1e-8, atol=1e-11 * np.abs(jacobian).max()
    )


@pytest.mark.parametrize("n_features", [1, 2, 3])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("scale", [None, 2.0])
def test_points_match_autograd(n_features, covariance_type, loss, scale):
    X = _grid(n_features, {1: 150, 2: 12, 3: 6}[n_features])  # blocks of 64 points and a rest
    problem = build_problem(
        X,
        _density(X),
        None,
        n_components=3,
        covariance_type=covariance_type,
        loss=loss,
        scale=scale,
    )
    _check(problem, seed=n_features)


@pytest.mark.parametrize(
    ("n_features", "covariance_type"),
    [
        (1, "full"),
        (1, "tied"),
        (1, "diag"),
        (1, "spherical"),
        (2, "diag"),
        (2, "spherical"),
        (3, "diag"),
    ],
)
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_bins_match_autograd(n_features, covariance_type, loss):
    bins = {1: 40, 2: 10, 3: 5}[n_features]
    problem = _binned_problem(n_features, bins, 3, covariance_type, loss, seed=1)
    _check(problem, seed=10 + n_features)


def _binned_problem(n_features, n_bins, n_components, covariance_type, loss, seed):
    """A problem on ``n_bins`` random bins along each axis of ``[-4, 4]``."""
    rng = np.random.default_rng(seed)
    edges = [
        np.sort(np.concatenate([[-4.0, 4.0], rng.uniform(-4.0, 4.0, n_bins - 1)]))
        for _ in range(n_features)
    ]
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    X = np.column_stack([g.ravel() for g in np.meshgrid(*centres, indexing="ij")])
    return build_problem(
        X,
        _density(X),
        None,
        n_components=n_components,
        covariance_type=covariance_type,
        loss=loss,
        scale=None,
        bins=edges,
    )


@pytest.mark.parametrize("n_features", [1, 2])
@pytest.mark.parametrize("loss", ["l2", "poisson"])
@pytest.mark.parametrize("background", ["constant", "linear", "quadratic", "exponential"])
def test_backgrounds_match_autograd(n_features, loss, background):
    if background == "exponential" and n_features > 1:
        pytest.skip("the exponential background is one-dimensional")
    X = _grid(n_features, {1: 60, 2: 12}[n_features])
    problem = build_problem(
        X,
        _density(X),
        None,
        n_components=2,
        covariance_type="full",
        loss=loss,
        scale=None,
        background=background,
    )
    _check(problem, seed=20 + n_features)


def test_leverages_sum_to_the_parameters_and_lie_in_zero_one():
    X = _grid(1, 80)
    problem = build_problem(
        X, _density(X), None, n_components=2, covariance_type="full", loss="l2", scale=None
    )
    theta = np.clip(
        np.random.default_rng(0).normal(0.0, 0.3, problem.bounds.shape[0]),
        problem.bounds[:, 0],
        problem.bounds[:, 1],
    )
    leverage = leverages_of(problem.kernel, theta)
    assert leverage.sum() == pytest.approx(problem.bounds.shape[0], rel=1e-9)
    assert np.all(leverage >= -1e-12) and np.all(leverage <= 1 + 1e-12)


@pytest.mark.parametrize("n_features", [2, 3])
@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("loss", ["l2", "poisson"])
def test_the_cubature_of_full_components_over_cells_matches_autograd(
    n_features, covariance_type, loss
):
    """Full and tied components over cells in several dimensions: the kernel's hybrid
    rule (the last axis exact, Gauss-Legendre over the others) against _cells' autograd
    reference of the same rule."""
    bins = {2: 9, 3: 5}[n_features]
    problem = _binned_problem(n_features, bins, 2, covariance_type, loss, seed=2)
    _check(problem, seed=30 + n_features)


@njit
def _kernel_exp(x, out):
    for i in range(x.shape[0]):
        out[i] = _kernel._exp(x[i])


def test_the_kernels_exp_is_within_one_and_a_half_ulp_of_numpys():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.uniform(-708.3, 709.0, 200_000), rng.uniform(-1.0, 1.0, 200_000), [0.0, -0.0]]
    )
    values = np.empty_like(x)
    _kernel_exp(x, values)
    expected = np.exp(x)
    assert np.max(np.abs(values / expected - 1.0)) <= 1.5 * np.finfo(float).eps
    special = np.array([np.nan, -np.inf, np.inf, -708.5, -800.0, 709.5])
    values = np.empty_like(special)
    _kernel_exp(special, values)
    np.testing.assert_array_equal(values, [np.nan, 0.0, np.inf, 0.0, 0.0, np.inf])


# Fits Old Faithful's 2-D histogram (15 x 15 counts) and prints its parameters' bits.
_FAITHFUL_FIT = """
import sys
import numpy as np
from skdensityfit import DensityGMM
data = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
counts, ex, ey = np.histogram2d(data[:, 0], data[:, 1], bins=15)
centres = [0.5 * (e[1:] + e[:-1]) for e in (ex, ey)]
grid = np.column_stack([g.ravel() for g in np.meshgrid(*centres, indexing="ij")])
model = DensityGMM(n_components=2, loss="poisson", random_state=4).fit(grid, counts.ravel())
fitted = [model.weights_, model.means_.ravel(), model.covariances_.ravel()]
print(np.concatenate(fitted).tobytes().hex())
"""


@pytest.mark.slow
def test_a_process_that_compiles_the_kernel_fits_as_one_that_loads_it(tmp_path):
    """The first process on a machine (the kernel compiled) and a later one (loaded from
    numba's cache) fit the same bits: under fast-math, code compiled in the process
    differed in the last bits from the cache's."""
    data = Path(__file__).parent / "data" / "faithful.csv"
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-c", _FAITHFUL_FIT, str(data)]
    runs = [
        subprocess.run(command, env=environment, capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert any(tmp_path.rglob("*.nbi"))  # the first compiled the kernel into this cache
    assert runs[0] == runs[1]


def test_compile_part_names_its_parts():
    from skdensityfit._engine.compile import compile_part

    with pytest.raises(ValueError, match="'fit' and 'rest'"):
        compile_part("fit", "everything")


def test_children_that_fail_or_cannot_start_say_so():
    assert _processes._run_children([[sys.executable, "-c", "pass"]] * 2)
    assert not _processes._run_children([[sys.executable, "-c", "raise SystemExit(1)"]])
    assert not _processes._run_children([["/nonexistent/python", "-c", "pass"]])


def test_without_a_python_to_start_no_child_is_tried(monkeypatch):
    """An embedded interpreter's sys.executable may be None: the children are not tried
    (it crashed every fit), and the kernel is compiled in the process."""
    monkeypatch.setattr(sys, "executable", None)
    monkeypatch.setitem(_processes._CHILDREN, "tried", False)
    monkeypatch.setitem(_processes._CHILDREN, "help", True)
    code = _processes.CacheCode(_kernel.greedy_peaks)
    assert not code._compile_apart((numba.types.int64,))  # no such code in the cache
    assert _processes._CHILDREN == {"tried": True, "help": False}


# Fits with a Python that hangs as the children's interpreter, the children given 2 s.
_HANGING_CHILDREN = """
import sys, warnings
import numpy as np
from skdensityfit._engine import processes
from skdensityfit import DensityGMM
processes.CHILD_SECONDS = 2.0
sys.executable = sys.argv[1]
x = np.linspace(-5, 5, 200)
y = np.exp(-0.5 * (x - 1) ** 2) + 0.5 * np.exp(-0.5 * ((x + 2) / 0.5) ** 2)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = DensityGMM(2, random_state=0).fit(x, y)
print(np.sort(np.round(model.means_.ravel(), 6)).tolist())
print([str(w.message) for w in caught if w.category is RuntimeWarning])
"""


@pytest.mark.slow
def test_children_that_hang_are_stopped_and_the_process_compiles_with_a_warning(tmp_path):
    """A child interpreter that never finishes (an independent review: the first fit took
    259 s, a child a function after the pair, with no timeout) is stopped after
    CHILD_SECONDS, with what it started; the process compiles the kernel itself and says
    its bits may differ."""
    hanging = tmp_path / "python"  # its own child, whose number it writes, sleeps
    hanging.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {tmp_path / 'sleeping'}\nwait\n")
    hanging.chmod(0o755)
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", _HANGING_CHILDREN, str(hanging)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    means, warned = done.stdout.strip().splitlines()
    assert means == "[-2.0, 1.0]"
    assert "compiles its kernel in this process" in warned
    with pytest.raises(ProcessLookupError):  # the children's own children were stopped too
        os.kill(int((tmp_path / "sleeping").read_text()), 0)


# The write-up's kind of fit, its means printed.
_SMALL_FIT = """
import numpy as np
from skdensityfit import DensityGMM
x = np.linspace(-5, 5, 60)
y = np.exp(-0.5 * (x - 1) ** 2) + 0.5 * np.exp(-0.5 * ((x + 2) / 0.5) ** 2)
print(np.sort(DensityGMM(2, random_state=0).fit(x, y).means_.ravel()).tolist())
"""


def test_the_kernel_runs_as_python_under_numba_disable_jit():
    """NUMBA_DISABLE_JIT=1 (numba's switch for debugging) ran into the kernel's exp
    intrinsic, which has no Python form (an independent review): the kernel now runs as
    Python there, and fits as compiled."""
    environment = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    command = [sys.executable, "-c", _SMALL_FIT]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    np.testing.assert_allclose(json.loads(done.stdout), [-2.0, 1.0], atol=1e-8)
