#!/usr/bin/env bash
# A short check of the whole pipeline on a GPU: experiment=paper_lite (the papers' settings,
# few updates) through every stage on CUDA, writing to $OUT the stage times, tokens/s per
# model, the GPU memory peak, the report and the claims.
#
# On the device machine (Python 3.12 with CUDA torch, no fairseq or Hydra, no registry):
#   scripts/build_wheelhouse.sh here first, then carry .whl and the data mirror (data/, a copy
#   of ../shared/data, 12 MB) and run
#     bash scripts/device_check.sh
#   It installs the wheels into /tmp/site, builds fairseq-fixed from its sdist against the
#   machine's torch, and runs with numpy 2 (a sitecustomize gives fairseq the np.compat.long
#   it still reads).
# Here (CPU, the project's .venv), as a test of the script itself:
#     bash scripts/device_check.sh --local    # experiment=smoke on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
OUT="${OUT:-$repo/device_out}"
mkdir -p "$OUT"
if [ "${1:-}" = "--local" ]; then
  py="$repo/.venv/bin/python"; experiment=smoke; device=cpu
  mirror="${PIPELINE_MIRROR:-$repo/../shared/data}"
else
  site=/tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --target "$site" .whl/*.tar.gz  # antlr4 and fairseq-fixed, built against this torch
  cat > "$site/sitecustomize.py" <<'PY'
import numpy as np  # fairseq 0.12 reads np.compat.long, gone in numpy 2
if not hasattr(np, "compat"):
    import types
    np.compat = types.SimpleNamespace(long=np.int64)
PY
  export PYTHONPATH="$site:$repo"
  py=python3; experiment=paper_lite; device=cuda
  mirror="${PIPELINE_MIRROR:-$repo/data}"
fi
art="$OUT/artifacts"
memlog="$OUT/gpu_memory.csv"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 500 > "$memlog" &
  smi=$!
  trap 'kill $smi 2>/dev/null || true' EXIT
fi
start=$(date +%s)
PYTHONUNBUFFERED=1 "$py" -m pipeline "experiment=$experiment" "train.device=$device" \
  "artifacts_dir=$art" "mirror=$mirror" 2>&1 | tee "$OUT/pipeline.log"
end=$(date +%s)
"$py" - "$art/$experiment" "$OUT" "$((end - start))" "$memlog" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
root, out, total, memlog = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rows, speed = [], []
for done in sorted(root.glob("*/**/.done.json")):
    rec = json.loads(done.read_text())
    rows.append({"stage": rec["stage"], "model": rec.get("model") or "", "seconds": rec["seconds"]})
    if rec["stage"] == "train":
        table = pd.read_csv(done.parent / "checkpoints.csv")
        speed.append({"model": rec["model"], "tokens": int(table.tokens_seen.max()),
                      "seconds": rec["seconds"],
                      "tokens_per_s": round(table.tokens_seen.max() / rec["seconds"])})
times = pd.DataFrame(rows)
times.to_csv(out / "stage_times.csv", index=False)
pd.DataFrame(speed).to_csv(out / "tokens_per_s.csv", index=False)
peak = None
if Path(memlog).is_file() and Path(memlog).stat().st_size:
    peak = max(int(line.split(",")[1].split()[0]) for line in open(memlog) if "," in line)
summary = {"total_s": total, "gpu_memory_peak_mib": peak,
           "stage_seconds": times.groupby("stage").seconds.sum().round(1).to_dict()}
(out / "summary.json").write_text(json.dumps(summary, indent=1))
for name in ("report.html", "report.md"):
    found = sorted(root.glob(f"plot/*/{name}"))
    if found:
        (out / name).write_bytes(found[-1].read_bytes())
claims = sorted(root.glob("analyze/*/tables/answer.csv"))
if claims:
    (out / "answer.csv").write_bytes(claims[-1].read_bytes())
print(json.dumps(summary, indent=1))
PY
rm -rf "$art"  # the artifacts stay behind; $OUT keeps the numbers and the report
