"""
Fitting a batch of spectra
==========================

A line scan across a sample gives one spectrum per pixel: here 200 spectra on a
shared grid of 150 wavelengths, each with two emission lines. The line at 520 nm
stays put while the one near 560 nm shifts and broadens along the scan, as a
strained or heated region would make it, and every spectrum carries noise. One
pixel is dead (NaN).

:func:`~skdensityfit.fit_many` fits all of them in one call. Neighbouring pixels
look alike, so ``warm_start=True`` starts each spectrum from the fit of the
previous one, which costs a fraction of a fresh fit. The dead pixel does not stop
the batch: its row is flagged in ``result.failed`` with the error in
``result.messages``. ``n_jobs`` spreads the work over cores, and inside
``joblib.parallel_config(backend="dask")`` over a Dask cluster (see
``docs/scaling.md``).
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from skdensityfit import DensityGMM, fit_many

# %%
# The spectra: two Gaussian lines, the second one drifting along the scan.
rng = np.random.default_rng(0)
wavelength = np.linspace(480.0, 600.0, 150)
n_pixels = 200
position = np.linspace(0.0, 1.0, n_pixels)
true_centre = 560.0 + 8.0 * np.sin(np.pi * position)  # nm
true_width = 6.0 + 3.0 * position  # nm
amplitudes = np.array([300.0, 500.0])  # counts x nm under each line


def gaussian(x, centre, width):
    return np.exp(-0.5 * ((x - centre) / width) ** 2) / (np.sqrt(2 * np.pi) * width)


spectra = amplitudes[0] * gaussian(wavelength, 520.0, 4.0) + amplitudes[1] * gaussian(
    wavelength, true_centre[:, None], true_width[:, None]
)
spectra += rng.normal(0.0, 0.5, spectra.shape)  # noise: about 2% of the peak
spectra[137] = np.nan  # a dead pixel

# %%
# One call fits them all. The summary warning about the dead pixel is expected.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    result = fit_many(
        wavelength, spectra, DensityGMM(n_components=2, random_state=0), warm_start=True
    )
print(result)
print("dead pixel:", np.flatnonzero(result.failed), result.messages[137])
print(f"{result.warm_started.mean():.0%} of the fits started from the neighbouring pixel")

# %%
# The components come ordered by their mean, so column 1 is the drifting line.
centre = result.means[:, 1, 0]
width = np.sqrt(result.covariances[:, 1, 0, 0])
ok = ~result.failed
print(
    f"largest error of the drifting line's centre: {np.abs(centre - true_centre)[ok].max():.2f} nm"
)

fitted = result.predict_density(wavelength)
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
axes[0].imshow(
    spectra,
    aspect="auto",
    origin="lower",
    extent=(wavelength[0], wavelength[-1], 0, n_pixels),
    cmap="magma",
)
axes[0].plot(centre[ok], np.flatnonzero(ok) + 0.5, "c.", ms=2, label="fitted centres")
axes[0].plot(result.means[ok, 0, 0], np.flatnonzero(ok) + 0.5, "c.", ms=2)
axes[0].set(xlabel="wavelength (nm)", ylabel="pixel", title="200 spectra")
axes[0].legend(loc="upper left")

pixel = 100
axes[1].plot(wavelength, spectra[pixel], ".", ms=3, label=f"pixel {pixel}")
axes[1].plot(wavelength, fitted[pixel], label="fitted mixture")
axes[1].set(xlabel="wavelength (nm)", ylabel="counts", title="one spectrum and its fit")
axes[1].legend()

axes[2].plot(position[ok], centre[ok] - 560.0, label="fitted centre - 560 nm")
axes[2].plot(position, true_centre - 560.0, "k--", lw=1, label="true centre - 560 nm")
axes[2].plot(position[ok], width[ok], label="fitted width (nm)")
axes[2].plot(position, true_width, "k:", lw=1, label="true width")
axes[2].set(xlabel="position along the scan", ylabel="nm", title="the drifting line")
axes[2].legend(fontsize=8)
fig.tight_layout()
plt.show()
