#!/usr/bin/env bash
# Issue 8 on what this machine allows: `spatial-mllm evaluate` over a mini VSI-Bench (8 ffmpeg videos, 5 questions
# each, every question type) with the tiny checkpoint on CPU — once in one process, once with two worker processes —
# then a run whose worker is killed mid-way and resumed. Checks the merged answers equal the single-process ones id for
# id and prints the timings. On a machine with N GPUs, `--device auto` starts one worker per GPU the same way.
#
#   benchmarks/multi-worker-evaluate.sh [OUT.md]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/$(date +%F)-multi-worker-cpu.md}
cli="dotnet src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet build src/SpatialMllm.Cli -c Release -nologo -v q >/dev/null

# The tiny checkpoint and the mini benchmark.
$cli demo --model checkpoints/tiny --max-new-tokens 1 >/dev/null
python3 - "$work" <<'PY'
import json, subprocess, sys, os
root = sys.argv[1]
examples = [json.loads(l) for l in open("../shared/fixtures/vsibench-examples.jsonl") if l.strip()]
rows = []
for v in range(8):
    dataset = ["arkitscenes", "scannet", "scannetpp"][v % 3]
    scene = f"scene{v:02d}"
    os.makedirs(f"{root}/{dataset}", exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=160x120:r=8", "-frames:v", str(16 + v),
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", f"{root}/{dataset}/{scene}.mp4"], check=True)
    for q in range(5):
        row = dict(examples[(v + q) % len(examples)]); row.update(id=10000 + 10 * v + q, dataset=dataset, scene_name=scene)
        rows.append(row)
open(f"{root}/test.jsonl", "w").write("".join(json.dumps(r) + "\n" for r in rows))
PY
args=(evaluate vsibench --model checkpoints/tiny --data "$work" --frames 8 --max-new-tokens 8)

t0=$(date +%s.%N); $cli "${args[@]}" --device cpu --out "$work/single.jsonl" >"$work/single.log"; t1=$(date +%s.%N)
$cli "${args[@]}" --device auto --workers 2 --out "$work/two.jsonl" >"$work/two.log"; t2=$(date +%s.%N)
# Kill the two-worker run once some answers are on disk, then resume it.
$cli "${args[@]}" --device auto --workers 2 --out "$work/killed.jsonl" >"$work/killed.log" 2>&1 & pid=$!
while [ "$(cat "$work"/killed*.jsonl 2>/dev/null | wc -l)" -lt 10 ]; do sleep 0.2; done
pkill -KILL -P "$pid" || true; kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
before=$(cat "$work"/killed*.jsonl 2>/dev/null | wc -l)
$cli "${args[@]}" --device auto --workers 2 --out "$work/killed.jsonl" >"$work/resumed.log"

python3 - "$work" "$out" "$t0" "$t1" "$t2" "$before" <<'PY'
import json, sys
work, out, t0, t1, t2, before = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6]), int(sys.argv[6])
def load(name):
    rows = [json.loads(l) for l in open(f"{work}/{name}") if l.strip()]
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{name}: an id answered twice"
    return {r["id"]: r["prediction"] for r in rows}
single, two, resumed = load("single.jsonl"), load("two.jsonl"), load("killed.jsonl")
assert len(single) == 40, len(single)
same_two = sum(single[i] == two.get(i) for i in single)
same_resumed = sum(single[i] == resumed.get(i) for i in single)
lines = [
    "# Multi-worker evaluation on CPU (issue 8, what this machine allows)", "",
    "Tiny Spatial-MLLM checkpoint (random weights), 8 videos × 5 questions, 8 frames each, 8 new tokens, 2 CPU cores.",
    "The two-H200 run (`nvidia-h200-x2`) was not lent in this session; `--device auto` on that machine starts one worker per GPU the same way.", "",
    "| run | questions | same answers as single | wall time |", "| --- | --- | --- | --- |",
    f"| one process | {len(single)} | — | {t1 - t0:.1f} s |",
    f"| two worker processes, merged | {len(two)} | {same_two} of {len(single)} | {t2 - t1:.1f} s |",
    f"| two workers killed after {before} answers, then resumed | {len(resumed)} | {same_resumed} of {len(single)} | — |", "",
    f"Speed-up with two workers on 2 cores: {(t1 - t0) / (t2 - t1):.2f}× (each worker loads the model and shares the two cores).",
]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
assert same_two == len(single) and same_resumed == len(single)
PY
