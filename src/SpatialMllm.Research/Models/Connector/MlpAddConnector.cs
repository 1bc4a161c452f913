using SpatialMllm.Research.Models.Qwen;
using SpatialMllm.Research.Processing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Connector;

/// <summary>
/// Spatial-MLLM's "mlp_add" connector (<c>connector.</c>): regroups one VGGT aggregator layer into Qwen's merged
/// video tokens (2 frames × 2×2 patches per token), maps it with RMSNorm → Linear → GELU → Linear and adds the
/// result to the merged vision embeddings.
/// </summary>
public sealed class MlpAddConnector : nn.Module, ISpatialConnector
{
    readonly int _spatialDim;
    readonly int _languageDim;
    readonly int _temporalMerge;
    readonly int _spatialMerge;

    public readonly Qwen2RmsNorm ln_q;
    public readonly Sequential mlp;   // Linear, GELU, Linear (indexes 0, 1, 2)

    /// <param name="spatialDim">Channels per VGGT token: frame ‖ global attention output, 2 × embed_dim (2048).</param>
    /// <param name="languageDim">The merged vision token width = the LLM hidden size (2048 for the 3B model).</param>
    public MlpAddConnector(int spatialDim, int languageDim, int temporalMergeSize = 2, int spatialMergeSize = 2,
        Device? device = null, ScalarType? dtype = null) : base(nameof(MlpAddConnector))
    {
        _spatialDim = spatialDim;
        _languageDim = languageDim;
        _temporalMerge = temporalMergeSize;
        _spatialMerge = spatialMergeSize;
        int merged = MergedDim;
        ln_q = new Qwen2RmsNorm(merged, 1e-6, device, dtype);
        mlp = nn.Sequential(
            ("0", nn.Linear(merged, merged, hasBias: true, device: device, dtype: dtype)),
            ("1", nn.GELU()),
            ("2", nn.Linear(merged, languageDim, hasBias: true, device: device, dtype: dtype)));
        RegisterComponents();
    }

    /// <summary>Features per merged token: spatialDim × temporal merge × spatial merge² (16384).</summary>
    public int MergedDim => _spatialDim * _temporalMerge * _spatialMerge * _spatialMerge;

    /// <summary>
    /// visionEmbeds [N, languageDim] (the Qwen merger output for one video, rows in (t', i, j) order) +
    /// MLP(RMSNorm(regrouped spatial tokens)). <paramref name="spatialTokens"/> is the chosen aggregator layer
    /// [S, patchStartIndex + P, spatialDim] for the same frames; <paramref name="grid"/> is the video's Qwen <c>grid_thw</c>
    /// (S/2, H/14, W/14).
    /// </summary>
    public Tensor forward(Tensor visionEmbeds, Tensor spatialTokens, int patchStartIndex, GridThw grid)
    {
        using var scope = torch.NewDisposeScope();
        long gridT = grid.T, gridH = grid.H, gridW = grid.W;
        var merged = MergeSpatialTokens(spatialTokens, patchStartIndex, gridT, gridH, gridW);
        if (visionEmbeds.dim() != 2 || visionEmbeds.shape[0] != merged.shape[0] || visionEmbeds.shape[1] != _languageDim)
            throw new ArgumentException(
                $"Vision embeddings [{string.Join(", ", visionEmbeds.shape)}] do not match the spatial tokens " +
                $"[{string.Join(", ", spatialTokens.shape)}]: expected [{merged.shape[0]}, {_languageDim}] for grid " +
                $"(t={gridT}, h={gridH}, w={gridW}).");
        var projected = mlp.forward(ln_q.forward(merged.to(ln_q.DType)));
        return (visionEmbeds + projected).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Drops the special tokens and regroups [S, patchStartIndex + gh·gw, D] into [S/2 · gh/2 · gw/2, 8·D]: row
    /// (t', i, j) row-major like Qwen's merged tokens; within a row, feature ((sh·2 + sw)·D + d)·2 + tt holds
    /// frame 2t'+tt, patch (2i+sh, 2j+sw), channel d. The trained weights depend on exactly this layout.
    /// </summary>
    public Tensor MergeSpatialTokens(Tensor spatialTokens, int patchStartIndex, long gridT, long gridH, long gridW)
    {
        if (spatialTokens.dim() != 3 || spatialTokens.shape[2] != _spatialDim)
            throw new ArgumentException($"Expected spatial tokens [S, {patchStartIndex}+P, {_spatialDim}]: spatial tokens [{string.Join(", ", spatialTokens.shape)}] " +
                                        $"(with {patchStartIndex} special tokens per frame) vs. Qwen grid (t={gridT}, h={gridH}, w={gridW}).");
        return Regroup(spatialTokens, patchStartIndex, gridT, gridH, gridW, _temporalMerge, _spatialMerge);
    }

    /// <summary>
    /// <see cref="MergeSpatialTokens"/> without a connector (any channel count): the regrouping alone, e.g. to look at
    /// the layout or at the connector's input without allocating its weights.
    /// </summary>
    public static Tensor Regroup(Tensor spatialTokens, int patchStartIndex, long gridT, long gridH, long gridW,
        int temporalMergeSize = 2, int spatialMergeSize = 2)
    {
        string Shapes() => $"spatial tokens [{string.Join(", ", spatialTokens.shape)}] (with {patchStartIndex} special tokens per frame) " +
                           $"vs. Qwen grid (t={gridT}, h={gridH}, w={gridW})";
        if (spatialTokens.dim() != 3)
            throw new ArgumentException($"Expected spatial tokens [S, {patchStartIndex}+P, D]: {Shapes()}.");
        long d = spatialTokens.shape[2];
        long s = spatialTokens.shape[0], p = spatialTokens.shape[1] - patchStartIndex;
        if (s % temporalMergeSize != 0)
            throw new ArgumentException($"The frame count must be a multiple of {temporalMergeSize} (Qwen pairs frames; feed an even number of frames): {Shapes()}.");
        if (s / temporalMergeSize != gridT)
            throw new ArgumentException($"{s} frames make {s / temporalMergeSize} temporal patches but the Qwen grid has t={gridT}: {Shapes()}.");
        if (p != gridH * gridW)
            throw new ArgumentException($"{p} patches per frame do not match the Qwen patch grid {gridH}×{gridW} = {gridH * gridW}: {Shapes()}.");
        if (gridH % spatialMergeSize != 0 || gridW % spatialMergeSize != 0)
            throw new ArgumentException($"The patch grid must be divisible by the spatial merge size {spatialMergeSize}: {Shapes()}.");

        using var scope = torch.NewDisposeScope();
        long m = spatialMergeSize;
        var patches = spatialTokens[.., patchStartIndex..];
        // [S, gh·gw, D] → [t', tt, i, sh, j, sw, D] → [t', i, j, sh, sw, D, tt] → [t'·i·j, sh·sw·D·tt]
        var grouped = patches.reshape(gridT, temporalMergeSize, gridH / m, m, gridW / m, m, d)
            .permute(0, 2, 4, 3, 5, 6, 1)
            .reshape(gridT * (gridH / m) * (gridW / m), d * temporalMergeSize * m * m);
        return grouped.MoveToOuterDisposeScope();
    }
}
