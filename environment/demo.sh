#!/usr/bin/env bash
# The main job on its default (README): checkpoints/rooms-tiny, committed and trained on synthetic rooms by
# environment/train-rooms-tiny.sh, answers one question of each type about a room it never saw, on CPU, each answer
# beside its ground truth. `--model checkpoints/tiny` runs the random-weight tiny checkpoint (made if absent).
set -euo pipefail
cd "$(dirname "$0")/.."
bash environment/prerequisites.sh
dotnet run --project src/SpatialMllm.Cli -c Release -- demo "$@"
