#!/usr/bin/env bash
# Issue 17: `evaluate --sampler space-aware` with the decode-ahead pipeline on a GPU. Uncached space-aware selections
# run VGGT (with its point head) on a decode worker thread while the main thread encodes and answers the previous
# video under the CUDA graph; this checks that the two share the device correctly: the run with prefetching and an
# empty selection cache must give the same answers, id for id, as a run in line (--prefetch-videos 0) that reads the
# selections the first run cached. A few VSI-Bench-shaped videos, full-size random weights.
# On the GPU machine (the CLI published to .gpu/SpatialMllm.Cli, a checkpoint with its tokenizer in MODEL, a static
# ffmpeg in SPATIAL_MLLM_FFMPEG/_FFPROBE):  MODEL=/tmp/mgpu-model OUT=$OUT bash benchmarks/space-aware-evaluate-check.sh
# On CPU with the tiny checkpoint:           MODE=cpu OUT=/tmp/sa-check bash benchmarks/space-aware-evaluate-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-gpu}
OUT=${OUT:-/tmp/space-aware-check}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT" "$work/data/scannet"
ffmpeg_bin=${SPATIAL_MLLM_FFMPEG:-ffmpeg}
if [ "$MODE" = gpu ]; then
  [ -f .gpu/env.sh ] && source .gpu/env.sh
  CLI=${CLI:-"dotnet .gpu/SpatialMllm.Cli/spatial-mllm.dll"} DEVICE=cuda:0 SIZE=640x480 SECONDS_LONG=20 VIDEOS=${VIDEOS:-6}
else
  CLI=${CLI:-"dotnet src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll"} DEVICE=cpu SIZE=160x120 SECONDS_LONG=4 VIDEOS=${VIDEOS:-3}
  MODEL=${MODEL:-checkpoints/tiny}
  [ -f "$MODEL/config.json" ] || $CLI demo --model "$MODEL" --max-new-tokens 1 >/dev/null
fi
: "${MODEL:?MODEL: a checkpoint folder}"
questions=(
  '"question_type": "object_counting", "question": "How many chair(s) are in this room?", "options": null, "ground_truth": "3"'
  '"question_type": "object_rel_direction_easy", "question": "If I am standing by the sofa and facing the tv, is the lamp to my left or right?", "options": ["A. left", "B. right"], "ground_truth": "A"'
  '"question_type": "room_size_estimation", "question": "What is the size of this room (in square meters)?", "options": null, "ground_truth": "18.5"'
)
for v in $(seq 0 $((VIDEOS - 1))); do
  "$ffmpeg_bin" -v error -y -f lavfi -i "testsrc2=s=$SIZE:r=24,hue=h=$((v * 47 % 360))" -t "$SECONDS_LONG" -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$work/data/scannet/scene$v.mp4"
  for q in 0 1 2; do
    echo "{\"id\": $((10 * v + q)), \"dataset\": \"scannet\", \"scene_name\": \"scene$v\", ${questions[$q]}, \"pruned\": false}" >> "$work/data/test.jsonl"
  done
done
export XDG_CACHE_HOME=$work/cache   # an empty selection cache: the first run computes every selection
common=(evaluate vsibench --model "$MODEL" --data "$work/data" --sampler space-aware --frames 16 --max-new-tokens 4 --device "$DEVICE")
start=$(date +%s.%N)
$CLI "${common[@]}" --out "$work/ahead.jsonl" > "$OUT/space-aware-ahead.log" 2>&1
mid=$(date +%s.%N)
$CLI "${common[@]}" --prefetch-videos 0 --out "$work/inline.jsonl" > "$OUT/space-aware-inline.log" 2>&1
end=$(date +%s.%N)
python3 - "$work/ahead.jsonl" "$work/inline.jsonl" "$OUT/space-aware-evaluate-check.md" "$MODE" "$VIDEOS" "$start" "$mid" "$end" "$(ls "$work/cache/spatial-mllm/frame-selections" | wc -l)" <<'PY'
import json, sys
ahead, inline, out, mode, videos, start, mid, end, cached = sys.argv[1:]
load = lambda p: {json.loads(l)["id"]: json.loads(l)["prediction"] for l in open(p) if l.strip()}
a, b = load(ahead), load(inline)
same = sum(a[i] == b.get(i) for i in a)
lines = [f"# `evaluate --sampler space-aware` with decode-ahead ({mode})", "",
         f"{videos} videos × 3 questions; run 1: prefetching (default), empty selection cache (VGGT on the decode workers while "
         f"the main thread answers) — {float(mid) - float(start):.1f} s; run 2: `--prefetch-videos 0`, selections from the cache "
         f"({cached} cached) — {float(end) - float(mid):.1f} s.", "",
         f"Answers: {len(a)} and {len(b)}; identical id for id: {same} of {len(b)}."]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(0 if same == len(b) == len(a) == int(videos) * 3 else 1)
PY
