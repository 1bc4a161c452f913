#!/usr/bin/env bash
# The test command (README): prerequisites, then every test of the solution in Release, then one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash environment/prerequisites.sh
log=$(mktemp)
set +e
dotnet test SpatialMllm.Research.sln -c Release "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# dotnet test prints one "Passed!|Failed!|Skipped! - Failed: F, Passed: P, Skipped: S, Total: T" line per test assembly;
# "Skipped!" when every test of the assembly skipped (the GPU tests on a machine without CUDA).
awk -F'[:,]' '/(Passed|Failed|Skipped)! *- *Failed:/ { f += $2; p += $4; s += $6 } END { printf "Tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
