using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Video;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Scenes;

/// <summary>
/// A synthetic scene's true world points in place of VGGT's prediction, so space-aware sampling runs on the CPU with
/// real geometry: every pixel of a candidate frame at the scene's own resolution, confidence 1 (all points valid, as
/// the median threshold then keeps everything). It answers by frame number, so the video must be the scene's own (its
/// rendered source, its mp4 or its frame folder); the frame count and size are checked.
/// </summary>
internal sealed class GroundTruthPointMaps(SyntheticScene scene) : IPointMapPredictor
{
    public string Id => $"ground-truth({scene.SceneName},{scene.Options.Frames}x{scene.Options.Width}x{scene.Options.Height})";

    public (Tensor WorldPoints, Tensor Confidence) PredictFrames(VideoSource video, IReadOnlyList<int> frames)
    {
        var info = video.Info;
        if (info.FrameCount != scene.FrameCount || info.Width != scene.Options.Width || info.Height != scene.Options.Height)
            throw new ArgumentException(
                $"{info.Path} ({info.FrameCount} frames of {info.Width}×{info.Height}) is not the video of {scene}; " +
                "ground-truth point maps describe that scene's frames only", nameof(video));
        using var rendered = scene.Render(frames);
        Tensor points = rendered.WorldPoints.clone();
        return (points, torch.ones(points.shape[..3]));
    }

    public (Tensor WorldPoints, Tensor Confidence) Predict(Tensor framesSx3xHxW01) =>
        throw new NotSupportedException($"the ground truth of {scene} is known by frame number, not from pixels; space-aware sampling asks by frame (PredictFrames)");
}
