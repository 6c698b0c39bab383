"""
The write-up's problem
======================

The problem this project started from: two Gaussians with means 15 and 20,
standard deviations 1 and weights 0.8 and 0.2, tabulated without noise at the
75 points ``numpy.arange(0, 25, 25 / 75)``. The write-up fitted them with
autograd, BFGS and one random start, which worked for some starts only.
:class:`~skdensityfit.DensityGMM` starts from the density itself and keeps the
best of two starts.
"""

import matplotlib.pyplot as plt
import numpy as np

from skdensityfit import DensityGMM, make_writeup_problem, plot_fit

grid, density, truth = make_writeup_problem()
model = DensityGMM(n_components=2, random_state=0).fit(grid, density)

# %%
# The recovered parameters against the truth:

print("           true     recovered")
for k in range(2):
    print(f"mean[{k}]   {truth['means'][k]:6.3f}   {model.means_[k, 0]:.10f}")
    print(f"sd[{k}]     {truth['stds'][k]:6.3f}   {np.sqrt(model.covariances_[k, 0, 0]):.10f}")
    print(f"weight[{k}] {truth['weights'][k]:6.3f}   {model.weights_[k]:.10f}")

# %%
# The fit, each weighted component ``scale_ * weights_[k] * N(x; means_[k],
# covariances_[k])``, and the residuals at the grid points (below). The
# residuals are at the level of rounding errors of the optimiser's tolerance.

ax, ax_residuals = plot_fit(model, grid, density)
ax.set_title("Two Gaussians at 75 grid points")
plt.show()

# %%
# :meth:`~skdensityfit.DensityGMM.fit_report` summarises the fit. With the
# data, it adds standard errors from the curvature of the loss; on a
# noise-free density they are tiny.

print(model.fit_report())
