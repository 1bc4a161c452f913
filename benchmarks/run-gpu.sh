#!/usr/bin/env bash
# Runs on the GPU machine (repository root, with .gpu/ carried): ours and the Python reference in one command.
#   bash .gpu/bench/run-gpu.sh [machine-name]   (over 10 minutes: in two calls, run its parts and benchmarks/train-steps.sh)
# Expects .gpu/ as environment/gpu-pack.sh leaves it: SpatialMllm.Benchmarks, bench/{config.json, qwen25vl_reference.py}, ref/,
# tools/ref_train_step.py.
# Everything lands under $OUT (parts/*.json, the profile, the merged results <date>-<machine>.md/.json, run.log).
machine=${1:-h100}
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT/parts"
exec > >(tee "$OUT/run.log") 2>&1
source .gpu/env.sh || exit 1
export PYTHONUNBUFFERED=1
source benchmarks/benchmark-app.sh || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm,clocks.max.sm --format=csv
echo "== ours: main"; timeout 200 dotnet $B main --config .gpu/bench/config.json --out "$OUT/parts" --runs 5 --decode-tokens 64 --questions 8
echo "== ours: space-aware sampling"; timeout 120 dotnet $B sampling --out "$OUT/parts" --runs 3 --frames 128
# Parity on the GPU (full-size fixtures, fp32 and bf16) is environment/gpu-tests.sh's; the `fixture` part still runs by hand.
TRAIN_STEPS_NO_REPORT=1 OUT="$OUT" bash benchmarks/train-steps.sh "$machine"
echo "== reference (python)"; timeout 180 python3 .gpu/bench/qwen25vl_reference.py .gpu/bench/config.json --ref "$PWD/.gpu/ref" --runs 5 > "$OUT/parts/reference.json"
cat "$OUT/parts/reference.json"
dotnet $B report --out "$OUT/parts" --reference "$OUT/parts/reference.json" --machine "$machine" --results "$OUT" \
  --command "bash .gpu/bench/run-gpu.sh $machine   # ours (main, sampling, train-step ×4 with LoRA) then ref_train_step.py and python3 qwen25vl_reference.py (the seed's VGGT and connector), same machine"
