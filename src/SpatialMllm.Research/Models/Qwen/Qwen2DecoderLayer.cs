using SpatialMllm.Research.Configs;
using TorchSharp;
using static TorchSharp.torch;

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

    /// <param name="signedSin">sin with its first half negated (<see cref="RotaryEmbedding.SignedSin"/>).</param>
    public Tensor forward(Tensor x, Tensor cos, Tensor signedSin, Qwen2KvCache? cache)
    {
        using var scope = torch.NewDisposeScope();
        // Residuals added in place into the fresh branch outputs (a + x = x + a bit for bit).
        var h = self_attn.forward(input_layernorm.forward(x), cos, signedSin, cache).add_(x);
        return mlp.forward(post_attention_layernorm.forward(h)).add_(h).MoveToOuterDisposeScope();
    }
}
