using SpatialMllm.Research.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// VGGT's <c>Attention</c> (vggt/layers/attention.py), also DINOv2's: fused qkv projection, optional per-head LayerNorm
/// on q and k and 2D RoPE (<see cref="rope"/>; both in the aggregator's frame/global blocks), then SDPA with the
/// default 1/√head_dim scale and the output projection.
/// </summary>
public sealed class VggtAttention : nn.Module
{
    /// <summary>nn.LayerNorm's default, which VGGT's q/k norms use.</summary>
    const double QkNormEps = 1e-5;

    readonly int _numHeads;
    readonly int _headDim;

    public readonly Linear qkv;
    public readonly LayerNorm? q_norm;
    public readonly LayerNorm? k_norm;
    public readonly Linear proj;
    /// <summary>The 2D rotary embedding of q and k (the aggregator's blocks), or null (DINOv2, the camera head's trunk).</summary>
    public readonly RotaryPositionEmbedding2D? rope;

    public VggtAttention(int dim, int numHeads, bool qkNorm, Device? device = null, ScalarType? dtype = null, RotaryPositionEmbedding2D? rope = null)
        : base(nameof(VggtAttention))
    {
        if (dim % numHeads != 0) throw new ArgumentException($"dim {dim} is not divisible by {numHeads} heads.");
        _numHeads = numHeads;
        _headDim = dim / numHeads;
        qkv = nn.Linear(dim, 3 * dim, hasBias: true, device: device, dtype: dtype);
        if (qkNorm)
        {
            q_norm = nn.LayerNorm(_headDim, eps: QkNormEps, device: device, dtype: dtype);
            k_norm = nn.LayerNorm(_headDim, eps: QkNormEps, device: device, dtype: dtype);
        }
        proj = nn.Linear(dim, dim, hasBias: true, device: device, dtype: dtype);
        this.rope = rope;
        RegisterComponents();
    }

    public int NumHeads => _numHeads;

    public int HeadDim => _headDim;

    /// <summary>VGGT's forward, on its own (the aggregator runs the same code).</summary>
    /// <param name="x">[B, N, C] tokens (in a block: after <c>norm1</c>).</param>
    /// <param name="pos">[B, N, 2] integer (row, col) of each token for <see cref="rope"/>: for the aggregator's frame
    /// blocks <see cref="VggtAggregator.TokenPositions"/> [B·S, P', 2], for its global blocks the same viewed as
    /// [B, S·P', 2]. Null for an attention without rope.</param>
    /// <returns>[B, N, C].</returns>
    public Tensor forward(Tensor x, Tensor? pos = null)
    {
        using var scope = torch.NewDisposeScope();
        using var tables = RotaryTables(x, pos);
        return forward(x, tables).MoveToOuterDisposeScope();
    }

    /// <summary>The rotary tables for <paramref name="pos"/> (null without rope), with clear errors for a mismatch.</summary>
    internal Rope2D? RotaryTables(Tensor x, Tensor? pos)
    {
        if (x.dim() != 3 || x.shape[2] != (long)_numHeads * _headDim)
            throw new ArgumentException($"The attention takes x [B, N, {_numHeads * _headDim}], got [{string.Join(", ", x.shape)}].", nameof(x));
        if (rope is null)
        {
            if (pos is not null) throw new ArgumentException("This attention has no rotary embedding (rope is null): pass no pos.", nameof(pos));
            return null;
        }
        if (pos is null) throw new ArgumentException("This attention rotates q and k by position: pass pos [B, N, 2] (VggtAggregator.TokenPositions).", nameof(pos));
        RotaryPositionEmbedding2D.CheckPositions(pos, x.shape[0], x.shape[1]);
        return rope.Tables(pos.to(x.device), _headDim, x.dtype);
    }

    /// <summary>The aggregator's call: <paramref name="rope"/> holds the rotary tables built once for all blocks.</summary>
    internal Tensor forward(Tensor x, Rope2D? rope)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], c = x.shape[2];
        // [B, N, 3C] → [B, N, 3, heads, headDim]; q, k, v stay in the [B, N, heads, headDim] layout of the projection
        // (the q/k LayerNorms and RoPE are per token and head, so the layout does not change a value). SDPA reads the
        // [B, heads, N, headDim] transposes and writes its output in q's layout, so merging the heads back is a view
        // instead of a copy.
        var qkvHeads = FlatLinear.Forward(qkv, x).view(b, n, 3, _numHeads, _headDim);
        Tensor q = qkvHeads.select(2, 0), k = qkvHeads.select(2, 1), v = qkvHeads.select(2, 2);
        // On CUDA, norm and RoPE of q and k are one fused kernel (the same values, one launch instead of ten passes).
        if (q_norm != null && k_norm != null && rope != null && FusedQkNormRope.TryApply(q, k, q_norm, k_norm, QkNormEps, rope) is { } qk)
        {
            q = qk[0];
            k = qk[1];
        }
        else
        {
            if (q_norm != null && k_norm != null)
            {
                q = q_norm.forward(q);
                k = k_norm.forward(k);
            }
            if (rope != null)
            {
                q = rope.Apply(q);
                k = rope.Apply(k);
            }
        }
        var attended = nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)); // [B, heads, N, headDim]
        var merged = attended.transpose(1, 2).reshape(b, n, c);
        return FlatLinear.Forward(proj, merged).MoveToOuterDisposeScope();
    }
}
