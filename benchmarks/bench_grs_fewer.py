"""The GRS spectra where DensityGMMCV chooses fewer lines than GaussPy+ with a worse BIC.

Run: python benchmarks/bench_grs_fewer.py      (a few seconds)

``bench_real_spectra.py`` counts the spectra of ``tests/data/grs_13co_10x10.npz`` where
``DensityGMMCV()`` chooses fewer components than GaussPy+ while GaussPy+'s decomposition has
the lower BIC under GaussPy+'s own (white) noise estimate. For each such spectrum this prints
the noise model ``DensityGMMCV`` chose, its criterion at each K (``cv_results_``'s mean test
score: minus half the BIC), and chi^2 / sigma^2 (GaussPy+'s sigma) of ``DensityGMM(K,
n_init=20)`` at our K and at GaussPy+'s K next to GaussPy+'s own fit: whether the search missed
a fit as good as GaussPy+'s (a local optimum), or the two noise models disagree about a fit both
have.
"""

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_real_spectra as real

from skdensityfit import DensityGMM, DensityGMMCV

SPECTRA = (37, 46, 50, 70, 97)  # bench_real_spectra.py's list at commit 026146e


def main():
    warnings.simplefilter("ignore")
    spectra, reference = real.load()
    for i in [int(a) for a in sys.argv[1:]] or SPECTRA:
        y = spectra[i]
        kept = np.isfinite(y)
        x, y = np.flatnonzero(kept).astype(float), y[kept]
        sigma = reference["noise"][i]
        ref_model, ref_k = real.reference_model(reference, i, x)
        search = DensityGMMCV(n_components=real.MAX_COMPONENTS, random_state=0).fit(x, y)
        ours = search.n_components_
        scores = search.cv_results_["mean_test_score"]
        print(
            f"spectrum {i}: GaussPy+ K = {ref_k}, ours {ours} ({search.noise_['kind']} noise); "
            "-BIC/2 at K = 1..: " + " ".join(f"{v:.1f}" for v in scores)
        )
        chi2 = {}
        for k in sorted({ours, ref_k}):
            fit = DensityGMM(k, n_init=20, random_state=0).fit(x, y)
            chi2[k] = np.sum((y - fit.predict_density(x)) ** 2) / sigma**2
        gausspy = np.sum((y - ref_model) ** 2) / sigma**2
        print(
            "  chi^2/sigma^2: "
            + ", ".join(f"ours at K = {k} {v:.1f}" for k, v in chi2.items())
            + f", GaussPy+'s fit {gausspy:.1f}"
        )


if __name__ == "__main__":
    main()
