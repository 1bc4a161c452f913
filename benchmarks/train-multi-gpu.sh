#!/usr/bin/env bash
# Data-parallel fine-tuning check on a GPU machine with 2+ GPUs (issue 15): the same run on 1 GPU with gradient
# accumulation 2 and on 2 GPUs with accumulation 1 sees the same examples per step, so the loss curves must agree;
# tokens/s shows the scaling. Runs from the repository root with the CLI published to .gpu/SpatialMllm.Cli:
#   bash benchmarks/train-multi-gpu.sh [MODEL_DIR]
# MODEL_DIR: a Spatial-MLLM folder with tokenizer files (default: the tiny checkpoint, made by `demo`). For a full-size
# run with random weights: python3 ../shared/tools/make_fullsize_fixture.py REF QCFG /tmp/full 4242, then copy
# vocab.json merges.txt added_tokens.json chat_template.json preprocessor_config.json from ../shared/data/qwen2.5-vl-3b.
set -euo pipefail
OUT=${OUT:-/tmp/train-multi-gpu}
CLI="dotnet .gpu/SpatialMllm.Cli/spatial-mllm.dll"
mkdir -p "$OUT"
$CLI demo --device cuda --max-new-tokens 1 > /dev/null   # makes checkpoints/tiny and its synthetic video
MODEL=${1:-checkpoints/tiny}
rm -rf "$OUT/data" && mkdir -p "$OUT/data" && cp checkpoints/tiny/synthetic.mp4 "$OUT/data/room.mp4"
for i in $(seq 0 63); do
  echo "{\"video\": \"room.mp4\", \"conversations\": [{\"from\": \"human\", \"value\": \"<video>\\nHow many chairs are there? $i\"}, {\"from\": \"gpt\", \"value\": \"$((i % 5))\"}]}"
done > "$OUT/data/train.jsonl"
common="--model_name_or_path $MODEL --dataset_use $OUT/data/train.jsonl --max_steps ${STEPS:-12} --save_steps 0 --learning_rate 1e-5 --mm_projector_lr 2e-5 --device cuda"
$CLI train --dry-run $common --output_dir "$OUT/dry"
rm -rf "$OUT/one" "$OUT/two"
time $CLI train $common --gradient_accumulation_steps 2 --output_dir "$OUT/one"
time $CLI train $common --gradient_accumulation_steps 1 --output_dir "$OUT/two" --nproc 2
echo "step  loss(1 GPU, accum 2)  loss(2 GPUs)  tok/s(1)  tok/s(2)"
paste -d, "$OUT/one/log.csv" "$OUT/two/log.csv" | tail -n +2 | awk -F, '{ printf "%4d  %20.6f  %12.6f  %8.0f  %8.0f\n", $1, $3, $12, $7, $16 }'
