"""Does a process that compiles the kernel fit as one that loads it from numba's cache?

Run: python benchmarks/check_cache_determinism.py      (about two minutes on 2 cores)

Two fresh Python processes share a new, empty ``NUMBA_CACHE_DIR``: the first compiles the
kernel (and writes the cache), the second loads it. Each runs ``DensityGMMCV`` with its
defaults on every case of ``bench_choose_k.py --family all`` (one process, in order) and
``DensityGMM`` at the true K on the same cases, and prints per case the chosen K and the
fitted parameters' bits. This compares them: the cases whose choice differs, and those whose
fitted parameters differ in any bit.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import hashlib, json, sys, warnings
import numpy as np
sys.path.insert(0, {here!r})
import bench_choose_k
from skdensityfit import DensityGMM, DensityGMMCV
warnings.simplefilter("ignore")
out = {{}}
for case in bench_choose_k.all_cases(families=list(bench_choose_k.FAMILIES)):
    keywords = case.selector_keywords()
    weights = keywords.pop("sample_weight", None)
    fit = {{}} if weights is None else {{"sample_weight": weights}}
    search = DensityGMMCV(
        n_components=case.max_components, loss=case.loss, random_state=case.seed, **keywords
    ).fit(case.grid, case.y, **fit)
    single = DensityGMM(case.true_k, loss=case.loss, random_state=case.seed, **keywords)
    single.fit(case.grid, case.y, **fit)
    digest = hashlib.sha256()
    for model in (search.best_estimator_, single):
        for name in ("weights_", "means_", "covariances_", "scale_"):
            digest.update(np.ascontiguousarray(getattr(model, name), dtype=float).tobytes())
    out[f"{{case.family}} {{case.seed}}"] = [int(search.n_components_), digest.hexdigest()]
print(json.dumps(out))
"""


def run(cache):
    environment = {**os.environ, "NUMBA_CACHE_DIR": cache, "OMP_NUM_THREADS": "1"}
    script = CHILD.format(here=str(HERE))
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    with tempfile.TemporaryDirectory() as cache:
        compiled = run(cache)
        loaded = run(cache)
    choices = [c for c in compiled if compiled[c][0] != loaded[c][0]]
    bits = [c for c in compiled if compiled[c][1] != loaded[c][1]]
    print(f"{len(compiled)} cases; a process that compiled the kernel against one that loaded it")
    print(f"  choices of K that differ: {len(choices)}")
    for c in choices:
        print(f"    {c}: K {compiled[c][0]} compiled, {loaded[c][0]} loaded")
    print(f"  cases whose fitted parameters differ in any bit: {len(bits)}")
    print("  " + ", ".join(bits[:40]) + (" ..." if len(bits) > 40 else ""))
    print("hash of all:", hashlib.sha256(json.dumps(compiled).encode()).hexdigest()[:12])


if __name__ == "__main__":
    main()
