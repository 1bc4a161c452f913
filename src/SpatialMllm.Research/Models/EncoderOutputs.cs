using SpatialMllm.Research.Processing;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Models;

/// <summary>
/// What the two encoders make of a video, before the connector: the pieces of <see cref="VideoFeatures"/> for a cell that
/// fuses its own way (then <see cref="VideoFeatures.FromTensors"/>). Owns its tensors: dispose it.
/// </summary>
/// <param name="VisionEmbeds">The vision tower's merged tokens [N, hidden] (<c>vision_embeds</c>).</param>
/// <param name="SpatialTokens">The VGGT aggregator layer the connector reads [S, PatchStartIndex + P, 2·vggt_dim]
/// (<c>spatial_tokens</c>); null without a spatial encoder.</param>
/// <param name="PatchStartIndex">Where the patch tokens start in each frame's VGGT tokens (after the camera and register tokens).</param>
public sealed record EncoderOutputs(Tensor VisionEmbeds, Tensor? SpatialTokens, int PatchStartIndex, GridThw Grid, double SecondPerGridT,
    IReadOnlyList<StageTiming> Timings) : IDisposable
{
    public void Dispose()
    {
        VisionEmbeds.Dispose();
        SpatialTokens?.Dispose();
    }
}
