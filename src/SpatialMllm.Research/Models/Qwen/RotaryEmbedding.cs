using TorchSharp;
using static TorchSharp.torch;

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

    /// <summary><c>x·cos + rotate_half(x)·sin</c> in the dtype of the operands.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = torch.NewDisposeScope();
        return (x * cos + RotateHalf(x) * sin).MoveToOuterDisposeScope();
    }
}
