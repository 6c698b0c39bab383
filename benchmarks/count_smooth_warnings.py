"""How many of ``bench_choose_k``'s cases get the "read as smooth noise" warning.

Run: python benchmarks/count_smooth_warnings.py      (about a minute)

``DensityGMMCV`` with each case's candidates, loss, background, bins and weights, as
``bench_choose_k`` runs it; prints the count a family and the cases (none should: their
lines are within the candidates).
"""

import collections
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_choose_k

from skdensityfit import DensityGMMCV


def main():
    counts, cases = collections.Counter(), []
    for case in bench_choose_k.all_cases(families=list(bench_choose_k.FAMILIES)):
        keywords = case.selector_keywords()
        weights = keywords.pop("sample_weight", None)
        fit = {} if weights is None else {"sample_weight": weights}
        search = DensityGMMCV(
            n_components=case.max_components, loss=case.loss, random_state=case.seed, **keywords
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            search.fit(case.grid, case.y, **fit)
        if any("read as smooth noise" in str(w.message) for w in caught):
            counts[case.family] += 1
            cases.append(f"{case.family} {case.seed}: K = {search.n_components_}")
    print(f"'read as smooth noise' on {sum(counts.values())} cases: {dict(counts)}")
    print("\n".join(cases))


if __name__ == "__main__":
    main()
