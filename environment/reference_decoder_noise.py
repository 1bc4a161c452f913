"""How far the reference decoder's float32 logits move by themselves: transformers' Qwen2.5-VL decoder with eager
attention and with SDPA, on a full-size fixture's prompt and fused tokens (its io.safetensors) and weights (its shards).
make_fullsize_fixture.py's --noise-floor switches SDPA to the math kernel, which leaves an eager-attention decoder
untouched (it prints 0 for the logits); this gives the logits a yardstick. Adds "logits" (and
"generated_step_logits") under "fp32_math" in FIXTURE/reference-noise.json.

    python3 environment/reference_decoder_noise.py FIXTURE QCFG
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

FIXTURE, QCFG = sys.argv[1], sys.argv[2]
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_grad_enabled(False)
dev = torch.device("cuda")

raw = json.load(open(QCFG))
text_cfg = {k: v for k, v in raw.items() if k not in ("vision_config", "architectures", "transformers_version", "torch_dtype")}
tok = {k: raw[k] for k in ("vision_start_token_id", "vision_end_token_id", "image_token_id", "video_token_id")}
cfg = Qwen2_5_VLConfig(text_config=dict(text_cfg, tie_word_embeddings=True), vision_config=dict(raw["vision_config"]),
                       tie_word_embeddings=True, **tok)
with torch.device(dev):
    qwen = Qwen2_5_VLForConditionalGeneration(cfg).float().eval()
language = qwen.model.language_model

# The released layout's decoder keys (model.*) are transformers 5's model.language_model.*.
index = json.load(open(os.path.join(FIXTURE, "model.safetensors.index.json")))["weight_map"]
state = {}
for shard in sorted(set(index.values())):
    with safe_open(os.path.join(FIXTURE, shard), "pt") as f:
        for key in f.keys():
            if key.startswith("model."):
                state["model.language_model." + key[len("model."):]] = f.get_tensor(key).float()
missing = [k for k in qwen.state_dict() if k.startswith("model.language_model.") and k not in state]
assert not missing, f"decoder keys missing from the fixture: {missing[:5]}"
qwen.load_state_dict(state, strict=False)
del state

with safe_open(os.path.join(FIXTURE, "io.safetensors"), "pt") as f:
    io = {k: f.get_tensor(k) for k in ("input_ids", "fused_embeds", "position_ids", "logits", "generated_ids", "generated_step_logits")}
ids = io["input_ids"].to(dev)
VID = raw["video_token_id"]


def logits_of(ids):
    emb = qwen.get_input_embeddings()(ids)
    emb = emb.masked_scatter((ids == VID).unsqueeze(-1).expand_as(emb), io["fused_embeds"].to(dev))
    n = ids.shape[1]
    pos = io["position_ids"].to(dev)
    if n > pos.shape[-1]:  # generated tokens: text positions after the prompt's maximum, as 4.51 does
        extra = torch.arange(1, n - pos.shape[-1] + 1, device=dev).view(1, 1, -1).expand(3, 1, -1) + pos.max()
        pos = torch.cat([pos, extra], dim=-1)
    p4 = torch.cat([torch.arange(n, device=dev).view(1, 1, -1), pos], dim=0)
    return qwen.lm_head(language(inputs_embeds=emb, position_ids=p4).last_hidden_state)[0]


def err(a, b):
    d = (a.double().cpu() - b.double().cpu()).abs()
    return d.max().item(), (d / b.double().cpu().abs().clamp_min(1.0)).max().item()


results = {}
for attn in ("eager", "sdpa"):
    language.config._attn_implementation = attn
    logits = logits_of(ids)
    # the greedy steps' last-position logits, along the fixture's own generated ids
    full = torch.cat([ids, io["generated_ids"].to(dev)], dim=1)
    steps = logits_of(full)[ids.shape[1] - 1:-1]
    results[attn] = (logits.cpu(), steps.cpu())
    print(f"reference decoder, {attn} attention vs the fixture: logits max abs {err(logits, io['logits'])[0]:.3e} "
          f"max rel {err(logits, io['logits'])[1]:.3e}; step logits max rel {err(steps, io['generated_step_logits'])[1]:.3e}", flush=True)
spread = err(results["sdpa"][0], results["eager"][0])[1]
step_spread = err(results["sdpa"][1], results["eager"][1])[1]
print(f"reference decoder, sdpa vs eager attention: logits max rel {spread:.3e}; step logits max rel {step_spread:.3e}")
path = os.path.join(FIXTURE, "reference-noise.json")
noise = json.load(open(path)) if os.path.exists(path) else {"fp32_math": {}, "bf16": {}}
noise.setdefault("fp32_math", {})["logits"] = spread
noise["fp32_math"]["generated_step_logits"] = step_spread
json.dump(noise, open(path, "w"), indent=1)
