using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// VGGT's <c>RotaryPositionEmbedding2D</c> (vggt/layers/rope.py): rotary embedding of tokens by their 2D (row, col)
/// position. The first half of each head's features rotates with the row, the second half with the column, each half
/// with rotate-half RoPE at frequencies 1/frequency^(2i/(head_dim/2)); angles are rounded to the tokens' dtype before
/// cos and sin, as in the reference. No parameters. Held by the attention of the aggregator's frame and global blocks
/// (<see cref="VggtAttention.rope"/>).
/// </summary>
public sealed class RotaryPositionEmbedding2D : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>VGGT's <c>rope_freq</c> (100).</summary>
    public const double DefaultFrequency = 100.0;

    public RotaryPositionEmbedding2D(double frequency = DefaultFrequency) : base(nameof(RotaryPositionEmbedding2D))
    {
        base_frequency = frequency;
        RegisterComponents();
    }

    /// <summary>The base of the frequencies (<c>base_frequency</c>).</summary>
    public double base_frequency { get; }

    /// <summary>
    /// <paramref name="tokens"/> [B, heads, N, head_dim] (head_dim divisible by 4), <paramref name="positions"/>
    /// [B, N, 2] integer (row, col) per token (<see cref="VggtAggregator.TokenPositions"/>) → the rotated tokens,
    /// [B, heads, N, head_dim].
    /// </summary>
    public override Tensor forward(Tensor tokens, Tensor positions)
    {
        if (tokens.dim() != 4 || tokens.shape[^1] % 4 != 0)
            throw new ArgumentException($"2D RoPE takes tokens [B, heads, N, head_dim] with head_dim divisible by 4, got [{string.Join(", ", tokens.shape)}].", nameof(tokens));
        CheckPositions(positions, tokens.shape[0], tokens.shape[2]);
        using var scope = torch.NewDisposeScope();
        using var tables = Tables(positions, (int)tokens.shape[^1], tokens.dtype);
        return tables.Apply(tokens.transpose(1, 2)).transpose(1, 2).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The tables for <paramref name="positions"/> [B, N, 2]: one [N, 1, head_dim] table when every batch row holds the
    /// same positions (as in the aggregator; the fused CUDA kernel reads only that form), else [B, N, 1, head_dim].
    /// </summary>
    internal Rope2D Tables(Tensor positions, int headDim, ScalarType dtype)
    {
        bool shared;
        using (torch.NewDisposeScope()) shared = positions.shape[0] == 1 || positions.eq(positions[..1]).all().item<bool>();
        if (!shared) return Rope2D.FromPositions(positions, headDim, base_frequency, dtype);
        using var first = positions[0];
        return Rope2D.FromPositions(first, headDim, base_frequency, dtype);
    }

    /// <summary>Clear errors for positions that are not [batch, tokens, 2] integers.</summary>
    internal static void CheckPositions(Tensor positions, long batch, long tokens)
    {
        if (positions.dim() != 3 || positions.shape[2] != 2 || positions.is_floating_point()
            || (positions.shape[0] != batch && positions.shape[0] != 1) || positions.shape[1] != tokens)
            throw new ArgumentException(
                $"pos must be integer (row, col) positions [B, N, 2] = [{batch}, {tokens}, 2], got {positions.dtype} [{string.Join(", ", positions.shape)}] " +
                "(VggtAggregator.TokenPositions makes them).", "pos");
    }
}

/// <summary>VGGT's <c>PositionGetter</c> (vggt/layers/rope.py): the (row, col) of every patch of a grid.</summary>
public static class PositionGetter
{
    /// <summary>
    /// [<paramref name="batchSize"/>, height·width, 2] int64: (y, x) of each patch in row-major order, the same for every
    /// batch row (<c>cartesian_prod(arange(height), arange(width))</c>).
    /// </summary>
    public static Tensor Get(long batchSize, long height, long width, Device? device = null)
    {
        using var scope = torch.NewDisposeScope();
        var y = torch.arange(height, ScalarType.Int64, device).repeat_interleave(width);
        var x = torch.arange(width, ScalarType.Int64, device).repeat(height);
        var positions = torch.stack([y, x], dim: -1);
        return positions.unsqueeze(0).expand(batchSize, -1, -1).clone().MoveToOuterDisposeScope();
    }
}
