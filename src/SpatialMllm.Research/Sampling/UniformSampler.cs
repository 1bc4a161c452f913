using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// The Qwen2.5-VL / qwen-vl-utils rule (spec §2.1): n rounded to a multiple of 2, then
/// round(linspace(0, N−1, n)) with round-half-to-even. Like qwen-vl-utils, asking for more frames than the
/// video has (or fewer than 2) is an error.
/// </summary>
internal sealed class UniformSampler : IFrameSampler
{
    readonly int frames;

    public UniformSampler(int frames)
    {
        this.frames = SmartResize.RoundByFactor(frames, VideoFrameSampling.FrameFactor);
        if (this.frames < VideoFrameSampling.FrameFactor)
            throw new ArgumentOutOfRangeException(nameof(frames), $"uniform sampling needs at least 2 frames after rounding to even; {frames} rounds to {this.frames}");
    }

    public string Settings => $"uniform(n={frames})";

    public FrameSelection Select(VideoSource video)
    {
        int total = video.Info.FrameCount;
        if (frames > total)
            throw new ArgumentException($"{video.Info.Path}: uniform sampling of {frames} frames needs at least {frames} frames; it has {total}");
        int[] indices = VideoFrameSampling.Indices(0, total - 1, frames).Select(i => (int)i).ToArray();
        return new FrameSelection(Settings, total, indices, indices, indices);
    }
}
