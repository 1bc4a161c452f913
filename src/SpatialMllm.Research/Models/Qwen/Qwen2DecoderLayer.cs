using SpatialMllm.Research.Configs;
using TorchSharp;
using static TorchSharp.torch;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>Pre-norm decoder layer: x += self_attn(input_layernorm(x)); x += mlp(post_attention_layernorm(x)).</summary>
public sealed class Qwen2DecoderLayer : nn.Module
{
    public readonly Qwen2RmsNorm input_layernorm;
    public readonly Qwen2Attention self_attn;
    public readonly Qwen2RmsNorm post_attention_layernorm;
    public readonly Qwen2SwiGluMlp mlp;

    public Qwen2DecoderLayer(Qwen2TextConfig config, int layerIndex, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2DecoderLayer))
    {
        input_layernorm = new Qwen2RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        self_attn = new Qwen2Attention(config, layerIndex, device, dtype);
        post_attention_layernorm = new Qwen2RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        mlp = new Qwen2SwiGluMlp(config.HiddenSize, config.IntermediateSize, hasBias: false, config.HiddenAct, device, dtype);
        RegisterComponents();
    }

    /// <summary>The layer's linear projections: q, k, v, o, gate, up, down.</summary>
    internal IEnumerable<TorchSharp.Modules.Linear> Projections =>
        [self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj];

    /// <summary>
    /// hidden_states [B, L, hidden]; cos/sin [B, 1, L, head_dim] from <see cref="Qwen2TextModel.rotary_emb"/>; the cache as
    /// for <see cref="Qwen2Attention.forward"/> → [B, L, hidden]. The attention runs as <paramref name="implementation"/>
    /// (the model's <see cref="Qwen2TextModel.AttentionImplementation"/> when called from the model).
    /// </summary>
    public Tensor forward(Tensor hidden_states, Tensor cos, Tensor sin, Qwen2KvCache? cache = null,
        AttentionImplementation implementation = AttentionImplementation.Fused) =>
        Forward(hidden_states, cos, sin, null, cache, implementation);

    /// <summary><see cref="forward"/> with the fast path's sin table made once by the caller for every layer (or null).</summary>
    internal Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? signedSin, Qwen2KvCache? cache, AttentionImplementation implementation)
    {
        using var scope = torch.NewDisposeScope();
        // Residuals added in place into the fresh branch outputs (a + x = x + a bit for bit).
        var h = self_attn.Forward(input_layernorm.forward(x), cos, sin, signedSin, cache, implementation).add_(x, HeldScalars.One);
        return mlp.forward(post_attention_layernorm.forward(h)).add_(h, HeldScalars.One).MoveToOuterDisposeScope();
    }
}
