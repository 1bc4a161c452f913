namespace SpatialMllm.Research.Video;

/// <summary>
/// What a video source holds. <see cref="Width"/> and <see cref="Height"/> are the size of the frames
/// <see cref="VideoSource.ReadFrames"/> returns, i.e. after the rotation metadata is applied.
/// </summary>
/// <param name="Path">The video file or the frame folder.</param>
/// <param name="FrameCount">Number of decodable frames (video packets counted by a demux pass, not the
/// container's claim, so a truncated file reports what it really holds).</param>
/// <param name="FramesPerSecond">Average frame rate; null for a frame folder.</param>
/// <param name="Duration">Container duration; null for a frame folder.</param>
/// <param name="Rotation">Rotation metadata in degrees as ffprobe reports it (0 when absent).</param>
public sealed record VideoInfo(
    string Path,
    int FrameCount,
    int Width,
    int Height,
    double? FramesPerSecond,
    TimeSpan? Duration,
    int Rotation);

/// <summary>A video or frame folder that cannot be read; the message names the file.</summary>
public sealed class VideoReadException(string path, string message, Exception? inner = null)
    : IOException($"{path}: {message}", inner)
{
    public string VideoPath { get; } = path;
}
