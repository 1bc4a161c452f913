using TorchSharp;
using static TorchSharp.torch;
using SpatialMllm.Research.Checkpoints;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// One cached decode step (embedding → every decoder layer → final norm → LM head) as a single TorchScript call with
/// static shapes: the token's slot is a device tensor, keys/values are written with <c>index_copy_</c> and attention
/// covers the cache's whole capacity under a mask of the filled slots. Nothing in it reads a value on the host or
/// changes shape from one token to the next, so on CUDA it is captured once into a <see cref="Runtime.CudaGraph"/> and
/// replayed for every token (<see cref="Qwen2DecodeGraph"/>): eager decode is host-bound (~1250 libtorch ops a token
/// at 5–10 µs of host time each against ~5 ms of GPU work), a replay is one launch. The script repeats the eager ops
/// and their rounding order (<see cref="Qwen2RmsNorm"/>, fused on CUDA as there; <see cref="Qwen2Attention"/>'s q_len 1 path,
/// <see cref="Qwen2SwiGluMlp"/>, <see cref="MultimodalRotaryEmbedding"/>); only the attention differs in summing the
/// masked slots' zero weights. The attention keeps the query heads as heads (<c>enable_gqa</c>) rather than folding
/// each group into the query length as the eager path does: under a mask the folded form (two "heads" of 8 queries)
/// leaves cuDNN's kernel with two thread blocks, 2.8 against 0.5 ms a token for 36 layers on an H100.
/// </summary>
internal static class Qwen2DecodeScript
{
    /// <summary>Tensors per layer in the flattened weight list, after the three shared ones.</summary>
    public const int PerLayer = 8;

    /// <summary>
    /// weights: [embed, final norm, head] + per layer [input norm, qkv weight, qkv bias, o_proj, post norm, gate, up,
    /// down]. keys/values: the cache buffers [B, kv_heads, capacity, d], written in place at slot <c>position</c> [1];
    /// slots past it are masked out (they must hold finite numbers: the cache zero-fills its buffers).
    /// </summary>
    const string Source = """
def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    if x.is_cuda and x.dtype == weight.dtype and x.element_size() == 2:  # bf16/fp16: see Qwen2RmsNorm
        return torch.rms_norm(x, [x.size(-1)], weight, eps)
    xf = x.float()
    scale = xf.pow(2).mean([-1], keepdim=True).add_(eps).rsqrt_()
    normed = (xf * scale).to(x.dtype)
    if normed.dtype != weight.dtype:
        return weight * normed
    return normed.mul_(weight)

def decode_step(ids: Tensor, rope_deltas: Tensor, position: Tensor, weights: List[Tensor], keys: List[Tensor], values: List[Tensor],
                inv_freq: Tensor, s0: int, s1: int, s2: int, heads: int, kv_heads: int, d: int, eps: float) -> Tensor:
    embed = weights[0]
    batch = ids.size(0)
    x = embed.index_select(0, ids.flatten()).view(batch, 1, embed.size(1))
    positions = (rope_deltas + position).view(1, batch, 1).expand(3, batch, 1)
    freqs = positions.float().unsqueeze(-1) * inv_freq
    mixed = torch.cat([freqs[0].narrow(-1, 0, s0), freqs[1].narrow(-1, s0, s1), freqs[2].narrow(-1, s0 + s1, s2)], -1)
    emb = torch.cat([mixed, mixed], -1).unsqueeze(1)
    cos = emb.cos().to(x.dtype)
    sin = emb.sin().to(x.dtype)
    half = d // 2
    signed_sin = torch.cat([sin.narrow(-1, 0, half).neg(), sin.narrow(-1, half, half)], -1)
    q_width = heads * d
    kv_width = kv_heads * d
    visible = torch.arange(keys[0].size(2), device=ids.device).le(position).view(1, 1, 1, -1)
    for i in range(len(keys)):
        o = 3 + 8 * i
        h = rms_norm(x, weights[o], eps)
        qkv = torch.linear(h, weights[o + 1], weights[o + 2])
        qk = qkv.narrow(-1, 0, q_width + kv_width).view(batch, 1, heads + kv_heads, d).transpose(1, 2)
        swapped = qk.view(batch, heads + kv_heads, 1, 2, half).flip(-2).view(batch, heads + kv_heads, 1, d)
        rotated = qk * cos
        rotated.add_(swapped.mul_(signed_sin))
        q = rotated.narrow(1, 0, heads)
        k = rotated.narrow(1, heads, kv_heads)
        v = qkv.narrow(-1, q_width + kv_width, kv_width).view(batch, 1, kv_heads, d).transpose(1, 2)
        key_buffer = keys[i]
        value_buffer = values[i]
        key_buffer.index_copy_(2, position, k)
        value_buffer.index_copy_(2, position, v)
        merged = torch.scaled_dot_product_attention(q, key_buffer, value_buffer, attn_mask=visible, enable_gqa=True).reshape(batch, 1, q_width)
        h = torch.linear(merged, weights[o + 3]).add_(x)
        n = rms_norm(h, weights[o + 4], eps)
        gated = torch.silu_(torch.linear(n, weights[o + 5])).mul_(torch.linear(n, weights[o + 6]))
        x = torch.linear(gated, weights[o + 7]).add_(h)
    return torch.linear(rms_norm(x, weights[1], eps), weights[2])

""";

    static readonly Lazy<jit.CompilationUnit> Unit = new(() => jit.compile(Source));

    /// <summary>
    /// ids [B] (the tokens just chosen), rope_deltas [B] int64, position [1] int64 (the cache slot of these tokens) →
    /// logits [B, 1, vocab]; the tokens' keys/values are written at that slot of <paramref name="keys"/> /
    /// <paramref name="values"/>.
    /// </summary>
    public static Tensor Run(Tensor ids, Tensor ropeDeltas, Tensor position, Tensor[] weights, Tensor[] keys, Tensor[] values,
        Tensor invFreq, IReadOnlyList<int> section, Qwen2TextConfig config) =>
        (Tensor)Unit.Value.invoke("decode_step", ids, ropeDeltas, position, weights, keys, values, invFreq,
            (long)section[0], (long)section[1], (long)section[2],
            (long)config.NumAttentionHeads, (long)config.NumKeyValueHeads, (long)config.HeadDim, config.RmsNormEps);
}
