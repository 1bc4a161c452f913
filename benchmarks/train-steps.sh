#!/usr/bin/env bash
# One training step of the full-size model, on the GPU machine, ours and the seed's reference in one command: the full SFT
# step (issue 15), with gradient checkpointing, and LoRA r 16 on the decoder's projections with and without it (issue 23:
# does a step fit 24 GiB?), then ../shared/tools/ref_train_step.py (the reference's full step); about 5 minutes on an H100.
#   here:  environment/gpu-pack.sh benchmarks/SpatialMllm.Benchmarks/SpatialMllm.Benchmarks.csproj
#   there: run(command: "bash benchmarks/train-steps.sh h100", carry: [".gpu"])   (run-gpu.sh runs it too)
# Writes the parts under $OUT/parts (train-step.json, checkpointing/, lora/, lora-checkpointing/, reference-train-step.json)
# and, alone, the report of those rows ($OUT/<date>-<machine>.md/.json).
set -uo pipefail
machine=${1:-h100}
OUT=${OUT:-/tmp/bench-out}
source .gpu/env.sh || exit 1
source benchmarks/benchmark-app.sh || exit 1
step() { local dir=$1; shift; mkdir -p "$OUT/parts/$dir"; echo "== ours: train-step $*"
  timeout 240 dotnet $B train-step --config .gpu/bench/config.json --out "$OUT/parts/$dir" --runs 5 "$@" || echo "train-step $* failed: exit $?"; }
step . ; step checkpointing --gradient-checkpointing; step lora --lora; step lora-checkpointing --lora --gradient-checkpointing
echo "== reference: ref_train_step.py"
timeout 240 python3 .gpu/tools/ref_train_step.py "$PWD/.gpu/ref" "$PWD/.gpu/bench/config.json" "$(cd "$OUT" && pwd)/parts/reference-train-step.json"  # it changes directory
if [ -z "${TRAIN_STEPS_NO_REPORT:-}" ]; then
  dotnet $B report --out "$OUT/parts" --machine "$machine" --results "$OUT" \
    --command "bash benchmarks/train-steps.sh $machine   # ours (train-step: full, checkpointing, LoRA, LoRA + checkpointing) then ref_train_step.py, same machine"
fi
