#!/bin/bash
# bench_peers --quick on the previous commit and on the refactored one, in one run
# usage: benchmarks/peers_before_after.sh OLD_TREE NEW_TREE (two checkouts of the package)
cd "$(dirname "$0")/.."
for tree in "$1" "$2"; do
  echo "=== $tree $(git -C $tree rev-parse --short HEAD)"
  PYTHONPATH=$tree timeout 3000 python benchmarks/bench_peers.py --quick
done
