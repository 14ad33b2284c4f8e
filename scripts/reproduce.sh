#!/usr/bin/env bash
# The reproduction with confidence intervals: an experiment (default: `default`; `paper` is the
# papers' scale, meant for a GPU: add train=gpu) for seeds 1, 2 and 3, then the aggregate stage
# that pools them (mean and 95% CI over seeds, S2) with its figures and report.
#
#   scripts/reproduce.sh [EXPERIMENT] [extra pipeline overrides, e.g. mirror=DIR]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
experiment="${1:-default}"
shift || true
bash scripts/setup.sh
.venv/bin/python -m pipeline -m "experiment=$experiment" seed=1,2,3 "$@"
.venv/bin/python -m pipeline "experiment=$experiment" "stages=[aggregate]" \
  "aggregate.seeds=[1,2,3]" "$@"
