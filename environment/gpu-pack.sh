#!/usr/bin/env bash
# Here (the CPU machine): prepares .gpu/ for one `device` call that runs environment/gpu-tests.sh and the benchmarks
# (benchmarks/run-gpu.sh). Publishes the GPU tests and the benchmarks (or the projects named) against the GPU machine's
# libtorch (../shared/gpu/pack), drops what only coverage tools and other platforms use, and copies what those scripts
# read there: the seed's reference source, the fixture generators and the Qwen2.5-VL-3B config. What travels must stay
# under 64 MiB (.NET alone is 34), so name the CLI only in a call that needs it.
#   environment/gpu-pack.sh [PROJECT.csproj ...]   then: run(command: "bash environment/gpu-tests.sh", carry: [".gpu"])
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SPATIAL_MLLM_SHARED:-$(cd .. && pwd)/shared}
projects=("$@")
[ ${#projects[@]} -gt 0 ] || projects=(tests/SpatialMllm.Research.GpuTests/SpatialMllm.Research.GpuTests.csproj
                                      benchmarks/SpatialMllm.Benchmarks/SpatialMllm.Benchmarks.csproj)
rm -rf .gpu/SpatialMllm.*
bash "$shared/gpu/pack" "${projects[@]}" >/dev/null
for app in .gpu/SpatialMllm.*/; do
  rm -rf "$app"{CodeCoverage,alpine,arm64,macos,x86,x64,ubuntu,cs,de,es,fr,it,ja,ko,pl,pt-BR,ru,tr,zh-Hans,zh-Hant}
done
# Both apps packed: the benchmark program joins the GPU tests' folder, which holds every other file it needs (the two
# would otherwise carry TorchSharp and its natives twice, over the 64 MiB a call carries with the tiny fixture).
if [ -d .gpu/SpatialMllm.Benchmarks ] && [ -d .gpu/SpatialMllm.Research.GpuTests ]; then
  for f in .gpu/SpatialMllm.Benchmarks/*; do
    case $(basename "$f") in SpatialMllm.Benchmarks*) ;; *) [ -e ".gpu/SpatialMllm.Research.GpuTests/$(basename "$f")" ] || { echo "$f is not in the GPU tests' folder" >&2; exit 1; } ;; esac
  done
  cp .gpu/SpatialMllm.Benchmarks/SpatialMllm.Benchmarks* .gpu/SpatialMllm.Research.GpuTests/
  rm -rf .gpu/SpatialMllm.Benchmarks
fi
# The runtime as .tgz (35 MB) takes the pack over the 64 MiB a call carries; as .tar.xz it is 26 MB.
if [ -f .gpu/dotnet.tgz ]; then
  rm -rf .gpu/dotnet-unpacked && mkdir .gpu/dotnet-unpacked
  tar -C .gpu/dotnet-unpacked -xzf .gpu/dotnet.tgz
  tar -C .gpu/dotnet-unpacked -cf - . | xz -T2 -6 > .gpu/dotnet.tar.xz
  rm -rf .gpu/dotnet-unpacked .gpu/dotnet.tgz
  chmod u+w .gpu/env.sh && sed -i 's/dotnet\.tgz/dotnet.tar.xz/g; s/-xzf/-xJf/' .gpu/env.sh && chmod a-w .gpu/env.sh
fi
rm -rf .gpu/ref .gpu/tools .gpu/bench .gpu/fixtures
cp -r "$shared/reference/spatial-mllm" .gpu/ref
mkdir -p .gpu/tools .gpu/bench
cp "$shared"/tools/*.py "$shared/data/qwen2.5-vl-3b/config.json" .gpu/tools/
cp benchmarks/run-gpu.sh benchmarks/reference/qwen25vl_reference.py benchmarks/reference/grpo_step_reference.py "$shared/data/qwen2.5-vl-3b/config.json" .gpu/bench/
# environment/gpu-fixtures.sh: the generators and the tiny fixture they start from (the GRPO and trainable-VGGT GPU tests
# read it too, as $SPATIAL_MLLM_SHARED/fixtures/spatial-mllm-tiny). Its weights are rebuilt there from its seed
# (environment/gpu-tiny-fixture.sh), and of its training batches only step 0's ids and labels travel: the rest (20 MB)
# would take the call over its carry limit.
rm -rf .gpu/fixtures && mkdir -p .gpu/fixtures/spatial-mllm-tiny
cp environment/fixtures/*.py .gpu/fixtures/
cp "$shared"/fixtures/spatial-mllm-tiny/{config.json,io.json,io.safetensors} .gpu/fixtures/spatial-mllm-tiny/
python3 - "$shared/fixtures/spatial-mllm-tiny/train.safetensors" .gpu/fixtures/spatial-mllm-tiny/train.safetensors <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    data = f.read()
keep, offset, out = {}, 0, b""
for key in ("step0_input_ids", "step0_labels"):
    begin, end = header[key]["data_offsets"]
    keep[key] = dict(header[key], data_offsets=[offset, offset + end - begin])
    out += data[begin:end]; offset += end - begin
head = json.dumps(keep).encode(); head += b" " * (-len(head) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(head)) + head + out)
PY
find .gpu -name __pycache__ -prune -exec rm -rf {} +
du -sh .gpu
