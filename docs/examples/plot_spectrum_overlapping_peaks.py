"""
A spectrum with overlapping peaks
=================================

Three Gaussian bands of a spectrum overlap so much that the middle one shows
only as a shoulder: even without noise the spectrum has two maxima, not
three. The spectrum is sampled
at 300 wavenumbers with 1% noise. A mixture of three components separates
the bands; each band's area is ``scale_ * weights_[k]`` (in the units of the
spectrum times cm⁻¹), its position ``means_[k]`` and its width
``sqrt(covariances_[k])``.

A real spectrum usually sits on a background: subtract it first. The
default ``loss="l2"`` accepts the negative values that noise and background
subtraction leave.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.signal import find_peaks
from scipy.stats import norm

from skdensityfit import DensityGMM, plot_fit

wavenumber = np.linspace(1500, 1700, 300)  # cm^-1
areas = np.array([40.0, 20.0, 35.0])
positions = np.array([1580.0, 1598.0, 1625.0])
widths = np.array([9.0, 8.0, 11.0])
clean = norm.pdf(wavenumber[:, None], positions, widths) @ areas
print("maxima of the noise-free spectrum:", len(find_peaks(clean)[0]))
rng = np.random.default_rng(1)
spectrum = clean + rng.normal(0, 0.01 * clean.max(), wavenumber.shape)

model = DensityGMM(n_components=3, random_state=0).fit(wavenumber, spectrum)
errors = model.standard_errors(wavenumber, spectrum)

# %%
# The bands against the truth (with standard errors):

band_areas = model.scale_ * model.weights_
band_widths = np.sqrt(model.covariances_.ravel())
print("band   position (true)        width (true)     area (true)")
for k in range(3):
    print(
        f"{k}      {model.means_[k, 0]:7.2f} ± {errors['means'][k, 0]:.2f} ({positions[k]:.0f})"
        f"   {band_widths[k]:5.2f} ({widths[k]:.0f})"
        f"    {band_areas[k]:5.2f} ({areas[k]:.0f})"
    )

# %%
# The spectrum (markers), the fit, the three bands (dashed, shaded) and the
# residuals: noise around zero.

ax, ax_residuals = plot_fit(model, wavenumber, spectrum)
ax.set_ylabel("intensity")
ax_residuals.set_xlabel("wavenumber (cm⁻¹)")
ax.set_title("Three overlapping bands")
plt.show()
