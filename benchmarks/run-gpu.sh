#!/usr/bin/env bash
# Runs on the GPU machine (repository root, with .gpu/ carried): ours and the Python reference in one command.
#   bash .gpu/bench/run-gpu.sh [machine-name]
# Expects .gpu/SpatialMllm.Benchmarks (pack), .gpu/bench/{config.json, qwen25vl_reference.py, spatial-mllm-tiny/,
# ref_train_step.py (../shared/tools)} and the reference source in .gpu/ref (cp -r ../shared/reference/spatial-mllm .gpu/ref).
# Everything lands under $OUT (parts/*.json, the profile, the merged results <date>-<machine>.md/.json, run.log).
machine=${1:-h100}
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT/parts"
exec > >(tee "$OUT/run.log") 2>&1
source .gpu/env.sh || exit 1
export PYTHONUNBUFFERED=1
B=".gpu/SpatialMllm.Benchmarks/SpatialMllm.Benchmarks.dll"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv
echo "== ours: main"; timeout 200 dotnet $B main --config .gpu/bench/config.json --out "$OUT/parts" --runs 5 --decode-tokens 64 --questions 8
echo "== ours: space-aware sampling"; timeout 120 dotnet $B sampling --out "$OUT/parts" --runs 3 --frames 128
echo "== ours: bf16 vs fp32 (tiny fixture)"; timeout 60 dotnet $B fixture --fixture .gpu/bench/spatial-mllm-tiny --out "$OUT/parts"
echo "== ours: one SFT step (issue 15), then the reference's in the same command"
timeout 240 dotnet $B train-step --config .gpu/bench/config.json --out "$OUT/parts" --runs 5
timeout 240 dotnet $B train-step --config .gpu/bench/config.json --out "$OUT/parts/checkpointing" --runs 5 --gradient-checkpointing
timeout 240 python3 .gpu/bench/ref_train_step.py "$PWD/.gpu/ref" .gpu/bench/config.json "$OUT/parts/reference-train-step.json"
echo "== reference (python)"; timeout 180 python3 .gpu/bench/qwen25vl_reference.py .gpu/bench/config.json --runs 5 --profile "$OUT/parts" > "$OUT/parts/reference.json"
cat "$OUT/parts/reference.json"
dotnet $B report --out "$OUT/parts" --reference "$OUT/parts/reference.json" --machine "$machine" --results "$OUT" \
  --command "bash .gpu/bench/run-gpu.sh $machine   # ours (main, sampling, fixture) then python3 qwen25vl_reference.py, same machine"
