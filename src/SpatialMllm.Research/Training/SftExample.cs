using SpatialMllm.Research.Modules;
using SpatialMllm.Research.Processing;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Training;

/// <summary>
/// One supervised example ready for the model: token ids with the video pads expanded, labels (-100 outside the
/// assistant's answers, <see cref="SftExampleBuilder.Tokenize"/>), and the video as the processor emits it.
/// </summary>
/// <param name="PixelValuesVideos">[patches, 1176] Qwen patches.</param>
/// <param name="VideoTchw">[T, 3, H, W] the same frames in [0, 1] for VGGT.</param>
/// <param name="Source">Where it came from (file:line), for messages.</param>
public sealed record SftExample(long[] InputIds, long[] Labels, Tensor PixelValuesVideos, GridThw Grid, double SecondPerGridT,
    Tensor VideoTchw, string Source = "") : IDisposable
{
    public const long IgnoreIndex = -100;

    /// <summary>VGGT's output for this video when computed once ahead (<see cref="Models.SpatialMllmModel.SpatialTokens"/>;
    /// while VGGT is frozen it is the same every epoch); null: computed in each forward. Ignored while VGGT trains or
    /// once its weights differ from <see cref="SpatialTokensWeights"/>. Disposed with the example.</summary>
    public Tensor? SpatialTokens { get; init; }

    /// <summary>VGGT's weights when <see cref="SpatialTokens"/> were computed (<see cref="Models.SpatialMllmModel.SpatialEncoderWeights"/>).</summary>
    public WeightsSnapshot? SpatialTokensWeights { get; init; }

    /// <summary>The video file the frames were decoded from and the indices of those frames in it (the row's video, as
    /// <see cref="SftExampleBuilder.Build(SftRow)"/> reads it); null for frames given in memory. What an auxiliary loss
    /// (<see cref="SftAuxiliaryLoss"/>) looks the frames' ground truth up by.</summary>
    public string? VideoPath { get; init; }

    /// <inheritdoc cref="VideoPath"/>
    public IReadOnlyList<int>? FrameIndices { get; init; }

    /// <summary>Tokens that count in the loss (label != -100 one position after a logit).</summary>
    public int LabelledTokens => Labels.Skip(1).Count(l => l != IgnoreIndex);

    public void Dispose()
    {
        PixelValuesVideos.Dispose();
        VideoTchw.Dispose();
        SpatialTokens?.Dispose();
    }
}
