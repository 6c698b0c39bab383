"""Fit Gaussian mixtures to densities known on a grid."""

from ._batch import BatchFitResult, fit_many
from ._estimator import DensityGMM
from ._examples import make_writeup_problem
from ._model.cells import histogram_to_grid
from ._reports.plotting import plot_fit
from ._selection.cv import DensityGMMCV

__all__ = [
    "BatchFitResult",
    "DensityGMM",
    "DensityGMMCV",
    "fit_many",
    "histogram_to_grid",
    "make_writeup_problem",
    "plot_fit",
]
__version__ = "0.1.0"
