# Sourced by the benchmark scripts on the GPU machine: $B, the benchmark program in .gpu/ — in its own folder, or folded
# into the GPU tests' folder when environment/gpu-pack.sh packed both (they share every other file).
B=$(ls .gpu/SpatialMllm.Benchmarks/SpatialMllm.Benchmarks.dll .gpu/SpatialMllm.Research.GpuTests/SpatialMllm.Benchmarks.dll 2>/dev/null | head -1)
[ -n "$B" ] || { echo "no SpatialMllm.Benchmarks.dll in .gpu/: run environment/gpu-pack.sh here first" >&2; return 1; }
