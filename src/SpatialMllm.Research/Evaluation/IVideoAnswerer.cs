namespace SpatialMllm.Research.Evaluation;

/// <summary>
/// A model that answers questions about videos, in two stages per video so that a runner can overlap them:
/// <see cref="Decode"/> (the CPU's part) may run ahead on worker threads while the device encodes and answers the video
/// before; <see cref="IDecodedVideo.Encode"/> (the device's part) and the answers run on the runner's thread.
/// </summary>
internal interface IVideoAnswerer : IDisposable
{
    /// <summary>Opens the video, chooses and decodes its frames and preprocesses them. Called from worker threads, for
    /// several videos at once: it must be thread-safe.</summary>
    IDecodedVideo Decode(BenchmarkVideo video);
}

/// <summary>A video decoded by <see cref="IVideoAnswerer.Decode"/>, holding its frames until it is encoded.</summary>
internal interface IDecodedVideo : IDisposable
{
    /// <summary>Runs the visual encoders; the result answers the video's questions. This object may be disposed right after.</summary>
    IPreparedVideo Encode();
}

/// <summary>One video's visual features, ready for its questions.</summary>
internal interface IPreparedVideo : IDisposable
{
    /// <summary>The model's raw text answers to the question texts, in their order (the chat template is the answerer's
    /// business); the questions of a video come together so that they can be decoded as a batch.</summary>
    IReadOnlyList<string> Answer(IReadOnlyList<string> prompts);
}
