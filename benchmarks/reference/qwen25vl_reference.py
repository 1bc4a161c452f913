"""Times the reference parts the GPU machine has: transformers' Qwen2.5-VL vision tower and decoder.

Random full-size weights (the real Qwen2.5-VL-3B config), bf16, SDPA, one sample of 16 frames at 476x644
(grid 8x34x46: 12512 patches, 3128 video tokens) plus 62 text tokens. Timed like the C# benchmark: warm-up,
torch.cuda.synchronize() around each run, median of N runs; peak memory from torch.cuda.max_memory_allocated.
Prints one JSON object.

    python3 benchmarks/reference/qwen25vl_reference.py CONFIG.json [--runs 5] [--decode-tokens 32]
"""
import argparse, json, statistics, time

import torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration


def timed(fn, runs):
    fn()  # warm-up
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--text-tokens", type=int, default=62)
    args = parser.parse_args()

    config = Qwen2_5_VLConfig.from_pretrained(args.config)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, torch_dtype=torch.bfloat16).eval()
    inner = getattr(model, "model", model)
    visual = getattr(inner, "visual", None) or model.visual
    language = getattr(inner, "language_model", None) or inner

    grid = torch.tensor([[8, 34, 46]], device="cuda")
    pixels = torch.randn(8 * 34 * 46, 3 * 2 * 14 * 14, device="cuda", dtype=torch.bfloat16)
    hidden = config.text_config.hidden_size if hasattr(config, "text_config") else config.hidden_size
    seq = 3128 + args.text_tokens
    embeds = torch.randn(1, seq, hidden, device="cuda", dtype=torch.bfloat16)
    positions = torch.arange(seq, device="cuda").view(1, 1, -1).expand(3, 1, -1)

    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        vision_s, _ = timed(lambda: visual(pixels, grid_thw=grid), args.runs)

        def prefill():
            out = language(inputs_embeds=embeds, position_ids=positions, use_cache=True)
            return model.lm_head(out.last_hidden_state[:, -1:]), out.past_key_values

        prefill_s, (logits, cache) = timed(prefill, args.runs)

        def decode():
            from transformers import DynamicCache
            past = DynamicCache()
            out = language(inputs_embeds=embeds, position_ids=positions, use_cache=True, past_key_values=past)
            token = model.lm_head(out.last_hidden_state[:, -1:]).argmax(-1)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for step in range(args.decode_tokens):
                pos = torch.full((3, 1, 1), seq + step, device="cuda")
                out = language(inputs_embeds=language.embed_tokens(token), position_ids=pos, use_cache=True, past_key_values=past)
                token = model.lm_head(out.last_hidden_state[:, -1:]).argmax(-1)
            torch.cuda.synchronize()
            return (time.perf_counter() - start) / args.decode_tokens

        decode()
        decode_s = statistics.median(decode() for _ in range(args.runs))
    print(json.dumps({
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
        "vision_tower_ms": vision_s * 1e3, "decoder_prefill_ms": prefill_s * 1e3,
        "decode_ms_per_token": decode_s * 1e3, "tokens": seq,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }))


if __name__ == "__main__":
    main()
