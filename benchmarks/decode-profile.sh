#!/usr/bin/env bash
# Where a decoded token's time goes (issue 26): the whole bf16 decode step after a 3190-token prompt, the step's GEMVs
# alone on the model's weights (and their bandwidth), gate+up as one GEMV, and the attention alone at the filled length
# and at 4× it — each part a CUDA graph replayed back to back (benchmarks/SpatialMllm.Benchmarks/DecodeProfile.cs).
# About a minute on an H100.
#   here:  environment/gpu-pack.sh
#   there: run(command: "bash benchmarks/decode-profile.sh", carry: [".gpu"])
# Writes $OUT/parts/decode-profile.json; the console lines are the table.
set -uo pipefail
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT/parts"
source .gpu/env.sh || exit 1
source benchmarks/benchmark-app.sh || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
timeout 300 dotnet $B decode-profile --config .gpu/bench/config.json --out "$OUT/parts"
