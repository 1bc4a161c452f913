using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Sampling;

/// <summary>Chooses frames of a video. Create one with <see cref="FrameSampler"/>.</summary>
public interface IFrameSampler
{
    /// <summary>Name and every setting that changes the result; the selection cache keys on it.</summary>
    string Settings { get; }

    FrameSelection Select(VideoSource video);
}
