"""The seed's VSI-Bench pipeline timed per question: what src/evaluation/vsibench/eval_vsibench.py does for each of the
5130 questions (batch size 1, no cache of any kind), with random full-size weights.

Per question, as the seed: decode the video's 16 frames (qwen_vl_utils: decord's get_batch of linspace(0, n-1, 16)
rounded; without decord here, the static ffmpeg decodes the video and keeps those 16 frames, as torchvision's reader
would), resize to the Qwen grid (smart_resize with the video pixel bounds of qwen_vl_utils: 640x480 -> 476x644;
bicubic, antialias), the chat template and the processor (tokenize; rescale, normalise and patchify the frames;
transformers' Qwen2VLVideoProcessor when it runs here, else the same arithmetic in torch; CPU, as the seed), the
frames to the GPU, then the model: Qwen2.5-VL's vision tower (transformers), the seed's VGGT aggregator on the same
frames in [0, 1], the seed's mlp_add connector, the fused tokens in place of <|video_pad|>, prefill, and greedy decoding
of exactly N tokens (the seed samples with temperature 0.1 and top_p 0.001, which is greedy in effect; transformers'
generate() adds its own per-token overhead, which this loop does not: the seed's time is, if anything, understated).
The models are those of qwen25vl_reference.py (bf16, SDPA). One question warms up; the next K are timed, each stage
synchronised; median and mean per question, extrapolated to 5130 questions.

    python3 seed_pipeline.py CONFIG.json --ref SEED_DIR --tokenizer QWEN_DIR --data DATA_DIR --out OUT.json
                             [--questions 16] [--max-new-tokens 4] [--frames 16] [--budget-s 120]
                             [--ffmpeg FFMPEG --ffprobe FFPROBE]
"""
import argparse, collections, json, os, statistics, subprocess, sys, time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from answer_lengths import MCQ_TYPES, Qwen2Bpe  # noqa: E402
from qwen25vl_reference import build_random_models, parts_of, vision_out  # noqa: E402

SPECIAL = {"<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|video_pad|>": 151656}
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])
PATCH, TEMPORAL, MERGE = 14, 2, 2
VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS, FACTOR = 128 * 28 * 28, 768 * 28 * 28, 24576 * 28 * 28, 28


def seed_prompt(row):
    """eval_vsibench.build_user_message + the chat template (default system prompt, generation prompt)."""
    if row["question_type"] in MCQ_TYPES:
        text = f"{row['question']}\nOptions:\n" + "\n".join(row["options"]) + "\nAnswer with the option's letter from the given choices directly."
    else:
        text = f"{row['question']}\nPlease answer the question using a single word or phrase."
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|video_pad|><|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n")


def tokenize(bpe, prompt, video_tokens):
    """The processor's tokenisation: special tokens whole, BPE between them, <|video_pad|> repeated once per merged patch."""
    ids, rest = [], prompt
    while rest:
        hits = [(rest.find(s), s) for s in SPECIAL if rest.find(s) >= 0]
        if not hits:
            ids += bpe.encode(rest)
            break
        at, special = min(hits)
        ids += bpe.encode(rest[:at]) if at else []
        ids += [SPECIAL[special]] * (video_tokens if special == "<|video_pad|>" else 1)
        rest = rest[at + len(special):]
    return ids


def smart_resize(height, width, frames):
    """qwen_vl_utils' video size: multiples of 28 within its per-frame pixel bounds."""
    max_pixels = max(min(VIDEO_MAX_PIXELS, VIDEO_TOTAL_PIXELS / frames * TEMPORAL), int(VIDEO_MIN_PIXELS * 1.05))
    h, w = max(FACTOR, round(height / FACTOR) * FACTOR), max(FACTOR, round(width / FACTOR) * FACTOR)
    if h * w > max_pixels:
        beta = ((height * width) / max_pixels) ** 0.5
        h, w = int(height / beta // FACTOR) * FACTOR, int(width / beta // FACTOR) * FACTOR
    elif h * w < VIDEO_MIN_PIXELS:
        beta = (VIDEO_MIN_PIXELS / (height * width)) ** 0.5
        h, w = -(-int(height * beta) // FACTOR) * FACTOR, -(-int(width * beta) // FACTOR) * FACTOR
    return h, w


class FrameReader:
    """decord when importable (what qwen_vl_utils prefers), else the static ffmpeg: [T, H, W, 3] uint8."""

    def __init__(self, ffmpeg, ffprobe):
        self.ffmpeg, self.ffprobe = ffmpeg, ffprobe
        try:
            import decord
            self.decord, self.name = decord, "decord (VideoReader.get_batch)"
        except ImportError:
            self.decord, self.name = None, "ffmpeg subprocess (decodes the whole video, keeps 16 frames: decord is not importable)"

    def read(self, path, frames):
        if self.decord is not None:
            reader = self.decord.VideoReader(path)
            idx = torch.linspace(0, len(reader) - 1, frames).round().long().tolist()
            return reader.get_batch(idx).asnumpy()
        probe = subprocess.run([self.ffprobe, "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=nb_frames,width,height",
                                "-of", "json", path], capture_output=True, text=True, check=True)
        stream = json.loads(probe.stdout)["streams"][0]
        total, width, height = int(stream["nb_frames"]), int(stream["width"]), int(stream["height"])
        idx = torch.linspace(0, total - 1, frames).round().long().tolist()
        select = "+".join(f"eq(n\\,{i})" for i in sorted(set(idx)))
        raw = subprocess.run([self.ffmpeg, "-v", "error", "-i", path, "-vf", f"select={select}", "-vsync", "0",
                              "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
        decoded = np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
        position = {i: k for k, i in enumerate(sorted(set(idx)))}
        return decoded[[min(position[i], len(decoded) - 1) for i in idx]]


def resize(frames, height, width):
    """qwen_vl_utils: torchvision's resize (bicubic, antialias) of the uint8 [T, 3, H, W] video, then float."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    try:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.functional import resize as tv_resize
        return tv_resize(video, [height, width], interpolation=InterpolationMode.BICUBIC, antialias=True).float()
    except ImportError:
        return F.interpolate(video.float(), size=(height, width), mode="bicubic", antialias=True).clamp(0, 255).round()


def patchify(video):
    """Qwen2-VL's video processor arithmetic: rescale, normalise, [T, 3, H, W] -> [T/2 * H/14 * W/14, 3*2*14*14]."""
    t, c, h, w = video.shape
    x = (video / 255.0 - MEAN.view(1, 3, 1, 1)) / STD.view(1, 3, 1, 1)
    gt, gh, gw = t // TEMPORAL, h // PATCH, w // PATCH
    x = x.reshape(gt, TEMPORAL, c, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # [gt, gh/2, gw/2, 2, 2, C, T', 14, 14]
    return x.reshape(gt * gh * gw, c * TEMPORAL * PATCH * PATCH), torch.tensor([[gt, gh, gw]])


def transformers_processor(video):
    """transformers' Qwen2VLVideoProcessor on the resized video, or None with the reason when it does not run here."""
    try:
        from transformers import Qwen2VLVideoProcessor
        processor = Qwen2VLVideoProcessor(patch_size=PATCH, temporal_patch_size=TEMPORAL, merge_size=MERGE,
                                          image_mean=MEAN.tolist(), image_std=STD.tolist())
        out = processor(videos=[video.to(torch.uint8)], return_tensors="pt")
        return processor, out["pixel_values_videos"], out["video_grid_thw"]
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {str(e)[:200]}", None


def pick_questions(rows, count):
    """count + 1 questions, round-robin over the question types, each from another scene where possible."""
    by_type = collections.defaultdict(list)
    for r in rows:
        by_type[r["question_type"]].append(r)
    types = sorted(by_type)
    picked, scenes = [], set()
    for i in range(count + 1):
        group = by_type[types[i % len(types)]]
        start = (i // len(types)) * 37 % len(group)
        choice = next((group[(start + j) % len(group)] for j in range(len(group)) if group[(start + j) % len(group)]["scene_name"] not in scenes),
                      group[start])
        scenes.add(choice["scene_name"])
        picked.append(choice)
    return picked


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--ref", required=True)
    parser.add_argument("--tokenizer", required=True, help="folder with vocab.json and merges.txt")
    parser.add_argument("--data", required=True, help="test.jsonl and {dataset}/{scene}.mp4")
    parser.add_argument("--out", required=True)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--budget-s", type=float, default=120.0, help="stop timing new questions after this long (at least 3 are timed)")
    parser.add_argument("--total-questions", type=int, default=5130)
    parser.add_argument("--ffmpeg", default="ffmpeg")
    parser.add_argument("--ffprobe", default="ffprobe")
    args = parser.parse_args()

    started = time.perf_counter()
    bpe = Qwen2Bpe(args.tokenizer)
    rows = [json.loads(l) for l in open(os.path.join(args.data, "test.jsonl"), encoding="utf-8") if l.strip()]
    questions = pick_questions(rows, args.questions)
    reader = FrameReader(args.ffmpeg, args.ffprobe)
    config, model, aggregator, connector = build_random_models(args.config, args.ref)
    visual, language = parts_of(model)
    from transformers import DynamicCache
    build_s = time.perf_counter() - started
    video_token_id = getattr(config, "video_token_id", SPECIAL["<|video_pad|>"])
    use_transformers_processor, processor_note = None, None

    def answer(row):
        nonlocal use_transformers_processor, processor_note
        stages = {}
        clock = time.perf_counter()

        def mark(name):
            nonlocal clock
            torch.cuda.synchronize()
            now = time.perf_counter()
            stages[name] = (now - clock) * 1e3
            clock = now

        frames = reader.read(os.path.join(args.data, row["dataset"], row["scene_name"] + ".mp4"), args.frames)
        mark("decode_video_ms")
        height, width = smart_resize(frames.shape[1], frames.shape[2], args.frames)
        video = resize(frames, height, width)
        if use_transformers_processor is None:  # first (warm-up) question: does transformers' processor run, and agree?
            processor, pixels_tf, grid_tf = transformers_processor(video)
            pixels_ours, grid_ours = patchify(video)
            if processor is None:
                use_transformers_processor, processor_note = False, f"torch arithmetic (transformers' Qwen2VLVideoProcessor failed: {pixels_tf})"
            elif pixels_tf.shape != pixels_ours.shape or not torch.equal(grid_tf, grid_ours):
                use_transformers_processor, processor_note = False, f"torch arithmetic (transformers' gave {tuple(pixels_tf.shape)}, grid {grid_tf.tolist()})"
            elif (diff := (pixels_tf.float() - pixels_ours).abs().max().item()) > 1e-2:
                use_transformers_processor, processor_note = False, f"torch arithmetic (transformers' differs from it by up to {diff:.2e})"
            else:
                use_transformers_processor = processor
                processor_note = f"transformers' Qwen2VLVideoProcessor (max |diff| to the torch arithmetic {diff:.2e})"
        if use_transformers_processor:
            out = use_transformers_processor(videos=[video.to(torch.uint8)], return_tensors="pt")
            pixels, grid = out["pixel_values_videos"], out["video_grid_thw"]
        else:
            pixels, grid = patchify(video)
        video_tokens = int(grid.prod()) // (MERGE * MERGE)
        ids = torch.tensor([tokenize(bpe, seed_prompt(row), video_tokens)])
        video_tchw = video / 255.0  # prepare_spatial_mllm_inputs
        mark("preprocess_ms")
        ids, pixels, grid = ids.cuda(), pixels.cuda().to(torch.bfloat16), grid.cuda()
        video_tchw = video_tchw.cuda().to(torch.bfloat16)
        mark("to_gpu_ms")
        vision = vision_out(visual(pixels, grid_thw=grid))
        mark("vision_tower_ms")
        spatial, patch_start = aggregator(video_tchw[None])
        mark("vggt_ms")
        fused = connector(video_embeds=vision, spatial_embeds_list=[[spatial[-1][0]]], patch_start_idx=[patch_start], grid_thw=grid)
        mark("connector_ms")
        embeds = language.embed_tokens(ids)
        embeds = embeds.masked_scatter((ids == video_token_id).unsqueeze(-1).expand_as(embeds), fused.to(embeds.dtype))
        seq = ids.shape[1]
        past = DynamicCache()
        out = language(inputs_embeds=embeds, position_ids=torch.arange(seq, device="cuda").view(1, 1, -1).expand(3, 1, -1),
                       use_cache=True, past_key_values=past)
        token = model.lm_head(out.last_hidden_state[:, -1:]).argmax(-1)
        mark("prefill_ms")
        for step in range(args.max_new_tokens - 1):
            pos = torch.full((3, 1, 1), seq + step, device="cuda")
            out = language(inputs_embeds=language.embed_tokens(token), position_ids=pos, use_cache=True, past_key_values=past)
            token = model.lm_head(out.last_hidden_state[:, -1:]).argmax(-1)
        mark("decode_tokens_ms")
        stages["total_ms"] = sum(stages.values())
        return dict(id=row["id"], question_type=row["question_type"], video=f"{row['dataset']}/{row['scene_name']}",
                    prompt_tokens=seq, video_tokens=video_tokens, frame_size=[height, width], **{k: round(v, 2) for k, v in stages.items()})

    timed = []
    with torch.inference_mode():
        warmup = answer(questions[0])
        timing_started = time.perf_counter()
        for row in questions[1:]:
            if len(timed) >= 3 and time.perf_counter() - timing_started > args.budget_s:
                break
            timed.append(answer(row))
    totals = [q["total_ms"] for q in timed]
    stage_names = [k for k in timed[0] if k.endswith("_ms")]
    median = statistics.median(totals)
    result = {
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "frame_reader": reader.name, "preprocess": processor_note,
        "frames": args.frames, "max_new_tokens": args.max_new_tokens, "model_build_s": round(build_s, 1),
        "questions_timed": len(timed), "median_ms": round(median, 1), "mean_ms": round(statistics.fmean(totals), 1),
        "min_ms": round(min(totals), 1), "max_ms": round(max(totals), 1),
        "median_stage_ms": {k: round(statistics.median(q[k] for q in timed), 1) for k in stage_names},
        "extrapolated_questions": args.total_questions,
        "extrapolated_total_s": round(median * args.total_questions / 1e3, 1),
        "warmup": warmup, "per_question": timed,
    }
    json.dump(result, open(args.out, "w"), indent=2)
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_question", "warmup")}))


if __name__ == "__main__":
    main()
