#!/usr/bin/env bash
# The GPU tests, on the GPU machine, in one `device` call (about 8 minutes on an H200):
#   here:  environment/gpu-pack.sh
#   there: run(command: "bash environment/gpu-tests.sh", carry: [".gpu"])
# 1. makes two full-size fixtures with the seed's reference (../shared/tools/make_fullsize_fixture.py: Qwen2.5-VL-3B +
#    VGGT-1B + connector, random bf16 weights in the released sharded layout, float32 outputs on CUDA with TF32 off) at
#    16 frames 476×644 and 12 frames 644×476 (portrait), with the reference's own noise floor (--noise-floor, and
#    environment/reference_decoder_noise.py for the logits: its decoder with eager vs SDPA attention);
# 2. runs tests/SpatialMllm.Research.GpuTests against them: every tensor in float32, bf16 against the reference's own
#    bf16 error, the fused kernels against eager, CUDA-graph / TorchScript / eager decode over 32 steps, graph reuse.
# Writes $OUT/gpu-tests.log and $OUT/gpu-tests-report.md (the tables); last line "N passed, N failed".
# GPU_TESTS_QUICK=1: the first fixture only, without the decoder's noise yardstick (for a short device call, with
# e.g. GPU_TESTS_XUNIT="-class SpatialMllm.Research.GpuTests.DecodeGpuTests"; the float32 parity test needs both).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-tests-out}
FIXTURES=${FIXTURES:-/tmp/spatial-mllm-fullsize}
mkdir -p "$OUT" "$FIXTURES"
exec > >(tee "$OUT/gpu-tests.log") 2>&1
source .gpu/env.sh || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

# The generator's --noise-floor runs VGGT's global attention in float32 with the math kernel (37.6 GiB on top of the 64 GiB
# the reference holds): it fits an H200, not an H100. On a smaller card the encoders' noise is the one recorded on an H200
# (environment/reference-noise/NAME.json, same fixtures and seeds); the decoder's is measured here either way.
gpu_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
# make_fixture NAME SEED [generator options]: the fixture and reference-noise.json (the --noise-floor lines as JSON)
make_fixture() {
  local dir="$FIXTURES/$1" name=$1 seed=$2; shift 2
  if [ ! -f "$dir/reference-noise.json" ] && [ "${gpu_mib:-0}" -lt 100000 ]; then
    echo "$name: ${gpu_mib} MiB is too little for the reference's --noise-floor: the encoders' noise recorded on an H200"
    python3 .gpu/tools/make_fullsize_fixture.py "$PWD/.gpu/ref" "$PWD/.gpu/tools/config.json" "$dir" "$seed" "$@" | tee "$dir.log" || return 1
    cp "environment/reference-noise/$name.json" "$dir/reference-noise.json" || return 1
    [ -n "${GPU_TESTS_QUICK:-}" ] || python3 environment/reference_decoder_noise.py "$dir" .gpu/tools/config.json || return 1
  elif [ ! -f "$dir/reference-noise.json" ]; then
    python3 .gpu/tools/make_fullsize_fixture.py "$PWD/.gpu/ref" "$PWD/.gpu/tools/config.json" "$dir" "$seed" "$@" --noise-floor \
      | tee "$dir.log" || return 1
    python3 - "$dir.log" "$dir/reference-noise.json" <<'PY'
import json, re, sys
noise = {"fp32_math": {}, "bf16": {}}
for line in open(sys.argv[1]):
    m = re.search(r"(noise floor fp32, math attention|reference bf16 vs fp32): (\w+)\s+max abs (\S+)\s+max rel (\S+)", line)
    if m:
        noise["fp32_math" if m.group(1).startswith("noise") else "bf16"][m.group(2)] = float(m.group(4))
json.dump(noise, open(sys.argv[2], "w"), indent=1)
print("reference noise:", json.dumps(noise))
PY
    [ -n "${GPU_TESTS_QUICK:-}" ] || python3 environment/reference_decoder_noise.py "$dir" .gpu/tools/config.json || return 1
  fi
  fixtures="${fixtures:+$fixtures:}$dir"
}
fixtures=""
bash environment/gpu-tiny-fixture.sh || { echo "0 passed, 1 failed"; exit 1; }
make_fixture t16-476x644 4242 || { echo "0 passed, 1 failed"; exit 1; }
[ -n "${GPU_TESTS_QUICK:-}" ] || make_fixture t12-644x476 777 --frames 12 --hw 644 476 || { echo "0 passed, 1 failed"; exit 1; }

# VggtTrainingGpuTests read the tiny fixture that environment/gpu-pack.sh carries in .gpu/fixtures.
export SPATIAL_MLLM_FULLSIZE_FIXTURES="$fixtures" GPU_TESTS_REPORT="$OUT/gpu-tests-report.md" SPATIAL_MLLM_SHARED=${SPATIAL_MLLM_SHARED:-$PWD/.gpu}
: > "$GPU_TESTS_REPORT"
dotnet .gpu/SpatialMllm.Research.GpuTests/SpatialMllm.Research.GpuTests.dll -parallel none -noColor -reporter verbose ${GPU_TESTS_XUNIT:-} \
  | tee /tmp/gpu-tests-xunit.log
status=${PIPESTATUS[0]}
# xunit v3: "   SpatialMllm.Research.GpuTests  Total: 14, Errors: 0, Failed: 0, Skipped: 0, Not Run: 0, Time: …"
awk -F'[:,]' '/Total: [0-9]+, Errors:/ { t = $2; e = $4; f = $6; s = $8 } END { printf "%d passed, %d failed, %d skipped\n", t - e - f - s, f + e, s }' /tmp/gpu-tests-xunit.log
exit "$status"
