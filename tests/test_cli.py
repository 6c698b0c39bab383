"""The command line, run as a real subprocess on files the tests write."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

GRID = np.linspace(0, 20, 200)
DENSITY = 0.6 * norm.pdf(GRID, 6, 1) + 0.4 * norm.pdf(GRID, 13, 1.5)


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "skdensityfit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def check_parameters(summary):
    assert summary["n_components"] == 2
    means = [c["mean"][0] for c in summary["components"]]
    np.testing.assert_allclose(means, [6.0, 13.0], rtol=1e-6)
    np.testing.assert_allclose([c["weight"] for c in summary["components"]], [0.6, 0.4], rtol=1e-6)


def test_demo_prints_true_and_recovered_parameters():
    result = run("demo")
    assert result.returncode == 0, result.stderr
    rows = {}
    for line in result.stdout.splitlines():
        cells = line.split()
        if len(cells) == 3 and cells[0] != "parameter":
            rows[cells[0]] = (float(cells[1]), float(cells[2]))
    expected = {
        "mean[0]": 15.0,
        "mean[1]": 20.0,
        "std[0]": 1.0,
        "std[1]": 1.0,
        "weight[0]": 0.8,
        "weight[1]": 0.2,
        "scale": 1.0,
    }
    assert set(rows) == set(expected)
    for name, value in expected.items():
        true, recovered = rows[name]
        assert true == value
        assert recovered == pytest.approx(value, rel=1e-6), name  # the recovered column
    assert "converged = True" in result.stdout


def test_help_reads_well():
    result = run("fit", "--help")
    assert result.returncode == 0
    assert "--n-components" in result.stdout and "CSV" in result.stdout


def test_fit_csv_with_header_and_auto_components(tmp_path):
    path = tmp_path / "spectrum.csv"
    np.savetxt(path, np.column_stack([GRID, DENSITY]), delimiter=",", header="x,y", comments="")
    result = run("fit", path, "--max-components", 4)
    assert result.returncode == 0, result.stderr
    check_parameters(json.loads(result.stdout))
    assert "DensityGMMCV: n_components=" in result.stderr  # progress goes to stderr


def test_fit_tsv_without_header_by_column_index(tmp_path):
    path = tmp_path / "spectrum.tsv"
    np.savetxt(path, np.column_stack([DENSITY, GRID]), delimiter="\t")
    result = run("fit", path, "--x", 1, "--y", 0, "--n-components", 2)
    assert result.returncode == 0, result.stderr
    check_parameters(json.loads(result.stdout))


def test_fit_npy_and_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.column_stack([GRID, DENSITY]))
    np.savez(tmp_path / "b.npz", grid=GRID, density=DENSITY)
    for name in ("a.npy", "b.npz"):
        result = run("fit", tmp_path / name, "--n-components", 2)
        assert result.returncode == 0, result.stderr
        check_parameters(json.loads(result.stdout))


def test_csv_output_to_a_file(tmp_path):
    path = tmp_path / "spectrum.csv"
    np.savetxt(path, np.column_stack([GRID, DENSITY]), delimiter=",")
    out = tmp_path / "params.csv"
    result = run("fit", path, "--n-components", 2, "--format", "csv", "-o", out)
    assert result.returncode == 0, result.stderr
    table = np.genfromtxt(out, delimiter=",", names=True)
    np.testing.assert_allclose(table["mean_0"], [6.0, 13.0], rtol=1e-6)
    np.testing.assert_allclose(table["cov_0_0"], [1.0, 2.25], rtol=1e-5)


@pytest.mark.parametrize(
    ("content", "args", "code", "message"),
    [
        (None, [], 1, "No such file"),
        ("x,y\n1,2\n2,3\n", ["--y", "z"], 1, "No column named 'z'"),
        ("x,y\n1,2\n2,oops\n3,1\n", [], 1, "Line 3, column 'y': 'oops' is not a number"),
        ("1,2\n2,3\n", ["--y", "5"], 1, "Column 5 does not exist"),
        ("1,2\n2,3,4\n", [], 1, "Line 2 has 3 cells"),
        ("1,2\n2,3\n", ["--n-components", "zero"], 2, "positive integer or 'auto'"),
        ("1,2\n2,3\n", ["--max-components", "0"], 2, "expected a positive integer"),
        ("x,y\n", [], 1, "has a header but no data rows"),
        ("1\n2\n3\n", [], 1, "has one column"),
        ("1,2\n2,3\n3,1\n", ["--n-components", 1, "-o", "/no/dir/out.json"], 1, "Cannot write"),
    ],
)
def test_bad_input_exits_with_a_clear_message(tmp_path, content, args, code, message):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_text(content)
    result = run("fit", path, *args)
    assert result.returncode == code
    assert message in result.stderr


def test_byte_order_mark_and_indented_comments_are_read(tmp_path):
    path = tmp_path / "excel.csv"
    body = "\n".join(f"{x:.17g},{y:.17g}" for x, y in zip(GRID, DENSITY, strict=True))
    path.write_text("\ufeff  # exported\n" + body + "\n", encoding="utf-8")
    result = run("fit", path, "--n-components", 2)
    assert result.returncode == 0, result.stderr
    check_parameters(json.loads(result.stdout))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_demo_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo.png"
    result = run("demo", "--plot", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert f"Plot written to {out}" in result.stdout


def test_fit_plot_writes_a_png_in_1d_and_2d(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "spectrum.csv"
    np.savetxt(path, np.column_stack([GRID, DENSITY]), delimiter=",")
    axis = np.linspace(-5, 5, 25)
    grid_2d = np.column_stack([a.ravel() for a in np.meshgrid(axis, axis)])
    np.savez(tmp_path / "image.npz", grid=grid_2d, density=np.exp(-0.5 * (grid_2d**2).sum(1)))
    for name, components in (("spectrum.csv", 2), ("image.npz", 1)):
        out = tmp_path / f"{name}.png"
        result = run("fit", tmp_path / name, "--n-components", components, "--plot", out)
        assert result.returncode == 0, result.stderr
        assert out.read_bytes().startswith(PNG_SIGNATURE)
        json.loads(result.stdout)  # the parameters still go to stdout


def test_plot_errors_exit_1_before_fitting(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "cube.csv"
    np.savetxt(path, np.random.default_rng(0).uniform(size=(30, 4)), delimiter=",")
    result = run("fit", path, "--n-components", 1, "--plot", tmp_path / "cube.png")
    assert result.returncode == 1
    assert "--plot draws 1-D and 2-D fits, but the grid has 3 columns" in result.stderr
    result = run("demo", "--plot", "/no/dir/demo.png")
    assert result.returncode == 1
    assert "Cannot write /no/dir/demo.png" in result.stderr


def test_plot_without_matplotlib_says_how_to_install(tmp_path):
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "from skdensityfit._cli import main; sys.exit(main(sys.argv[1:]))"
    )
    out = tmp_path / "demo.png"
    result = subprocess.run(
        [sys.executable, "-c", code, "demo", "--plot", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert 'pip install "skdensityfit[plot]"' in result.stderr
    assert not out.exists() and result.stdout == ""  # refused before fitting


# ----------------------------------------------------------------------
# In-process runs of main(): the same code path, without a new interpreter per test.
# ----------------------------------------------------------------------
def run_main(capsys, *args):
    from skdensityfit._cli import main

    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_table(path, header, columns, comments=()):
    lines = [*comments, *([header] if header else [])]
    lines += [",".join(repr(float(v)) for v in row) for row in zip(*columns, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def reference_fit(X, y, n_components):
    from skdensityfit import DensityGMM

    model = DensityGMM(n_components=n_components, random_state=0).fit(X, y)
    return model, model.standard_errors(X, y)


NOISY = DENSITY + np.random.default_rng(0).normal(0, 0.01 * DENSITY.max(), GRID.size)


def test_csv_output_has_scale_score_convergence_and_standard_errors(tmp_path, capsys):
    path = write_table(tmp_path / "noisy.csv", "x,y", [GRID, NOISY])
    code, out, err = run_main(capsys, "fit", path, "--n-components", 2, "--format", "csv")
    assert code == 0, err
    plain = np.genfromtxt(out.splitlines(), delimiter=",", names=True, dtype=None, encoding=None)
    assert plain.dtype.names == (
        "component",
        "weight",
        "mean_0",
        "cov_0_0",
        "scale",
        "score",
        "loss_value",
        "converged",
        "n_iter",
    )
    model, errors = reference_fit(GRID, NOISY, 2)
    np.testing.assert_allclose(plain["scale"], model.scale_, rtol=1e-9)
    np.testing.assert_allclose(plain["score"], model.score(GRID, NOISY), rtol=1e-12)
    assert 0.99 < plain["score"][0] < 1.0  # noisy: not a perfect fit
    assert list(plain["converged"]) == [True, True] and np.all(plain["n_iter"] >= 1)

    code, out, err = run_main(
        capsys, "fit", path, "--n-components", 2, "--format", "csv", "--errors"
    )
    assert code == 0, err
    table = np.genfromtxt(out.splitlines(), delimiter=",", names=True, dtype=None, encoding=None)
    assert table.dtype.names[:7] == (
        "component",
        "weight",
        "weight_se",
        "mean_0",
        "mean_0_se",
        "cov_0_0",
        "cov_0_0_se",
    )
    assert table.dtype.names[7:9] == ("scale", "scale_se")
    np.testing.assert_allclose(table["weight_se"], errors["weights"], rtol=1e-9)
    np.testing.assert_allclose(table["mean_0_se"], errors["means"][:, 0], rtol=1e-9)
    np.testing.assert_allclose(table["cov_0_0_se"], errors["covariances"][:, 0, 0], rtol=1e-9)
    np.testing.assert_allclose(table["scale_se"], errors["scale"], rtol=1e-9)
    assert np.all((table["mean_0_se"] > 1e-4) & (table["mean_0_se"] < 0.05))


def test_json_output_has_column_names_and_standard_errors(tmp_path, capsys):
    axis = np.linspace(-4, 4, 30)
    u, v = (a.ravel() for a in np.meshgrid(axis, axis))
    counts = np.exp(-0.5 * (u**2 + (v / 2) ** 2))
    counts += np.random.default_rng(1).normal(0, 0.01, counts.size)
    path = write_table(tmp_path / "image.csv", "u (mm),v (mm),counts", [u, v, counts])
    code, out, err = run_main(capsys, "fit", path, "--n-components", 1, "--covariance-type", "diag")
    assert code == 0, err
    plain = json.loads(out)
    assert plain["grid_columns"] == ["u (mm)", "v (mm)"]
    assert plain["density_column"] == "counts"
    assert not any(key.endswith("_se") for key in [*plain, *plain["components"][0]])

    code, out, err = run_main(
        capsys, "fit", path, "--n-components", 1, "--covariance-type", "diag", "--errors"
    )
    assert code == 0, err
    result = json.loads(out)
    from skdensityfit import DensityGMM

    X = np.column_stack([u, v])
    model = DensityGMM(n_components=1, covariance_type="diag", random_state=0).fit(X, counts)
    errors = model.standard_errors(X, counts)
    component = result["components"][0]
    np.testing.assert_allclose(component["mean_se"], errors["means"][0], rtol=1e-9)
    np.testing.assert_allclose(component["weight_se"], errors["weights"][0], atol=1e-12)
    # diag: the off-diagonal covariances are fixed at 0, so is their error
    np.testing.assert_allclose(
        component["covariance_se"], np.diag(errors["covariances"][0]), rtol=1e-9
    )
    np.testing.assert_allclose(result["scale_se"], errors["scale"], rtol=1e-9)
    np.testing.assert_allclose(component["mean"], [0.0, 0.0], atol=0.01)


def test_undetermined_standard_errors_are_json_null(tmp_path):
    from skdensityfit._cli import _csv_text, _Data, _results

    model, _ = reference_fit(GRID, DENSITY, 2)
    nan = {
        "weights": np.full(2, np.nan),
        "means": np.full((2, 1), np.nan),
        "covariances": np.full((2, 1, 1), np.nan),
        "scale": np.nan,
    }
    result = _results(model, _Data(GRID[:, None], DENSITY, ["x"], "y"), nan)
    assert result["scale_se"] is None and result["components"][1]["mean_se"] == [None]
    json.dumps(result, allow_nan=False)  # valid JSON: no NaN literal
    assert ",nan," in _csv_text(result, with_errors=True)


def test_json_output_of_an_npz_names_its_arrays(tmp_path, capsys):
    np.savez(tmp_path / "b.npz", wl=GRID, flux=DENSITY)
    code, out, err = run_main(capsys, "fit", tmp_path / "b.npz", "--x", "wl", "--y", "flux")
    assert code == 0, err
    result = json.loads(out)
    assert result["grid_columns"] == ["wl"] and result["density_column"] == "flux"
    check_parameters(result)


# ----------------------------------------------------------------------
# plots labelled with the file's names
# ----------------------------------------------------------------------
@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the CLI saves, kept instead of written."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda figure, *args, **kwargs: figures.append(figure))
    return figures


def test_plot_axes_are_labelled_with_the_csv_header_1d(tmp_path, capsys, saved_figures):
    path = write_table(tmp_path / "s.csv", "wavelength (nm),intensity", [GRID, DENSITY])
    code, _, err = run_main(capsys, "fit", path, "--n-components", 2, "--plot", "fit.png")
    assert code == 0, err
    (figure,) = saved_figures
    ax, ax_residuals = figure.axes[:2]
    assert ax.get_ylabel() == "intensity"
    assert ax_residuals.get_xlabel() == "wavelength (nm)"


def test_plot_axes_are_labelled_with_the_csv_header_2d(tmp_path, capsys, saved_figures):
    axis = np.linspace(-4, 4, 20)
    u, v = (a.ravel() for a in np.meshgrid(axis, axis))
    path = write_table(
        tmp_path / "image.csv", "u (mm),v (mm),counts", [u, v, np.exp(-0.5 * (u**2 + v**2))]
    )
    code, _, err = run_main(capsys, "fit", path, "--n-components", 1, "--plot", "fit.png")
    assert code == 0, err
    (figure,) = saved_figures
    labels = {(a.get_xlabel(), a.get_ylabel()) for a in figure.axes}
    assert ("u (mm)", "v (mm)") in labels  # the fit
    assert ("u (mm)", "") in labels  # the residuals
    assert ("", "target counts") in labels  # the colour bar of the target
    assert not any("x[0]" in a.get_xlabel() or "density" in a.get_ylabel() for a in figure.axes)


# ----------------------------------------------------------------------
# errors name the line and column; binary files are never unpickled
# ----------------------------------------------------------------------
COMMENTS = ["# exported by the spectrometer", "", "# units: nm, counts"]


@pytest.mark.parametrize(
    ("header", "bad_cell", "message"),
    [
        ("x,y", "", "Line {line}, column 'y': the cell is empty"),
        ("x,y", "nan", "Line {line}, column 'y': 'nan' is not a finite number"),
        ("x,y", "inf", "Line {line}, column 'y': 'inf' is not a finite number"),
        ("x,y", "1.2.3", "Line {line}, column 'y': '1.2.3' is not a number"),
        (None, "oops", "Line {line}, column 1 (counting from 0): 'oops' is not a number"),
        (None, "", "Line {line}, column 1 (counting from 0): the cell is empty"),
    ],
)
def test_bad_cells_are_named_by_line_and_column(tmp_path, capsys, header, bad_cell, message):
    lines = [*COMMENTS, *([header] if header else [])]
    first_data_line = len(lines) + 1
    lines += [f"{x!r},{y!r}" for x, y in zip(GRID.tolist(), DENSITY.tolist(), strict=True)]
    row = 40
    lines[first_data_line - 1 + row] = f"{GRID.tolist()[row]!r},{bad_cell}"
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run_main(capsys, "fit", path, "--n-components", 2)
    assert code == 1
    line = first_data_line + row  # counted in the file, comments and blank lines included
    assert path.read_text().split("\n")[line - 1].endswith("," + bad_cell)
    assert message.format(line=line) in err


def test_cell_count_is_checked_per_line_of_the_file(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text("# header follows\n\nx,y\n1,2\n# a comment\n2,3,4\n")
    code, _, err = run_main(capsys, "fit", path)
    assert code == 1
    assert "Line 6 has 3 cells, expected 2 (as the header has)" in err


def test_space_separated_columns_with_runs_of_spaces(tmp_path, capsys):
    path = tmp_path / "aligned.txt"
    body = [f"{x:10.6f}   {y:.17g}" for x, y in zip(GRID, DENSITY, strict=True)]
    path.write_text("  wavelength     intensity\n" + "\n".join(body) + "\n")
    code, out, err = run_main(capsys, "fit", path, "--n-components", 2)
    assert code == 0, err
    result = json.loads(out)
    assert result["grid_columns"] == ["wavelength"]
    means = [c["mean"][0] for c in result["components"]]
    np.testing.assert_allclose(means, [6.0, 13.0], rtol=1e-5)  # the grid rounded to 1e-6


class _UnpicklingWritesAFile:
    """An object whose unpickling creates ``path``: proof that a file was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_payload_is_never_unpickled(tmp_path, capsys):
    import pickle

    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_UnpicklingWritesAFile(control))).close()
    assert control.exists()  # the payload works when unpickled
    marker = tmp_path / "unpickled"
    payload = _UnpicklingWritesAFile(marker)
    np.save(tmp_path / "objects.npy", np.array([payload, 1.0], dtype=object), allow_pickle=True)
    (tmp_path / "raw.npy").write_bytes(pickle.dumps(payload))
    np.savez(tmp_path / "objects.npz", grid=GRID, density=np.array([payload], dtype=object))
    for name in ("objects.npy", "raw.npy", "objects.npz"):
        code, _, err = run_main(capsys, "fit", tmp_path / name, "--n-components", 1)
        assert code == 1
        assert "allow_pickle" not in err and "pickle.load" not in err
        assert "not a valid .npy file" in err or "does not hold numbers" in err
    assert not marker.exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.npy", b"not numpy at all", "not a valid .npy file"),
        ("empty.npy", b"", "not a valid .npy file"),
        ("truncated.npy", None, "not a valid .npy file"),
        ("garbage.npz", b"PK\x03\x04 not a zip", "not a valid .npz file"),
        ("binary.csv", b"\x93NUMPY\x01\x00\xff\xfe", "is not a text (CSV/TSV) file"),
    ],
)
def test_corrupt_binary_files_get_a_clear_message(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is None:
        np.save(path, np.column_stack([GRID, DENSITY]))
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path.write_bytes(content)
    code, _, err = run_main(capsys, "fit", path, "--n-components", 1)
    assert code == 1
    assert message in err and "allow_pickle" not in err


# ----------------------------------------------------------------------
# .npz images
# ----------------------------------------------------------------------
IMAGE_X = np.linspace(10.0, 16.0, 31)  # along the columns
IMAGE_Y = np.linspace(-2.0, 2.0, 21)  # along the rows
IMAGE = np.exp(-0.5 * ((IMAGE_X[None, :] - 12.5) ** 2 / 0.5 + (IMAGE_Y[:, None] - 0.5) ** 2 / 0.2))


def fit_json(capsys, path, *args):
    code, out, err = run_main(capsys, "fit", path, "--n-components", 1, *args)
    assert code == 0, err
    return json.loads(out)


def test_npz_image_with_coordinate_arrays(tmp_path, capsys):
    np.savez(tmp_path / "image.npz", density=IMAGE, x=IMAGE_X, y=IMAGE_Y)
    result = fit_json(capsys, tmp_path / "image.npz")
    (component,) = result["components"]
    np.testing.assert_allclose(component["mean"], [12.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(component["covariance"], [[0.5, 0], [0, 0.2]], atol=1e-6)
    assert result["grid_columns"] == ["x", "y"] and result["density_column"] == "density"
    # other names, given with --x (x coordinates first) and --y
    np.savez(tmp_path / "named.npz", frame=IMAGE, wavelength=IMAGE_X, slit=IMAGE_Y)
    named = fit_json(capsys, tmp_path / "named.npz", "--x", "wavelength", "slit", "--y", "frame")
    np.testing.assert_allclose(named["components"][0]["mean"], [12.5, 0.5], rtol=1e-6)
    assert named["grid_columns"] == ["wavelength", "slit"]


def test_npz_image_without_coordinates_uses_pixel_indices(tmp_path, capsys):
    np.savez(tmp_path / "image.npz", density=IMAGE)
    result = fit_json(capsys, tmp_path / "image.npz")
    step_x, step_y = IMAGE_X[1] - IMAGE_X[0], IMAGE_Y[1] - IMAGE_Y[0]
    expected = [(12.5 - IMAGE_X[0]) / step_x, (0.5 - IMAGE_Y[0]) / step_y]  # column, row
    np.testing.assert_allclose(result["components"][0]["mean"], expected, rtol=1e-6)
    assert result["grid_columns"] == ["x (pixel column)", "y (pixel row)"]


@pytest.mark.parametrize(
    ("arrays", "args", "message"),
    [
        ({"density": IMAGE, "x": IMAGE_X}, [], "has the coordinate array 'x' but not 'y'"),
        (
            {"density": IMAGE, "x": IMAGE_Y, "y": IMAGE_X},
            [],
            "'x' has shape (21,); the image 'density' has shape (21, 31), so it should be 1-D "
            "with 31 values",
        ),
        ({"density": IMAGE[None]}, [], "an image should be 2-D"),
        ({"density": IMAGE}, ["--x", "a", "b", "c"], "--x takes one array name for a grid"),
        ({"density": DENSITY}, [], "has no array 'grid'"),
    ],
)
def test_npz_image_errors(tmp_path, capsys, arrays, args, message):
    np.savez(tmp_path / "image.npz", **arrays)
    code, _, err = run_main(capsys, "fit", tmp_path / "image.npz", "--n-components", 1, *args)
    assert code == 1
    assert message in err


# ----------------------------------------------------------------------
# plot_fit on a model fitted with a DataFrame (the Python side of the labels above)
# ----------------------------------------------------------------------
@pytest.mark.parametrize(("two_d", "search"), [(False, False), (True, False), (False, True)])
def test_plot_fit_uses_dataframe_column_names_without_warnings(two_d, search):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    import warnings

    import matplotlib.pyplot as plt

    from skdensityfit import DensityGMM, DensityGMMCV, plot_fit

    if two_d:
        axis = np.linspace(-3, 3, 15)
        u, v = (a.ravel() for a in np.meshgrid(axis, axis))
        X = pd.DataFrame({"u (mm)": u, "v (mm)": v})
        y = pd.Series(np.exp(-0.5 * (u**2 + v**2)), name="counts")
    else:
        X = pd.DataFrame({"wavelength (nm)": GRID})
        y = pd.Series(DENSITY, name="intensity")
    if search:  # its best_estimator_ is drawn, with the search's feature names
        model = DensityGMMCV(n_components=3, random_state=0).fit(X, y)
    else:
        model = DensityGMM(n_components=1 if two_d else 2, random_state=0).fit(X, y)
    assert list(model.feature_names_in_) == list(X.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "X does not have valid feature names" would fail
        ax, ax_residuals = plot_fit(model, X, y, residuals=True)
        plot_fit(model, X.to_numpy(), y.to_numpy())  # arrays too: the model knows the names
    try:
        if two_d:
            assert (ax.get_xlabel(), ax.get_ylabel()) == ("u (mm)", "v (mm)")
            assert ax_residuals.get_xlabel() == "u (mm)"
            assert "target counts" in [a.get_ylabel() for a in ax.figure.axes]
        else:
            assert ax.get_ylabel() == "intensity"
            assert ax_residuals.get_xlabel() == "wavelength (nm)"
        with pytest.raises(ValueError, match="but the model was fitted on"):
            plot_fit(model, X.rename(columns=lambda name: name.upper()), y)
    finally:
        plt.close("all")


def test_fit_with_a_background_reports_its_coefficients(tmp_path, capsys):
    x = np.linspace(0, 20, 300)
    y = 0.6 * norm.pdf(x, 7, 1) + 0.4 * norm.pdf(x, 12, 2) + 0.02
    path = tmp_path / "spectrum.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="x,y", comments="")
    code, out, _ = run_main(
        capsys, "fit", path, "--n-components", 2, "--background", "constant", "--format", "csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert float(rows[0]["background_0"]) == pytest.approx(0.02, rel=1e-6)
    assert [float(r["mean_0"]) for r in rows] == pytest.approx([7.0, 12.0], rel=1e-6)
    # far from 0 the coefficients are of powers of x - origin, and the origin is written
    shifted = tmp_path / "shifted.csv"
    np.savetxt(shifted, np.column_stack([x + 1e6, y + 0.001 * x]), delimiter=",", header="x,y")
    code, out, _ = run_main(
        capsys, "fit", shifted, "--n-components", 2, "--background", "linear", "--format", "csv"
    )
    row = next(csv.DictReader(io.StringIO(out)))
    origin, (b0, b1) = (
        float(row["background_origin_0"]),
        (float(row["background_0"]), float(row["background_1"])),
    )
    assert origin == pytest.approx(1e6 + 10, rel=1e-9)
    assert b0 + b1 * (x[0] + 1e6 - origin) == pytest.approx(0.02, rel=1e-3)
    # K chosen under the background: the baseline takes no component of its own
    code, out, err = run_main(capsys, "fit", path, "--background", "linear")
    assert code == 0 and "bic" in err
    summary = json.loads(out)
    assert summary["n_components"] == 2
    assert summary["background"][0] == pytest.approx(0.02, rel=1e-4)


def test_fit_with_inferred_bins_integrates_a_coarse_histogram(tmp_path, capsys):
    rng = np.random.default_rng(0)
    counts, edges = np.histogram(rng.normal(0, 1, 20_000), bins=np.arange(-5, 5.5, 1.0))
    path = tmp_path / "histogram.csv"
    centres = 0.5 * (edges[1:] + edges[:-1])
    np.savetxt(path, np.column_stack([centres, counts]), delimiter=",", header="x,n", comments="")
    args = ("fit", path, "--n-components", 1, "--loss", "poisson")
    _, centre_out, _ = run_main(capsys, *args)
    code, binned_out, _ = run_main(capsys, *args, "--bins", "infer")
    assert code == 0
    centre_variance = json.loads(centre_out)["components"][0]["covariance"][0][0]
    binned_variance = json.loads(binned_out)["components"][0]["covariance"][0][0]
    # bins one sd wide inflate the centre model's variance by h^2/12; the integrated one is not
    assert centre_variance == pytest.approx(1 + 1 / 12, abs=0.03)
    assert binned_variance == pytest.approx(1.0, abs=0.03)


UNEQUAL_EDGES = np.array(
    [-4, -3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3, 3.5, 3.75, 4, 4.25, 4.5, 5, 6, 7]
)


def _unequal_histogram(tmp_path):
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(0, 1, 3000), rng.normal(4, 0.5, 1500)])
    counts, _ = np.histogram(samples, UNEQUAL_EDGES)
    path = tmp_path / "bins.csv"
    columns = [UNEQUAL_EDGES[:-1], UNEQUAL_EDGES[1:], counts]
    write_table(path, "bin_left,bin_right,count", columns)
    return path, counts


def test_explicit_bin_edges_fit_a_histogram_of_unequal_bins(tmp_path, capsys):
    """A bin_left,bin_right,count table (issue #27) is a histogram with --bins edges:
    integer counts are fitted by their likelihood, unequal bins by their widths."""
    path, counts = _unequal_histogram(tmp_path)
    code, out, err = run_main(capsys, "fit", path, "--bins", "edges")
    assert code == 0, err
    assert "--loss poisson" in err  # the counts' likelihood was chosen, and said so
    summary = json.loads(out)
    assert summary["n_components"] == 2 and summary["loss"] == "poisson"
    assert summary["scale"] == pytest.approx(counts.sum(), rel=0.03)
    components = sorted(summary["components"], key=lambda c: c["mean"][0])
    assert [c["weight"] for c in components] == pytest.approx([2 / 3, 1 / 3], abs=0.02)
    assert [c["mean"][0] for c in components] == pytest.approx([0.0, 4.0], abs=0.06)
    assert [c["covariance"][0][0] for c in components] == pytest.approx([1.0, 0.25], rel=0.1)


def test_bin_edge_columns_without_bins_edges_say_what_to_pass(tmp_path, capsys):
    path, _ = _unequal_histogram(tmp_path)
    code, _, err = run_main(capsys, "fit", path)
    assert code == 1 and "--bins edges" in err and "PCA" not in err
    np.savetxt(path, np.column_stack([GRID, DENSITY]), delimiter=",")
    code, _, err = run_main(capsys, "fit", path, "--bins", "edges")
    assert code == 1 and "two grid columns" in err
    write_table(path, "hi,lo,n", [[1.0, 2.0, 3.0], [0.5, 1.5, 2.5], [3, 4, 5]])
    code, _, err = run_main(capsys, "fit", path, "--bins", "edges")
    assert code == 1 and "right edge 0.5 is not above the left edge 1" in err
    write_table(path, "lo,hi,n", [[1.0], [2.0], [3]])
    code, _, err = run_main(capsys, "fit", path, "--bins", "edges")
    assert code == 1 and "at least two bins" in err


def test_integer_values_are_fitted_as_counts_unless_told_otherwise(tmp_path, capsys):
    counts = np.random.default_rng(1).poisson(200 * DENSITY)
    path = write_table(tmp_path / "counts.csv", "x,n", [GRID, counts])
    code, out, err = run_main(capsys, "fit", path, "--n-components", 2)
    assert code == 0 and json.loads(out)["loss"] == "poisson" and "--loss poisson" in err
    code, out, err = run_main(capsys, "fit", path, "--n-components", 2, "--loss", "l2")
    assert code == 0 and json.loads(out)["loss"] == "l2" and "--loss poisson" not in err
    code, out, err = run_main(
        capsys, "fit", write_table(tmp_path / "d.csv", "x,y", [GRID, DENSITY])
    )
    assert code == 0 and json.loads(out)["loss"] == "l2" and "--loss" not in err


def test_many_densities_in_one_file_are_refused_and_a_3d_grid_is_said(tmp_path):
    """An independent review: a .npy of 40 spectra (one a row) was read as a 255-D grid
    (a misleading subspace error), and a CSV of a grid and three spectra silently fitted
    the last spectrum on a 3-D grid."""
    path = tmp_path / "cube.npy"
    np.save(path, np.random.default_rng(0).uniform(size=(40, 256)))
    result = run("fit", path, "--n-components", 1)
    assert result.returncode == 1
    assert "256 columns and 40 rows" in result.stderr and "fit_many" in result.stderr
    path = tmp_path / "cube.csv"
    np.savetxt(path, np.random.default_rng(0).uniform(size=(30, 4)), delimiter=",")
    result = run("fit", path, "--n-components", 1)
    assert "reading column 0, column 1, column 2 as a 3-D grid and column 3" in result.stderr


def test_warnings_read_as_the_cli_s_own_lines(tmp_path, capsys):
    """A warning prints as 'skdensityfit: UserWarning: ...', not as Python's file:line
    followed by the source line that raised it."""
    x = np.linspace(0, 10, 200)
    path = write_table(tmp_path / "cut.csv", "x,y", [x, norm.pdf(x, 10, 1.5)])
    code, _, err = run_main(capsys, "fit", path, "--n-components", 1)
    assert code == 0
    assert "skdensityfit: UserWarning: The fitted mixture at the edge of the grid" in err
    assert ".py:" not in err and "warn" not in err.split("UserWarning")[0]
    # the library's advice (pass larger candidates, n_components=...) with the CLI's option
    peaks = sum(norm.pdf(x, c, 0.3) for c in (2, 5, 8))
    lines = write_table(tmp_path / "lines.csv", "x,y", [x, peaks])
    code, _, err = run_main(capsys, "fit", lines, "--max-components", 2)
    assert code == 0 and "the largest candidate" in err
    assert "[on the command line: --max-components N" in err
