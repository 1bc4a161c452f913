#!/usr/bin/env bash
# Makes checkpoints/rooms-tiny from nothing on CPU (README: "A default model that knows rooms"): the tiny architecture
# drawn from a fixed seed, VGGT taught geometry on synthetic scenes, SFT on their questions; then measures it on
# held-out scenes. Writes train.log and evaluation.txt beside the weights. Deterministic on CPU (seeded, trained on one
# libtorch thread: the same weights on any core count).
set -euo pipefail
cd "$(dirname "$0")/.."
bash environment/prerequisites.sh
dotnet build src/SpatialMllm.Cli -c Release -nologo -v q
cli() { dotnet src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll "$@"; }
out=checkpoints/rooms-tiny
mkdir -p "$out"
cli rooms-tiny train --out "$out" --work output/rooms-tiny 2>&1 | tee "$out/train.log"
cli rooms-tiny evaluate --model "$out" --videos output/rooms-tiny-heldout 2>&1 | tee "$out/evaluation.txt"
