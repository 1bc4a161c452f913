using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Connector;

/// <summary>
/// Experimental. The <c>mlp_cat</c> connector (<c>connector.</c>), which the reference names with <c>mlp_add</c>'s arguments but does not
/// ship. Our reading of the name: the same regrouped VGGT tokens as <see cref="MlpAddConnector"/>, RMS-normalised
/// (<c>ln_q</c>), concatenated to the vision token and mapped by <c>mlp</c> (Linear → GELU → Linear) to the fused token:
/// <c>mlp(cat([vision, ln_q(regroup(spatial))], -1))</c>, which replaces the vision token (no residual).
/// </summary>
public sealed class MlpCatConnector : nn.Module, ISpatialConnector
{
    readonly int _spatialDim, _languageDim, _temporalMerge, _spatialMerge;

    public readonly Qwen2RmsNorm ln_q;
    public readonly Sequential mlp;   // Linear(language + merged → language), GELU, Linear(language → language)

    /// <param name="spatialDim">Channels per VGGT token (2 × embed_dim).</param>
    /// <param name="languageDim">The vision token width = the LLM hidden size.</param>
    public MlpCatConnector(int spatialDim, int languageDim, int temporalMergeSize = 2, int spatialMergeSize = 2,
        Device? device = null, ScalarType? dtype = null) : base(nameof(MlpCatConnector))
    {
        (_spatialDim, _languageDim, _temporalMerge, _spatialMerge) = (spatialDim, languageDim, temporalMergeSize, spatialMergeSize);
        ln_q = new Qwen2RmsNorm(MergedDim, 1e-6, device, dtype);
        mlp = nn.Sequential(
            ("0", nn.Linear(languageDim + MergedDim, languageDim, hasBias: true, device: device, dtype: dtype)),
            ("1", nn.GELU()),
            ("2", nn.Linear(languageDim, languageDim, hasBias: true, device: device, dtype: dtype)));
        RegisterComponents();
    }

    /// <summary>Spatial features per merged token: spatialDim × temporal merge × spatial merge².</summary>
    public int MergedDim => _spatialDim * _temporalMerge * _spatialMerge * _spatialMerge;

    public Tensor forward(Tensor visionEmbeds, Tensor spatialTokens, int patchStartIndex, GridThw grid)
    {
        using var scope = torch.NewDisposeScope();
        if (spatialTokens.dim() != 3 || spatialTokens.shape[2] != _spatialDim)
            throw new ArgumentException($"mlp_cat expects spatial tokens [S, {patchStartIndex}+P, {_spatialDim}], got [{string.Join(", ", spatialTokens.shape)}].");
        var merged = SpatialConnectors.Regroup(spatialTokens, patchStartIndex, grid, _temporalMerge, _spatialMerge); // [N, merged]
        if (visionEmbeds.dim() != 2 || visionEmbeds.shape[0] != merged.shape[0] || visionEmbeds.shape[1] != _languageDim)
            throw new ArgumentException($"Vision embeddings [{string.Join(", ", visionEmbeds.shape)}] do not match the spatial tokens: " +
                                        $"expected [{merged.shape[0]}, {_languageDim}] for grid {grid}.");
        var spatial = ln_q.forward(merged.to(ln_q.DType));
        return mlp.forward(torch.cat([visionEmbeds.to(spatial.dtype), spatial], -1)).MoveToOuterDisposeScope();
    }
}
