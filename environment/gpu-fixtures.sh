#!/usr/bin/env bash
# The reference fixtures of the training parity tests, made on the GPU machine (its PyTorch runs the seed's reference on
# the CPU, float32); about a minute. Here: environment/gpu-pack.sh; there, e.g. in the same call as the GPU tests:
#   run(command: "bash environment/gpu-fixtures.sh && bash environment/gpu-tests.sh", carry: [".gpu"])
# Writes $OUT/fixtures/grpo/grpo.{safetensors,json} (GrpoFixtureTests) and $OUT/fixtures/vggt-train/vggt_train.{safetensors,json}
# (VggtTrainingTests, VggtTrainingGpuTests): copy both folders into tests/fixtures/ and commit them.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-fixtures-out}
F=$PWD/.gpu/fixtures; TINY=$F/spatial-mllm-tiny
mkdir -p "$OUT/fixtures"
status=0
bash environment/gpu-tiny-fixture.sh || exit 1
python3 "$F/make_grpo_fixture.py" "$PWD/.gpu/ref" "$PWD/.gpu/tools" "$OUT/fixtures/grpo" "$TINY" > "$OUT/fixtures/grpo.log" 2>&1 || status=1
tail -3 "$OUT/fixtures/grpo.log"
python3 "$F/make_vggt_train_fixture.py" "$PWD/.gpu/ref" "$PWD/.gpu/tools" "$OUT/fixtures/vggt-train" --tiny "$TINY" > "$OUT/fixtures/vggt-train.log" 2>&1 || status=1
tail -3 "$OUT/fixtures/vggt-train.log"
# The GPU tests in the same call read them where the CPU tests do.
mkdir -p tests/fixtures && cp -r "$OUT/fixtures/grpo" "$OUT/fixtures/vggt-train" tests/fixtures/ 2>/dev/null
exit $status
