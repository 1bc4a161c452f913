"""torch's scaled_dot_product_attention on VGGT's global attention at space-aware sampling's shape, per backend.

VGGT's aggregator (vggt/models/aggregator.py) at 518x392 with patch 14: 37x28 = 1036 patch tokens per frame, plus one
camera and four register tokens (patch_start_idx 5): 1041 tokens a frame. A global block attends over all frames at
once: 128 frames -> q, k, v [1, 16 heads, 133248, 64] in bf16, not causal. Each available backend (flash, efficient,
cudnn; math is left out: it would materialise a 133k x 133k matrix) is forced with
torch.nn.attention.sdpa_kernel(SDPBackend.X), warmed up, then timed: median of --runs, synchronised around each call.
FLOPs: 4 * N^2 * d * heads (QK^T and PV, two FLOPs a multiply-add). A backend that refuses the shape or fails is
reported with its error, never stops the others.

    python3 sdpa_backends.py OUT.json [--frames 128] [--runs 5]
"""
import argparse, json, statistics, sys, time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

PATCHES_PER_FRAME = (392 // 14) * (518 // 14)  # 28 x 37
SPECIAL_TOKENS = 1 + 4                           # camera + register tokens
HEADS, HEAD_DIM = 16, 64                          # embed_dim 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tokens = args.frames * (PATCHES_PER_FRAME + SPECIAL_TOKENS)
    result = {"torch": torch.__version__, "frames": args.frames, "tokens": tokens, "heads": HEADS, "head_dim": HEAD_DIM,
              "dtype": "bfloat16", "flops": 4 * tokens * tokens * HEAD_DIM * HEADS, "backends": {}}
    if not torch.cuda.is_available():
        result["error"] = "no CUDA device"
        json.dump(result, open(args.out, "w"), indent=2)
        print(json.dumps(result))
        sys.exit(1)
    result["gpu"] = torch.cuda.get_device_name()
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    reference = None
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):
        backend = getattr(SDPBackend, name, None)
        if backend is None:
            result["backends"][name] = {"error": "not in this torch"}
            continue
        try:
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(q, k, v)  # warm-up (and cuDNN's plan build)
                torch.cuda.synchronize()
                times = []
                for _ in range(args.runs):
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    out = F.scaled_dot_product_attention(q, k, v)
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - start)
            ms = statistics.median(times) * 1e3
            entry = {"ms": round(ms, 3), "tflops": round(result["flops"] / (ms / 1e3) / 1e12, 1), "runs_ms": [round(t * 1e3, 3) for t in times]}
            if reference is None:
                reference = (name, out)
            else:
                entry[f"max_abs_diff_vs_{reference[0].lower()}"] = (out.float() - reference[1].float()).abs().max().item()
            result["backends"][name] = entry
        except Exception as e:  # noqa: BLE001 — a backend that cannot run this shape is a result, not a failure
            result["backends"][name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
    timed = {n: b["ms"] for n, b in result["backends"].items() if "ms" in b}
    result["fastest"] = min(timed, key=timed.get) if timed else None
    json.dump(result, open(args.out, "w"), indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
