#!/usr/bin/env bash
# A change's effect on speed: the benchmark's `main` part for this build and for an earlier one, alternately on one GPU
# (new, old, new, old), so that clocks and the machine's state weigh on both alike; then the medians side by side.
#   here:  environment/gpu-pack.sh benchmarks/SpatialMllm.Benchmarks/SpatialMllm.Benchmarks.csproj, then the earlier
#          commit's SpatialMllm.Research.dll and SpatialMllm.Benchmarks.dll (built at that commit, Release) in .gpu/baseline/
#   there: run(command: "bash benchmarks/compare-builds.sh LABEL", carry: [".gpu"])   (2.6 minutes on an H100)
# Writes $OUT/compare-<LABEL>.md and the parts' JSON under $OUT/compare/.
# ROUNDS=N: N rounds of each build (default 2).
set -uo pipefail
label=${1:-baseline}
OUT=${OUT:-/tmp/compare-out}
source .gpu/env.sh || exit 1
source benchmarks/benchmark-app.sh || exit 1
new=$(dirname "$B"); old=/tmp/baseline-benchmarks
rm -rf $old && cp -r $new $old && cp .gpu/baseline/*.dll $old/ || exit 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for build in new old; do
    dir="$OUT/compare/$build-$round"; mkdir -p "$dir"
    app=$new; [ $build = old ] && app=$old
    timeout 140 dotnet $app/SpatialMllm.Benchmarks.dll main --config .gpu/bench/config.json --out "$dir" --runs 5 --decode-tokens 64 --questions 8 \
      > "$dir/main.log" 2>&1 || echo "$build round $round: exit $?"
  done
done
python3 - "$OUT/compare" "$label" "$(cat "$OUT/gpu.txt")" > "$OUT/compare-$label.md" <<'PY'
import glob, json, os, statistics, sys
root, label, gpu = sys.argv[1:]
runs = {b: [json.load(open(p)) for p in sorted(glob.glob(f"{root}/{b}-*/main.json"))] for b in ("new", "old")}
stages = ["vision_tower", "vggt_aggregator", "connector", "decoder_prefill", "decode_per_token", "decode_per_token_scripted", "whole_sample"]
print(f"# This build vs {label}: the benchmark's main part, alternately on one GPU\n\nGPU: {gpu}. Full-size bf16, 16 frames 476×644;")
print("each cell: the median over rounds of each round's median of 5 runs (rounds: " + ", ".join(f"{b} {len(r)}" for b, r in runs.items()) + ").\n")
print(f"| stage | this build (ms) | {label} (ms) | ratio |\n|---|---:|---:|---:|")
for s in stages:
    v = {b: [r["stages"][s]["ms"] for r in rs if s in r.get("stages", {})] for b, rs in runs.items()}
    if not v["new"] or not v["old"]: continue
    n, o = statistics.median(v["new"]), statistics.median(v["old"])
    print(f"| {s} | {n:.2f} | {o:.2f} | {n / o:.3f} |")
for b, rs in runs.items():
    for r in rs:
        print(f"\n{b}: graph tokens equal eager {r.get('decode_graph_equals_eager_tokens')}/{r.get('decode_tokens_compared')}, "
              f"evaluate cached {r.get('evaluate', {}).get('cached', {}).get('ms')} ms")
PY
cat "$OUT/compare-$label.md"
