#!/usr/bin/env bash
# Issue 16: `spatial-mllm evaluate` on one GPU and on all of a host's GPUs, over a VSI-Bench-shaped set of synthetic
# videos ({dataset}/{scene}.mp4 at 640×480 like VSI-Bench's, eight question types), with full-size random weights:
#   1. one GPU (--device cuda:0), 2. all GPUs (--device auto: one worker per GPU, merged) — answers compared id for id,
#   speed-up from the answering throughput (first to last answer, so model loading is not counted) and from wall time;
#   3. all GPUs again, one worker killed (SIGKILL) mid-run, then the same command resumed: nothing lost, answers equal.
# Writes $OUT/multi-gpu-evaluate.md and .json (and the logs). Exit status non-zero if any answer differs or is lost.
#
# On a GPU host (one `run` call; see benchmarks/README.md for what to carry):
#   MODE=gpu bash benchmarks/multi-gpu-evaluate.sh
# Dry run on CPU with the tiny checkpoint (two CPU workers stand in for the GPUs):
#   MODE=cpu OUT=/tmp/mgpu bash benchmarks/multi-gpu-evaluate.sh
#
# Settings (environment): MODE gpu|cpu (default: gpu when nvidia-smi lists a GPU), OUT (default /tmp/multi-gpu-out),
# CLI (the command that runs spatial-mllm), MODEL (a checkpoint folder; default: gpu — made here with
# .gpu/make_fullsize_fixture.py and the tokenizer files of .gpu/mgpu/; cpu — checkpoints/tiny), GPUS, VIDEOS,
# QUESTIONS (per video), FRAMES, MAX_NEW_TOKENS, SIZE (video WxH: 640x480 on gpu, 160x120 on cpu), SPATIAL_MLLM_FFMPEG / SPATIAL_MLLM_FFPROBE (a static ffmpeg; else PATH's).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MODE:-}" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then MODE=gpu; else MODE=cpu; fi
fi
OUT=${OUT:-/tmp/multi-gpu-out}
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ffmpeg_bin=${SPATIAL_MLLM_FFMPEG:-ffmpeg}

if [ "$MODE" = gpu ]; then
  [ -f .gpu/env.sh ] && source .gpu/env.sh
  CLI=${CLI:-"dotnet .gpu/SpatialMllm.Cli/spatial-mllm.dll"}
  GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
  VIDEOS=${VIDEOS:-48}; QUESTIONS=${QUESTIONS:-5}; FRAMES=${FRAMES:-16}; MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-16}; SIZE=${SIZE:-640x480}
  DEVICE_ONE="--device cuda:0"; DEVICE_ALL="--device auto"
  if [ -z "${MODEL:-}" ]; then
    MODEL=/tmp/mgpu-model
    if [ ! -f "$MODEL/model.safetensors.index.json" ]; then
      echo "== full-size random weights (Qwen2.5-VL-3B + VGGT-1B + connector, bf16 shards) → $MODEL"
      python3 .gpu/make_fullsize_fixture.py "$PWD/.gpu/ref" "$PWD/.gpu/mgpu/config.json" "$MODEL" 4242 --frames 2
      rm -f "$MODEL/io.safetensors"
    fi
    # The real Qwen2.5-VL tokenizer and templates beside the random weights.
    cp .gpu/mgpu/{vocab.json,merges.txt,added_tokens.json,chat_template.json,preprocessor_config.json,generation_config.json} "$MODEL/"
  fi
else
  CLI=${CLI:-"dotnet src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll"}
  GPUS=${GPUS:-2}
  VIDEOS=${VIDEOS:-8}; QUESTIONS=${QUESTIONS:-4}; FRAMES=${FRAMES:-4}; MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-4}; SIZE=${SIZE:-160x120}
  DEVICE_ONE="--device cpu --workers 1"; DEVICE_ALL="--device cpu --workers $GPUS"
  [ -f src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll ] || dotnet build src/SpatialMllm.Cli -c Release -nologo -v q >/dev/null
  MODEL=${MODEL:-checkpoints/tiny}
  [ -f "$MODEL/config.json" ] || $CLI demo --model "$MODEL" --max-new-tokens 1 >/dev/null
fi
echo "== $MODE: $GPUS device(s), $VIDEOS videos ($SIZE) × $QUESTIONS questions, $FRAMES frames, $MAX_NEW_TOKENS new tokens, model $MODEL"
"$ffmpeg_bin" -version | head -1

python3 - "$work" "$OUT" "$MODE" "$GPUS" "$VIDEOS" "$QUESTIONS" "$FRAMES" "$MAX_NEW_TOKENS" "$MODEL" "$CLI" "$DEVICE_ONE" "$DEVICE_ALL" "$ffmpeg_bin" "$SIZE" <<'PY'
import json, os, shlex, signal, subprocess, sys, time
work, out, mode, gpus, videos, questions, frames, tokens, model, cli, device_one, device_all, ffmpeg, size = sys.argv[1:]
gpus, videos, questions = int(gpus), int(videos), int(questions)

# A VSI-Bench-shaped set: {dataset}/{scene}.mp4 (SIZE, 8 fps, 10 s, each video its own colours), eight question types.
templates = [
    ("object_counting", "How many chair(s) are in this room?", None, "3"),
    ("object_abs_distance", "Measuring from the closest point of each object, what is the distance between the sofa and the lamp (in meters)?", None, "2.1"),
    ("object_size_estimation", "What is the length of the longest dimension (length, width, or height) of the table, measured in centimeters?", None, "120"),
    ("room_size_estimation", "What is the size of this room (in square meters)? If multiple rooms are shown, estimate the size of the combined space.", None, "18.5"),
    ("object_rel_distance", "Measuring from the closest point of each object, which of these objects (sofa, lamp, tv, bed) is the closest to the chair?", ["A. sofa", "B. lamp", "C. tv", "D. bed"], "B"),
    ("object_rel_direction_easy", "If I am standing by the sofa and facing the tv, is the lamp to my left or right?", ["A. left", "B. right"], "A"),
    ("route_planning", "You are a robot beginning at the door facing the bed. You want to navigate to the window. You will perform the following actions: 1. Go forward until the table 2. [please fill in] 3. Go forward until the window. You have reached the final destination.", ["A. Turn Left", "B. Turn Right", "C. Turn Back"], "A"),
    ("obj_appearance_order", "What will be the first-time appearance order of the following categories in the video: chair, lamp, sofa, tv?", ["A. chair, lamp, sofa, tv", "B. lamp, chair, tv, sofa", "C. sofa, tv, chair, lamp", "D. tv, sofa, lamp, chair"], "C"),
]
rows = []
for v in range(videos):
    dataset = ["arkitscenes", "scannet", "scannetpp"][v % 3]
    scene = f"synthetic{v:03d}"
    os.makedirs(f"{work}/data/{dataset}", exist_ok=True)
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=8,hue=h={(v * 47) % 360}", "-frames:v", "80",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", f"{work}/data/{dataset}/{scene}.mp4"], check=True)
    for q in range(questions):
        qt, text, options, truth = templates[(v + q) % len(templates)]
        rows.append(dict(id=100000 + 10 * v + q, dataset=dataset, scene_name=scene, question_type=qt, question=text,
                         options=options, ground_truth=truth, pruned=False))
with open(f"{work}/data/test.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
total = len(rows)
base = shlex.split(cli) + ["evaluate", "vsibench", "--model", model, "--data", f"{work}/data", "--frames", frames, "--max-new-tokens", tokens]

def answered(results):
    stem = results[:-len(".jsonl")]
    folder = os.path.dirname(results)
    n = 0
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if path == results or (name.startswith(os.path.basename(stem) + ".shard-") and name.endswith(".jsonl")):
            try:
                with open(path, "rb") as fh:
                    n += fh.read().count(b"\n")
            except FileNotFoundError:
                pass
    return n

def run(name, device, kill_worker_after=None):
    """Runs evaluate, polling the answers on disk: wall time, first and last answer; optionally SIGKILLs worker 0."""
    results = f"{work}/{name}.jsonl"
    log = open(f"{out}/{name}.log", "a")
    start = time.time()
    proc = subprocess.Popen(base + shlex.split(device) + ["--out", results], stdout=log, stderr=subprocess.STDOUT)
    first = last = None
    killed = None
    while proc.poll() is None:
        n = answered(results)
        now = time.time()
        if n >= 1 and first is None: first = now
        if n >= total and last is None: last = now
        if kill_worker_after is not None and killed is None and n >= kill_worker_after:
            lock = f"{work}/{name}.shard-0-of-{gpus}.jsonl.lock"
            pid = json.load(open(lock))["pid"]
            os.kill(pid, signal.SIGKILL)
            killed = dict(pid=pid, answers_on_disk=n)
        time.sleep(0.05)
    end = time.time()
    if last is None: last = end
    log.close()
    return dict(name=name, exit=proc.returncode, wall_s=end - start, first_answer_s=(first or end) - start,
                answering_s=last - (first or last), answers=answered(results), killed=killed)

def load(name):
    ids, answers = [], {}
    for line in open(f"{work}/{name}.jsonl"):
        if line.strip():
            r = json.loads(line)
            ids.append(r["id"]); answers[r["id"]] = r["prediction"]
    assert len(ids) == len(set(ids)), f"{name}: an id was answered twice"
    return answers

one = run("one", device_one)
allg = run("all", device_all)
killed = run("killed", device_all, kill_worker_after=max(2, total // 3))
kept_before_resume = answered(f"{work}/killed.jsonl")
resumed = run("killed", device_all)   # the same command again: resumes
single, multi, after = load("one"), load("all"), load("killed")
same_all = sum(single[i] == multi.get(i) for i in single)
same_resumed = sum(single[i] == after.get(i) for i in single)
throughput = lambda r: (total - 1) / r["answering_s"] if r["answering_s"] > 0 else float("nan")
speedup_answering = throughput(allg) / throughput(one)
speedup_wall = one["wall_s"] / allg["wall_s"]
device_names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.split("\n")[0] if mode == "gpu" else "CPU workers"
report = dict(mode=mode, devices=gpus, device=device_names, videos=videos, questions=total, frames=int(frames), max_new_tokens=int(tokens),
              model=model, one=one, all=allg, killed=killed, resumed=resumed, kept_before_resume=kept_before_resume,
              identical_all=same_all, identical_resumed=same_resumed,
              speedup_answering=speedup_answering, speedup_wall=speedup_wall, efficiency=speedup_answering / gpus)
json.dump(report, open(f"{out}/multi-gpu-evaluate.json", "w"), indent=2)
lines = [
    f"# `evaluate` on one and on {gpus} {'GPUs' if mode == 'gpu' else 'CPU workers'} ({device_names})", "",
    f"{total} VSI-Bench-shaped questions over {videos} synthetic {size.replace('x', '×')} videos (eight question types), {frames} frames, "
    f"{tokens} new tokens, model `{model}` ({'full-size random weights, bf16' if mode == 'gpu' else 'tiny random checkpoint, fp32'}).", "",
    "| run | exit | answers | same as one device | wall | first answer after | answering | q/s |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    f"| one device | {one['exit']} | {len(single)} | — | {one['wall_s']:.1f} s | {one['first_answer_s']:.1f} s | {one['answering_s']:.1f} s | {throughput(one):.2f} |",
    f"| {gpus} workers, merged | {allg['exit']} | {len(multi)} | {same_all} of {len(single)} | {allg['wall_s']:.1f} s | {allg['first_answer_s']:.1f} s | {allg['answering_s']:.1f} s | {throughput(allg):.2f} |",
    f"| {gpus} workers, worker 0 killed after {killed['killed']['answers_on_disk'] if killed['killed'] else '?'} answers | {killed['exit']} | {kept_before_resume} kept | — | {killed['wall_s']:.1f} s | | | |",
    f"| … resumed (same command) | {resumed['exit']} | {len(after)} | {same_resumed} of {len(single)} | {resumed['wall_s']:.1f} s | | | |", "",
    f"Speed-up on {gpus}: {speedup_answering:.2f}× answering throughput ({speedup_answering / gpus:.0%} of linear), {speedup_wall:.2f}× wall time "
    "(wall time includes each worker loading the model).",
]
open(f"{out}/multi-gpu-evaluate.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
ok = one["exit"] == 0 and allg["exit"] == 0 and resumed["exit"] == 0 and killed["exit"] != 0 \
     and same_all == total and same_resumed == total and len(after) == total
sys.exit(0 if ok else 1)
PY
