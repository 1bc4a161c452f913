"""The Python reference of the GPU benchmark: transformers' Qwen2.5-VL vision tower and decoder, a plain-PyTorch copy
of the VGGT-1B aggregator (vggt's Aggregator: DINOv2-L/14-reg patch embed, 24 frame + 24 global blocks with QK-norm
and its RotaryPositionEmbedding2D, all 24 outputs kept, as vggt does) and the mlp_add connector.

Random full-size weights (the real Qwen2.5-VL-3B config), bf16, SDPA, one sample of 16 frames at 476x644
(grid 8x34x46: 12512 patches, 3128 video tokens) plus 62 text tokens. Timed like the C# benchmark: warm-up,
torch.cuda.synchronize() around each run, median of N runs. Peak memory: torch.cuda.max_memory_allocated /
max_memory_reserved and NVML's device memory in use (polled), like the C# side. Prints one JSON object; with
--profile DIR writes torch.profiler tables of one vision-tower pass, one VGGT pass and 8 decode steps.

    python3 benchmarks/reference/qwen25vl_reference.py CONFIG.json [--runs 5] [--decode-tokens 32] [--profile DIR]
"""
import argparse, json, os, statistics, threading, time

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


# ---------------------------------------------------------------- VGGT aggregator (vggt/models/aggregator.py) ----
class RotaryPositionEmbedding2D(nn.Module):
    """vggt/layers/rope.py: frequency tables cached per (dim, length, device, dtype); embedding lookups per call."""

    def __init__(self, frequency=100.0):
        super().__init__()
        self.base_frequency = frequency
        self.cache = {}

    def components(self, dim, seq_len, device, dtype):
        key = (dim, seq_len, device, dtype)
        if key not in self.cache:
            exponents = torch.arange(0, dim, 2, device=device).float() / dim
            inv_freq = 1.0 / (self.base_frequency ** exponents)
            positions = torch.arange(seq_len, device=device, dtype=inv_freq.dtype)
            angles = torch.einsum("i,j->ij", positions, inv_freq).to(dtype)
            angles = torch.cat((angles, angles), dim=-1)
            self.cache[key] = (angles.cos().to(dtype), angles.sin().to(dtype))
        return self.cache[key]

    @staticmethod
    def rotate(x):
        d = x.shape[-1]
        return torch.cat((-x[..., d // 2:], x[..., : d // 2]), dim=-1)

    def apply_1d(self, tokens, positions, cos, sin):
        cos = F.embedding(positions, cos)[:, None, :, :]
        sin = F.embedding(positions, sin)[:, None, :, :]
        return tokens * cos + self.rotate(tokens) * sin

    def forward(self, tokens, positions):
        dim = tokens.size(-1) // 2
        max_position = int(positions.max()) + 1
        cos, sin = self.components(dim, max_position, tokens.device, tokens.dtype)
        vertical, horizontal = tokens.chunk(2, dim=-1)
        vertical = self.apply_1d(vertical, positions[..., 0], cos, sin)
        horizontal = self.apply_1d(horizontal, positions[..., 1], cos, sin)
        return torch.cat((vertical, horizontal), dim=-1)


class Block(nn.Module):
    def __init__(self, dim=1024, heads=16, eps=1e-5, qk_norm=True, init_values=0.01, rope=None):
        super().__init__()
        self.heads, self.rope = heads, rope
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(dim // heads) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(dim // heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.ls1 = nn.Parameter(torch.full((dim,), init_values))
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.ls2 = nn.Parameter(torch.full((dim,), init_values))

    def attn(self, x, pos):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))

    def forward(self, x, pos=None):
        x = x + self.ls1 * self.attn(self.norm1(x), pos)
        return x + self.ls2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Dinov2Reg(nn.Module):
    """dinov2_vitl14_reg: patch embed, cls + interpolated pos embed, 4 registers, 24 blocks, final norm."""

    def __init__(self, dim=1024, depth=24):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 14, 14)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + 37 * 37, dim) * 0.02)
        self.register_tokens = nn.Parameter(torch.randn(1, 4, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, 16, 1e-6, qk_norm=False, init_values=1.0) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        b, _, h, w = x.shape
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        patch_pos = self.pos_embed[:, 1:].float().reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(h // 14, w // 14), mode="bicubic", antialias=True)
        patch_pos = patch_pos.permute(0, 2, 3, 1).flatten(1, 2)
        pos = torch.cat((self.pos_embed[:, :1].float(), patch_pos), dim=1).to(x.dtype)
        x = x + pos
        x = torch.cat((x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 5:]


class Aggregator(nn.Module):
    def __init__(self, dim=1024, depth=24):
        super().__init__()
        self.rope = RotaryPositionEmbedding2D(100.0)
        self.patch_embed = Dinov2Reg(dim)
        self.frame_blocks = nn.ModuleList(Block(dim, rope=self.rope) for _ in range(depth))
        self.global_blocks = nn.ModuleList(Block(dim, rope=self.rope) for _ in range(depth))
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, dim) * 0.02)
        self.register_token = nn.Parameter(torch.randn(1, 2, 4, dim) * 0.02)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1), persistent=False)

    @staticmethod
    def slot(token, b, s):
        first = token[:, 0:1].expand(b, 1, *token.shape[2:])
        others = token[:, 1:].expand(b, s - 1, *token.shape[2:])
        return torch.cat([first, others], dim=1).reshape(b * s, *token.shape[2:])

    def forward(self, images, keep=None):
        b, s, _, h, w = images.shape
        images = (images - self.mean) / self.std
        patches = self.patch_embed(images.view(b * s, 3, h, w))
        tokens = torch.cat([self.slot(self.camera_token, b, s), self.slot(self.register_token, b, s), patches], dim=1)
        _, p, c = tokens.shape
        gh, gw = h // 14, w // 14
        y, x = torch.meshgrid(torch.arange(gh, device=images.device), torch.arange(gw, device=images.device), indexing="ij")
        pos = torch.stack([y, x], dim=-1).reshape(1, gh * gw, 2).expand(b * s, -1, -1) + 1
        pos = torch.cat([torch.zeros(b * s, 5, 2, device=images.device, dtype=pos.dtype), pos], dim=1)
        outputs = []
        for i in range(len(self.frame_blocks)):
            frame = self.frame_blocks[i](tokens.view(b * s, p, c), pos)
            frame_out = frame.view(b, s, p, c)
            glob = self.global_blocks[i](frame_out.view(b, s * p, c), pos.reshape(b, s * p, 2))
            glob_out = glob.view(b, s, p, c)
            outputs.append(torch.cat([frame_out, glob_out], dim=-1) if keep is None or i in keep else None)
            tokens = glob_out
        return outputs


class Connector(nn.Module):
    """mlp_add: RMSNorm(16384) -> Linear(16384, 16384) -> GELU -> Linear(16384, 2048), added to the vision tokens."""

    def __init__(self, d=2048, out=2048):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(8 * d))
        self.fc1 = nn.Linear(8 * d, 8 * d)
        self.fc2 = nn.Linear(8 * d, out)

    def forward(self, vision, spatial, t, gh, gw):
        x = spatial[0, :, 5:]  # [S, P, D]
        d = x.shape[-1]
        x = x.reshape(t, 2, gh // 2, 2, gw // 2, 2, d).permute(0, 2, 4, 3, 5, 6, 1).reshape(t * (gh // 2) * (gw // 2), 8 * d)
        x32 = x.float()
        x = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * self.weight
        return vision + self.fc2(F.gelu(self.fc1(x)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--text-tokens", type=int, default=62)
    parser.add_argument("--sampling-frames", type=int, default=128)
    parser.add_argument("--profile", default=None)
    args = parser.parse_args()

    nvml = NvmlPeak()
    config = Qwen2_5_VLConfig.from_pretrained(args.config)
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
        vggt = Aggregator().to(torch.bfloat16).eval()
        connector = Connector().to(torch.bfloat16).eval()
    inner = getattr(model, "model", model)
    visual = getattr(inner, "visual", None) or model.visual
    language = getattr(inner, "language_model", None) or inner
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

    def vision_out(out):
        if isinstance(out, torch.Tensor):
            return out
        return getattr(out, "pooler_output", None) if getattr(out, "pooler_output", None) is not None else out[0]

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
        conn_s, fused = timed(lambda: connector(vis, spatial, 8, 34, 46), args.runs)
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
            f = connector(v, s, 8, 34, 46)
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
            agg_s, _ = timed(lambda: vggt(sframes, keep={4, 11, 17, 23}), 2)
            result["sampling_aggregator_ms"] = agg_s * 1e3
            result["sampling_aggregator_frames"] = args.sampling_frames
            result["sampling_aggregator_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30

    result["peak_allocated_gib"] = result["peak_allocated_stages_gib"]
    result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    result["peak_nvml_gib"] = nvml.gib()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
