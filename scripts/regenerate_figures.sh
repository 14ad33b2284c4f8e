#!/usr/bin/env bash
# Redraw every figure and report from the analyze tables already on disk: for each experiment
# under the artifacts dir with a finished analyze stage, `python -m pipeline experiment=E
# stages=[plot]` (the plot stage reads tables only, so this takes seconds per experiment).
#
#   scripts/regenerate_figures.sh [ARTIFACTS_DIR] [extra pipeline overrides...]
#
# ARTIFACTS_DIR defaults to $ARTIFACTS_DIR or artifacts/ in the repository. Extra arguments are
# passed to every run, e.g. force=[plot] to redraw figures that are cached already. Runs with
# another seed need the same override they were made with (seed=2).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
artifacts="${1:-${ARTIFACTS_DIR:-$repo/artifacts}}"
shift || true
python="${PYTHON:-$repo/.venv/bin/python}"
artifacts="$(cd "$artifacts" && pwd)"
found=0
for analyze in "$artifacts"/*/analyze; do
  [ -d "$analyze" ] || continue
  experiment="$(basename "$(dirname "$analyze")")"
  if ! compgen -G "$analyze/*/.done.json" > /dev/null; then
    echo "skip $experiment: no finished analyze stage in $analyze" >&2
    continue
  fi
  if [ ! -f "$repo/conf/experiment/$experiment.yaml" ]; then
    echo "skip $experiment: no conf/experiment/$experiment.yaml" >&2
    continue
  fi
  found=1
  echo "== $experiment"
  (cd "$repo" && "$python" -m pipeline "experiment=$experiment" "stages=[plot]" \
     "artifacts_dir=$artifacts" "$@")
done
if [ "$found" = 0 ]; then
  echo "no experiment with a finished analyze stage under $artifacts" >&2
  exit 1
fi
