using SpatialMllm.Research.Configs;
using SpatialMllm.Research.Processing;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models.Connector;

/// <summary>
/// Spatial-MLLM's <c>connector</c>: fuses the Qwen vision tokens of a video with one VGGT aggregator layer of the same
/// frames. Implement it in a notebook cell (an <c>nn.Module</c> or <see cref="SpatialConnectors.FromFunction"/>) and
/// assign it to <see cref="SpatialMllmModel.connector"/> to try another fusion without a rebuild.
/// </summary>
public interface ISpatialConnector : IDisposable
{
    /// <summary>
    /// vision_embeds [N, hidden] (the merger output, rows in (t', i, j) order) and spatial_tokens
    /// [S, patchStartIndex + P, 2·vggt_dim] (the chosen aggregator layer; S = 2·grid.T frames, P = grid.H·grid.W)
    /// → the fused tokens [N, hidden] that replace the <c>&lt;|video_pad|&gt;</c> embeddings.
    /// </summary>
    Tensor forward(Tensor visionEmbeds, Tensor spatialTokens, int patchStartIndex, GridThw grid);
}

/// <summary>The connectors Spatial-MLLM's code names (<c>connector_config.connector_type</c>), and cell-made ones.</summary>
public static class SpatialConnectors
{
    /// <summary>Where a connector's weights live in a Spatial-MLLM checkpoint.</summary>
    public const string CheckpointPrefix = "connector.";

    /// <summary>The connector_type values <see cref="Create"/> builds.</summary>
    public static IReadOnlyList<string> Types { get; } = ["mlp_add", "mlp_cat", "cross_attn"];

    /// <summary>
    /// The connector of <paramref name="config"/>'s <c>connector_config</c> with freshly initialised weights, as the
    /// reference's <c>get_connector</c> builds it: <c>mlp_add</c> (the released v1.1 model), <c>mlp_cat</c> or
    /// <c>cross_attn</c> (named in the reference code, not released; see their classes for our reading).
    /// </summary>
    public static ISpatialConnector Create(SpatialMllmConfig config, Device? device = null, ScalarType? dtype = null)
    {
        var connector = config.Connector ?? throw new ArgumentException("The config has no connector_config (not a Spatial-MLLM checkpoint).", nameof(config));
        var spatial = config.Spatial ?? throw new ArgumentException("The config has no spatial_config (not a Spatial-MLLM checkpoint).", nameof(config));
        var vision = config.Vision;
        int spatialDim = 2 * spatial.EmbedDim;
        return connector.ConnectorType switch
        {
            "mlp_add" => new MlpAddConnector(spatialDim, config.Text.HiddenSize, vision.TemporalPatchSize, vision.SpatialMergeSize, device, dtype),
            "mlp_cat" => new MlpCatConnector(spatialDim, config.Text.HiddenSize, vision.TemporalPatchSize, vision.SpatialMergeSize, device, dtype),
            "cross_attn" => new CrossAttnConnector(vision.OutHiddenSize, spatialDim, config.Text.HiddenSize, connector.NumHeads,
                connector.MlpRatio, connector.HiddenAct, connector.Bias, device, dtype),
            var other => throw new NotSupportedException(
                $"connector_config.connector_type '{other}' is not supported; the reference names {string.Join(", ", Types)}."),
        };
    }

    /// <summary>A connector from a function of (vision_embeds, spatial_tokens, patch start index, grid) — for a cell.</summary>
    public static ISpatialConnector FromFunction(Func<Tensor, Tensor, int, GridThw, Tensor> fuse) => new FunctionConnector(fuse);

    /// <summary>
    /// The spatial tokens [S, start + P, D] without the special tokens, regrouped like Qwen's merged tokens:
    /// [S/2 · H/2 · W/2, 8·D] (see <see cref="MlpAddConnector.Regroup"/>), checked against <paramref name="grid"/>.
    /// </summary>
    public static Tensor Regroup(Tensor spatialTokens, int patchStartIndex, GridThw grid, int temporalMergeSize = 2, int spatialMergeSize = 2) =>
        MlpAddConnector.Regroup(spatialTokens, patchStartIndex, grid.T, grid.H, grid.W, temporalMergeSize, spatialMergeSize);

    sealed class FunctionConnector(Func<Tensor, Tensor, int, GridThw, Tensor> fuse) : ISpatialConnector
    {
        public Tensor forward(Tensor visionEmbeds, Tensor spatialTokens, int patchStartIndex, GridThw grid) =>
            fuse(visionEmbeds, spatialTokens, patchStartIndex, grid);

        public void Dispose() { }
    }
}
