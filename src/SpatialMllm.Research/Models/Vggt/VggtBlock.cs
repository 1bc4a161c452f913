using SpatialMllm.Research.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using SpatialMllm.Research.Runtime;

namespace SpatialMllm.Research.Models.Vggt;

/// <summary>
/// VGGT's <c>Block</c> (vggt/layers/block.py), the pre-norm transformer block shared by DINOv2 (LayerNorm eps 1e-6),
/// the aggregator's frame/global blocks (eps 1e-5, QK-norm, RoPE) and the camera-head trunk (eps 1e-5):
/// x += ls1(attn(norm1(x), pos)); x += ls2(mlp(norm2(x))).
/// </summary>
public sealed class VggtBlock : nn.Module
{
    public readonly LayerNorm norm1;
    public readonly VggtAttention attn;
    public readonly LayerScale ls1;
    public readonly LayerNorm norm2;
    public readonly VggtMlp mlp;
    public readonly LayerScale ls2;

    public VggtBlock(int dim, int numHeads, double mlpRatio, double normEps, bool qkNorm, Device? device = null, ScalarType? dtype = null,
        RotaryPositionEmbedding2D? rope = null) : base(nameof(VggtBlock))
    {
        norm1 = nn.LayerNorm(dim, eps: normEps, device: device, dtype: dtype);
        attn = new VggtAttention(dim, numHeads, qkNorm, device, dtype, rope);
        ls1 = new LayerScale(dim, device, dtype);
        norm2 = nn.LayerNorm(dim, eps: normEps, device: device, dtype: dtype);
        mlp = new VggtMlp(dim, (int)(dim * mlpRatio), dim, device, dtype);
        ls2 = new LayerScale(dim, device, dtype);
        RegisterComponents();
    }

    /// <summary>VGGT's forward, on its own (the aggregator runs the same code).</summary>
    /// <param name="x">[B, N, C]: for a frame block [B·S, P', C] (each frame's P' = patch start index + h·w tokens), for
    /// a global block [B, S·P', C] (all frames of a sequence).</param>
    /// <param name="pos">[B, N, 2] integer token positions for the attention's rope (see
    /// <see cref="VggtAttention.forward(Tensor, Tensor?)"/>); null for a block without rope.</param>
    /// <returns>[B, N, C].</returns>
    public Tensor forward(Tensor x, Tensor? pos = null)
    {
        using var scope = torch.NewDisposeScope();
        using var tables = attn.RotaryTables(x, pos);
        return forward(x, tables).MoveToOuterDisposeScope();
    }

    /// <summary>The aggregator's call: <paramref name="rope"/> holds the rotary tables built once for all blocks.</summary>
    internal Tensor forward(Tensor x, Rope2D? rope)
    {
        using var scope = torch.NewDisposeScope();
        var one = HeldScalars.One;   // not a literal 1: see HeldScalars
        // LayerScale and residual in one pass each: x + γ·branch (addcmul; the product is not rounded on its own,
        // which can move a low-precision result by one unit in its last place).
        var h = torch.addcmul(x, attn.forward(norm1.forward(x), rope), ls1.Gamma, one);
        var branch = mlp.forward(norm2.forward(h));
        // In place only without a graph: norm2 keeps h for its backward.
        h = h.requires_grad ? torch.addcmul(h, branch, ls2.Gamma, one) : h.addcmul_(branch, ls2.Gamma, one);
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>VGGT's <c>LayerScale</c>: per-channel residual-branch scale, x·<c>gamma</c> [C].</summary>
public sealed class LayerScale : nn.Module<Tensor, Tensor>
{
    public readonly Parameter gamma;

    public LayerScale(int dim, Device? device = null, ScalarType? dtype = null) : base(nameof(LayerScale))
    {
        gamma = nn.Parameter(torch.ones(dim, dtype: dtype, device: device));
        RegisterComponents();
    }

    public Tensor Gamma => gamma;

    public override Tensor forward(Tensor x) => x * gamma;
}

/// <summary>VGGT's <c>Mlp</c>: fc1 → GELU (exact) → fc2, on [.., C].</summary>
public sealed class VggtMlp : nn.Module<Tensor, Tensor>
{
    public readonly Linear fc1;
    public readonly Linear fc2;

    public VggtMlp(int inFeatures, int hiddenFeatures, int outFeatures, Device? device = null, ScalarType? dtype = null) : base(nameof(VggtMlp))
    {
        fc1 = nn.Linear(inFeatures, hiddenFeatures, hasBias: true, device: device, dtype: dtype);
        fc2 = nn.Linear(hiddenFeatures, outFeatures, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return FlatLinear.Forward(fc2, nn.functional.gelu(FlatLinear.Forward(fc1, x))).MoveToOuterDisposeScope();
    }
}
