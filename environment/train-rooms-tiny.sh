#!/usr/bin/env bash
# Makes checkpoints/rooms-tiny from nothing (README: "A default model that knows rooms"): the tiny architecture drawn
# from a fixed seed, VGGT taught geometry on synthetic scenes, SFT on their questions; then measures it on held-out
# scenes. Writes train.log and evaluation.txt beside the weights. On the CPU (the default) deterministic: seeded, trained
# on one libtorch thread, the same weights on any core count. On a GPU (float32) in minutes, its weights differing from
# the CPU's in the last bits:
#   environment/train-rooms-tiny.sh [rooms-tiny train options]      e.g. --device cuda --sft-batch 32 --sft-accumulation 1
#   SPATIAL_MLLM_DEVICE=cuda environment/train-rooms-tiny.sh        the same as --device cuda
# (a CUDA device builds the CLI against libtorch for CUDA: -p:TorchBackend=cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
device=${SPATIAL_MLLM_DEVICE:-cpu}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --device) device=${args[i + 1]:-} ;;
    --device=*) device=${args[i]#--device=} ;;
  esac
done
# --device once: the environment's, unless the options name one.
[[ " $* " == *" --device"* ]] || args=(--device "$device" "${args[@]}")
backend=cpu
[[ "$device" == cuda* ]] && backend=cuda
bash environment/prerequisites.sh
dotnet build src/SpatialMllm.Cli -c Release -nologo -v q -p:TorchBackend=$backend
cli() { dotnet src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll "$@"; }
out=checkpoints/rooms-tiny
mkdir -p "$out"
cli rooms-tiny train --out "$out" --work output/rooms-tiny "${args[@]}" 2>&1 | tee "$out/train.log"
cli rooms-tiny evaluate --model "$out" --videos output/rooms-tiny-heldout --device "$device" 2>&1 | tee "$out/evaluation.txt"
