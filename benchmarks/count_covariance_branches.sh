#!/bin/bash
# Lines outside the covariance module (skdensityfit/_model/covariance.py, skdensityfit/_covariance.py
# before the subpackages) that compare covariance_type (or a covariance
# type's name) to choose what to do: issue #26 asks for at most 10.
# usage: benchmarks/count_covariance_branches.sh [REV]   (default: the working tree)
cd "$(dirname "$0")/.."
pattern='(==|!=|\bin|not in) *\(?"(full|tied|diag|spherical)"|(covariance_type|cov_type|cov)\s*(==|!=|in |not in)|MATRIX_TYPES'
if [ -n "$1" ]; then
  git grep -nE "$pattern" "$1" -- 'skdensityfit/*.py' ':!skdensityfit/_covariance.py' ':!skdensityfit/_model/covariance.py'
else
  git grep -nE "$pattern" -- 'skdensityfit/*.py' ':!skdensityfit/_covariance.py' ':!skdensityfit/_model/covariance.py'
fi | grep -v import | tee /dev/stderr | wc -l
