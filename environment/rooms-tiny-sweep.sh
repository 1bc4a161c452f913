#!/usr/bin/env bash
# rooms-tiny at scale on one GPU (issue 25): trains several configurations of the recipe side by side as separate
# processes on the one GPU (a model this small is launch-bound: four at once use it far better than one), measures each
# on the first 40 held-out rooms, the best on all 100, and brings back a summary table, every log and the best weights.
#
#   here:   bash environment/rooms-tiny-sweep.sh pack          (environment/gpu-pack.sh with the CLI into .gpu/)
#   there:  run(command: "bash environment/rooms-tiny-sweep.sh", carry: [".gpu"], timeout_s: 600)
#           one call: the scenes are written and read as PNG frame folders (--video-format frames), so no ffmpeg is needed.
#   configurations: CONFIGS below, or SWEEP_CONFIGS="name|options;name|options" in the command.
#
# Brings back (at most 8 files): $OUT/rooms-sweep/summary.md (per configuration: options, time, SFT steps done, overall
# and gain over the mean-answer baseline on 40 rooms with 95 % intervals, every type's score, whether issue 25's bar is
# met; the best on 100 rooms), sweep.log, logs.tar.gz (each NAME/: train.log, sft-log.csv, vggt-log.csv,
# evaluation-40.txt, evaluation-full.txt (100 rooms), mean-answers.json, options.txt) and NAME.tar.gz for the best configurations
# (the model folder as `rooms-tiny train` writes it, with its evaluations: untar into checkpoints/rooms-tiny).
# Settings (environment): PARALLEL (configurations at once, default 4), DEADLINE_S (results written by then, default
# 555), EVAL_RESERVE_S (kept after training for the evaluations, default 170), TRAIN_S (one configuration's
# --time-limit at most, default 340), EVAL_SCENES (default 40), KEEP_WEIGHTS (best configurations whose weights come
# back, default 3), FULL_SCENES (the best's second measurement, default 100). A dry run here on the CPU with the local
# build: SWEEP_DEVICE=cpu SWEEP_CONFIGS="tiny|--train-scenes 8 --geometry-steps 2 --sft-steps 50" EVAL_SCENES=2 FULL_SCENES=3 \
#   bash environment/rooms-tiny-sweep.sh   (SPATIAL_MLLM_FFMPEG=/nowhere/ffmpeg in front shows it needs no ffmpeg)
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

# ---- the configurations: NAME|options of `spatial-mllm rooms-tiny train` (the recipe's defaults otherwise) ----------
# Every one trains on the GPU with --time-limit; stage 2 plans fewer steps than --sft-steps when they would not fit.
# First sweep, after the tied embeddings were found to blur the object names (README: what the numbers come from): scale
# with the head untied (1000 scenes, batches of 32: 2-3 epochs in the time), the same tied as the control, VGGT's geometry
# kept during SFT, and a wider and deeper decoder.
CONFIGS=(
  "untied-b32|--tie-embeddings false --train-scenes 1000 --geometry-steps 400 --geometry-batch 8 --sft-steps 4000 --sft-batch 32 --sft-accumulation 1 --sft-lr 2e-3"
  "tied-b32|--train-scenes 1000 --geometry-steps 400 --geometry-batch 8 --sft-steps 4000 --sft-batch 32 --sft-accumulation 1 --sft-lr 2e-3"
  "untied-b32-geo0.5|--tie-embeddings false --train-scenes 1000 --geometry-steps 400 --geometry-batch 8 --sft-steps 4000 --sft-batch 32 --sft-accumulation 1 --sft-lr 2e-3 --sft-geometry-weight 0.5"
  "untied-dec128x4|--tie-embeddings false --train-scenes 1000 --geometry-steps 400 --geometry-batch 8 --sft-steps 4000 --sft-batch 32 --sft-accumulation 1 --sft-lr 1.5e-3 --decoder-width 128 --decoder-layers 4"
)
if [ -n "${SWEEP_CONFIGS:-}" ]; then IFS=';' read -r -a CONFIGS <<< "$SWEEP_CONFIGS"; fi

case "${1:-sweep}" in
  pack)
    bash environment/gpu-pack.sh src/SpatialMllm.Cli/SpatialMllm.Cli.csproj || exit 1
    tracked=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
    packed=$(du -sb .gpu | cut -f1)
    awk -v t="$tracked" -v p="$packed" 'BEGIN { m = 1048576; printf "carry [\".gpu\"]: %.1f MiB with the tracked files (64 at most)\n", (t + p) / m; exit (t + p < 64 * m) ? 0 : 1 }' \
      || { echo ".gpu: over 64 MiB with the tracked files; it will not travel" >&2; exit 1; }
    echo 'run(command: "bash environment/rooms-tiny-sweep.sh", carry: [".gpu"], timeout_s: 600)'
    exit 0 ;;
  sweep) ;;
  *) echo "usage: $0 [pack|sweep]" >&2; exit 2 ;;
esac

OUT=${OUT:-/tmp/rooms-sweep-out}
PARALLEL=${PARALLEL:-4}
DEADLINE_S=${DEADLINE_S:-555}
EVAL_RESERVE_S=${EVAL_RESERVE_S:-170}
TRAIN_S=${TRAIN_S:-340}
EVAL_SCENES=${EVAL_SCENES:-40}
KEEP_WEIGHTS=${KEEP_WEIGHTS:-3}
FULL_SCENES=${FULL_SCENES:-100}
DEVICE=${SWEEP_DEVICE:-cuda}
results=$OUT/rooms-sweep
work=${SWEEP_WORK:-/tmp/rooms-sweep}
mkdir -p "$results"
rm -rf "$work" && mkdir -p "$work"
exec > >(tee "$results/sweep.log") 2>&1
[ ${#CONFIGS[@]} -ge 1 ] || { echo "no configuration to train"; exit 2; }
for entry in "${CONFIGS[@]}"; do
  name=${entry%%|*}
  [[ "$entry" == *"|"* && "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "configuration '$entry': write NAME|options, NAME of letters, digits, '.', '_', '-'"; exit 2; }
done

if [ "$DEVICE" = cpu ]; then
  cli=(dotnet src/SpatialMllm.Cli/bin/Release/net10.0/linux-x64/spatial-mllm.dll)
else
  source .gpu/env.sh || { echo "no .gpu/env.sh: run 'bash environment/rooms-tiny-sweep.sh pack' here and carry .gpu"; exit 1; }
  cli=(dotnet .gpu/SpatialMllm.Cli/spatial-mllm.dll)
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
fi
[ -f "${cli[1]}" ] || { echo "no ${cli[1]}: run 'bash environment/rooms-tiny-sweep.sh pack' here (or build the CLI for SWEEP_DEVICE=cpu)"; exit 1; }
cores=$(nproc)
# Each process's libtorch CPU threads (the scenes render on .NET's thread pool, shared by the OS).
export OMP_NUM_THREADS=$(( cores / PARALLEL > 0 ? cores / PARALLEL : 1 ))
echo "$(date -u +%FT%TZ) ${#CONFIGS[@]} configurations, $PARALLEL at once on $cores cores; results by ${DEADLINE_S} s"

# one NAME OPTIONS: trains (bounded by --time-limit and a hard timeout) and measures on $EVAL_SCENES held-out rooms.
one() {
  local name=$1 options=$2 dir=$work/$1 limit
  mkdir -p "$dir"
  limit=$(( DEADLINE_S - EVAL_RESERVE_S - $(elapsed) ))
  (( limit > TRAIN_S )) && limit=$TRAIN_S
  echo "$options --time-limit $limit" > "$dir/options.txt"
  echo "$(date -u +%T) [$name] start: $options (time limit ${limit} s)"
  local t0=$(date +%s)
  # shellcheck disable=SC2086
  timeout $(( limit + 45 )) "${cli[@]}" rooms-tiny train --video-format frames --device "$DEVICE" --out "$dir/model" --work "$dir/work" $options --time-limit "$limit" \
    > "$dir/train.log" 2>&1
  local status=$?
  echo $(( $(date +%s) - t0 )) > "$dir/train-seconds"
  if [ $status -ne 0 ] || [ ! -f "$dir/model/model.safetensors" ]; then
    echo "$(date -u +%T) [$name] training failed (exit $status): $(tail -3 "$dir/train.log" | tr '\n' ' ')"
    return
  fi
  echo "$(date -u +%T) [$name] trained in $(cat "$dir/train-seconds") s: $(grep -E '^step [0-9]+/' "$dir/train.log" | tail -1)"
  rm -rf "$dir/work"
  timeout 150 "${cli[@]}" rooms-tiny evaluate --video-format frames --device "$DEVICE" --model "$dir/model" --scenes "$EVAL_SCENES" --videos "$dir/heldout" \
    > "$dir/evaluation-$EVAL_SCENES.txt" 2>&1 \
    && echo "$(date -u +%T) [$name] $(grep -E '^overall' "$dir/evaluation-$EVAL_SCENES.txt" | tr -s ' ' | tr '\n' ' ')" \
    || echo "$(date -u +%T) [$name] evaluation failed: $(tail -3 "$dir/evaluation-$EVAL_SCENES.txt" | tr '\n' ' ')"
}

# The configurations' own pids: a bare `wait` would also wait for the log's tee, which never ends.
pids=()
running() { local n=0 p; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && n=$((n + 1)); done; echo $n; }
for entry in "${CONFIGS[@]}"; do
  while [ "$(running)" -ge "$PARALLEL" ]; do sleep 2; done
  if (( DEADLINE_S - EVAL_RESERVE_S - $(elapsed) < 90 )); then
    echo "$(date -u +%T) [${entry%%|*}] not started: too little time left"
    continue
  fi
  one "${entry%%|*}" "${entry#*|}" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

# The best on 40 rooms (largest gain over the baseline) on all 100, while there is time.
summary() { PYTHONIOENCODING=utf-8 python3 - "$work" "$EVAL_SCENES" "$FULL_SCENES" "$@" <<'PY'
import json, os, re, sys
work, scenes, full_scenes = sys.argv[1], sys.argv[2], sys.argv[3]
row = re.compile(r"^(\S+)\s+(\d+)\s+(MRA|Acc)\s+([\d.]+) \[\s*([-\d.]+),\s*([-\d.]+)\]\s+([\d.]+) \[[^\]]*\]\s+(\S+)\s+(yes|NO)")
def parse(path):
    if not os.path.exists(path): return None
    types, result = {}, {}
    for line in open(path, encoding="utf-8"):
        if m := row.match(line):
            types[m[1]] = dict(n=int(m[2]), metric=m[3], model=float(m[4]), low=float(m[5]), high=float(m[6]), baseline=float(m[7]),
                               chance=None if m[8] == "–" else float(m[8]), beats=m[9] == "yes")
        elif line.startswith("overall (VSI macro)"):
            v = re.findall(r"([-\d.]+) \[\s*([-\d.]+),\s*([-\d.]+)\]", line)
            result["overall"], result["baseline"] = [float(x) for x in v[0]], [float(x) for x in v[1]]
        elif line.startswith("overall − baseline"):
            result["gain"] = [float(x) for x in re.findall(r"([-\d.]+) \[\s*([-\d.]+),\s*([-\d.]+)\]", line)[0]]
    if "gain" not in result: return None
    result["types"] = types
    result["bar"] = all(t["beats"] for t in types.values()) and result["gain"][0] >= 20
    return result
configs = []
for name in sorted(os.listdir(work)):
    d = os.path.join(work, name)
    if not os.path.exists(os.path.join(d, "options.txt")): continue   # the shared held-out videos
    log = open(os.path.join(d, "train.log"), encoding="utf-8", errors="replace").read() if os.path.exists(os.path.join(d, "train.log")) else ""
    steps = re.findall(r"^step (\d+)/(\d+) .*?([\d.]+) s$", log, re.M)
    sft_log = os.path.join(d, "model", "sft-log.csv")
    seconds = sorted(float(r.split(",")[7]) for r in open(sft_log).read().splitlines()[11:]) if os.path.exists(sft_log) else []
    planned = re.search(r"--sft-steps (\d+)", open(os.path.join(d, "options.txt")).read() if os.path.exists(os.path.join(d, "options.txt")) else "")
    configs.append(dict(name=name, options=open(os.path.join(d, "options.txt")).read().strip() if os.path.exists(os.path.join(d, "options.txt")) else "",
        seconds=open(os.path.join(d, "train-seconds")).read().strip() if os.path.exists(os.path.join(d, "train-seconds")) else "–",
        steps=f"{steps[-1][0]}/{planned[1] if planned else steps[-1][1]}" if steps else "–",
        pace=f"{seconds[len(seconds) // 2]:.3f}" if seconds else "–", stopped="stopped at step" in log,
        weights=os.path.exists(os.path.join(d, "model", "model.safetensors")),
        small=parse(os.path.join(d, f"evaluation-{scenes}.txt")), full=parse(os.path.join(d, "evaluation-full.txt"))))
ranked = sorted((c for c in configs if c["small"]), key=lambda c: -c["small"]["gain"][0])
if len(sys.argv) > 4 and sys.argv[4] == "--ranked":
    print(" ".join(c["name"] for c in ranked if c["weights"])); sys.exit()
types = sorted({t for c in configs for r in (c["small"], c["full"]) if r for t in r["types"]})
short = {t: t.replace("object_", "").replace("obj_", "").replace("_estimation", "").replace("_", " ") for t in types}
out = ["# rooms-tiny sweep", "", f"Issue 25's bar: every numeric type above the mean-answer baseline, every choice type above chance, overall at least 20 points above the baseline. Ranked by the gain on the first {scenes} held-out rooms; SFT steps done / planned (fewer when --time-limit fitted them to the time), s/step: the median SFT step after the first 10.", ""]
def table(title, key):
    rows = [c for c in ranked if c[key]] if key == "full" else ranked + [c for c in configs if not c["small"]]
    if not rows: return
    out.extend([f"## {title}", "", "| config | train s | SFT steps | s/step | overall | baseline | gain | bar | " + " | ".join(short[t] for t in types) + " |",
                "| --- | ---: | ---: | ---: | --- | --- | --- | --- | " + " | ".join("---:" for _ in types) + " |"])
    for c in rows:
        r = c[key]
        if not r:
            out.append(f"| {c['name']} | {c['seconds']} | {c['steps']} | {c['pace']} | failed or unmeasured | | | | " + " | ".join("" for _ in types) + " |"); continue
        cell = lambda v: f"{v[0]:.1f} [{v[1]:.1f}, {v[2]:.1f}]"
        scores = " | ".join((f"{r['types'][t]['model']:.1f}" + ("" if r['types'][t]['beats'] else " ✗")) if t in r["types"] else "" for t in types)
        out.append(f"| {c['name']}{' (cut short)' if c['stopped'] else ''} | {c['seconds']} | {c['steps']} | {c['pace']} | {cell(r['overall'])} | {cell(r['baseline'])} | {cell(r['gain'])} | {'**met**' if r['bar'] else 'no'} | {scores} |")
    out.append("")
table(f"{scenes} held-out rooms (✗: at or below its bar)", "small")
table(f"{full_scenes} held-out rooms", "full")
out.extend(["## Options", ""] + [f"- `{c['name']}`: `{c['options']}`" for c in configs] + [""])
print("\n".join(out))
PY
}
ranked=$(summary --ranked)
best=${ranked%% *}
if [ -n "$best" ] && [ "$EVAL_SCENES" -lt "$FULL_SCENES" ]; then
  if (( DEADLINE_S - $(elapsed) > 110 )); then
    echo "$(date -u +%T) [$best] on $FULL_SCENES held-out rooms"
    timeout $(( DEADLINE_S - $(elapsed) - 20 )) "${cli[@]}" rooms-tiny evaluate --video-format frames --device "$DEVICE" --model "$work/$best/model" --scenes "$FULL_SCENES" \
      --videos "$work/heldout-full" > "$work/$best/evaluation-full.txt" 2>&1 || echo "$(date -u +%T) [$best] $FULL_SCENES rooms: not finished"
  else
    echo "$(date -u +%T) too little time left for the best on $FULL_SCENES rooms"
  fi
fi

summary > "$results/summary.md"
cat "$results/summary.md"
# Logs of every configuration in one archive; the best ones' model folders (with their evaluations) beside it.
( cd "$work" && tar -czf "$results/logs.tar.gz" --exclude='*/model/*.safetensors' --exclude='*/heldout' --exclude='*/work' \
    $(ls -d */ 2>/dev/null | grep -v '^heldout') )
kept=0
for name in $ranked; do
  (( kept >= KEEP_WEIGHTS )) && break
  cp "$work/$name"/{train.log,options.txt,evaluation-*.txt} "$work/$name/model/" 2>/dev/null
  tar -C "$work/$name" -czf "$results/$name.tar.gz" --transform "s|^model|$name|" model
  kept=$(( kept + 1 ))
done
ls -la "$results"
echo "$(date -u +%T) done in $(elapsed) s"
