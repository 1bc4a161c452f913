#!/usr/bin/env bash
# Issue 17: all of VSI-Bench's shape on one GPU — the real 5130 questions of test.jsonl over 288 synthetic videos
# ({dataset}/{scene}.mp4, one per scene of the real set, each its own colours), full-size random weights, 16 frames,
# uniform, answers forced to the benchmark's typical length (random weights never emit eos) — against the seed's
# pipeline (one full forward per question) timed per question in the same command and extrapolated.
# Target: all 5130 questions in <= 5 minutes on one H200 (>= 20x the seed's pipeline).
# Writes to $OUT (8 files at most): vsibench-full.md and .json, evaluate.log, seed-pipeline.json, sdpa-backends.json,
# nvidia-smi.csv, demo.log, setup.log. Exit status non-zero if our run failed or answered fewer than all questions.
#
# On the GPU machine (one `run` call; what to carry: benchmarks/README.md):
#   MODE=gpu bash benchmarks/vsibench-full.sh
# Dry run on CPU (the tiny checkpoint, 12 videos of 160x120, 4 s; no seed pipeline, no SDPA):
#   MODE=cpu OUT=/tmp/vsibench-full-out bash benchmarks/vsibench-full.sh
#
# Settings (environment): MODE gpu|cpu (default: gpu when nvidia-smi lists a GPU), OUT, WORK (videos and results;
# default /tmp/vsibench-full, kept between the calls of a lease: videos of the same settings are reused), CLI, MODEL
# (gpu default: /tmp/mgpu-model, made with .gpu/make_fullsize_fixture.py if absent), SIZE (WxH, 640x480), FPS (24),
# DURATION (s, 60), CRF (x264, 30), VIDEOS (how many scenes; all 288 on gpu, 12 on cpu), QUESTIONS_PER_VIDEO (cap;
# none on gpu, 2 on cpu), FRAMES (16), MAX_NEW_TOKENS (default: 1 + the median token count of the numeric ground truths,
# from benchmarks/reference/answer_lengths.py), SEED (1 on gpu: time the seed's pipeline; 0 skips it), SEED_QUESTIONS (16),
# SEED_BUDGET_S (50: timing stops after this),
# BUDGET_S (570: the whole script; our run is stopped, and extrapolated, when it would overrun), SDPA (1 on gpu),
# DEMO (1: `spatial-mllm demo` once, the stage timings of one question, if time is left),
# SPATIAL_MLLM_FFMPEG / SPATIAL_MLLM_FFPROBE (a static ffmpeg; else PATH's).
set -euo pipefail
cd "$(dirname "$0")/.."
export SCRIPT_START=$(date +%s.%N)
if [ -z "${MODE:-}" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then MODE=gpu; else MODE=cpu; fi
fi
export MODE
export OUT=${OUT:-/tmp/vsibench-full-out} WORK=${WORK:-/tmp/vsibench-full}
mkdir -p "$OUT" "$WORK"
export FFMPEG=${SPATIAL_MLLM_FFMPEG:-ffmpeg} FFPROBE=${SPATIAL_MLLM_FFPROBE:-ffprobe}
export SPATIAL_MLLM_FFMPEG=$FFMPEG SPATIAL_MLLM_FFPROBE=$FFPROBE
export SIZE=${SIZE:-} FPS=${FPS:-} DURATION=${DURATION:-} CRF=${CRF:-30} FRAMES=${FRAMES:-16}
export MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-} SEED_QUESTIONS=${SEED_QUESTIONS:-16} SEED_BUDGET_S=${SEED_BUDGET_S:-50} BUDGET_S=${BUDGET_S:-570}
setup_log=$OUT/setup.log
: > "$setup_log"

if [ "$MODE" = gpu ]; then
  [ -f .gpu/env.sh ] && source .gpu/env.sh
  export CLI=${CLI:-"dotnet .gpu/SpatialMllm.Cli/spatial-mllm.dll"} DEVICE=cuda:0 TOKENIZER=$PWD/.gpu/mgpu REF=$PWD/.gpu/ref QWEN_CONFIG=$PWD/.gpu/mgpu/config.json
  export SIZE=${SIZE:-640x480} FPS=${FPS:-24} DURATION=${DURATION:-60} VIDEOS=${VIDEOS:-all} QUESTIONS_PER_VIDEO=${QUESTIONS_PER_VIDEO:-all}
  export SDPA=${SDPA:-1} DEMO=${DEMO:-1}
  model_pid=
  if [ -z "${MODEL:-}" ]; then
    MODEL=/tmp/mgpu-model random_model=1
    if [ ! -f "$MODEL/model.safetensors.index.json" ]; then
      echo "== full-size random weights (Qwen2.5-VL-3B + VGGT-1B + connector, bf16 shards) → $MODEL, while the videos are made" | tee -a "$setup_log"
      ( python3 .gpu/make_fullsize_fixture.py "$PWD/.gpu/ref" "$PWD/.gpu/mgpu/config.json" "$MODEL" 4242 --frames 2 && rm -f "$MODEL/io.safetensors" ) >> "$setup_log" 2>&1 &
      model_pid=$!
    fi
  fi
  export MODEL
else
  export CLI=${CLI:-"dotnet src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll"} DEVICE=cpu
  export TOKENIZER=../shared/data/qwen2.5-vl-3b REF= QWEN_CONFIG=
  export SIZE=${SIZE:-160x120} FPS=${FPS:-8} DURATION=${DURATION:-4} VIDEOS=${VIDEOS:-12} QUESTIONS_PER_VIDEO=${QUESTIONS_PER_VIDEO:-2}
  export SDPA=${SDPA:-0} DEMO=${DEMO:-1}
  [ -f src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll ] || dotnet build src/SpatialMllm.Cli -c Release -nologo -v q >/dev/null
  export MODEL=${MODEL:-checkpoints/tiny}
  [ -f "$MODEL/config.json" ] || $CLI demo --model "$MODEL" --max-new-tokens 1 >/dev/null
  model_pid= random_model=
fi
"$FFMPEG" -version | head -1 | tee -a "$setup_log"

python3 benchmarks/vsibench-full.py videos
if [ -n "$model_pid" ]; then
  wait "$model_pid" || { echo "making the full-size model failed: $setup_log" >&2; tail -20 "$setup_log" >&2; exit 1; }
fi
if [ -n "${random_model:-}" ]; then
  # The real Qwen2.5-VL tokenizer and templates beside the random weights.
  cp .gpu/mgpu/{vocab.json,merges.txt,added_tokens.json,chat_template.json,preprocessor_config.json,generation_config.json} "$MODEL/"
fi
python3 benchmarks/vsibench-full.py run
