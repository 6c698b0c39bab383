"""The command line, run as a real subprocess on files the tests write."""

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
    assert "mean[0]" in result.stdout and "15.000000" in result.stdout
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
        ("x,y\n1,2\n2,oops\n3,1\n", [], 1, "non-numeric"),
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
