using SpatialMllm.Research.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>Pre-norm ViT block: x += attn(norm1(x)); x += mlp(norm2(x)).</summary>
public sealed class Qwen2VisionBlock : nn.Module
{
    public readonly Qwen2RmsNorm norm1;
    public readonly Qwen2RmsNorm norm2;
    public readonly Qwen2VisionAttention attn;
    public readonly Qwen2SwiGluMlp mlp;

    public Qwen2VisionBlock(Qwen2VisionConfig config, double rmsNormEps, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2VisionBlock))
    {
        norm1 = new Qwen2RmsNorm(config.HiddenSize, rmsNormEps, device, dtype);
        norm2 = new Qwen2RmsNorm(config.HiddenSize, rmsNormEps, device, dtype);
        attn = new Qwen2VisionAttention(config.HiddenSize, config.NumHeads, device, dtype);
        mlp = new Qwen2SwiGluMlp(config.HiddenSize, config.IntermediateSize, hasBias: true, config.HiddenAct, device, dtype);
        RegisterComponents();
    }

    internal Tensor forward(Tensor x, Tensor cos, Tensor sin, SegmentedAttention segments)
    {
        using var scope = torch.NewDisposeScope();
        x = x + attn.forward(norm1.forward(x), cos, sin, segments);
        x = x + mlp.forward(norm2.forward(x));
        return x.MoveToOuterDisposeScope();
    }
}
