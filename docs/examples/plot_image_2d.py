"""
A 2-D image
===========

A 64 x 64 image of three elongated, overlapping blobs with additive noise: a
density known on a 2-D product grid. The grid is passed as the pixel
coordinates, shape ``(4096, 2)``, and the image as the density, shape
``(4096,)``. :func:`~skdensityfit.plot_fit` draws the image as filled
contours, the fit as black contour lines, and each component's mean with its
1σ and 2σ ellipses; ``residuals=True`` adds the residual image.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import multivariate_normal

from skdensityfit import DensityGMM, plot_fit

axis = np.linspace(-10, 10, 64)
xx, yy = np.meshgrid(axis, axis)
grid = np.column_stack([xx.ravel(), yy.ravel()])

weights = [0.5, 0.3, 0.2]
means = [[-3.0, -2.0], [3.0, 1.0], [0.0, 5.0]]
covariances = [
    [[4.0, 1.5], [1.5, 2.0]],
    [[1.5, -1.0], [-1.0, 3.0]],
    [[3.0, 0.0], [0.0, 0.8]],
]
image = sum(
    w * multivariate_normal(m, c).pdf(grid)
    for w, m, c in zip(weights, means, covariances, strict=True)
)
noise = np.random.default_rng(0).normal(0, 0.02 * image.max(), image.shape)
image = image + noise

model = DensityGMM(n_components=3, random_state=0).fit(grid, image)
for k in range(3):
    print(f"component {k}: weight {model.weights_[k]:.3f}, mean {model.means_[k].round(2)}")

# %%
# The residuals show noise only, no structure: three components describe the
# image.

ax, ax_residuals = plot_fit(model, grid, image, residuals=True)
ax.set_aspect("equal")
ax_residuals.set_aspect("equal")
ax.set_title("Image (filled) and fit (lines)")
plt.show()
