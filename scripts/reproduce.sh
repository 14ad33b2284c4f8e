#!/usr/bin/env bash
# The full reproduction: the `paper` experiment (the papers' scale; meant for a GPU, add
# train=gpu) for three seeds, then the seed aggregate with its figures and report.
#
#   scripts/reproduce.sh [extra pipeline overrides, e.g. train=gpu mirror=DIR]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
.venv/bin/python -m pipeline -m experiment=paper seed=1,2,3 "$@"
.venv/bin/python scripts/aggregate.py "${ARTIFACTS_DIR:-$repo/artifacts}" --experiment paper
