#!/usr/bin/env bash
# The reproduction with confidence intervals: an experiment (default: `default`; `paper` is the
# papers' scale, meant for a GPU: add train=gpu) for seeds 1 to 5, then the aggregate stage
# that tests the claims across them (the seed is the unit of replication: with 5 seeds the
# t-test over seed means has 4 degrees of freedom and the exact sign-flip test reaches 1/32)
# and pools the tables (mean and 95% CI over seeds, S2) with its figures and report.
#
#   scripts/reproduce.sh [EXPERIMENT] [extra pipeline overrides, e.g. mirror=DIR]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
experiment="${1:-default}"
shift || true
bash scripts/setup.sh
.venv/bin/python -m pipeline -m "experiment=$experiment" seed=1,2,3,4,5 "$@"
.venv/bin/python -m pipeline "experiment=$experiment" "stages=[aggregate]" \
  "aggregate.seeds=[1,2,3,4,5]" "$@"
