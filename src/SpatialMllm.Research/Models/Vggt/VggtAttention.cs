using SpatialMllm.Research.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// Multi-head self-attention of VGGT and DINOv2: fused qkv projection, optional per-head LayerNorm on q and k
/// (VGGT's frame/global blocks), optional 2D RoPE, then SDPA with the default 1/√headDim scale.
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

    public VggtAttention(int dim, int numHeads, bool qkNorm, Device? device = null, ScalarType? dtype = null) : base(nameof(VggtAttention))
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
        RegisterComponents();
    }

    /// <summary><paramref name="x"/> [B, N, C] → [B, N, C].</summary>
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
