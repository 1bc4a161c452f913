#!/usr/bin/env bash
# One full-size GRPO step (issue 24: K = 8 completions of 64 tokens on 16 frames at 476×644), ours (the benchmark's
# grpo-step part) then the Python baseline (reference/grpo_step_reference.py: transformers rollouts + TRL's loss), in one
# command on the GPU machine; about 3 minutes on an H100.
#   here:  environment/gpu-pack.sh benchmarks/SpatialMllm.Benchmarks/SpatialMllm.Benchmarks.csproj
#   there: run(command: "bash benchmarks/grpo-step.sh", carry: [".gpu"])
# Writes $OUT/parts/grpo-step.json, $OUT/parts/reference-grpo-step.json and $OUT/grpo-step.md (the table).
set -uo pipefail
OUT=${OUT:-/tmp/bench-out}
mkdir -p "$OUT/parts"
source .gpu/env.sh || exit 1
export PYTHONUNBUFFERED=1
echo "== ours: grpo-step"
source benchmarks/benchmark-app.sh || exit 1
timeout 300 dotnet $B grpo-step --config .gpu/bench/config.json --out "$OUT/parts" --runs 3 \
  || echo "grpo-step failed: exit $?"
echo "== baseline: grpo_step_reference.py"
timeout 300 python3 .gpu/bench/grpo_step_reference.py .gpu/bench/config.json --ref "$PWD/.gpu/ref" --runs 3 > "$OUT/parts/reference-grpo-step.json" \
  || echo "grpo_step_reference.py failed: exit $?"
python3 - "$OUT/parts/grpo-step.json" "$OUT/parts/reference-grpo-step.json" > "$OUT/grpo-step.md" <<'PY'
import json, os, sys
ours = json.load(open(sys.argv[1])) if os.path.exists(sys.argv[1]) else {}
ref = json.load(open(sys.argv[2])) if os.path.exists(sys.argv[2]) and os.path.getsize(sys.argv[2]) else {}
step = ours.get("step", {})
print(f"# One full-size GRPO step: ours vs the transformers/TRL baseline\n\nGPU: {ours.get('gpu') or ref.get('gpu')}; baseline torch {ref.get('torch')}.")
def spec(key):
    return ours.get(key, ref.get(key))
print(f"K = {spec('completions')} completions of {spec('completion_tokens')} tokens, prompt {spec('prompt_tokens')} tokens "
      f"(16 frames 476×644), beta {spec('beta')}, the seed's trainable set, bf16; ours runs the prompt once for the K completions, the baseline K full sequences with gradient checkpointing; median of 3 after a warm-up.\n")
if not ours:
    print("**Ours did not run** (see the log).\n")
print("| part | ours (ms) | baseline (ms) | ratio |\n|---|---:|---:|---:|")
rows = [("whole step", step.get("ms"), ref.get("step_ms")), ("rollout", ours.get("rollout_ms"), ref.get("rollout_ms")),
        ("rollout: of which encoding (vision + VGGT)", ours.get("rollout_encode_ms"), None),
        ("reference log-probs", ours.get("reference_ms"), ref.get("reference_ms")),
        ("policy log-probs + loss + backward + AdamW", ours.get("policy_update_ms"), ref.get("policy_update_ms"))]
for name, a, b in rows:
    ratio = f"{a / b:.3f}" if a and b else "—"
    print(f"| {name} | {'—' if a is None else f'{a:.0f}'} | {'—' if b is None else f'{b:.0f}'} | {ratio} |")
print(f"\nPeak memory: ours {step.get('peak_gib')} GiB (NVML); baseline max_memory_reserved {ref.get('peak_reserved_gib')} GiB, NVML {ref.get('peak_nvml_gib')} GiB.")
print("Parts: medians over the measured steps, both sides.")
PY
cat "$OUT/grpo-step.md"
