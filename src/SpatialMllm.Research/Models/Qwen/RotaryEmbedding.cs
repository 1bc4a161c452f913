using TorchSharp;
using static TorchSharp.torch;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Models.Qwen;

/// <summary>Rotary position embedding arithmetic shared by the vision tower (2D) and the decoder (M-RoPE).</summary>
internal static class RotaryEmbedding
{
    /// <summary>
    /// <c>1 / theta^(arange(0, dim, 2) / dim)</c> in fp32 on <paramref name="device"/>, with transformers' own op
    /// sequence (fp32 pow of a scalar base) so the frequencies are bit-identical. Callers keep it outside the module's
    /// registered buffers: <c>module.to(bfloat16)</c> would round a buffer, which ruins positions in the thousands.
    /// </summary>
    public static Tensor InverseFrequencies(long dim, double theta, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var exponent = torch.arange(0, dim, 2, ScalarType.Int64, device).to(ScalarType.Float32) / dim;
        var theta32 = torch.full(Array.Empty<long>(), theta, ScalarType.Float32, device);
        return torch.pow(theta32, exponent).reciprocal().MoveToOuterDisposeScope();
    }

    /// <summary>[x1, x2] → [−x2, x1] over the last dimension (the HF "rotate_half" convention).</summary>
    public static Tensor RotateHalf(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return torch.cat([x2.neg(), x1], -1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <c>float(x)·cos + float(rotate_half(x))·sin</c> for a low-precision <paramref name="x"/> and fp32 tables, in three
    /// kernels and without an fp32 copy of x: the products promote to fp32 (bf16 → fp32 is exact), and
    /// rotate_half(x)·sin = flip(x)·signedSin, where flip swaps the two halves and <paramref name="signedSin"/> is sin
    /// with its first half negated ((−x₂)·s and x₂·(−s) are the same number). The sum is one fused multiply-add
    /// (addcmul), which can differ from a separate multiply and add in the last fp32 bit only.
    /// </summary>
    /// <returns>fp32, shaped like <paramref name="x"/>.</returns>
    public static Tensor ApplyPromoted(Tensor x, Tensor cos, Tensor signedSin)
    {
        using var scope = torch.NewDisposeScope();
        long d = x.shape[^1];
        long[] halves = [.. x.shape[..^1], 2, d / 2];
        var swapped = x.view(halves).flip(-2).view(x.shape);
        return torch.addcmul(x * cos, swapped, signedSin, HeldScalars.One).MoveToOuterDisposeScope();   // not a literal 1: see HeldScalars
    }

    /// <summary>sin [.., d] → [−sin[..d/2], sin[d/2..]] (the table <see cref="ApplyPromoted"/> takes).</summary>
    public static Tensor SignedSin(Tensor sin)
    {
        using var scope = torch.NewDisposeScope();
        long half = sin.shape[^1] / 2;
        return torch.cat([sin.narrow(-1, 0, half).neg(), sin.narrow(-1, half, half)], -1).MoveToOuterDisposeScope();
    }

    /// <summary><c>x·cos + rotate_half(x)·sin</c> in the dtype of the operands.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = torch.NewDisposeScope();
        return (x * cos + RotateHalf(x) * sin).MoveToOuterDisposeScope();
    }
}
