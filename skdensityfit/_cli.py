"""Command line: ``skdensityfit demo`` and ``skdensityfit fit FILE``."""

import argparse
import contextlib
import csv
import json
import math
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ._model.covariance import as_matrices


class InputError(Exception):
    """A problem with the user's file or columns (exit code 1)."""


def _check_can_plot(args, n_features=1):
    """Fail before fitting when ``--plot`` cannot be honoured."""
    if not args.plot:
        return
    from ._reports.plotting import INSTALL_HINT

    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise InputError(f"--plot needs matplotlib: {INSTALL_HINT}") from exc
    if n_features > 2:
        raise InputError(
            f"--plot draws 1-D and 2-D fits, but the grid has {n_features} columns. Drop "
            "--plot, or select one or two grid columns with --x."
        )


def _save_plot(model, X, y, path, title, grid_names=None, density_name=None):
    """Write a PNG (or any format matplotlib knows from the suffix) of the fit.

    The axes are labelled with ``grid_names`` (one per grid column) and
    ``density_name`` when given, else with plot_fit's defaults.
    """
    from matplotlib.figure import Figure

    from ._reports.plotting import plot_fit

    # A Figure without pyplot: no window, no GUI backend, nothing global changed.
    two_d = np.ndim(X) == 2 and np.shape(X)[1] == 2
    figure = Figure(figsize=(12, 5) if two_d else (8, 6), layout="constrained")
    if two_d:
        axes = figure.subplots(1, 2)
    else:
        axes = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax, ax_residuals = plot_fit(model, X, y, ax=tuple(axes))
    if grid_names is not None and two_d:
        ax.set_xlabel(grid_names[0])
        ax.set_ylabel(grid_names[1])
        ax_residuals.set_xlabel(grid_names[0])
    elif grid_names is not None:
        ax_residuals.set_xlabel(grid_names[0])
    if density_name is not None and two_d:
        for artist in ax.collections:
            if artist.get_gid() == "target" and getattr(artist, "colorbar", None) is not None:
                artist.colorbar.set_label(f"target {density_name}")
    elif density_name is not None:
        ax.set_ylabel(density_name)
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


# ----------------------------------------------------------------------
# reading files
# ----------------------------------------------------------------------
class _Data:
    """What was read: grid ``X`` (n_points, n_features), density ``y`` and their names;
    ``sample_weight`` (bin widths) for a histogram of explicit bins."""

    def __init__(self, X, y, grid_names, density_name, sample_weight=None):
        self.X, self.y, self.sample_weight = X, y, sample_weight
        self.grid_names, self.density_name = list(grid_names), density_name


_DELIMITERS = ",\t; "
# Lines given to csv.Sniffer to guess the delimiter.
_SNIFF_LINES = 20


def _delimiter(lines):
    """The delimiter of a table, guessed by csv.Sniffer from its first lines."""
    try:
        return (
            csv.Sniffer().sniff("\n".join(lines[:_SNIFF_LINES]), delimiters=_DELIMITERS).delimiter
        )
    except csv.Error:
        pass
    # The Sniffer wants the same count of a delimiter on every line: not so with runs of
    # spaces of varying length, nor with an empty cell. Then the first of them present.
    for delimiter in ",\t;":
        if delimiter in lines[0]:
            return delimiter
    return " "


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_table(path):
    """Cells of a CSV/TSV file, each row's line number in the file, and the header (or None).

    Blank lines and lines starting with ``#`` are skipped, but the line numbers
    returned are those of the file (counting from 1, as editors do).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: drop the byte-order mark of Excel
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not a text (CSV/TSV) file: byte {exc.start} is not UTF-8. A NumPy file "
            "needs the suffix .npy or .npz."
        ) from exc
    numbered = [(number, line.strip()) for number, line in enumerate(text.split("\n"), start=1)]
    numbered = [(number, line) for number, line in numbered if line and line[0] != "#"]
    if not numbered:
        raise InputError(f"{path} holds no data.")
    numbers, lines = zip(*numbered, strict=True)
    delimiter = _delimiter(lines)
    # skipinitialspace: a run of spaces is one delimiter in space-separated tables.
    reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=delimiter == " ")
    rows = [[cell.strip() for cell in row] for row in reader]
    header = None if all(_is_number(cell) for cell in rows[0]) else rows[0]
    if header is not None:
        rows, numbers = rows[1:], numbers[1:]
        if not rows:
            raise InputError(f"{path} has a header but no data rows.")
    n_columns = len(header) if header else len(rows[0])
    lengths = np.fromiter(map(len, rows), dtype=int, count=len(rows))
    wrong = np.flatnonzero(lengths != n_columns)
    if wrong.size:
        i = wrong[0]
        expected = "as the header has" if header else "as the first data line has"
        raise InputError(
            f"Line {numbers[i]} has {lengths[i]} cells, expected {n_columns} ({expected}); "
            f"cells are separated by {_DELIMITER_NAMES[delimiter]}."
        )
    return np.array(rows, dtype=str), np.asarray(numbers), header


_DELIMITER_NAMES = {",": "commas", "\t": "tabs", ";": "semicolons", " ": "spaces"}


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


def _column_name(index, header):
    return header[index] if header else f"column {index}"


def _column_values(cells, numbers, index, header):
    """Column ``index`` of a table of strings as finite floats.

    The first empty, non-numeric or non-finite cell is an error naming its line
    in the file and its column.
    """
    strings = cells[:, index]
    where = "column " + (repr(header[index]) if header else f"{index} (counting from 0)")
    try:
        values = strings.astype(float)
    except ValueError:
        # Error path only: find the first cell that is not a number.
        bad = next((i for i, cell in enumerate(strings) if not _is_number(cell)), None)
        if bad is None:  # numpy refused a cell that Python's float reads
            raise InputError(f"{where.capitalize()} has a non-numeric cell.") from None
        cell = str(strings[bad])
        problem = "the cell is empty" if cell == "" else f"{cell!r} is not a number"
        raise InputError(
            f"Line {numbers[bad]}, {where}: {problem}. Fill it in or delete the line."
        ) from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InputError(
            f"Line {numbers[bad[0]]}, {where}: {str(strings[bad[0]])!r} is not a finite number. "
            "Fill in the value or delete the line."
        )
    return values


def _grid_columns(path, n_rows, n_columns, y_index, header):
    """The grid's columns when ``--x`` names none: every column but the density's. A
    table of four or more columns and fewer rows is refused (many densities, one a row?); a
    grid of more than two columns is said on stderr."""
    if n_columns > max(n_rows, 3):
        raise InputError(
            f"{path} has {n_columns} columns and {n_rows} rows: read as a grid and a "
            f"density it would be a {n_columns - 1}-dimensional grid of {n_rows} points. "
            "If it holds many densities, one a row, fit them with skdensityfit.fit_many "
            "in Python; the command line fits one density a file, the grid's columns "
            "and the density's (--x, --y)."
        )
    x_indices = [i for i in range(n_columns) if i != y_index]
    if len(x_indices) > 2:
        names = ", ".join(_column_name(i, header) for i in x_indices)
        print(
            f"skdensityfit: reading {names} as a {len(x_indices)}-D grid and "
            f"{_column_name(y_index, header)} as the density (name them with --x and --y).",
            file=sys.stderr,
        )
    return x_indices


def _load_text(path, x_columns, y_column):
    cells, numbers, header = _read_table(path)
    n_columns = cells.shape[1]
    if n_columns < 2:
        raise InputError(f"{path} has one column; it needs at least two: the grid and the density.")
    y_index = _column_index(y_column, header, n_columns) if y_column else n_columns - 1
    if x_columns:
        x_indices = [_column_index(spec, header, n_columns) for spec in x_columns]
    else:
        x_indices = _grid_columns(path, cells.shape[0], n_columns, y_index, header)
    columns = [_column_values(cells, numbers, index, header) for index in [*x_indices, y_index]]
    return _Data(
        np.column_stack(columns[:-1]),
        columns[-1],
        [_column_name(i, header) for i in x_indices],
        _column_name(y_index, header),
    )


def _load_npy(path, x_columns, y_column):
    try:
        # allow_pickle=False: a .npy file is never unpickled (that could run any code).
        table = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(
            f"{path} is not a valid .npy file of numbers (corrupt, truncated, not written by "
            "numpy.save, or holding Python objects). Save the grid and the density as "
            "columns of one 2-D float array: numpy.save(path, numpy.column_stack([grid, "
            "density]))."
        ) from exc
    if not isinstance(table, np.ndarray) or table.ndim != 2 or table.shape[1] < 2:
        raise InputError(f"{path} should hold a 2-D array with grid and density columns.")
    try:
        table = table.astype(float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path} holds {table.dtype} values, not numbers.") from exc
    n_columns = table.shape[1]
    y_index = _column_index(y_column, None, n_columns) if y_column else n_columns - 1
    if x_columns:
        x_indices = [_column_index(spec, None, n_columns) for spec in x_columns]
    else:
        x_indices = _grid_columns(path, table.shape[0], n_columns, y_index, None)
    return _Data(
        table[:, x_indices],
        table[:, y_index],
        [f"column {i}" for i in x_indices],
        f"column {y_index}",
    )


# .npz keys: a grid and a density on it, or an image and its pixel coordinates.
NPZ_GRID, NPZ_DENSITY, NPZ_IMAGE_AXES = "grid", "density", ("x", "y")


def _npz_array(arrays, path, key):
    try:
        return np.asarray(arrays[key], dtype=float)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: array {key!r} does not hold numbers.") from exc


def _load_npz(path, x_columns, y_column):
    try:
        arrays = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"{path} is not a valid .npz file (corrupt, truncated or not written by "
            "numpy.savez). Write it with numpy.savez(path, grid=..., density=...)."
        ) from exc
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise InputError(f"{path} is a .npy file, not a .npz archive: rename it to .npy.")
    with arrays:
        y_key = y_column or NPZ_DENSITY
        if y_key not in arrays:
            raise InputError(f"{path} has no array {y_key!r}; it has {list(arrays)}.")
        density = _npz_array(arrays, path, y_key)
        image = len(x_columns) == 2 if x_columns else density.ndim >= 2 and NPZ_GRID not in arrays
        if not image:
            x_key = x_columns[0] if x_columns else NPZ_GRID
            if len(x_columns or ()) > 1:
                raise InputError(
                    f"--x takes one array name for a grid, or two for the x and y "
                    f"coordinates of an image; got {len(x_columns)}."
                )
            if x_key not in arrays:
                hint = (
                    f" For an image, store the density as a 2-D array {NPZ_DENSITY!r} with 1-D "
                    "coordinate arrays 'x' (along its columns) and 'y' (along its rows), or "
                    "none (pixel indices)."
                )
                raise InputError(f"{path} has no array {x_key!r}; it has {list(arrays)}.{hint}")
            grid = _npz_array(arrays, path, x_key)
            names = (
                [x_key]
                if grid.ndim == 1
                else [f"{x_key}[:, {j}]" for j in range(grid.shape[1] if grid.ndim == 2 else 0)]
            )
            return _Data(grid, density, names, y_key)
        return _image_data(arrays, path, density, y_key, x_columns or NPZ_IMAGE_AXES)


def _image_data(arrays, path, image, y_key, axis_keys):
    """The grid of an image ``(ny, nx)``: coordinates ``x`` along columns, ``y`` along rows."""
    if image.ndim != 2:
        raise InputError(
            f"{path}: the image {y_key!r} has shape {image.shape}; an image should be 2-D "
            f"(ny, nx). For other dimensions store the grid points as {NPZ_GRID!r} "
            f"(n_points, n_features) and the density at them as {NPZ_DENSITY!r} (n_points,)."
        )
    present = [key in arrays for key in axis_keys]
    if any(present) and not all(present):
        have, lack = (axis_keys[0], axis_keys[1]) if present[0] else (axis_keys[1], axis_keys[0])
        raise InputError(
            f"{path} has the coordinate array {have!r} but not {lack!r}: store both (1-D, "
            "one value per image column and per image row) or neither (pixel indices)."
        )
    n_y, n_x = image.shape
    if all(present):
        axes = []
        for key, size, along in zip(axis_keys, (n_x, n_y), ("columns", "rows"), strict=True):
            axis = _npz_array(arrays, path, key)
            if axis.shape != (size,):
                raise InputError(
                    f"{path}: the coordinate array {key!r} has shape {axis.shape}; the image "
                    f"{y_key!r} has shape {image.shape}, so it should be 1-D with {size} values "
                    f"(one per image {along})."
                )
            axes.append(axis)
        names = list(axis_keys)
    else:
        axes = [np.arange(n_x, dtype=float), np.arange(n_y, dtype=float)]
        names = ["x (pixel column)", "y (pixel row)"]
    grid_x, grid_y = np.meshgrid(*axes)  # both of shape (ny, nx), as the image
    return _Data(np.column_stack([grid_x.ravel(), grid_y.ravel()]), image.ravel(), names, y_key)


def _load(path, x_columns, y_column):
    """Grid, density and their names from a CSV/TSV, .npy or .npz file."""
    if not path.exists():
        raise InputError(f"No such file: {path}")
    if path.suffix == ".npz":
        return _load_npz(path, x_columns, y_column)
    if path.suffix == ".npy":
        return _load_npy(path, x_columns, y_column)
    return _load_text(path, x_columns, y_column)


# ----------------------------------------------------------------------
# writing results
# ----------------------------------------------------------------------
def _json_number(value):
    """A float for JSON: NaN and infinities (not JSON) become null."""
    value = float(value)
    return value if math.isfinite(value) else None


def _results(model, data, errors):
    """The JSON document: the model's summary, the score, names and standard errors."""
    result = model.summary()
    result["score"] = float(model.score(data.X, data.y, sample_weight=data.sample_weight))
    result["grid_columns"] = data.grid_names
    result["density_column"] = data.density_name
    if errors is not None:
        d, n_components = model.n_features_in_, model.n_components
        covariances = as_matrices(errors["covariances"], model.covariance_type, n_components, d)
        result["scale_se"] = _json_number(errors["scale"])
        for k, component in enumerate(result["components"]):
            component["weight_se"] = _json_number(errors["weights"][k])
            component["mean_se"] = [_json_number(v) for v in errors["means"][k]]
            component["covariance_se"] = [[_json_number(v) for v in row] for row in covariances[k]]
        if "background" in errors:
            result["background_se"] = [_json_number(v) for v in errors["background"]]
    return result


def _csv_text(result, with_errors):
    """One row per component; the fit's scale, score and convergence repeated on each."""
    d = result["n_features"]

    def names(base):
        return [base, f"{base}_se"] if with_errors else [base]

    header = ["component", *names("weight")]
    header += [name for i in range(d) for name in names(f"mean_{i}")]
    header += [name for i in range(d) for j in range(d) for name in names(f"cov_{i}_{j}")]
    background = result.get("background", [])
    header += [*names("scale")]
    header += [name for i in range(len(background)) for name in names(f"background_{i}")]
    # the baseline's coefficients are of powers of (x - origin): the origin goes with them
    origin = result.get("background_origin", []) if background else []
    header += [f"background_origin_{i}" for i in range(len(origin))]
    header += ["score", "loss_value", "converged", "n_iter"]

    def cells(value, error):
        return [value, error] if with_errors else [value]

    lines = [",".join(header)]
    for k, c in enumerate(result["components"]):
        mean_se = c.get("mean_se", [None] * d)
        cov_se = c.get("covariance_se", [[None] * d] * d)
        values = cells(c["weight"], c.get("weight_se"))
        values += [v for i in range(d) for v in cells(c["mean"][i], mean_se[i])]
        values += [
            v
            for i in range(d)
            for j in range(d)
            for v in cells(c["covariance"][i][j], cov_se[i][j])
        ]
        background_se = result.get("background_se", [None] * len(background))
        values += [*cells(result["scale"], result.get("scale_se"))]
        values += [v for i, b in enumerate(background) for v in cells(b, background_se[i])]
        values += list(origin)
        values += [result["score"]]
        values += [result["loss_value"]]
        text = [repr(float("nan") if v is None else float(v)) for v in values]
        lines.append(",".join([str(k), *text, str(result["converged"]), str(result["n_iter"])]))
    return "\n".join(lines) + "\n"


def _bins_from_edge_columns(data):
    """``(data, [edges])`` of a 1-D histogram given as two grid columns, each bin's left
    and right edge: the grid becomes the bins' centres, the values (each bin's content, a
    count or a mass) their averages over the bins, weighted by the bins' widths, so that
    unequal bins are fitted by their contents' likelihood (docs/histograms.md)."""
    if data.X.ndim != 2 or data.X.shape[1] != 2:
        raise InputError(
            "--bins edges needs two grid columns, each bin's left and right edge; got "
            f"{len(data.grid_names)} ({', '.join(data.grid_names)}). Select them with "
            "--x LEFT RIGHT."
        )
    left, right = data.X.T
    if len(left) < 2:
        raise InputError("--bins edges needs at least two bins (rows); the file has one.")
    if np.any(right <= left):
        row = int(np.argmax(right <= left))
        raise InputError(
            f"--bins edges: in row {row + 1} the right edge {right[row]:g} is not above the "
            f"left edge {left[row]:g}. The grid columns must be LEFT RIGHT (use --x)."
        )
    order = np.argsort(left)
    if np.any(left[order][1:] < right[order][:-1]):
        raise InputError("--bins edges: the bins overlap; each value must be one bin's content.")
    edges = np.unique(np.concatenate([left, right]))
    centres = (left + right) / 2
    names = [f"centre of {data.grid_names[0]}..{data.grid_names[1]}"]
    width = right - left
    averaged = _Data(centres[:, None], data.y / width, names, data.density_name, width)
    return averaged, [edges]


def _looks_like_edges(X):
    if X.ndim != 2 or X.shape[1] != 2 or len(X) < 3 or np.any(X[:, 1] <= X[:, 0]):
        return False
    left, right = X[np.argsort(X[:, 0])].T
    return bool(np.all(right[:-1] == left[1:]))


def _loss_for(loss, y):
    """The loss to fit: 'auto' takes the likelihood of counts for non-negative integers."""
    if loss != "auto":
        return loss
    if np.all(y >= 0) and np.all(y == np.round(y)) and np.any(y > 0):
        print(
            "skdensityfit: the density values are non-negative integers: fitting them as "
            "counts with --loss poisson (their likelihood; a least-squares fit gives "
            "single-count bins too much say). Pass --loss l2 to fit them as values.",
            file=sys.stderr,
        )
        return "poisson"
    return "l2"


def _with_edges_hint(message, data, bins):
    """A fit's error, with a hint when two grid columns look like bin edges."""
    two = data.X.ndim == 2 and data.X.shape[1] == 2
    if bins == "none" and two and np.all(data.X[:, 1] > data.X[:, 0]):
        return (
            f"{message} If the two grid columns {', '.join(data.grid_names)} are each bin's "
            "left and right edge, pass --bins edges."
        )
    return message


def _fit(args):
    from ._estimator import DensityGMM
    from ._selection.cv import DensityGMMCV

    data = _load(Path(args.file), args.x, args.y)
    loss = _loss_for(args.loss, data.y)
    bins = None if args.bins == "none" else args.bins
    if args.bins == "edges":
        data, bins = _bins_from_edge_columns(data)
    elif _looks_like_edges(data.X):
        raise InputError(
            f"The grid columns {', '.join(data.grid_names)} look like the left and right edges "
            "of contiguous bins (each row's right edge is the next row's left edge). Pass "
            "--bins edges to fit a histogram of those bins."
        )
    _check_can_plot(args, 1 if data.X.ndim == 1 else data.X.shape[1])
    settings = {
        "covariance_type": args.covariance_type,
        "loss": loss,
        "random_state": args.random_state,
        "bins": bins,
    }
    if args.background != "none":
        settings["background"] = args.background
    if args.n_components == "auto":
        search = DensityGMMCV(n_components=args.max_components, verbose=1, **settings)
        with contextlib.redirect_stdout(sys.stderr):  # progress on stderr, results on stdout
            try:
                search.fit(data.X, data.y, sample_weight=data.sample_weight)
            except ValueError as exc:
                raise InputError(_with_edges_hint(str(exc), data, args.bins)) from exc
        model = search.best_estimator_
    else:
        model = DensityGMM(n_components=int(args.n_components), **settings)
        try:
            model.fit(data.X, data.y, sample_weight=data.sample_weight)
        except ValueError as exc:
            raise InputError(_with_edges_hint(str(exc), data, args.bins)) from exc
    errors = None
    if args.errors:
        errors = model.standard_errors(data.X, data.y, sample_weight=data.sample_weight)
    result = _results(model, data, errors)
    if args.plot:
        title = f"{Path(args.file).name}: {model.n_components} component(s)"
        _save_plot(model, data.X, data.y, args.plot, title, data.grid_names, data.density_name)
        print(f"Plot written to {args.plot}", file=sys.stderr)
    if args.format == "json":
        text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    else:
        text = _csv_text(result, args.errors)
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


FIT_DESCRIPTION = """\
Fit a Gaussian mixture to a density in FILE and write the fitted parameters as JSON
(or CSV).

Input:
  CSV/TSV table   header detected; delimiter (comma, tab, semicolon, spaces) guessed;
                  blank lines and lines starting with # skipped. By default the last
                  column is the density and the others are the grid.
                  With --bins edges, two grid columns are each bin's left and right
                  edge (a 1-D histogram; a 'bin_left,bin_right,count' table).
  .npy            one 2-D float array, columns as in a table.
  .npz, grid      arrays 'grid' (n_points,) or (n_points, n_features) and 'density'
                  (n_points,); --x and --y name other arrays.
  .npz, image     a 2-D array 'density' of shape (ny, nx) and, optionally, 1-D arrays
                  'x' (nx values, along the image's columns) and 'y' (ny values, along
                  its rows); without them the grid is the pixel indices. --x XNAME YNAME
                  names other coordinate arrays, --y another image. The grid's columns
                  are (x, y).

Output:
  JSON            the fit's summary (n_components, covariance_type, loss, loss_value,
                  converged, n_iter, scale, components with weight, mean, covariance),
                  its score (R^2 for l2, D^2 for poisson), grid_columns and
                  density_column (the names read); with --errors also scale_se and, per
                  component, weight_se, mean_se and covariance_se.
  CSV             one row per component: component, weight, mean_i, cov_i_j (i, j index
                  grid_columns), scale, score, loss_value, converged, n_iter; with
                  --errors a _se column after each of weight, mean_i, cov_i_j and scale.
"""


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
        description=FIT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("file", help="CSV, TSV, .npy or .npz file")
    fit.add_argument(
        "--x",
        nargs="+",
        metavar="COLUMN",
        help="grid column names or indices (.npz: the grid array's name, default 'grid'; "
        "or an image's two coordinate arrays, default 'x' 'y')",
    )
    fit.add_argument(
        "--y",
        metavar="COLUMN",
        help="density column name or index (default: the last; .npz: default 'density')",
    )
    fit.add_argument(
        "--n-components",
        type=_components,
        default="auto",
        help="number of components, or 'auto' to choose it by BIC (DensityGMMCV; default)",
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
    fit.add_argument(
        "--loss",
        choices=["auto", "l2", "poisson"],
        default="auto",
        help="'poisson': the values are counts (their likelihood); 'l2': least squares; "
        "'auto' (default): poisson for non-negative integers, else l2",
    )
    fit.add_argument(
        "--bins",
        choices=["none", "infer", "edges"],
        default="none",
        help="'infer': y are bin contents of a histogram whose bin centres are the grid; "
        "'edges': the two grid columns are each bin's left and right edge (1-D; bins may "
        "be unequal and leave gaps where nothing was measured: give empty bins as 0); "
        "either way the mixture is integrated over each bin "
        "(default: none, pdf values at points)",
    )
    fit.add_argument(
        "--background",
        choices=["none", "constant", "linear", "quadratic", "cubic", "exponential"],
        default="none",
        help="fit a baseline under the peaks: a polynomial, or A exp(rate x) in 1-D (with "
        "'auto', under every candidate)",
    )
    fit.add_argument("--random-state", type=int, default=0, help="seed (default: 0)")
    fit.add_argument("--format", choices=["json", "csv"], default="json")
    fit.add_argument(
        "--errors",
        action="store_true",
        help="also write standard errors of the weights, means, covariances and scale "
        "(from the curvature of the loss; see DensityGMM.standard_errors)",
    )
    fit.add_argument("--output", "-o", help="write to this file instead of stdout")
    fit.add_argument("--plot", metavar="FILE", help=PLOT_HELP)
    fit.set_defaults(run=_fit)

    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            # a warning reads as the CLI's own line, not Python's file:line and source
            warnings.showwarning = _show_warning
            return args.run(args)
    except (InputError, ValueError) as exc:
        print(f"skdensityfit: error: {exc}", file=sys.stderr)
        return 1


# The library's advice in a warning, as the command line's options.
_CLI_ADVICE = (
    ("the largest candidate", "--max-components N"),
    ("pass larger n_components", "--max-components N"),
    ("background=", "--background constant, linear, quadratic, cubic or exponential"),
    ("sample_weight", "--bins edges, the bins' left and right edges as two grid columns"),
)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    hints = list(dict.fromkeys(option for phrase, option in _CLI_ADVICE if phrase in str(message)))
    text = f"skdensityfit: {category.__name__}: {message}"
    if hints:
        text += f" [on the command line: {'; '.join(hints)}]"
    print(text, file=sys.stderr if file is None else file)


if __name__ == "__main__":
    sys.exit(main())
