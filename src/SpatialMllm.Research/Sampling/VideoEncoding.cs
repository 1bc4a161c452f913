using System.Diagnostics;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Processing;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Sampling;

/// <summary>
/// A video decoded and preprocessed on the CPU, ready for the encoders: the first half of
/// <see cref="VideoEncoding.EncodeVideo"/>, made by <see cref="VideoEncoding.DecodeVideo"/> (which a pipeline can run
/// ahead on worker threads) and consumed by <see cref="VideoEncoding.EncodeDecoded"/>. Owns the processor's tensors
/// (~120 MB at 16 frames of 476×644): dispose it once encoded.
/// </summary>
/// <param name="Path">The video file or frame folder.</param>
/// <param name="Selection">The frames the sampler chose.</param>
/// <param name="Inputs">The processor's outputs for those frames, on the CPU.</param>
/// <param name="Timings">"decode frames" (open, choose frames, decode) and "preprocess" (resize, patches), wall-clock on the
/// thread that decoded.</param>
public sealed record DecodedVideo(string Path, FrameSelection Selection, QwenVideoInputs Inputs, IReadOnlyList<StageTiming> Timings) : IDisposable
{
    public void Dispose() => Inputs.Dispose();
}

/// <summary>A model on a video file or frame folder: sample frames, decode them, encode (and answer).</summary>
public static class VideoEncoding
{
    /// <summary>Samples (16 uniform frames by default) and decodes frames of a video file or frame folder, then encodes them:
    /// <see cref="DecodeVideo"/> then <see cref="EncodeDecoded"/>.</summary>
    public static VideoFeatures EncodeVideo(this SpatialMllmModel model, string videoPath, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        using var decoded = model.DecodeVideo(videoPath, sampler, options);
        return model.EncodeDecoded(decoded, options);
    }

    /// <summary>
    /// The CPU half of <see cref="EncodeVideo"/>: opens the video, chooses frames (16 uniform by default), decodes them and
    /// runs <paramref name="model"/>'s <see cref="SpatialMllmModel.Processor"/> on them (resized to
    /// <see cref="AnswerOptions.ResizedSize"/> or the pixel budget). Touches no model weights and no device, so it may run on
    /// worker threads, several videos at once, while the model encodes or answers another video — except the sampler's own
    /// work: a space-aware sampler runs VGGT for a selection it has not cached (one selection at a time).
    /// </summary>
    public static DecodedVideo DecodeVideo(this SpatialMllmModel model, string videoPath, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        var clock = Stopwatch.StartNew();
        var video = VideoSource.Open(videoPath);
        var selection = (sampler ?? FrameSampler.Uniform(16)).Select(video);
        using var frames = video.ReadFrames(selection.Indices);
        var decode = new StageTiming("decode frames", clock.Elapsed.TotalMilliseconds);
        clock.Restart();
        var inputs = model.Processor.Process(frames, resizedSize: options?.ResizedSize);
        return new DecodedVideo(videoPath, selection, inputs, [decode, new StageTiming("preprocess", clock.Elapsed.TotalMilliseconds)]);
    }

    /// <summary>
    /// The device half of <see cref="EncodeVideo"/>: the vision tower, VGGT and the connector on a decoded video. The frame
    /// size was fixed when it was decoded; <paramref name="options"/> give the fusion and the VGGT layer. The features'
    /// timings start with the decoded video's. <paramref name="decoded"/> stays the caller's to dispose.
    /// </summary>
    public static VideoFeatures EncodeDecoded(this SpatialMllmModel model, DecodedVideo decoded, AnswerOptions? options = null) =>
        model.EncodeInputs(decoded.Inputs, options ?? new AnswerOptions(), [.. decoded.Timings]);

    /// <summary>Answers a question about a video file or frame folder (16 uniformly sampled frames by default).</summary>
    public static Answer Answer(this SpatialMllmModel model, string videoPath, string question, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        using var features = model.EncodeVideo(videoPath, sampler, options);
        return model.Answer(features, question, options);
    }
}
