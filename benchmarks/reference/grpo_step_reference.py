"""The Python baseline of one full-size GRPO step (issue 24), as TRL's GRPOTrainer takes it with transformers: the rollout
with transformers' own kernels (encode, then K completions sampled as `generate(num_return_sequences=K)` does: the prompt
prefilled for every row, then T cached steps with temperature / top-k sampling), the frozen reference's log-probs (a second
copy, TRL's ref_model, beta 0.04), the policy's log-probs over [K, P + T] with a graph (gradient checkpointing, as TRL
runs a 3B model; the lm_head on the T + 1 positions TRL keeps), TRL's `grpo` loss, backward, clip and fused AdamW.
The seed's VGGT aggregator and mlp_add connector; the seed's trainable set (decoder, lm_head, merger, connector). Random
bf16 weights, 16 frames at 476x644 (3190 prompt tokens), no eos (every completion has T tokens). The loop samples as
generate does but without its per-step Python (logits processors, stopping criteria), which only makes the baseline faster.

usage: python3 grpo_step_reference.py QWEN_CONFIG_JSON --ref REF [--runs 3] [--completions 8] [--completion-tokens 64] > out.json
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qwen25vl_reference import NvmlPeak, build_random_models, parts_of, vision_out  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("config")
parser.add_argument("--ref", required=True)
parser.add_argument("--runs", type=int, default=3)
parser.add_argument("--completions", type=int, default=8)
parser.add_argument("--completion-tokens", type=int, default=64)
args = parser.parse_args()
K, T = args.completions, args.completion_tokens
BETA, EPS_LOW, EPS_HIGH, TEMPERATURE, TOP_K = 0.04, 0.2, 0.2, 1.0, 0  # TRL's defaults (top_k 0: off), beta as ours

nvml = NvmlPeak()
config, model, aggregator, connector = build_random_models(args.config, args.ref)
reference = copy.deepcopy(model).eval()          # TRL's ref_model: the base weights, frozen
ref_connector = copy.deepcopy(connector).eval()
for p in list(reference.parameters()) + list(ref_connector.parameters()) + list(aggregator.parameters()):
    p.requires_grad_(False)
visual, language = parts_of(model)
ref_visual, ref_language = parts_of(reference)
for p in visual.parameters():
    p.requires_grad_(False)
for p in visual.merger.parameters():
    p.requires_grad_(True)
language.gradient_checkpointing_enable() if hasattr(language, "gradient_checkpointing_enable") else model.gradient_checkpointing_enable()
trainable = [p for p in list(model.parameters()) + list(connector.parameters()) if p.requires_grad]
optimizer = torch.optim.AdamW(trainable, lr=1e-6, weight_decay=0.0, fused=True)

video_token = getattr(config, "video_token_id", 151656)
grid = torch.tensor([[8, 34, 46]], device="cuda")
pixels = torch.randn(8 * 34 * 46, 1176, device="cuda", dtype=torch.bfloat16)
frames = torch.rand(1, 16, 3, 476, 644, device="cuda", dtype=torch.bfloat16)
P = 3128 + 62
ids = torch.randint(100, 150000, (1, P), device="cuda")
ids[0, 15] = getattr(config, "vision_start_token_id", 151652)
ids[0, 16:16 + 3128] = video_token
ids[0, 16 + 3128] = getattr(config, "vision_end_token_id", 151653)
# Positions as qwen25vl_reference.py gives them (the M-RoPE layout costs nothing to time).
positions, deltas = torch.arange(P, device="cuda").view(1, 1, P).expand(3, 1, P), torch.zeros(1, device="cuda", dtype=torch.long)
mask = torch.ones(K, T, device="cuda")


def embed(lang, vis, conn, spatial):
    v = vision_out(vis(pixels, grid_thw=grid))
    fused = conn(video_embeds=v, spatial_embeds_list=[[spatial[0]]], patch_start_idx=[5], grid_thw=grid)
    e = lang.embed_tokens(ids)
    return e.masked_scatter((ids == video_token).unsqueeze(-1).expand_as(e), fused)


def sequence_positions():
    after = torch.arange(T, device="cuda").view(1, 1, T) + P + deltas.view(1, -1, 1)
    return torch.cat([positions, after.expand(3, 1, T)], 2).expand(3, K, P + T)


def logps(m, lang, prompt_embeds, completion):
    e = torch.cat([prompt_embeds.expand(K, -1, -1), lang.embed_tokens(completion)], 1)
    h = lang(inputs_embeds=e, position_ids=sequence_positions()).last_hidden_state
    logits = m.lm_head(h[:, P - 1:P - 1 + T]).float() / TEMPERATURE
    return torch.gather(logits.log_softmax(-1), 2, completion.unsqueeze(-1)).squeeze(-1)


def step(seed):
    times = {}
    start = time.perf_counter()
    model.eval()                               # generate's mode: transformers turns the cache off under checkpointing in training
    with torch.no_grad():                      # rollout
        spatial = aggregator(frames)[0][-1]
        prompt = embed(language, visual, connector, spatial)
        from transformers import DynamicCache
        past = DynamicCache()
        out = language(inputs_embeds=prompt.expand(K, -1, -1), position_ids=positions.expand(3, K, P), use_cache=True, past_key_values=past)
        generator = torch.Generator(device="cuda").manual_seed(seed)
        tokens = []
        logits = model.lm_head(out.last_hidden_state[:, -1]).float()
        for t in range(T):
            token = torch.multinomial((logits / TEMPERATURE).softmax(-1), 1, generator=generator)
            tokens.append(token)
            pos = (P + t + deltas.view(1, -1, 1)).expand(3, K, 1)
            out = language(inputs_embeds=language.embed_tokens(token), position_ids=pos, use_cache=True, past_key_values=past)
            logits = model.lm_head(out.last_hidden_state[:, -1]).float()
        completion = torch.cat(tokens, 1)
    torch.cuda.synchronize()
    times["rollout_ms"] = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    with torch.no_grad():                      # the reference
        ref_logps = logps(reference, ref_language, embed(ref_language, ref_visual, ref_connector, spatial), completion)
    torch.cuda.synchronize()
    times["reference_ms"] = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    model.train()
    policy = logps(model, language, embed(language, visual, connector, spatial), completion)
    advantages = torch.linspace(-1, 1, K, device="cuda").unsqueeze(1)
    ratio = torch.exp(policy - policy.detach())
    per_token = -torch.min(ratio * advantages, torch.clamp(ratio, 1 - EPS_LOW, 1 + EPS_HIGH) * advantages)
    per_token = per_token + BETA * (torch.exp(ref_logps - policy) - (ref_logps - policy) - 1)
    loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    times["policy_update_ms"] = (time.perf_counter() - start) * 1e3
    return times


step(0)
torch.cuda.reset_peak_memory_stats()
nvml.reset()
runs = []
for r in range(args.runs):
    torch.cuda.synchronize()
    start = time.perf_counter()
    parts = step(r + 1)
    torch.cuda.synchronize()
    parts["step_ms"] = (time.perf_counter() - start) * 1e3
    runs.append(parts)
result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
result.update({"step_ms_all": [run["step_ms"] for run in runs], "completions": K, "completion_tokens": T, "prompt_tokens": P,
               "beta": BETA, "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
               "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30, "peak_nvml_gib": nvml.gib(),
               "torch": torch.__version__, "gpu": torch.cuda.get_device_name()})
print(json.dumps(result))
