"""Right K per family in runs of the second independent reviewer's generators, side by side.

Run: python benchmarks/compare_reviewer2.py BEFORE.jsonl AFTER.jsonl [MORE.jsonl ...]

Each file is the output of the reviewer's ``run.py`` (its generators and runner live outside
this repository, in the reviewer's folder: ``cd /work/review2 && PYTHONPATH=<checkout> python
run.py LABEL OUT.jsonl FAMILIES SEED_START SEED_STOP``). Prints, per family of the last
file, the right K and the number off by more than one in every file, the last file's final
noise kinds and errors, and the cases right in the first file and wrong in the last.
"""

import json
import sys


def load(path):
    rows = {}
    with open(path) as handle:
        for line in handle:
            record = json.loads(line)
            rows[(record["family"], record["seed"])] = record
    return rows


def main(paths):
    runs = [load(path) for path in paths]
    first, last = runs[0], runs[-1]
    families = list(dict.fromkeys(family for family, _ in last))
    print(f"{'family':18s}   n  right {'/'.join('ABCDEFG'[: len(runs)])}  off>1  het  corr  err")
    totals = [0] * len(runs)
    for family in families:
        keys = [key for key in last if key[0] == family]
        right = [sum(run[k]["K"] == run[k]["K_true"] for k in keys) for run in runs]
        off = [
            sum(run[k]["K"] is not None and abs(run[k]["K"] - run[k]["K_true"]) > 1 for k in keys)
            for run in runs
        ]
        het = sum(last[k]["kind"] == "heteroscedastic" for k in keys)
        corr = sum(last[k]["kind"] == "correlated" for k in keys)
        errors = sum(bool(last[k]["error"]) for k in keys)
        totals = [t + r for t, r in zip(totals, right, strict=True)]
        print(
            f"{family:18s} {len(keys):3d}  {'/'.join(map(str, right)):>9s}  "
            f"{'/'.join(map(str, off)):>7s} {het:4d} {corr:5d} {errors:4d}"
        )
    print("right in all families:", " / ".join(map(str, totals)), f"of {len(last)}")
    worse = [
        (key, last[key]["K_true"], first[key]["K"], last[key]["K"], last[key]["kind"])
        for key in last
        if key in first
        and first[key]["K"] == first[key]["K_true"]
        and last[key]["K"] != last[key]["K_true"]
    ]
    print(f"right in the first, wrong in the last: {len(worse)}")
    for case in worse:
        print("  ", case)


if __name__ == "__main__":
    main(sys.argv[1:])
