"""
A spectrum on a sloped baseline
===============================

Two overlapping peaks (standard deviations 1.0 and 2.5) on a baseline that
rises across the spectrum, from 5% to 15% of the highest peak, with a little
noise. Without a background the mixture has to explain the baseline with its
peaks: the broad one widens and takes mass from the narrow one, with no
warning. With ``background="linear"`` a straight line ``c_0 + c_1 x`` is fitted
jointly with the peaks; ``background_`` holds its coefficients (in the units
of ``x`` and ``y``) and ``predict_background`` its values.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm

from skdensityfit import DensityGMM

x = np.linspace(0, 25, 200)
weights, means, sds = np.array([0.6, 0.4]), np.array([10.0, 16.0]), np.array([1.0, 2.5])
peaks = weights @ norm.pdf(x[None], means[:, None], sds[:, None])
baseline = 0.05 * peaks.max() + 0.004 * peaks.max() * x
rng = np.random.default_rng(0)
spectrum = peaks + baseline + rng.normal(0, 0.005 * peaks.max(), x.size)

plain = DensityGMM(2, random_state=0).fit(x, spectrum)
with_baseline = DensityGMM(2, background="linear", random_state=0).fit(x, spectrum)

for name, model in (("no background", plain), ("linear background", with_baseline)):
    print(
        f"{name:18s} sds {np.round(np.sqrt(model.covariances_.ravel()), 3)}  "
        f"weights {np.round(model.weights_, 3)}  (truth {sds}, {weights})"
    )
print("fitted baseline c_0, c_1:", np.round(with_baseline.background_, 5))
print("true baseline   c_0, c_1:", np.round([0.05 * peaks.max(), 0.004 * peaks.max()], 5))

# %%
# The spectrum, both fits, and the peaks alone (``predict_density`` minus
# ``predict_background``) of the fit with the baseline.

fig, (ax, ax_peaks) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
ax.plot(x, spectrum, ".", color="0.6", ms=3, label="spectrum")
ax.plot(x, plain.predict(x), "C3--", label="2 peaks, no background")
ax.plot(x, with_baseline.predict(x), "C0-", label="2 peaks + linear background")
ax.plot(x, with_baseline.predict_background(x), "C0:", label="fitted baseline")
ax.plot(x, baseline, "k:", lw=0.8, label="true baseline")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend()
ax.set_title("Fits to the spectrum")

ax_peaks.plot(x, peaks, "k", lw=2, label="true peaks")
ax_peaks.plot(
    x,
    with_baseline.predict(x) - with_baseline.predict_background(x),
    "C0-",
    label="peaks, fitted with the baseline",
)
ax_peaks.plot(x, plain.predict(x), "C3--", label="fit without a background")
ax_peaks.set_xlabel("x")
ax_peaks.legend()
ax_peaks.set_title("The peaks")
plt.show()

# %%
# The fit with its standard errors (``l2`` loss: scaled by the residual
# variance, as ``scipy.optimize.curve_fit`` does); the baseline's
# coefficients are reported with the components.

print(with_baseline.fit_report(x, spectrum))
