using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>
/// Decoder self-attention (transformers' <c>Qwen2_5_VLAttention</c>): grouped-query heads, M-RoPE, q/k/v projections with
/// bias and o_proj without. K/V are cached before the heads are repeated, so the cache holds kv_heads only.
/// <para>
/// <see cref="forward"/> is the plain path and reads like the Python: project, <see cref="ApplyMultimodalRotaryPosEmb"/>,
/// cache, <see cref="EagerAttentionForward"/> or <see cref="SdpaAttentionForward"/>, o_proj. The model runs the fast path
/// (<see cref="Qwen2FusedAttention"/>, <see cref="AttentionImplementation.Fused"/>) unless told otherwise; tests hold the
/// two equal. Either way the projections' own parameters are what is computed with: editing
/// <c>q_proj.weight</c> in place, stepping an optimizer, <c>load_state_dict</c> or assigning a new <c>Parameter</c> takes
/// effect at the next forward.
/// </para>
/// </summary>
public sealed class Qwen2Attention : nn.Module
{
    public readonly Linear q_proj;
    public readonly Linear k_proj;
    public readonly Linear v_proj;
    public readonly Linear o_proj;

    public Qwen2Attention(Qwen2TextConfig config, int layerIndex, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2Attention))
    {
        if (config.NumAttentionHeads % config.NumKeyValueHeads != 0)
            throw new ArgumentException($"num_attention_heads {config.NumAttentionHeads} is not a multiple of num_key_value_heads {config.NumKeyValueHeads}.");
        num_heads = config.NumAttentionHeads;
        num_key_value_heads = config.NumKeyValueHeads;
        head_dim = config.HeadDim;
        layer_idx = layerIndex;
        q_proj = nn.Linear(config.HiddenSize, (long)num_heads * head_dim, hasBias: true, device, dtype);
        k_proj = nn.Linear(config.HiddenSize, (long)num_key_value_heads * head_dim, hasBias: true, device, dtype);
        v_proj = nn.Linear(config.HiddenSize, (long)num_key_value_heads * head_dim, hasBias: true, device, dtype);
        o_proj = nn.Linear((long)num_heads * head_dim, config.HiddenSize, hasBias: false, device, dtype);
        RegisterComponents();
        Fused = new Qwen2FusedAttention(this);
    }

    public int num_heads { get; }
    public int num_key_value_heads { get; }
    public int head_dim { get; }
    /// <summary>Which layer's keys/values this attention reads and appends in a <see cref="Qwen2KvCache"/>.</summary>
    public int layer_idx { get; }
    int num_key_value_groups => num_heads / num_key_value_heads;

    /// <summary>The fast path over this module's weights.</summary>
    internal Qwen2FusedAttention Fused { get; }

    /// <summary>
    /// The plain path (<see cref="AttentionImplementation.Sdpa"/>, or eager while a hook reads this layer's attention
    /// probabilities). hidden_states [B, L, hidden]; cos/sin [B, 1, L, head_dim] in its dtype, as
    /// <see cref="Qwen2TextModel.rotary_emb"/> makes them for position ids [3, B, L]; with a <paramref name="cache"/> the L
    /// tokens follow its cached ones and their keys/values are appended (advance the cache afterwards:
    /// <see cref="Qwen2TextModel.forward"/> does). → [B, L, hidden].
    /// </summary>
    public Tensor forward(Tensor hidden_states, Tensor cos, Tensor sin, Qwen2KvCache? cache = null) =>
        Forward(hidden_states, cos, sin, null, cache, AttentionImplementation.Sdpa);

    /// <summary><see cref="forward"/> by <paramref name="implementation"/>; <paramref name="signedSin"/>: the fast path's
    /// table (<see cref="RotaryEmbedding.SignedSin"/>) when the caller made it once for every layer, else null.</summary>
    internal Tensor Forward(Tensor hidden_states, Tensor cos, Tensor sin, Tensor? signedSin, Qwen2KvCache? cache, AttentionImplementation implementation)
    {
        bool eager = implementation == AttentionImplementation.Eager || AttentionWeightsHooked;
        if (implementation == AttentionImplementation.Fused && !eager) return Fused.Forward(hidden_states, cos, sin, signedSin, cache);

        using var scope = torch.NewDisposeScope();
        long batch = hidden_states.shape[0], length = hidden_states.shape[1];
        // [B, L, heads·d] → [B, heads, L, d]; call (Python's self.q_proj(x)) runs the module's hooks: a LoRA adapter's update.
        var query_states = q_proj.call(hidden_states).view(batch, length, -1, head_dim).transpose(1, 2);
        var key_states = k_proj.call(hidden_states).view(batch, length, -1, head_dim).transpose(1, 2);
        var value_states = v_proj.call(hidden_states).view(batch, length, -1, head_dim).transpose(1, 2);
        (query_states, key_states) = ApplyMultimodalRotaryPosEmb(query_states, key_states, cos, sin);

        long past = cache?.Length ?? 0;
        if (cache is not null) (key_states, value_states) = cache.Update(layer_idx, key_states, value_states, length);
        var mask = AttentionMask(past, length, hidden_states.device, cache, batch);
        var attn_output = eager
            ? EagerAttentionForward(query_states, key_states, value_states, mask ?? CausalMask(past, length, hidden_states.device))
            : SdpaAttentionForward(query_states, key_states, value_states, mask, isCausal: mask is null && length > 1);
        // [B, heads, L, d] → [B, L, heads·d]
        attn_output = attn_output.transpose(1, 2).reshape(batch, length, -1);
        return o_proj.call(attn_output).MoveToOuterDisposeScope();
    }

    /// <summary>transformers' <c>apply_multimodal_rotary_pos_emb</c> after its M-RoPE section mixing (which
    /// <see cref="MultimodalRotaryEmbedding"/> does): q·cos + rotate_half(q)·sin, and the same for k.</summary>
    public static (Tensor Q, Tensor K) ApplyMultimodalRotaryPosEmb(Tensor q, Tensor k, Tensor cos, Tensor sin) =>
        (RotaryEmbedding.Apply(q, cos, sin), RotaryEmbedding.Apply(k, cos, sin));

    /// <summary>
    /// transformers' <c>eager_attention_forward</c>: softmax(q·kᵀ/√d + mask) in fp32, cast to q's dtype, through the hooks
    /// (<c>…self_attn.attn_weights</c> [B, heads, L, past + L]), times v. q [B, heads, L, d], k/v [B, kv_heads, past + L, d],
    /// mask boolean (true = may attend) broadcastable to [B, heads, L, past + L] → [B, heads, L, d].
    /// </summary>
    public Tensor EagerAttentionForward(Tensor query, Tensor key, Tensor value, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        var key_states = RepeatKv(key, num_key_value_groups);
        var value_states = RepeatKv(value, num_key_value_groups);
        var attn_weights = torch.matmul(query, key_states.transpose(2, 3)).mul_(1.0 / Math.Sqrt(head_dim));
        attn_weights = attn_weights.masked_fill(mask.logical_not(), float.NegativeInfinity);
        attn_weights = attn_weights.softmax(-1, ScalarType.Float32).to(query.dtype);
        if (_hooks is not null) attn_weights = _hooks.Run(_attentionPoint, attn_weights);
        return torch.matmul(attn_weights, value_states).MoveToOuterDisposeScope();
    }

    /// <summary>transformers' <c>sdpa_attention_forward</c>: K/V heads repeated, then <c>scaled_dot_product_attention</c>
    /// under <paramref name="mask"/> (boolean, true = may attend) or, without one, causal when <paramref name="isCausal"/>.</summary>
    public Tensor SdpaAttentionForward(Tensor query, Tensor key, Tensor value, Tensor? mask, bool isCausal)
    {
        using var scope = torch.NewDisposeScope();
        var key_states = RepeatKv(key, num_key_value_groups);
        var value_states = RepeatKv(value, num_key_value_groups);
        return nn.functional.scaled_dot_product_attention(query, key_states, value_states, mask, is_casual: isCausal && mask is null)
            .MoveToOuterDisposeScope();
    }

    ModelHooks? _hooks;
    string _attentionPoint = "self_attn.attn_weights";

    /// <summary>Runs <paramref name="hooks"/> at <paramref name="point"/> on the attention probabilities; while a hook is
    /// set there, this layer computes them explicitly (<see cref="EagerAttentionForward"/>).</summary>
    internal void AttachHooks(ModelHooks hooks, string point) => (_hooks, _attentionPoint) = (hooks, point);

    /// <summary>Whether a hook reads this layer's attention probabilities (then only the eager attention has them).</summary>
    internal bool AttentionWeightsHooked => _hooks is { Any: true } hooks && hooks.IsSet(_attentionPoint);

    protected override void Dispose(bool disposing)
    {
        if (disposing) Fused.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>[B, kv_heads, S, d] → [B, kv_heads·groups, S, d], query head h reading KV head h / groups (<c>repeat_kv</c>).</summary>
    public static Tensor RepeatKv(Tensor x, int groups)
    {
        if (groups == 1) return x.alias();
        long b = x.shape[0], kvHeads = x.shape[1], s = x.shape[2], d = x.shape[3];
        return x.unsqueeze(2).expand(b, kvHeads, groups, s, d).reshape(b, kvHeads * groups, s, d);
    }

    /// <summary>
    /// The boolean mask of L queries after <paramref name="past"/> cached tokens, or null where plain causal attention
    /// (no cache) or none at all (one query token) is right: [L, past + L] causal (query i at absolute position past + i
    /// sees keys 0 … past + i), narrowed to the slots each row may see when the cache hides some (a batch of questions of
    /// different lengths after a shared prefix): [B, 1, L, past + L].
    /// </summary>
    internal static Tensor? AttentionMask(long past, long length, Device device, Qwen2KvCache? cache, long batch)
    {
        var rowMask = cache?.HiddenSlotsMask(past + length)?.view(batch, 1, 1, past + length);
        if (rowMask is null && (past == 0 || length == 1)) return null;
        var causal = CausalMask(past, length, device);
        return rowMask is null ? causal : causal.logical_and(rowMask);
    }

    /// <summary>Boolean [L, past + L]: query i (absolute position past + i) may see keys 0 … past + i.</summary>
    internal static Tensor CausalMask(long past, long length, Device device)
    {
        var keyPositions = torch.arange(past + length, ScalarType.Int64, device).unsqueeze(0);
        var queryPositions = torch.arange(past, past + length, ScalarType.Int64, device).unsqueeze(1);
        return keyPositions <= queryPositions;
    }
}
