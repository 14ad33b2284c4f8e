#!/usr/bin/env bash
# Create .venv and install the pinned stack in the one order that works:
# torch from the local CPU wheel, numpy<2 and build deps, fairseq-fixed built against that torch
# without build isolation or deps (no torchaudio), eflomal against that numpy, then the rest.
# Idempotent: a stamp holding the hash of this script and the requirement files makes a second
# run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
stamp="$VENV/.setup-stamp"
want=$(cat scripts/setup.sh requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)-$DEV
if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$want" ] || { [ $DEV = 0 ] && [ "$(cat "$stamp")" = "${want%-0}-1" ]; }; }; then
  exit 0
fi
echo "setup: installing into $VENV (a few minutes the first time)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --quiet)
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" "numpy==1.26.4" "cython==3.3.1" setuptools wheel
"$VENV/bin/python" -c "import fairseq" 2>/dev/null \
  || "${pip[@]}" --no-build-isolation --no-deps "fairseq-fixed==0.12.3.1"
# eflomal (the translate stage's word aligner) is an sdist with a Cython extension and a C
# binary: built against the numpy and Cython above (needs a C compiler)
"${pip[@]}" --no-build-isolation --no-deps "eflomal==2.0.0"
"${pip[@]}" -r requirements.txt
[ $DEV = 1 ] && "${pip[@]}" -r requirements-dev.txt
"${pip[@]}" --no-deps -e .
echo "$want" > "$stamp"
