#!/usr/bin/env bash
# The wheelhouse for the GPU device machine (scripts/device_check.sh): what its Python 3.12
# lacks, for x86-64 Linux, into .whl/ (ignored by git): wheels where PyPI has them, sdists for
# fairseq-fixed (built there against that machine's own torch) and antlr4 (pure Python). About
# 13 MB. Run it here, where PyPI is reachable; the device machine reaches no registry.
#
#   scripts/build_wheelhouse.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.whl}"
mkdir -p "$dir"
pip=(python3 -m pip download --quiet --no-deps -d "$dir")
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do platforms+=(--platform "$p"); done
"${pip[@]}" --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  hydra-core==1.3.2 omegaconf==2.3.0 bitarray==3.12.3 nltk==3.10.4 conllu==6.0.0
# sdists, their metadata prepared by the project's venv (it has the build deps fairseq needs)
.venv/bin/python -m pip download --quiet --no-deps --no-binary=:all: --no-build-isolation \
  -d "$dir" antlr4-python3-runtime==4.9.3 fairseq-fixed==0.12.3.1
ls -l "$dir"
du -sh "$dir"
