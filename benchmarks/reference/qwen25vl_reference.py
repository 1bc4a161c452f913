"""The Python reference of the GPU benchmark: transformers' Qwen2.5-VL vision tower and decoder, and the seed's own
VGGT-1B aggregator (vggt/models/aggregator.py: DINOv2-L/14-reg patch embed, 24 frame + 24 global blocks, all 24
outputs kept) and mlp_add connector (src/qwenvl/model/connector/mlp_add_connector.py), imported from the seed's
source tree given with --ref.

Random full-size weights (the real Qwen2.5-VL-3B config), bf16, SDPA, one sample of 16 frames at 476x644
(grid 8x34x46: 12512 patches, 3128 video tokens) plus 62 text tokens. Timed like the C# benchmark: warm-up,
torch.cuda.synchronize() around each run, median of N runs. Peak memory: torch.cuda.max_memory_allocated /
max_memory_reserved and NVML's device memory in use (polled), like the C# side. Prints one JSON object; with
--profile DIR writes torch.profiler tables of one vision-tower pass, one VGGT pass and 8 decode steps.

    python3 benchmarks/reference/qwen25vl_reference.py CONFIG.json --ref SEED_DIR [--runs 5] [--decode-tokens 32] [--profile DIR]
"""
import argparse, contextlib, json, os, statistics, sys, threading, time

import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration


class NvmlPeak:
    """Device memory in use (NVML), polled every millisecond: what the C# side reports."""

    def __init__(self):
        self.peak, self.ok = 0, False
        try:
            import pynvml
            pynvml.nvmlInit()
            self.h = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.read = lambda: pynvml.nvmlDeviceGetMemoryInfo(self.h).used
            self.ok = True
            self.stop = False
            threading.Thread(target=self.poll, daemon=True).start()
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)

    def poll(self):
        while not self.stop:
            self.peak = max(self.peak, self.read())
            time.sleep(0.001)

    def reset(self):
        if self.ok:
            self.peak = self.read()

    def gib(self):
        if not self.ok:
            return None
        time.sleep(0.005)
        return max(self.peak, self.read()) / 2**30


def timed(fn, runs):
    fn()  # warm-up
    torch.cuda.synchronize()
    times = []
    out = None
    for _ in range(runs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def seed_modules(ref):
    """The seed's own VGGT aggregator and mlp_add connector, from its source tree REF (../shared/reference/spatial-mllm)."""
    sys.path.insert(0, ref)
    sys.path.insert(0, os.path.join(ref, "src/qwenvl/external"))
    from vggt.models.aggregator import Aggregator
    from src.qwenvl.model.connector.mlp_add_connector import MLPAddConnector
    return Aggregator, MLPAddConnector


def build_random_models(config_path, ref):
    """Random-weight Qwen2.5-VL (transformers, SDPA) + the seed's VGGT aggregator and mlp_add connector, bf16 on cuda."""
    config = Qwen2_5_VLConfig.from_pretrained(config_path)
    config._attn_implementation = "sdpa"
    for sub in ("vision_config", "text_config"):
        if hasattr(config, sub):
            getattr(config, sub)._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        try:
            model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
        except TypeError:
            model = Qwen2_5_VLForConditionalGeneration._from_config(config, torch_dtype=torch.bfloat16).eval()
        Aggregator, MLPAddConnector = seed_modules(ref)
        aggregator = Aggregator(img_size=518, patch_size=14, embed_dim=1024).to(torch.bfloat16).eval()
        with contextlib.redirect_stdout(sys.stderr):  # it prints its layer index; stdout is the JSON result
            connector = MLPAddConnector(1024, config.text_config.hidden_size, -1, 2, 2).to(torch.bfloat16).eval()
    return config, model, aggregator, connector


def parts_of(model):
    """The vision tower and the language model (transformers moved them under model.model in 4.52)."""
    inner = getattr(model, "model", model)
    return getattr(inner, "visual", None) or model.visual, getattr(inner, "language_model", None) or inner


def vision_out(out):
    """The merged vision tokens, whether the tower returns a tensor or an output object (transformers 5)."""
    if isinstance(out, torch.Tensor):
        return out
    return getattr(out, "pooler_output", None) if getattr(out, "pooler_output", None) is not None else out[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--ref", required=True, help="the seed's source tree (../shared/reference/spatial-mllm)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--text-tokens", type=int, default=62)
    parser.add_argument("--sampling-frames", type=int, default=128)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()

    nvml = NvmlPeak()
    config, model, aggregator, connector = build_random_models(args.config, args.ref)
    visual, language = parts_of(model)
    video_token_id = getattr(config, "video_token_id", 151656)

    grid = torch.tensor([[8, 34, 46]], device="cuda")
    pixels = torch.randn(8 * 34 * 46, 3 * 2 * 14 * 14, device="cuda", dtype=torch.bfloat16)
    frames = torch.rand(1, 16, 3, 476, 644, device="cuda", dtype=torch.bfloat16)
    hidden = config.text_config.hidden_size if hasattr(config, "text_config") else config.hidden_size
    seq = 3128 + args.text_tokens
    ids = torch.randint(100, 150000, (1, seq), device="cuda")
    ids[0, 15] = getattr(config, "vision_start_token_id", 151652)
    ids[0, 16:16 + 3128] = video_token_id
    ids[0, 16 + 3128] = getattr(config, "vision_end_token_id", 151653)
    embeds = torch.randn(1, seq, hidden, device="cuda", dtype=torch.bfloat16)
    positions = torch.arange(seq, device="cuda").view(1, 1, -1).expand(3, 1, -1)
    from transformers import DynamicCache

    def vggt(images):
        outputs, _ = aggregator(images)
        return outputs

    def connect(vision, spatial_last):
        # The seed's connector reads spatial_embeds_list[item][layer]: one item, its layer -1 already picked.
        return connector(video_embeds=vision, spatial_embeds_list=[[spatial_last[0]]], patch_start_idx=[5], grid_thw=grid)

    def decode_loop(past, token, start, n):
        for step in range(n):
            pos = torch.full((3, 1, 1), start + step, device="cuda")
            out = language(inputs_embeds=language.embed_tokens(token), position_ids=pos, use_cache=True, past_key_values=past)
            token = model.lm_head(out.last_hidden_state[:, -1:]).argmax(-1)
        return token

    result = {"torch": torch.__version__, "transformers": transformers.__version__, "gpu": torch.cuda.get_device_name(), "tokens": seq}
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        vision_s, vis = timed(lambda: vision_out(visual(pixels, grid_thw=grid)), args.runs)
        result["vision_tower_ms"] = vision_s * 1e3
        result["vision_out_shape"] = list(vis.shape)
        vggt_s, spatial = timed(lambda: vggt(frames)[-1], args.runs)
        result["vggt_aggregator_ms"] = vggt_s * 1e3
        conn_s, fused = timed(lambda: connect(vis, spatial), args.runs)
        result["connector_ms"] = conn_s * 1e3

        def prefill():
            out = language(inputs_embeds=embeds, position_ids=positions, use_cache=True)
            return model.lm_head(out.last_hidden_state[:, -1:]), out.past_key_values

        prefill_s, _ = timed(prefill, args.runs)
        result["decoder_prefill_ms"] = prefill_s * 1e3

        def decode():
            past = DynamicCache()
            out = language(inputs_embeds=embeds, position_ids=positions, use_cache=True, past_key_values=past)
            token = model.lm_head(out.last_hidden_state[:, -1:]).argmax(-1)
            torch.cuda.synchronize()
            start = time.perf_counter()
            decode_loop(past, token, seq, args.decode_tokens)
            torch.cuda.synchronize()
            return (time.perf_counter() - start) / args.decode_tokens

        decode()
        result["decode_ms_per_token"] = statistics.median(decode() for _ in range(args.runs)) * 1e3
        result["peak_allocated_stages_gib"] = torch.cuda.max_memory_allocated() / 2**30

        def whole():
            v = vision_out(visual(pixels, grid_thw=grid))
            s = vggt(frames)[-1]
            f = connect(v, s)
            e = language.embed_tokens(ids)
            e = e.masked_scatter((ids == video_token_id).unsqueeze(-1).expand_as(e), f)
            past = DynamicCache()
            out = language(inputs_embeds=e, position_ids=positions, use_cache=True, past_key_values=past)
            token = model.lm_head(out.last_hidden_state[:, -1:]).argmax(-1)
            return decode_loop(past, token, seq, 32)

        torch.cuda.reset_peak_memory_stats()
        whole()
        torch.cuda.synchronize()
        nvml.reset()
        whole_s, _ = timed(whole, args.runs)
        result["whole_sample_ms"] = whole_s * 1e3
        result["whole_sample_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["whole_sample_peak_nvml_gib"] = nvml.gib()

        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
            from torch.profiler import profile, ProfilerActivity
            tables = []
            past = prefill()[1]
            token0 = torch.zeros(1, 1, dtype=torch.long, device="cuda")
            torch.cuda.synchronize()
            for name, fn in [("vision tower", lambda: visual(pixels, grid_thw=grid)), ("VGGT aggregator", lambda: vggt(frames)),
                             ("8 decode steps", lambda: decode_loop(past, token0, seq, 8))]:
                with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                    fn()
                    torch.cuda.synchronize()
                tables.append(f"## {name}\n" + prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))
            with open(os.path.join(args.profile, "reference_profile.txt"), "w") as fh:
                fh.write("\n\n".join(tables))

        if args.sampling_frames:
            del vis, spatial, fused
            torch.cuda.empty_cache()
            sframes = torch.rand(1, args.sampling_frames, 3, 392, 518, device="cuda", dtype=torch.bfloat16)
            torch.cuda.reset_peak_memory_stats()
            agg_s, _ = timed(lambda: vggt(sframes), 2)
            result["sampling_aggregator_ms"] = agg_s * 1e3
            result["sampling_aggregator_frames"] = args.sampling_frames
            result["sampling_aggregator_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30

    result["peak_allocated_gib"] = result["peak_allocated_stages_gib"]
    result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    result["peak_nvml_gib"] = nvml.gib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
