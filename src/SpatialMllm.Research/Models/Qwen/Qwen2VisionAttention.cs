using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>Vision self-attention: fused qkv (bias), 2D rotary in fp32, segment-restricted SDPA, output proj (bias).</summary>
internal sealed class Qwen2VisionAttention : nn.Module
{
    readonly Linear qkv;
    readonly Linear proj;
    readonly int _numHeads;

    public Qwen2VisionAttention(int hiddenSize, int numHeads, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen2VisionAttention))
    {
        qkv = nn.Linear(hiddenSize, 3L * hiddenSize, hasBias: true, device, dtype);
        proj = nn.Linear(hiddenSize, hiddenSize, hasBias: true, device, dtype);
        _numHeads = numHeads;
        RegisterComponents();
    }

    /// <param name="x">[patches, hidden]</param>
    /// <param name="cos">[patches, 1, head_dim] fp32</param>
    /// <param name="sin">[patches, 1, head_dim] fp32</param>
    public Tensor forward(Tensor x, Tensor cos, Tensor sin, SegmentedAttention segments)
    {
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0];
        // [n, 3·hidden] → [3, n, heads, head_dim]
        var qkvHeads = qkv.forward(x).reshape(n, 3, _numHeads, -1).permute(1, 0, 2, 3);
        var q = RotaryEmbedding.Apply(qkvHeads[0].to(ScalarType.Float32), cos, sin).to(x.dtype);
        var k = RotaryEmbedding.Apply(qkvHeads[1].to(ScalarType.Float32), cos, sin).to(x.dtype);
        var attended = segments.Attend(q, k, qkvHeads[2]);
        return proj.forward(attended).MoveToOuterDisposeScope();
    }
}
