"""Command line: ``skdensityfit demo`` and ``skdensityfit fit FILE``."""

import argparse
import contextlib
import csv
import json
import sys
from pathlib import Path

import numpy as np


class InputError(Exception):
    """A problem with the user's file or columns (exit code 1)."""


def _check_can_plot(args, n_features=1):
    """Fail before fitting when ``--plot`` cannot be honoured."""
    if not args.plot:
        return
    from ._plotting import INSTALL_HINT

    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise InputError(f"--plot needs matplotlib: {INSTALL_HINT}") from exc
    if n_features > 2:
        raise InputError(
            f"--plot draws 1-D and 2-D fits, but the grid has {n_features} columns. Drop "
            "--plot, or select one or two grid columns with --x."
        )


def _save_plot(model, X, y, path, title):
    """Write a PNG (or any format matplotlib knows from the suffix) of the fit."""
    from matplotlib.figure import Figure

    from ._plotting import plot_fit

    # A Figure without pyplot: no window, no GUI backend, nothing global changed.
    two_d = np.ndim(X) == 2 and np.shape(X)[1] == 2
    figure = Figure(figsize=(12, 5) if two_d else (8, 6), layout="constrained")
    if two_d:
        axes = figure.subplots(1, 2)
    else:
        axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    plot_fit(model, X, y, ax=tuple(axes))
    figure.suptitle(title)
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror}.") from exc


def _demo(args):
    from ._estimator import DensityGMM
    from ._examples import make_writeup_problem

    _check_can_plot(args)
    grid, density, truth = make_writeup_problem()
    model = DensityGMM(n_components=2, random_state=args.random_state).fit(grid, density)
    stds = np.sqrt(model.covariances_.ravel())
    print("The write-up's problem: 2 Gaussians tabulated at 75 points on [0, 25).")
    print(f"{'parameter':<12}{'true':>14}{'recovered':>20}")
    for name, true, got in (
        ("mean", truth["means"], model.means_.ravel()),
        ("std", truth["stds"], stds),
        ("weight", truth["weights"], model.weights_),
    ):
        for k in range(2):
            print(f"{name + f'[{k}]':<12}{true[k]:>14.6f}{got[k]:>20.10f}")
    print(f"{'scale':<12}{1.0:>14.6f}{model.scale_:>20.10f}")
    print(
        f"R^2 = {model.score(grid, density):.12f}, loss = {model.loss_:.3g}, "
        f"converged = {model.converged_}, iterations = {model.n_iter_}"
    )
    if args.plot:
        _save_plot(model, grid, density, args.plot, "The write-up's problem: 2 Gaussians")
        print(f"Plot written to {args.plot}")
    return 0


def _read_table(path):
    """Rows of a CSV/TSV file as strings, and the header (or None)."""
    text = path.read_text(encoding="utf-8-sig")  # -sig: drop the byte-order mark of Excel exports
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise InputError(f"{path} holds no data.")
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",\t; ")
    except csv.Error:
        dialect = csv.excel
    rows = [[cell.strip() for cell in row] for row in csv.reader(lines, dialect)]
    rows = [[cell for cell in row if cell != ""] for row in rows]

    def numeric(cell):
        try:
            float(cell)
        except ValueError:
            return False
        return True

    header = rows[0] if not all(numeric(cell) for cell in rows[0]) else None
    rows = rows[1:] if header else rows
    if not rows:
        raise InputError(f"{path} has a header but no data rows.")
    return rows, header


def _column_index(spec, header, n_columns):
    if spec.lstrip("-").isdigit():
        index = int(spec)
        if not -n_columns <= index < n_columns:
            raise InputError(f"Column {index} does not exist: the file has {n_columns} columns.")
        return index % n_columns
    if header is None or spec not in header:
        known = ", ".join(header) if header else "none (the file has no header)"
        raise InputError(f"No column named {spec!r}. Column names: {known}.")
    return header.index(spec)


def _load(path, x_columns, y_column):
    """Grid ``(n_points, n_features)`` and density ``(n_points,)`` from a file."""
    if not path.exists():
        raise InputError(f"No such file: {path}")
    if path.suffix == ".npz":
        arrays = np.load(path)
        x_key = x_columns[0] if x_columns else "grid"
        y_key = y_column or "density"
        missing = [key for key in (x_key, y_key) if key not in arrays]
        if missing:
            raise InputError(f"{path} has no array {missing[0]!r}; it has {list(arrays)}.")
        return np.asarray(arrays[x_key], dtype=float), np.asarray(arrays[y_key], dtype=float)
    if path.suffix == ".npy":
        table = np.asarray(np.load(path), dtype=float)
        header = None
        if table.ndim != 2 or table.shape[1] < 2:
            raise InputError(f"{path} should hold a 2-D array with grid and density columns.")
        n_columns = table.shape[1]
        cells = table
    else:
        rows, header = _read_table(path)
        n_columns = len(header) if header else len(rows[0])
        for number, row in enumerate(rows, start=2 if header else 1):
            if len(row) != n_columns:
                raise InputError(f"Line {number} has {len(row)} cells, expected {n_columns}.")
        cells = np.array(rows, dtype=object)
    if n_columns < 2:
        raise InputError(f"{path} has one column; it needs at least two: the grid and the density.")
    y_index = _column_index(y_column, header, n_columns) if y_column else n_columns - 1
    if x_columns:
        x_indices = [_column_index(spec, header, n_columns) for spec in x_columns]
    else:
        x_indices = [i for i in range(n_columns) if i != y_index]

    def as_float(column):
        try:
            return cells[:, column].astype(float)
        except ValueError as exc:
            raise InputError(f"Column {column} has a non-numeric cell: {exc}.") from exc

    return np.column_stack([as_float(i) for i in x_indices]), as_float(y_index)


def _fit(args):
    from ._cv import DensityGMMCV
    from ._estimator import DensityGMM

    X, y = _load(Path(args.file), args.x, args.y)
    _check_can_plot(args, 1 if X.ndim == 1 else X.shape[1])
    settings = {
        "covariance_type": args.covariance_type,
        "loss": args.loss,
        "random_state": args.random_state,
    }
    if args.n_components == "auto":
        search = DensityGMMCV(n_components=args.max_components, verbose=1, **settings)
        with contextlib.redirect_stdout(sys.stderr):  # progress on stderr, results on stdout
            search.fit(X, y)
        model = search.best_estimator_
    else:
        model = DensityGMM(n_components=int(args.n_components), **settings).fit(X, y)
    result = model.summary()
    result["score"] = model.score(X, y)
    if args.plot:
        title = f"{Path(args.file).name}: {model.n_components} component(s)"
        _save_plot(model, X, y, args.plot, title)
        print(f"Plot written to {args.plot}", file=sys.stderr)
    if args.format == "json":
        text = json.dumps(result, indent=2) + "\n"
    else:
        d = model.n_features_in_
        names = ["component", "weight"] + [f"mean_{i}" for i in range(d)]
        names += [f"cov_{i}_{j}" for i in range(d) for j in range(d)]
        lines = [",".join(names)]
        for k, component in enumerate(result["components"]):
            values = [component["weight"], *component["mean"]]
            values += list(np.ravel(component["covariance"]))
            lines.append(",".join([str(k)] + [repr(float(v)) for v in values]))
        text = "\n".join(lines) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as exc:
            raise InputError(f"Cannot write {args.output}: {exc.strerror}.") from exc
    else:
        sys.stdout.write(text)
    return 0


PLOT_HELP = (
    "also draw the target, the fit, its components and the residuals into FILE (PNG; "
    "the suffix picks the format: .svg, .pdf, ...); 1-D and 2-D grids; needs matplotlib"
)


def _positive_int(value):
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise argparse.ArgumentTypeError("expected a positive integer")


def _components(value):
    if value == "auto":
        return value
    if value.isdigit() and int(value) >= 1:
        return value
    raise argparse.ArgumentTypeError("expected a positive integer or 'auto'")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="skdensityfit",
        description="Fit Gaussian mixtures to densities known on a grid.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="fit the built-in example (the write-up's two-Gaussian problem)"
    )
    demo.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    demo.add_argument("--plot", metavar="FILE", help=PLOT_HELP)
    demo.set_defaults(run=_demo)

    fit = commands.add_parser(
        "fit",
        help="fit a density read from a file",
        description=(
            "Fit a Gaussian mixture to a density in FILE: a CSV/TSV table (header detected), "
            "a .npy 2-D array, or a .npz archive. By default the last column is the density "
            "and the others are the grid. Writes the fitted parameters as JSON (or CSV)."
        ),
    )
    fit.add_argument("file", help="CSV, TSV, .npy or .npz file")
    fit.add_argument(
        "--x",
        nargs="+",
        metavar="COLUMN",
        help="grid column names or indices (.npz: the grid array's name; default 'grid')",
    )
    fit.add_argument(
        "--y", metavar="COLUMN", help="density column name or index (default: the last)"
    )
    fit.add_argument(
        "--n-components",
        type=_components,
        default="auto",
        help="number of components, or 'auto' to choose it by cross-validation (default)",
    )
    fit.add_argument(
        "--max-components",
        type=_positive_int,
        default=8,
        help="largest K tried by 'auto' (default 8)",
    )
    fit.add_argument(
        "--covariance-type", choices=["full", "tied", "diag", "spherical"], default="full"
    )
    fit.add_argument("--loss", choices=["l2", "poisson"], default="l2")
    fit.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    fit.add_argument("--format", choices=["json", "csv"], default="json")
    fit.add_argument("--output", "-o", help="write to this file instead of stdout")
    fit.add_argument("--plot", metavar="FILE", help=PLOT_HELP)
    fit.set_defaults(run=_fit)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (InputError, ValueError) as exc:
        print(f"skdensityfit: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
