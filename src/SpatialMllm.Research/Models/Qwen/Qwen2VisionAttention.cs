using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>Vision self-attention: fused qkv (bias), 2D rotary in fp32 (q and k in one pass), segment-restricted SDPA, output proj (bias).</summary>
public sealed class Qwen2VisionAttention : nn.Module
{
    public readonly Linear qkv;
    public readonly Linear proj;
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
    /// <param name="signedSin">[patches, 1, head_dim] fp32: sin with its first half negated (see
    /// <see cref="RotaryEmbedding.ApplyPromoted"/>).</param>
    internal Tensor forward(Tensor x, Tensor cos, Tensor signedSin, SegmentedAttention segments)
    {
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0];
        // [n, 3·hidden] → [3, n, heads, head_dim]
        var qkvHeads = qkv.forward(x).reshape(n, 3, _numHeads, -1).permute(1, 0, 2, 3);
        // q and k rotated together, in fp32 as the reference, without materialising fp32 copies of them (on CUDA in one
        // fused kernel, with the same rounding).
        var qkHeads = qkvHeads.narrow(0, 0, 2);
        var qk = FusedVisionRope.TryApply(qkHeads, cos, signedSin) ?? RotaryEmbedding.ApplyPromoted(qkHeads, cos, signedSin).to(x.dtype);
        var attended = segments.Attend(qk[0], qk[1], qkvHeads[2]);
        return proj.forward(attended).MoveToOuterDisposeScope();
    }
}
