using TorchSharp;
using static TorchSharp.torch;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// cos/sin tables of VGGT's 2D rotary embedding for given token positions, [N, 1, headDim] each (tokens, then heads;
/// [B, N, 1, headDim] for positions that differ across the batch): the first half of the head dims rotates with the
/// token's row, the second half with its column (each half with rotate-half RoPE). What
/// <see cref="RotaryPositionEmbedding2D"/> computes, as tables built once per forward and read by every block (and by
/// the fused kernel, <see cref="FusedQkNormRope"/>).
/// </summary>
internal sealed class Rope2D : IDisposable
{
    readonly Tensor _cos, _signedSin;   // [N, 1, headDim] or [B, N, 1, headDim]

    internal Rope2D(Tensor cos, Tensor signedSin) { _cos = cos; _signedSin = signedSin; }

    /// <summary>cos table [N, 1, headDim] (read by <see cref="FusedQkNormRope"/>).</summary>
    public Tensor Cos => _cos;

    /// <summary>sin table [N, 1, headDim] with the first quarter of each half negated (see <see cref="Apply"/>).</summary>
    public Tensor SignedSin => _signedSin;

    /// <summary>
    /// Tables for <paramref name="specialTokens"/> tokens at position (0,0) followed by a
    /// <paramref name="gridH"/>×<paramref name="gridW"/> patch grid at (row+1, col+1), repeated
    /// <paramref name="repeats"/> times (the frames of a global-attention sequence): the aggregator's positions
    /// (<see cref="VggtAggregator.TokenPositions"/>).
    /// </summary>
    public static Rope2D Create(long gridH, long gridW, int specialTokens, int repeats, int headDim, ScalarType dtype, Device device)
    {
        using var positions = VggtAggregator.TokenPositions(repeats, gridH, gridW, specialTokens, device);
        using var flat = positions.view(-1, 2);
        return FromPositions(flat, headDim, RotaryPositionEmbedding2D.DefaultFrequency, dtype);
    }

    /// <summary>Tables for positions [N, 2] or [B, N, 2] (row, col; integers) in <paramref name="dtype"/>.</summary>
    public static Rope2D FromPositions(Tensor positions, int headDim, double frequency, ScalarType dtype)
    {
        if (headDim % 4 != 0) throw new ArgumentException($"2D RoPE needs a head dimension divisible by 4, got {headDim}.");
        using var scope = torch.NewDisposeScope();
        var device = positions.device;
        int half = headDim / 2;
        // Reference: inv_freq = 1 / base^(arange(0, half, 2) / half), in fp32.
        var exponents = torch.arange(0, half, 2, dtype: ScalarType.Float32, device: device).div(half);
        var invFreq = torch.full_like(exponents, frequency).pow(exponents).reciprocal();

        var rowsCols = positions.to(ScalarType.Float32);
        (Tensor cos, Tensor sin) Half(Tensor coordinate)
        {
            // The reference casts the angles to the activation dtype before cos/sin (bf16 angles in Spatial-MLLM).
            var angles = (coordinate.unsqueeze(-1) * invFreq).to(dtype);   // outer(positions, inv_freq)
            angles = torch.cat([angles, angles], dim: -1);                  // [.., N, half]
            return (angles.cos(), angles.sin());
        }
        var (cosRow, sinRow) = Half(rowsCols.select(-1, 0));
        var (cosCol, sinCol) = Half(rowsCols.select(-1, 1));
        var cos = torch.cat([cosRow, cosCol], dim: -1);       // [.., N, headDim]
        var sin = torch.cat([sinRow, sinCol], dim: -1);
        // Signed sin: within each half, the first quarter negated (see Apply); a multiply by ±1 is exact.
        int quarter = headDim / 4;
        var sign = torch.tensor(Enumerable.Range(0, headDim).Select(i => i % half < quarter ? -1.0 : 1.0).ToArray(), dtype: dtype, device: device);
        var signedSin = sin * sign;
        return new Rope2D(cos.unsqueeze(-2).MoveToOuterDisposeScope(), signedSin.unsqueeze(-2).MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Rotates <paramref name="x"/> [B, N, heads, headDim]: x·cos + rotate_half(x)·sin within each half, as
    /// flip(x)·signedSin, where flip swaps the two quarters of each half ((−x₂)·s and x₂·(−s) are the same number), so
    /// every product and the sum round exactly as the reference's.
    /// </summary>
    public Tensor Apply(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        long[] shape = x.shape;
        long quarter = shape[^1] / 4;
        var swapped = x.reshape([.. shape[..^1], 2, 2, quarter]).flip(-2).view(shape);
        var rotated = x * _cos;
        rotated.add_(swapped.mul_(_signedSin), HeldScalars.One);
        return rotated.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _cos.Dispose();
        _signedSin.Dispose();
    }
}
