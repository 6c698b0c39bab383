"""
GridSearchCV over K in a Pipeline
=================================

:class:`~skdensityfit.DensityGMM` is a scikit-learn estimator, so it can end
a :class:`~sklearn.pipeline.Pipeline` and be tuned by
:class:`~sklearn.model_selection.GridSearchCV`.

The data: a particle-size distribution tabulated on a log-spaced grid of
diameters, as ``dN/dlog(d)``. Its modes are log-normal, that is Gaussian in
``log(d)``, so the pipeline first maps the grid to ``log(d)`` with a
:class:`~sklearn.preprocessing.FunctionTransformer`, then fits the mixture
there. Only the grid ``X`` is transformed; the density ``y`` is left as it is.
"""

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import norm
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skdensityfit import DensityGMM

diameter = np.geomspace(0.01, 10.0, 150)  # micrometres
log_d = np.log(diameter)
modes = [(0.5, np.log(0.05), 0.4), (0.35, np.log(0.3), 0.35), (0.15, np.log(2.0), 0.5)]
size_distribution = sum(w * norm.pdf(log_d, mu, s) for w, mu, s in modes)
rng = np.random.default_rng(0)
size_distribution += rng.normal(0, 0.01 * size_distribution.max(), diameter.shape)
X = diameter.reshape(-1, 1)

pipeline = make_pipeline(
    FunctionTransformer(np.log, inverse_func=np.exp), DensityGMM(random_state=0)
)

# %%
# The folds must be shuffled. Grid points come in order, so ``KFold(5)``
# without shuffling holds out five contiguous slabs of the grid: a mode inside
# a held-out slab has no training point, no fit can predict it, and the score
# measures extrapolation, not the fit. Shuffled folds hold out scattered
# points, each with training points around it.

search = GridSearchCV(
    pipeline,
    {"densitygmm__n_components": [1, 2, 3, 4]},
    cv=KFold(5, shuffle=True, random_state=0),
).fit(X, size_distribution)
best = search.best_estimator_
gmm = best[-1]  # the fitted DensityGMM at the end of the best pipeline
print("chosen K =", gmm.n_components)
print("mean held-out R²:", search.cv_results_["mean_test_score"].round(5))

# %%
# Left: held-out R² for each K, mean ± standard deviation over the folds.
# :class:`~sklearn.model_selection.GridSearchCV` picks the best mean score; it
# has no one-standard-error rule, which :class:`~skdensityfit.DensityGMMCV`
# adds to prefer the smallest K the data supports. Right: the best pipeline's fit, drawn against the
# diameter on a log axis; each mode is
# ``scale_ * weights_[k] * N(log d; means_[k], covariances_[k])``.

fig, (ax_cv, ax_fit) = plt.subplots(
    1, 2, figsize=(12, 4.5), width_ratios=[1, 2], layout="constrained"
)
results = search.cv_results_
k = np.asarray(results["param_densitygmm__n_components"], dtype=float)
ax_cv.errorbar(k, results["mean_test_score"], yerr=results["std_test_score"], marker="o", capsize=4)
ax_cv.axvline(gmm.n_components, color="C3", ls="--", label=f"best K = {gmm.n_components}")
ax_cv.set_xticks([1, 2, 3, 4])
ax_cv.set_xlabel("number of components K")
ax_cv.set_ylabel("held-out R²")
ax_cv.legend(loc="lower right")
ax_cv.set_title("GridSearchCV")

fine = np.geomspace(diameter.min(), diameter.max(), 600)
ax_fit.plot(diameter, size_distribution, "o", mfc="none", color="0.4", ms=4, label="data")
ax_fit.plot(fine, best.predict(fine.reshape(-1, 1)), color="black", label="fit")
stds = np.sqrt(gmm.covariances_.ravel())
for k in range(gmm.n_components):
    mode = gmm.scale_ * gmm.weights_[k] * norm.pdf(np.log(fine), gmm.means_[k, 0], stds[k])
    median = np.exp(gmm.means_[k, 0])
    ax_fit.plot(fine, mode, "--", label=f"mode {k}: median diameter {median:.3g} µm")
ax_fit.set_xscale("log")
ax_fit.set_xlabel("diameter d (µm)")
ax_fit.set_ylabel("dN / dlog d")
ax_fit.legend()
ax_fit.set_title(f"Best pipeline: K = {gmm.n_components}")
plt.show()
