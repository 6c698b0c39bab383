"""
A noisy histogram, with K chosen by cross-validation
====================================================

A histogram of 3,000 samples from a three-component mixture. The number of
components is not known: :class:`~skdensityfit.DensityGMMCV` fits each
candidate ``K`` on the training bins of shuffled folds and scores it on the
held-out bins. With ``loss="poisson"`` the fit is the maximum-likelihood fit
of the counts and the score is the fraction of Poisson deviance explained
(D²). The smallest ``K`` within one standard error of the best mean score is
chosen.
"""

import matplotlib.pyplot as plt
import numpy as np

from skdensityfit import DensityGMMCV, plot_fit

rng = np.random.default_rng(0)
weights, means, stds = [0.5, 0.3, 0.2], [-2.0, 1.5, 5.0], [1.0, 0.7, 1.2]
labels = rng.choice(3, size=3000, p=weights)
samples = rng.normal(np.take(means, labels), np.take(stds, labels))
counts, edges = np.histogram(samples, bins=60, range=(-6, 9))
centres = (edges[:-1] + edges[1:]) / 2

search = DensityGMMCV(n_components=5, loss="poisson", random_state=0).fit(centres, counts)
print(f"chosen K = {search.n_components_}, mean D² = {search.best_score_:.4f}")

# %%
# The cross-validation curve: mean held-out D² over the folds, with one
# standard deviation across folds. ``DensityGMMCV`` stops one candidate past
# its choice, so larger ``K`` may have no score (NaN, not drawn).

results = search.cv_results_
k = np.asarray(results["param_n_components"], dtype=float)
mean, std = results["mean_test_score"], results["std_test_score"]

fig, (ax_cv, ax_fit) = plt.subplots(
    1, 2, figsize=(12, 4.5), width_ratios=[1, 2], layout="constrained"
)
ax_cv.errorbar(k, mean, yerr=std, marker="o", capsize=4, label="mean ± std over folds")
ax_cv.axvline(search.n_components_, color="C3", ls="--", label=f"chosen K = {search.n_components_}")
ax_cv.set_xlabel("number of components K")
ax_cv.set_ylabel("held-out D²")
ax_cv.set_xticks(k)
ax_cv.legend(loc="lower right")
ax_cv.set_title("Cross-validation")

# The chosen mixture on the counts (the residual panel is left out here);
# it shares the figure with the curve, so it stays in the same cell.
plot_fit(search, centres, counts, ax=ax_fit, residuals=False)
ax_fit.set_ylabel("counts per bin")
ax_fit.set_title(f"Histogram of 3,000 samples, K = {search.n_components_}")
plt.show()

# %%
# The fitted parameters, with standard errors from the Fisher information of
# the counts:

print(search.best_estimator_.fit_report(centres, counts))
