#!/usr/bin/env bash
# Packs the library as a NuGet package into a local feed folder (default: artifacts/packages).
# Usage: build/pack.sh [FEED] [-p:TorchBackend=cuda] [-p:PackageVersion=0.1.1]
# Bump the version on every repack that should reach a machine which already restored this version: NuGet caches by id + version.
set -euo pipefail
cd "$(dirname "$0")/.."
feed=artifacts/packages
if [ $# -gt 0 ] && [[ $1 != -* ]]; then feed=$1; shift; fi
dotnet pack src/SpatialMllm.Research -c Release -nologo -v q -o "$feed" "$@"
ls "$feed"/SpatialMllm.Research.*.nupkg
