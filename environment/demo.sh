#!/usr/bin/env bash
# The main job on its embedded default (README): the tiny random-weight checkpoint in checkpoints/tiny and a
# synthetic video, made if absent, then one question answered on CPU with the time of each stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash environment/prerequisites.sh
dotnet run --project src/SpatialMllm.Cli -c Release -- demo "$@"
