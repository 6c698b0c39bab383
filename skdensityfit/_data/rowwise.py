"""Products of stacked rows (densities) with a few columns, each row's result the same bits
whichever rows it is computed with.

BLAS's matrix products are not: a matrix times one row and times several differ in the last
bits, and a search of K amplified them into another choice (``fit_many`` against
``DensityGMMCV`` alone, a real chromatogram: K = 8 against 7). numpy sums the rows of a
C-ordered array as it sums each alone, so these take their sums along rows.
"""

import numpy as np


def row_sums(values):
    """The sums over the last axis of ``values`` ``(..., m)``, each row's as it is alone."""
    return np.sum(np.ascontiguousarray(values), axis=-1)


def row_products(A, B):
    """``A @ B`` for rows ``A`` ``(R, m)`` and ``B`` ``(m, J)`` with few columns: ``(R, J)``."""
    A = np.ascontiguousarray(A)
    out = np.empty((A.shape[0], B.shape[1]))
    for j in range(B.shape[1]):  # a few columns: a background's, a grid's dimensions
        out[:, j] = np.sum(A * B[:, j], axis=1)
    return out


def combined_columns(coefficients, columns):
    """``coefficients @ columns.T`` for ``coefficients`` ``(R, J)`` and ``columns`` ``(n,
    J)``, few: ``(R, n)``, the columns added in their order at every point."""
    out = coefficients[:, :1] * columns[:, 0]
    for j in range(1, columns.shape[1]):
        out += coefficients[:, j : j + 1] * columns[:, j]
    return out


def row_grams(weights, columns):
    """``sum_n weights[r, n] columns[n, i] columns[n, j]`` ``(R, J, J)`` for ``weights``
    ``(R, n)`` and few ``columns`` ``(n, J)``."""
    n_columns = columns.shape[1]
    gram = np.empty((len(weights), n_columns, n_columns))
    for i in range(n_columns):
        for j in range(i, n_columns):
            gram[:, i, j] = gram[:, j, i] = row_sums(weights * (columns[:, i] * columns[:, j]))
    return gram
