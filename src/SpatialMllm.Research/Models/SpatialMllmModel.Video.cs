using System.Diagnostics;
using SpatialMllm.Research.Sampling;
using SpatialMllm.Research.Video;

namespace SpatialMllm.Research.Models;

// The model on a video file or frame folder: sample frames, decode them, encode (and answer).
public sealed partial class SpatialMllmModel
{
    /// <summary>Samples (16 uniform frames by default) and decodes frames of a video file or frame folder, then encodes them:
    /// <see cref="DecodeVideo"/> then <see cref="EncodeDecoded"/>.</summary>
    public VideoFeatures EncodeVideo(string videoPath, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        using var decoded = DecodeVideo(videoPath, sampler, options);
        return EncodeDecoded(decoded, options);
    }

    /// <summary>
    /// The CPU half of <see cref="EncodeVideo"/>: opens the video, chooses frames (16 uniform by default), decodes them and
    /// runs the model's <see cref="Processor"/> on them (resized to
    /// <see cref="AnswerOptions.ResizedSize"/> or the pixel budget). Touches no model weights and no device, so it may run on
    /// worker threads, several videos at once, while the model encodes or answers another video — except the sampler's own
    /// work: a space-aware sampler runs VGGT for a selection it has not cached (one selection at a time).
    /// </summary>
    public DecodedVideo DecodeVideo(string videoPath, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        var clock = Stopwatch.StartNew();
        var video = VideoSource.Open(videoPath);
        var selection = (sampler ?? FrameSampler.Uniform(16)).Select(video);
        using var frames = video.ReadFrames(selection.Indices);
        var decode = new StageTiming("decode frames", clock.Elapsed.TotalMilliseconds);
        clock.Restart();
        var inputs = Processor.Process(frames, resizedSize: options?.ResizedSize);
        return new DecodedVideo(videoPath, selection, inputs, [decode, new StageTiming("preprocess", clock.Elapsed.TotalMilliseconds)]);
    }

    /// <summary>
    /// The device half of <see cref="EncodeVideo"/>: the vision tower, VGGT and the connector on a decoded video. The frame
    /// size was fixed when it was decoded; <paramref name="options"/> give the fusion and the VGGT layer. The features'
    /// timings start with the decoded video's. <paramref name="decoded"/> stays the caller's to dispose.
    /// </summary>
    public VideoFeatures EncodeDecoded(DecodedVideo decoded, AnswerOptions? options = null) =>
        EncodeInputs(decoded.Inputs, options ?? new AnswerOptions(), [.. decoded.Timings]);

    /// <summary>Answers a question about a video file or frame folder (16 uniformly sampled frames by default).</summary>
    public Answer Answer(string videoPath, string question, IFrameSampler? sampler = null, AnswerOptions? options = null)
    {
        using var features = EncodeVideo(videoPath, sampler, options);
        return Answer(features, question, options);
    }
}
