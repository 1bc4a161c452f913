using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// Chooses frames of a video. Create one with <see cref="FrameSampler"/>, or write one in a cell: a class with
/// <see cref="Settings"/> and <see cref="Select"/> returning <see cref="FrameSelection.Of"/>, or
/// <see cref="FrameSampler.FromFunction"/>.
/// </summary>
public interface IFrameSampler
{
    /// <summary>Name and every setting that changes the result; the selection cache keys on it.</summary>
    string Settings { get; }

    FrameSelection Select(VideoSource video);
}
