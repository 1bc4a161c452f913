using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using SpatialMllm.Research.Checkpoints;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Decoder self-attention with grouped-query heads and M-RoPE: q/k/v projections with bias, o_proj without. K/V are
/// cached before the heads are expanded, so the cache holds kv_heads only.
/// </summary>
public sealed class Qwen2Attention : nn.Module, IFusedWeights
{
    public readonly Linear q_proj;
    public readonly Linear k_proj;
    public readonly Linear v_proj;
    public readonly Linear o_proj;
    readonly int _numHeads, _numKvHeads, _headDim, _layerIndex;

    public Qwen2Attention(Qwen2TextConfig config, int layerIndex, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2Attention))
    {
        if (config.NumAttentionHeads % config.NumKeyValueHeads != 0)
            throw new ArgumentException($"num_attention_heads {config.NumAttentionHeads} is not a multiple of num_key_value_heads {config.NumKeyValueHeads}.");
        _numHeads = config.NumAttentionHeads;
        _numKvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        _layerIndex = layerIndex;
        q_proj = nn.Linear(config.HiddenSize, (long)_numHeads * _headDim, hasBias: true, device, dtype);
        k_proj = nn.Linear(config.HiddenSize, (long)_numKvHeads * _headDim, hasBias: true, device, dtype);
        v_proj = nn.Linear(config.HiddenSize, (long)_numKvHeads * _headDim, hasBias: true, device, dtype);
        o_proj = nn.Linear((long)_numHeads * _headDim, config.HiddenSize, hasBias: false, device, dtype);
        RegisterComponents();
    }

    /// <param name="x">[B, L, hidden]</param>
    /// <param name="cos">[B, 1, L, head_dim] in x's dtype</param>
    /// <param name="signedSin">[B, 1, L, head_dim]: sin with its first half negated (<see cref="RotaryEmbedding.SignedSin"/>)</param>
    /// <param name="cache">Keys/values of earlier tokens; this step's are appended. Null: attend within x only.</param>
    public Tensor forward(Tensor x, Tensor cos, Tensor signedSin, Qwen2KvCache? cache)
    {
        using var scope = torch.NewDisposeScope();
        long batch = x.shape[0], length = x.shape[1];
        long qWidth = (long)_numHeads * _headDim, kvWidth = (long)_numKvHeads * _headDim;
        // One GEMM for q, k and v: [B, L, (heads + 2·kv_heads)·d].
        var (weight, bias) = FusedQkv();
        var qkv = FlatLinear.Apply(x, weight, bias);
        // q and k rotated together: [B, L, heads + kv_heads, d] → [B, heads + kv_heads, L, d]. rotate_half(x)·sin is
        // flip(x)·signedSin ((−x₂)·s = x₂·(−s) exactly), so this is x·cos + rotate_half(x)·sin bit for bit, with the
        // products and the sum rounded in x's dtype as transformers does.
        var qk = qkv.narrow(-1, 0, qWidth + kvWidth).view(batch, length, _numHeads + _numKvHeads, _headDim).transpose(1, 2);
        var swapped = qk.view(batch, _numHeads + _numKvHeads, length, 2, _headDim / 2).flip(-2).view(batch, _numHeads + _numKvHeads, length, _headDim);
        var rotated = qk * cos;
        rotated.add_(swapped.mul_(signedSin));
        var q = rotated.narrow(1, 0, _numHeads);
        var k = rotated.narrow(1, _numHeads, _numKvHeads);
        var v = qkv.narrow(-1, qWidth + kvWidth, kvWidth).view(batch, length, _numKvHeads, _headDim).transpose(1, 2);

        long past = cache?.Length ?? 0;
        if (cache is not null) (k, v) = cache.Update(_layerIndex, k, v, length);
        // [B, 1, 1, past + L]: the slots each row may see, when the cache hides some (a batch of questions of different
        // lengths after a shared prefix); null otherwise.
        var rowMask = cache?.HiddenSlotsMask(past + length)?.view(batch, 1, 1, past + length);

        int groups = _numHeads / _numKvHeads;
        Tensor merged;
        if (_hooks is { Any: true } && _hooks.IsSet(_attentionPoint))
            merged = EagerAttention(q, k, v, past, groups, rowMask).transpose(1, 2).reshape(batch, length, qWidth);
        else if (length == 1)
        {
            // One query token sees every cached key, so only hidden slots need a mask, and the query heads sharing a KV
            // head can ride along the query-length axis: [B, heads, 1, d] → [B, kv_heads, groups, d]. No K/V copy per step.
            var grouped = q.reshape(batch, _numKvHeads, groups, _headDim);
            merged = nn.functional.scaled_dot_product_attention(grouped, k, v, rowMask).reshape(batch, 1, qWidth);
        }
        else
        {
            var keys = RepeatKv(k, groups);
            var values = RepeatKv(v, groups);
            var attended = past == 0 && rowMask is null
                // SDPA's causal mask is aligned top-left, which is right only when queries and keys coincide.
                ? nn.functional.scaled_dot_product_attention(q, keys, values, is_casual: true)
                : nn.functional.scaled_dot_product_attention(q, keys, values, AttentionMask(past, length, x.device, rowMask));
            // [B, heads, L, d] → [B, L, heads·d]
            merged = attended.transpose(1, 2).reshape(batch, length, qWidth);
        }
        return o_proj.forward(merged).MoveToOuterDisposeScope();
    }

    public Tensor OProjWeight => o_proj.weight!;

    ModelHooks? _hooks;
    string _attentionPoint = "self_attn.attn_weights";

    /// <summary>Runs <paramref name="hooks"/> at <paramref name="point"/> on the attention probabilities; while a hook is
    /// set there, this layer computes them explicitly (<see cref="EagerAttention"/>) instead of through SDPA.</summary>
    internal void AttachHooks(ModelHooks hooks, string point) => (_hooks, _attentionPoint) = (hooks, point);

    /// <summary>
    /// transformers' <c>eager_attention_forward</c>: softmax(q·kᵀ/√d + causal mask) in fp32, cast to q's dtype, through the
    /// hooks (<c>attn_weights</c> [B, heads, L, past + L]), times v. q [B, heads, L, d], k/v [B, kv_heads, past + L, d]
    /// → [B, heads, L, d].
    /// </summary>
    Tensor EagerAttention(Tensor q, Tensor k, Tensor v, long past, int groups, Tensor? rowMask)
    {
        long length = q.shape[2];
        var scores = torch.matmul(q, RepeatKv(k, groups).transpose(2, 3)).mul_(1.0 / Math.Sqrt(_headDim));
        scores = scores.masked_fill(AttentionMask(past, length, q.device, rowMask).logical_not(), float.NegativeInfinity);
        var probabilities = _hooks!.Run(_attentionPoint, scores.softmax(-1, ScalarType.Float32).to(q.dtype));
        return torch.matmul(probabilities, RepeatKv(v, groups));
    }

    Tensor? _fusedWeight, _fusedBias;
    IntPtr _fusedFrom;

    /// <summary>
    /// cat(q_proj, k_proj, v_proj) weights and biases, built on first use and kept outside the module's parameters (the
    /// checkpoint keys stay q_proj/k_proj/v_proj). Rebuilt when q_proj's weight is replaced (<c>module.to(..)</c>) or
    /// after a checkpoint load (<see cref="InvalidateFusedWeights"/>).
    /// </summary>
    internal (Tensor Weight, Tensor Bias) FusedQkv()
    {
        var qWeight = q_proj.weight!;
        // Training: concatenated afresh in the caller's scope, so the gradient flows back to q/k/v_proj.
        if (torch.is_grad_enabled() && qWeight.requires_grad)
            return (torch.cat([qWeight, k_proj.weight!, v_proj.weight!], 0), torch.cat([q_proj.bias!, k_proj.bias!, v_proj.bias!], 0));
        if (_fusedWeight is null || _fusedFrom != qWeight.Handle)
        {
            InvalidateFusedWeights();
            using var noGrad = torch.no_grad();
            _fusedWeight = torch.cat([qWeight, k_proj.weight!, v_proj.weight!], 0).DetachFromDisposeScope();
            _fusedBias = torch.cat([q_proj.bias!, k_proj.bias!, v_proj.bias!], 0).DetachFromDisposeScope();
            _fusedFrom = qWeight.Handle;
        }
        return (_fusedWeight, _fusedBias!);
    }

    /// <summary>Drops the fused q/k/v copy (the next forward rebuilds it from the current weights).</summary>
    public void InvalidateFusedWeights()
    {
        _fusedWeight?.Dispose();
        _fusedBias?.Dispose();
        _fusedWeight = _fusedBias = null;
        _fusedFrom = IntPtr.Zero;
    }

    /// <summary>[B, kv_heads, S, d] → [B, kv_heads·groups, S, d], query head h reading KV head h / groups.</summary>
    static Tensor RepeatKv(Tensor x, int groups)
    {
        if (groups == 1) return x;
        long b = x.shape[0], kvHeads = x.shape[1], s = x.shape[2], d = x.shape[3];
        return x.unsqueeze(2).expand(b, kvHeads, groups, s, d).reshape(b, kvHeads * groups, s, d);
    }

    /// <summary>Boolean [L, past + L]: query i (absolute position past + i) may see keys 0 … past + i; and with
    /// <paramref name="rowMask"/> [B, 1, 1, past + L] only the slots its row may see: [B, 1, L, past + L].</summary>
    static Tensor AttentionMask(long past, long length, Device device, Tensor? rowMask)
    {
        var keyPositions = torch.arange(past + length, ScalarType.Int64, device).unsqueeze(0);
        var queryPositions = torch.arange(past, past + length, ScalarType.Int64, device).unsqueeze(1);
        var causal = keyPositions <= queryPositions;
        return rowMask is null ? causal : causal.logical_and(rowMask);
    }
}
